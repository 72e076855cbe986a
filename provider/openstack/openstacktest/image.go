package openstacktest

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

type image struct {
	ID, Name, Created string
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
	return map[string]any{"id": im.ID, "name": im.Name, "status": "active", "visibility": "public", "protected": false,
		"disk_format": "qcow2", "container_format": "bare", "size": 352321536, "virtual_size": 2147483648,
		"min_disk": 0, "min_ram": 0, "owner": ProjectID, "os_hidden": false, "tags": []string{},
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
			if name == "" || im.Name == name {
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

// ---- Swift ------------------------------------------------------------------

type swiftAccount struct {
	containers map[string]*swiftContainer
}

type swiftContainer struct {
	meta    http.Header
	objects map[string][]byte
}

const swiftBase = "/swift/v1/AUTH_" + ProjectID

func (c *Cloud) swiftRoutes(mux *http.ServeMux) {
	mux.HandleFunc(swiftBase+"/{container}", c.swiftContainer)
	mux.HandleFunc(swiftBase+"/{container}/{object...}", c.swiftObject)
}

func (c *Cloud) swiftContainer(w http.ResponseWriter, r *http.Request) {
	if !c.authorized(r) {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.swift.containers == nil {
		c.swift.containers = map[string]*swiftContainer{}
	}
	name := r.PathValue("container")
	ct := c.swift.containers[name]
	switch r.Method {
	case http.MethodPut:
		if ct == nil {
			ct = &swiftContainer{meta: http.Header{}, objects: map[string][]byte{}}
			c.swift.containers[name] = ct
			w.WriteHeader(http.StatusCreated)
		} else {
			w.WriteHeader(http.StatusAccepted)
		}
		setMeta(ct.meta, r.Header)
	case http.MethodPost:
		if ct == nil {
			http.Error(w, "Not Found", http.StatusNotFound)
			return
		}
		setMeta(ct.meta, r.Header)
		w.WriteHeader(http.StatusNoContent)
	case http.MethodHead, http.MethodGet:
		if ct == nil {
			http.Error(w, "Not Found", http.StatusNotFound)
			return
		}
		for k, v := range ct.meta {
			w.Header()[k] = v
		}
		w.Header().Set("X-Container-Object-Count", strconv.Itoa(len(ct.objects)))
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		var names []string
		for n := range ct.objects {
			names = append(names, n)
		}
		sortStrings(names)
		var items []map[string]any
		var ids []string
		for _, n := range names {
			ids = append(ids, n)
			items = append(items, map[string]any{"name": n, "bytes": len(ct.objects[n]), "hash": "", "content_type": "application/octet-stream", "last_modified": "2024-01-01T00:00:00.000000"})
		}
		from, to, _, err := c.pageOf(r, ids)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if items == nil {
			items = []map[string]any{}
		}
		writeJSON(w, http.StatusOK, items[from:to])
	case http.MethodDelete:
		if ct == nil {
			http.Error(w, "Not Found", http.StatusNotFound)
			return
		}
		if len(ct.objects) > 0 {
			http.Error(w, "There was a conflict when trying to complete your request.", http.StatusConflict)
			return
		}
		delete(c.swift.containers, name)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	}
}

func setMeta(dst, src http.Header) {
	for k, v := range src {
		if strings.HasPrefix(k, "X-Container-Meta-") {
			dst[k] = v
		}
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func (c *Cloud) swiftObject(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ct := c.swift.containers[r.PathValue("container")]
	obj := r.PathValue("object")
	if r.URL.Query().Get("temp_url_sig") != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		if ct == nil || !validTempURL(r, ct.meta) {
			http.Error(w, "401 Unauthorized: Temp URL invalid", http.StatusUnauthorized)
			return
		}
	} else {
		c.mu.Unlock()
		ok := c.authorized(r)
		c.mu.Lock()
		if !ok {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
	}
	if ct == nil {
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodPut:
		b, err := io.ReadAll(io.LimitReader(r.Body, 256<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ct.objects[obj] = b
		w.Header().Set("Etag", "x")
		w.WriteHeader(http.StatusCreated)
	case http.MethodGet, http.MethodHead:
		b, ok := ct.objects[obj]
		if !ok {
			http.Error(w, "Not Found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(b)
		}
	case http.MethodDelete:
		if _, ok := ct.objects[obj]; !ok {
			http.Error(w, "Not Found", http.StatusNotFound)
			return
		}
		delete(ct.objects, obj)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	}
}

// validTempURL checks a Swift temporary URL signature against the
// container's X-Container-Meta-Temp-URL-Key (hex HMAC; sha1/256/512 by length).
func validTempURL(r *http.Request, meta http.Header) bool {
	q := r.URL.Query()
	expires, err := strconv.ParseInt(q.Get("temp_url_expires"), 10, 64)
	if err != nil || time.Now().Unix() > expires {
		return false
	}
	sig, err := hex.DecodeString(q.Get("temp_url_sig"))
	if err != nil {
		return false
	}
	path, err := url.PathUnescape(r.URL.EscapedPath())
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(path, "/swift")
	body := fmt.Sprintf("%s\n%d\n%s", "GET", expires, rest)
	for _, key := range []string{meta.Get("X-Container-Meta-Temp-Url-Key"), meta.Get("X-Container-Meta-Temp-Url-Key-2")} {
		if key == "" {
			continue
		}
		var h func() hash.Hash
		switch len(sig) {
		case sha1.Size:
			h = sha1.New
		case sha256.Size:
			h = sha256.New
		case sha512.Size:
			h = sha512.New
		default:
			return false
		}
		m := hmac.New(h, []byte(key))
		m.Write([]byte(body))
		if hmac.Equal(m.Sum(nil), sig) {
			return true
		}
	}
	return false
}
