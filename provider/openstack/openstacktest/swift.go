package openstacktest

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ObjectStoreKind says what serves the fake's object-store endpoint.
type ObjectStoreKind int

// The object stores the fake can play.
const (
	// ObjectStoreSwift is OpenStack Swift with the tempurl middleware:
	// temp-URL keys on the account and on containers, HMAC-SHA1, SHA256
	// and SHA512 (its /info lists allowed_digests).
	ObjectStoreSwift ObjectStoreKind = iota
	// ObjectStoreRGW is Ceph's RADOS Gateway: temp-URL keys only on the
	// account (X-Container-Meta-Temp-URL-Key is kept as plain metadata and
	// never checked), HMAC-SHA1 only, and an /info whose tempurl section
	// lists only methods and whose swift.version is the Ceph version.
	ObjectStoreRGW
	// ObjectStoreNoTempURL is a Swift without the tempurl middleware: /info
	// has no tempurl section and no signature is accepted.
	ObjectStoreNoTempURL
)

// SwiftVersion and CephVersion are what /info reports as swift.version.
const (
	SwiftVersion = "2.34.0"
	CephVersion  = "18.2.4"
)

type swiftAccount struct {
	meta       http.Header
	containers map[string]*swiftContainer
	// written says the account exists in Swift's account ring: something
	// was written to it (its metadata, a container). Before that Swift
	// (account_autocreate) answers for it with a made-up empty listing.
	written bool
}

type swiftContainer struct {
	meta    http.Header
	objects map[string][]byte
}

const swiftBase = "/swift/v1/AUTH_" + ProjectID

func (c *Cloud) swiftRoutes(mux *http.ServeMux) {
	// The endpoint is <root>/v1/AUTH_<project>; /info is at <root>/info.
	mux.HandleFunc("GET /swift/info", c.swiftInfo)
	mux.HandleFunc(swiftBase, c.swiftAccountReq)
	mux.HandleFunc(swiftBase+"/{$}", c.swiftAccountReq)
	mux.HandleFunc(swiftBase+"/{container}", c.swiftContainer)
	mux.HandleFunc(swiftBase+"/{container}/{object...}", c.swiftObject)
}

// swiftInfo answers GET /info (no token needed) as Swift's or RGW's
// discoverability does; with NoInfo, 403 as Swift's InfoController answers
// when expose_info = false.
func (c *Cloud) swiftInfo(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	kind, hidden := c.ObjectStore, c.NoInfo
	c.mu.Unlock()
	if hidden {
		swiftError(w, http.StatusForbidden, "<html><h1>Forbidden</h1><p>Access was denied to this resource.</p></html>")
		return
	}
	var body map[string]any
	switch kind {
	case ObjectStoreRGW:
		body = map[string]any{
			"bulk_delete": map[string]any{}, "container_quotas": map[string]any{},
			"swift": map[string]any{"max_file_size": 5368709120, "container_listing_limit": 10000, "version": CephVersion,
				"max_meta_name_length": 81, "max_meta_value_length": 256, "max_meta_count": 90,
				"policies":             []any{map[string]any{"default": true, "name": "default-placement"}},
				"max_object_name_size": 1024, "strict_cors_mode": true, "max_container_name_length": 255},
			"tempurl":        map[string]any{"methods": []string{"GET", "HEAD", "PUT", "POST", "DELETE"}},
			"slo":            map[string]any{"max_manifest_segments": 1000},
			"account_quotas": map[string]any{}, "staticweb": map[string]any{},
			"tempauth": map[string]any{"account_acls": true},
		}
	default:
		body = map[string]any{
			"swift": map[string]any{"version": SwiftVersion, "max_file_size": 5368709122, "account_listing_limit": 10000,
				"container_listing_limit": 10000, "max_meta_name_length": 128, "max_meta_value_length": 256,
				"max_meta_count": 90, "max_object_name_length": 1024, "strict_cors_mode": true,
				"policies": []any{map[string]any{"name": "Policy-0", "aliases": "Policy-0", "default": true}}},
			"bulk_delete":      map[string]any{"max_deletes_per_request": 10000, "max_failed_deletes": 1000},
			"container_quotas": map[string]any{}, "account_quotas": map[string]any{},
			"slo": map[string]any{"max_manifest_segments": 1000, "max_manifest_size": 8388608, "min_segment_size": 1},
		}
		if kind == ObjectStoreSwift {
			body["tempurl"] = map[string]any{
				"methods":                 []string{"GET", "HEAD", "PUT", "POST", "DELETE"},
				"incoming_remove_headers": []string{"x-timestamp"}, "incoming_allow_headers": []string{},
				"outgoing_remove_headers": []string{"x-object-meta-*"}, "outgoing_allow_headers": []string{"x-object-meta-public-*"},
				"allowed_digests": []string{"sha1", "sha256", "sha512"},
			}
		}
	}
	writeJSON(w, http.StatusOK, body)
}

// swiftError writes Swift's plain-text error page.
func swiftError(w http.ResponseWriter, code int, html string) {
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.WriteHeader(code)
	fmt.Fprint(w, html)
}

func swiftNotFound(w http.ResponseWriter) {
	swiftError(w, http.StatusNotFound, "<html><h1>Not Found</h1><p>The resource could not be found.</p></html>")
}

func swiftUnauthorized(w http.ResponseWriter) {
	swiftError(w, http.StatusUnauthorized, "<html><h1>Unauthorized</h1><p>This server could not verify that you are authorized to access the document you requested.</p></html>")
}

// swiftAccountReq serves HEAD/GET/POST of the account (its metadata,
// including the temp-URL keys, and its container list) with Swift's
// statuses:
//   - HEAD: 204 once the account exists; 200 while it has never been
//     written to, when Swift's proxy (account_autocreate) answers with a
//     made-up listing instead of the account server's 204. Ceph RGW always
//     answers 204.
//   - GET: a listing (see writeListing).
//   - POST: 204; it creates an auto-created account.
func (c *Cloud) swiftAccountReq(w http.ResponseWriter, r *http.Request) {
	if !c.authorized(r) {
		swiftUnauthorized(w)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.swiftInit()
	switch r.Method {
	case http.MethodPost:
		setMeta(c.swift.meta, r.Header, "Account")
		c.swift.written = true
		w.WriteHeader(http.StatusNoContent)
	case http.MethodHead, http.MethodGet:
		for k, v := range c.swift.meta {
			w.Header()[k] = v
		}
		objects := 0
		for _, ct := range c.swift.containers {
			objects += len(ct.objects)
		}
		w.Header().Set("X-Account-Container-Count", strconv.Itoa(len(c.swift.containers)))
		w.Header().Set("X-Account-Object-Count", strconv.Itoa(objects))
		w.Header().Set("X-Account-Bytes-Used", "0")
		if r.Method == http.MethodHead {
			code := http.StatusNoContent
			if !c.swift.written && c.ObjectStore != ObjectStoreRGW {
				code = http.StatusOK
			}
			w.Header().Set("Content-Type", listingType(r)+"; charset=utf-8")
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(code)
			return
		}
		var names []string
		for n := range c.swift.containers {
			names = append(names, n)
		}
		sort.Strings(names)
		items := []map[string]any{}
		for _, n := range names {
			items = append(items, map[string]any{"name": n, "count": len(c.swift.containers[n].objects), "bytes": 0})
		}
		writeListing(w, r, names, items)
	default:
		swiftError(w, http.StatusMethodNotAllowed, "<html><h1>Method Not Allowed</h1></html>")
	}
}

// listingType is the listing format a GET or HEAD of an account or
// container asks for: format=json or Accept: application/json give JSON,
// anything else plain text (XML listings are not played).
func listingType(r *http.Request) string {
	if f := r.URL.Query().Get("format"); f != "" {
		if strings.EqualFold(f, "json") {
			return "application/json"
		}
		return "text/plain"
	}
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		return "application/json"
	}
	return "text/plain"
}

// writeListing answers a GET of an account or container as Swift's
// listing_formats middleware does: JSON is 200 even when empty ("[]");
// plain text is one name a line, and 204 when there is none.
func writeListing(w http.ResponseWriter, r *http.Request, names []string, items []map[string]any) {
	if listingType(r) == "application/json" {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_ = json.NewEncoder(w).Encode(items)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(names) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, strings.Join(names, "\n")+"\n")
}

func (c *Cloud) swiftInit() {
	if c.swift.containers == nil {
		c.swift.containers = map[string]*swiftContainer{}
	}
	if c.swift.meta == nil {
		c.swift.meta = http.Header{}
	}
}

func (c *Cloud) swiftContainer(w http.ResponseWriter, r *http.Request) {
	if !c.authorized(r) {
		swiftUnauthorized(w)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.swiftInit()
	name := r.PathValue("container")
	ct := c.swift.containers[name]
	switch r.Method {
	case http.MethodPut:
		if ct == nil {
			ct = &swiftContainer{meta: http.Header{}, objects: map[string][]byte{}}
			c.swift.containers[name] = ct
			c.swift.written = true // Swift creates an auto-created account first
			w.WriteHeader(http.StatusCreated)
		} else {
			w.WriteHeader(http.StatusAccepted)
		}
		setMeta(ct.meta, r.Header, "Container")
	case http.MethodPost:
		if ct == nil {
			swiftNotFound(w)
			return
		}
		setMeta(ct.meta, r.Header, "Container")
		w.WriteHeader(http.StatusNoContent)
	case http.MethodHead, http.MethodGet:
		if ct == nil {
			swiftNotFound(w)
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
		sort.Strings(names)
		items := []map[string]any{}
		for _, n := range names {
			items = append(items, map[string]any{"name": n, "bytes": len(ct.objects[n]), "hash": "", "content_type": "application/octet-stream", "last_modified": "2024-01-01T00:00:00.000000"})
		}
		from, to, _, err := c.pageOf(r, names)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeListing(w, r, names[from:to], items[from:to])
	case http.MethodDelete:
		if ct == nil {
			swiftNotFound(w)
			return
		}
		if len(ct.objects) > 0 {
			swiftError(w, http.StatusConflict, "<html><h1>Conflict</h1><p>There was a conflict when trying to complete your request.</p></html>")
			return
		}
		delete(c.swift.containers, name)
		w.WriteHeader(http.StatusNoContent)
	default:
		swiftError(w, http.StatusMethodNotAllowed, "<html><h1>Method Not Allowed</h1></html>")
	}
}

// setMeta applies X-<kind>-Meta-* headers to dst; an empty value or an
// X-Remove-<kind>-Meta-* header removes the item, as in Swift.
func setMeta(dst, src http.Header, kind string) {
	prefix, remove := "X-"+kind+"-Meta-", "X-Remove-"+kind+"-Meta-"
	for k, v := range src {
		switch {
		case strings.HasPrefix(k, prefix):
			if len(v) == 0 || v[0] == "" {
				delete(dst, k)
			} else {
				dst[k] = v
			}
		case strings.HasPrefix(k, remove):
			delete(dst, prefix+strings.TrimPrefix(k, remove))
		}
	}
}

func (c *Cloud) swiftObject(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.swiftInit()
	ct := c.swift.containers[r.PathValue("container")]
	obj := r.PathValue("object")
	if r.URL.Query().Get("temp_url_sig") != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		if !c.validTempURL(r, ct) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, "401 Unauthorized: Temp URL invalid\n")
			return
		}
	} else {
		c.mu.Unlock()
		ok := c.authorized(r)
		c.mu.Lock()
		if !ok {
			swiftUnauthorized(w)
			return
		}
	}
	if ct == nil {
		swiftNotFound(w)
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
			swiftNotFound(w)
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
			swiftNotFound(w)
			return
		}
		delete(ct.objects, obj)
		w.WriteHeader(http.StatusNoContent)
	default:
		swiftError(w, http.StatusMethodNotAllowed, "<html><h1>Method Not Allowed</h1></html>")
	}
}

// validTempURL checks a temporary URL's signature (hex HMAC of
// "GET\n<expires>\n<path>") against the keys the object store honours:
// the account's X-Account-Meta-Temp-URL-Key(-2) and, on Swift only, the
// container's X-Container-Meta-Temp-URL-Key(-2). The digest follows from
// the signature's length and must be one the store allows.
func (c *Cloud) validTempURL(r *http.Request, ct *swiftContainer) bool {
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
	var allowed []string
	keys := []string{c.swift.meta.Get("X-Account-Meta-Temp-Url-Key"), c.swift.meta.Get("X-Account-Meta-Temp-Url-Key-2")}
	switch c.ObjectStore {
	case ObjectStoreNoTempURL:
		return false
	case ObjectStoreRGW:
		allowed = []string{"sha1"}
	default:
		allowed = []string{"sha1", "sha256", "sha512"}
		if ct != nil {
			keys = append(keys, ct.meta.Get("X-Container-Meta-Temp-Url-Key"), ct.meta.Get("X-Container-Meta-Temp-Url-Key-2"))
		}
	}
	var h func() hash.Hash
	var digest string
	switch len(sig) {
	case sha1.Size:
		h, digest = sha1.New, "sha1"
	case sha256.Size:
		h, digest = sha256.New, "sha256"
	case sha512.Size:
		h, digest = sha512.New, "sha512"
	default:
		return false
	}
	if !slices.Contains(allowed, digest) {
		return false
	}
	_, rest, _ := strings.Cut(path, "/swift")
	body := fmt.Sprintf("%s\n%d\n%s", "GET", expires, rest)
	for _, key := range keys {
		if key == "" {
			continue
		}
		m := hmac.New(h, []byte(key))
		m.Write([]byte(body))
		if hmac.Equal(m.Sum(nil), sig) {
			return true
		}
	}
	return false
}

// AccountMeta returns the Swift account's metadata item name (e.g.
// "Temp-Url-Key"), "" when unset.
func (c *Cloud) AccountMeta(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.swiftInit()
	return c.swift.meta.Get("X-Account-Meta-" + name)
}

// SetAccountMeta sets a Swift account metadata item, as its owner would
// (a write: the account exists from then on).
func (c *Cloud) SetAccountMeta(name, value string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.swiftInit()
	c.swift.meta.Set("X-Account-Meta-"+name, value)
	c.swift.written = true
}
