package openstacktest

import (
	"fmt"
	"net/http"
	"net/url"
)

type image struct {
	ID, Name, Created string
	Visibility        string // "" is public
	Hidden            bool   // os_hidden
}

func (im *image) visibility() string {
	if im.Visibility == "" {
		return VisibilityPublic
	}
	return im.Visibility
}

// listed reports whether Glance's image list shows im for these query
// parameters: by default neither community images (only with
// visibility=community or all) nor hidden ones (only with os_hidden=true).
func (im *image) listed(q url.Values) bool {
	switch v := q.Get("visibility"); v {
	case "":
		if im.visibility() == VisibilityCommunity {
			return false
		}
	case "all":
	default:
		if im.visibility() != v {
			return false
		}
	}
	return im.Hidden == (q.Get("os_hidden") == "true")
}

func (c *Cloud) image(id string) *image {
	for _, im := range c.images {
		if im.ID == id {
			return im
		}
	}
	return nil
}

// glanceError writes Glance's (plain text) error body.
func glanceError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, "%d %s\n\n%s\n\n   ", code, http.StatusText(code), msg)
}

func (im *image) json() map[string]any {
	return map[string]any{"id": im.ID, "name": im.Name, "status": "active", "visibility": im.visibility(), "protected": false,
		"disk_format": "qcow2", "container_format": "bare", "size": 352321536, "virtual_size": 2147483648,
		"min_disk": 0, "min_ram": 0, "owner": ProjectID, "os_hidden": im.Hidden, "tags": []string{},
		"created_at": im.Created, "updated_at": im.Created, "checksum": "d41d8cd98f00b204e9800998ecf8427e",
		"self": "/v2/images/" + im.ID, "file": "/v2/images/" + im.ID + "/file", "schema": "/v2/schemas/image"}
}

func (c *Cloud) imageRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /image/v2/images", func(w http.ResponseWriter, r *http.Request) {
		if !c.authorized(r) {
			glanceError(w, http.StatusUnauthorized, "This server could not verify that you are authorized to access the document you requested.")
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		var ids []string
		var items []*image
		name := r.URL.Query().Get("name")
		for _, im := range c.images {
			if (name == "" || im.Name == name) && im.listed(r.URL.Query()) {
				ids = append(ids, im.ID)
				items = append(items, im)
			}
		}
		from, to, next, err := c.pageOf(r, ids)
		if err != nil {
			glanceError(w, http.StatusBadRequest, err.Error())
			return
		}
		page := []any{}
		for _, im := range items[from:to] {
			page = append(page, im.json())
		}
		body := map[string]any{"images": page, "first": "/v2/images", "schema": "/v2/schemas/images"}
		if next != "" {
			q := r.URL.Query()
			q.Set("marker", next)
			body["next"] = "/v2/images?" + q.Encode()
		}
		writeJSON(w, http.StatusOK, body)
	})
	mux.HandleFunc("GET /image/v2/images/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !c.authorized(r) {
			glanceError(w, http.StatusUnauthorized, "This server could not verify that you are authorized to access the document you requested.")
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		im := c.image(r.PathValue("id"))
		if im == nil {
			glanceError(w, http.StatusNotFound, "No image found with ID "+r.PathValue("id"))
			return
		}
		writeJSON(w, http.StatusOK, im.json())
	})
	mux.HandleFunc("/image/", func(w http.ResponseWriter, r *http.Request) {
		glanceError(w, http.StatusNotFound, "The resource could not be found.")
	})
}
