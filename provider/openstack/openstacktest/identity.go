package openstacktest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"strings"
	"time"
)

type token struct {
	ID      string
	Methods []string
	AppCred bool
	Expires time.Time
	Project bool
}

func pemEncode(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// keystoneError writes Keystone's error body.
func keystoneError(w http.ResponseWriter, code int, title, msg string) {
	writeJSON(w, code, map[string]any{"error": map[string]any{"code": code, "title": title, "message": msg}})
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Keystone uri="/identity"`)
	keystoneError(w, http.StatusUnauthorized, "Unauthorized", "The request you have made requires authentication.")
}

func (c *Cloud) identityRoutes(mux *http.ServeMux) {
	// Version discovery, for an unversioned auth_url.
	mux.HandleFunc("GET /identity/{$}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": map[string]any{"values": []any{
			map[string]any{"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
				"links":       []any{map[string]any{"rel": "self", "href": c.URL + "/identity/v3/"}},
				"media-types": []any{map[string]any{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}}},
		}}})
	})
	mux.HandleFunc("POST /identity/v3/auth/tokens", c.createToken)
	mux.HandleFunc("GET /identity/v3/auth/tokens", func(w http.ResponseWriter, r *http.Request) {
		if !c.authorized(r) {
			unauthorized(w)
			return
		}
		c.mu.Lock()
		t, ok := c.tokens[r.Header.Get("X-Subject-Token")]
		c.mu.Unlock()
		if !ok {
			keystoneError(w, http.StatusNotFound, "Not Found", "Could not find token.")
			return
		}
		w.Header().Set("X-Subject-Token", t.ID)
		writeJSON(w, http.StatusOK, c.tokenBody(t))
	})
	mux.HandleFunc("/identity/", func(w http.ResponseWriter, r *http.Request) {
		keystoneError(w, http.StatusNotFound, "Not Found", "The resource could not be found.")
	})
}

// authorized reports whether the request carries a valid token.
func (c *Cloud) authorized(r *http.Request) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.tokens[r.Header.Get("X-Auth-Token")]
	return ok && time.Now().Before(t.Expires)
}

type authRequest struct {
	Auth struct {
		Identity struct {
			Methods  []string `json:"methods"`
			Password *struct {
				User struct {
					ID       string `json:"id"`
					Name     string `json:"name"`
					Password string `json:"password"`
					Domain   *struct {
						ID   string `json:"id"`
						Name string `json:"name"`
					} `json:"domain"`
				} `json:"user"`
			} `json:"password"`
			ApplicationCredential *struct {
				ID     string `json:"id"`
				Name   string `json:"name"`
				Secret string `json:"secret"`
				User   *struct {
					ID     string `json:"id"`
					Name   string `json:"name"`
					Domain *struct {
						ID   string `json:"id"`
						Name string `json:"name"`
					} `json:"domain"`
				} `json:"user"`
			} `json:"application_credential"`
			Token *struct {
				ID string `json:"id"`
			} `json:"token"`
		} `json:"identity"`
		Scope any `json:"scope"`
	} `json:"auth"`
}

func domainOK(id, name string) bool {
	return (id == "" && name == "") || id == DomainID || name == DomainName
}

func (c *Cloud) createToken(w http.ResponseWriter, r *http.Request) {
	var req authRequest
	if err := decodeBody(r, &req); err != nil {
		keystoneError(w, http.StatusBadRequest, "Bad Request", "Expecting to find auth in request body: "+err.Error())
		return
	}
	id := req.Auth.Identity
	if len(id.Methods) != 1 {
		keystoneError(w, http.StatusBadRequest, "Bad Request", "exactly one authentication method is supported by this cloud")
		return
	}
	t := token{Methods: id.Methods, Expires: time.Now().Add(time.Hour)}
	switch id.Methods[0] {
	case "password":
		if id.Password == nil {
			keystoneError(w, http.StatusBadRequest, "Bad Request", "Expecting to find password in identity.")
			return
		}
		u := id.Password.User
		var dID, dName string
		if u.Domain != nil {
			dID, dName = u.Domain.ID, u.Domain.Name
		}
		if u.ID == "" && u.Domain == nil {
			keystoneError(w, http.StatusBadRequest, "Bad Request", "Expecting to find domain in user.")
			return
		}
		if !(u.ID == UserID || (u.Name == UserName && domainOK(dID, dName))) || u.Password != Password {
			unauthorized(w)
			return
		}
		if !scopeOK(req.Auth.Scope) {
			unauthorized(w)
			return
		}
		t.Project = req.Auth.Scope != nil
	case "application_credential":
		ac := id.ApplicationCredential
		if ac == nil {
			keystoneError(w, http.StatusBadRequest, "Bad Request", "Expecting to find application_credential in identity.")
			return
		}
		if req.Auth.Scope != nil {
			keystoneError(w, http.StatusUnauthorized, "Unauthorized", "Application credentials cannot request a scope.")
			return
		}
		byName := ac.ID == "" && ac.Name == AppCredName && ac.User != nil && (ac.User.ID == UserID || ac.User.Name == UserName)
		if !(ac.ID == AppCredID || byName) || ac.Secret != AppCredSecret {
			unauthorized(w)
			return
		}
		t.AppCred, t.Project = true, true
	case "token":
		if id.Token == nil || !c.validToken(id.Token.ID) {
			unauthorized(w)
			return
		}
		t.Project = scopeOK(req.Auth.Scope) && req.Auth.Scope != nil
	default:
		unauthorized(w)
		return
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	t.ID = "gAAAAA" + hex.EncodeToString(b)
	c.mu.Lock()
	c.tokens[t.ID] = t
	c.mu.Unlock()
	w.Header().Set("X-Subject-Token", t.ID)
	writeJSON(w, http.StatusCreated, c.tokenBody(t))
}

func (c *Cloud) validToken(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.tokens[id]
	return ok
}

// scopeOK accepts the demo project by id, or by name in the Default domain.
func scopeOK(scope any) bool {
	if scope == nil {
		return true
	}
	m, _ := scope.(map[string]any)
	p, _ := m["project"].(map[string]any)
	if p == nil {
		return false
	}
	if p["id"] == ProjectID {
		return true
	}
	d, _ := p["domain"].(map[string]any)
	if p["name"] != ProjectName || d == nil {
		return false
	}
	return d["id"] == DomainID || d["name"] == DomainName
}

func (c *Cloud) tokenBody(t token) map[string]any {
	tok := map[string]any{
		"methods":    t.Methods,
		"expires_at": t.Expires.UTC().Format("2006-01-02T15:04:05.000000Z"),
		"issued_at":  time.Now().UTC().Format("2006-01-02T15:04:05.000000Z"),
		"audit_ids":  []string{"3T2dc1CGQxyJsHdDu1xkcw"},
		"user": map[string]any{"id": UserID, "name": UserName, "password_expires_at": nil,
			"domain": map[string]any{"id": DomainID, "name": DomainName}},
	}
	if t.Project {
		tok["project"] = map[string]any{"id": ProjectID, "name": ProjectName, "domain": map[string]any{"id": DomainID, "name": DomainName}}
		tok["roles"] = []any{map[string]any{"id": "51cc68287d524c759f47c811e6463340", "name": "member"}}
		tok["is_domain"] = false
		tok["catalog"] = c.catalog()
	}
	if t.AppCred {
		tok["application_credential"] = map[string]any{"id": AppCredID, "name": AppCredName, "restricted": true}
	}
	return map[string]any{"token": tok}
}

func (c *Cloud) catalog() []any {
	c.mu.Lock()
	regions := append([]string(nil), c.Regions...)
	c.mu.Unlock()
	if len(regions) == 0 {
		regions = []string{Region}
	}
	// Every region's endpoints lead to the same fake services: a test of
	// region choice looks at which regions the client accepts, not at
	// separate contents.
	svc := func(typ, name, url string) map[string]any {
		var eps []any
		for _, region := range regions {
			for _, iface := range []string{"public", "internal", "admin"} {
				eps = append(eps, map[string]any{"id": strings.Repeat(string(iface[0]), 8) + typ + "-" + region, "interface": iface,
					"region": region, "region_id": region, "url": url})
			}
		}
		return map[string]any{"id": name + "-service", "type": typ, "name": name, "endpoints": eps}
	}
	out := []any{
		svc("identity", "keystone", c.URL+"/identity"),
		svc("compute", "nova", c.URL+"/compute/v2.1"),
		svc("network", "neutron", c.URL+"/networking"),
		svc("image", "glance", c.URL+"/image"),
	}
	c.mu.Lock()
	noSwift := c.NoObjectStore
	c.mu.Unlock()
	if !noSwift {
		out = append(out, svc("object-store", "swift", c.URL+"/swift/v1/AUTH_"+ProjectID))
	}
	return out
}

// IssueToken returns a new valid, unscoped token for the demo user (as
// `openstack token issue` would give), for tests of token auth.
func (c *Cloud) IssueToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	t := token{ID: "gAAAAA" + hex.EncodeToString(b), Methods: []string{"password"}, Expires: time.Now().Add(time.Hour)}
	c.mu.Lock()
	c.tokens[t.ID] = t
	c.mu.Unlock()
	return t.ID
}
