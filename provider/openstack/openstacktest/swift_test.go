package openstacktest

import (
	"io"
	"net/http"
	"testing"
)

// swiftDo sends a request to the fake's Swift with a fresh token and the
// headers given as name, value pairs; it returns the status, the response
// headers and the body.
func swiftDo(t *testing.T, c *Cloud, method, path string, kv ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, c.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", c.IssueToken())
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestSwiftInfoHidden: /info answers 200 by default and 403, as Swift's
// InfoController does with expose_info = false, when NoInfo is set.
func TestSwiftInfoHidden(t *testing.T) {
	c := New(false)
	defer c.Close()
	if code, _, _ := swiftDo(t, c, http.MethodGet, "/swift/info"); code != http.StatusOK {
		t.Fatalf("GET /info: %d, want 200", code)
	}
	c.NoInfo = true
	if code, _, body := swiftDo(t, c, http.MethodGet, "/swift/info"); code != http.StatusForbidden || body != "<html><h1>Forbidden</h1><p>Access was denied to this resource.</p></html>" {
		t.Fatalf("GET /info with NoInfo: %d %q, want Swift's 403", code, body)
	}
}

// TestSwiftAccountStatuses: Swift's statuses for an account, step by step
// from one that was never written to (auto-created: HEAD 200) to one that
// exists (HEAD 204); listings follow listing_formats (JSON 200 even when
// empty, plain text 204 when empty).
func TestSwiftAccountStatuses(t *testing.T) {
	type step struct {
		method, path string
		kv           []string
		code         int
		body         string
	}
	acct := swiftBase
	for _, tc := range []struct {
		name  string
		kind  ObjectStoreKind
		steps []step
	}{
		{"swift, written by an account POST", ObjectStoreSwift, []step{
			{http.MethodHead, acct, nil, http.StatusOK, ""},
			{http.MethodHead, acct + "/", nil, http.StatusOK, ""},
			{http.MethodGet, acct, nil, http.StatusNoContent, ""},
			{http.MethodGet, acct + "?format=json", nil, http.StatusOK, "[]\n"},
			{http.MethodGet, acct, []string{"Accept", "application/json"}, http.StatusOK, "[]\n"},
			{http.MethodPost, acct, []string{"X-Account-Meta-Temp-Url-Key", "k"}, http.StatusNoContent, ""},
			{http.MethodHead, acct, nil, http.StatusNoContent, ""},
			{http.MethodGet, acct, nil, http.StatusNoContent, ""},
		}},
		{"swift, written by a container PUT", ObjectStoreSwift, []step{
			{http.MethodHead, acct, nil, http.StatusOK, ""},
			{http.MethodHead, acct + "/c", nil, http.StatusNotFound, ""},
			{http.MethodPost, acct + "/c", nil, http.StatusNotFound, "<html><h1>Not Found</h1><p>The resource could not be found.</p></html>"},
			{http.MethodHead, acct, nil, http.StatusOK, ""},
			{http.MethodPut, acct + "/c", nil, http.StatusCreated, ""},
			{http.MethodHead, acct, nil, http.StatusNoContent, ""},
			{http.MethodPut, acct + "/c", nil, http.StatusAccepted, ""},
			{http.MethodHead, acct + "/c", nil, http.StatusNoContent, ""},
			{http.MethodGet, acct, nil, http.StatusOK, "c\n"},
			{http.MethodGet, acct + "/c", nil, http.StatusNoContent, ""},
			{http.MethodGet, acct + "/c?format=json", nil, http.StatusOK, "[]\n"},
			{http.MethodPut, acct + "/c/o", nil, http.StatusCreated, ""},
			{http.MethodGet, acct + "/c", nil, http.StatusOK, "o\n"},
			{http.MethodDelete, acct + "/c/o", nil, http.StatusNoContent, ""},
			{http.MethodDelete, acct + "/c", nil, http.StatusNoContent, ""},
			{http.MethodHead, acct, nil, http.StatusNoContent, ""},
		}},
		{"ceph rgw", ObjectStoreRGW, []step{
			{http.MethodHead, acct, nil, http.StatusNoContent, ""},
			{http.MethodPost, acct, []string{"X-Account-Meta-Temp-Url-Key", "k"}, http.StatusNoContent, ""},
			{http.MethodHead, acct, nil, http.StatusNoContent, ""},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New(false)
			defer c.Close()
			c.ObjectStore = tc.kind
			for i, s := range tc.steps {
				code, _, body := swiftDo(t, c, s.method, s.path, s.kv...)
				if code != s.code || body != s.body {
					t.Fatalf("step %d, %s %s: %d %q, want %d %q", i, s.method, s.path, code, body, s.code, s.body)
				}
			}
		})
	}
}

// TestSwiftAccountHeadCarriesMetadata: HEAD of the account gives its
// metadata and counts, and nothing for a never-written account.
func TestSwiftAccountHeadCarriesMetadata(t *testing.T) {
	c := New(false)
	defer c.Close()
	code, h, _ := swiftDo(t, c, http.MethodHead, swiftBase)
	if code != http.StatusOK || h.Get("X-Account-Meta-Temp-Url-Key") != "" || h.Get("X-Account-Container-Count") != "0" {
		t.Fatalf("fresh account: %d %v", code, h)
	}
	swiftDo(t, c, http.MethodPost, swiftBase, "X-Account-Meta-Temp-Url-Key-2", "second")
	code, h, _ = swiftDo(t, c, http.MethodHead, swiftBase)
	if code != http.StatusNoContent || h.Get("X-Account-Meta-Temp-Url-Key-2") != "second" {
		t.Fatalf("after POST: %d %v", code, h)
	}
	swiftDo(t, c, http.MethodPost, swiftBase, "X-Remove-Account-Meta-Temp-Url-Key-2", "x")
	if _, h, _ = swiftDo(t, c, http.MethodHead, swiftBase); h.Get("X-Account-Meta-Temp-Url-Key-2") != "" {
		t.Fatalf("after X-Remove: %v", h)
	}
}
