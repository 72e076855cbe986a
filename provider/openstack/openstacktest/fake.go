// Package openstacktest is a test-only, in-memory OpenStack cloud served over
// HTTP on loopback: Keystone v3 (tokens and the service catalog), Nova
// (servers, flavors, key pairs, console output, with compute microversions),
// Neutron (networks, subnets, ports, security groups and rules, floating IPs),
// Glance v2 (images) and a little of Swift (containers, objects, temporary
// URLs).
//
// It follows the OpenStack API reference closely enough that the real
// gophercloud client works against it unchanged: the JSON shapes, the error
// bodies of each service, the headers (X-Subject-Token, OpenStack-API-Version),
// server-side pagination with next links, and the asynchronous server life
// cycle (BUILD → ACTIVE or ERROR with a fault; deleting → gone; os-stop:
// ACTIVE with task_state powering-off → SHUTOFF; os-start: SHUTOFF with
// powering-on → ACTIVE, each refused with Nova's 409 from any other state).
//
// Transitions are counted in requests, not in time, so tests that use it are
// deterministic: a new server reports BUILD for Cloud.BuildPolls GETs and then
// becomes ACTIVE (or ERROR when Cloud.Fault says so); a server powering off
// or on keeps its status for Cloud.PowerPolls GETs.
//
// It is not a general OpenStack simulator: only the calls and fields the
// openstack provider uses, and what a client would reasonably send with them,
// are implemented. Everything else answers 404 in the service's own format.
package openstacktest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fixed identities of the cloud's default contents, for tests.
const (
	Region        = "RegionOne"
	DomainID      = "default"
	DomainName    = "Default"
	ProjectID     = "7a2b3c4d5e6f40718293a4b5c6d7e8f9"
	ProjectName   = "demo"
	UserID        = "0f1e2d3c4b5a49687766554433221100"
	UserName      = "demo"
	Password      = "s3cret-Passw0rd"
	AppCredID     = "ac0ffee0000000000000000000000001"
	AppCredName   = "clusterctl"
	AppCredSecret = "appcred-SECRET-value-4711"

	// NetworkPrivate is the tenant network (subnet 10.0.0.0/24);
	// NetworkPublic is the external network floating IPs come from.
	NetworkPrivate = "private"
	NetworkPublic  = "public"
	PrivateCIDR    = "10.0.0.0/24"
	PublicCIDR     = "203.0.113.0/24"

	// NoValidHost is Nova's fault message when the scheduler finds no host.
	NoValidHost = "No valid host was found. There are not enough hosts available."

	// Compute microversions the fake accepts.
	MinMicroversion = "2.1"
	MaxMicroversion = "2.96"
)

// Cloud is one fake OpenStack. Make it with New; close it with Close.
type Cloud struct {
	srv *httptest.Server
	// URL is the base of every service, e.g. http://127.0.0.1:34567.
	URL string

	mu sync.Mutex
	// BuildPolls is how many GETs of a new server show BUILD before it
	// turns ACTIVE (or ERROR). Default 2.
	BuildPolls int
	// DeletePolls is how many GETs of a server being deleted still show it
	// (task_state "deleting") before it is gone (404). Default 1.
	DeletePolls int
	// PowerPolls is how many GETs of a server after os-stop (os-start)
	// still show it ACTIVE (SHUTOFF) with task_state powering-off
	// (powering-on) before the change is done. Default 2.
	PowerPolls int
	// PageSize is the most items one list response holds (Nova's
	// max_limit, Neutron's pagination_max_limit, Glance's limit_param_default).
	// Small by default so clients must follow next links. Default 2.
	PageSize int
	// Fault, when set, is asked for each new server when its build ends; a
	// non-empty message makes the server go to ERROR with that fault.
	// The default fails servers whose flavor has more RAM than a host has.
	Fault func(s ServerInfo) string
	// NoObjectStore leaves Swift out of the catalog.
	NoObjectStore bool
	// ObjectStore is what serves the object-store endpoint: OpenStack
	// Swift (the default), Ceph RGW, or a Swift without the tempurl
	// middleware. See the ObjectStore* constants.
	ObjectStore ObjectStoreKind
	// NoInfo hides the object store's /info, as Swift with expose_info =
	// false does (GET /info answers 403).
	NoInfo bool
	// Regions are the regions of the service catalog (default: Region
	// alone). Each region's endpoints lead to the same services.
	Regions []string
	// SoftDelete makes DELETE of a server a soft delete, as on a cloud with
	// reclaim_instance_interval > 0: the server turns SOFT_DELETED and keeps
	// its ports (and so its security groups) until it is reclaimed or
	// force-deleted (the forceDelete action).
	SoftDelete bool
	// SecurityGroupRuleQuota is the project's security_group_rule quota
	// (Neutron's default is 100; -1 is unlimited).
	SecurityGroupRuleQuota int
	// BeforeRuleCreate, when set, runs at the start of every request to
	// create a security group rule, before the fake looks at it: another
	// client acting at that moment (it may call AddRule).
	BeforeRuleCreate func()

	tokens   map[string]token
	seq      int
	flavors  []*flavor
	keypairs map[string]*keypair
	images   []*image
	servers  []*server
	networks []*network
	subnets  []*subnet
	ports    []*port
	groups   []*secGroup
	rules    []*secRule
	fips     []*floatingIP
	swift    swiftAccount
	reqs     []Request

	maxBuilding int
}

// MaxBuilding is the most servers that were in BUILD at once.
func (c *Cloud) MaxBuilding() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxBuilding
}

// Request is one request the cloud received (for assertions).
type Request struct {
	Method, Path, Query string
	// Microversion is the compute microversion asked for ("" if none).
	Microversion string
	// Status is the HTTP status the fake answered (0 while unanswered).
	Status int
	// Action is the action of a POST to a server's /action ("os-stop").
	Action string
}

// ServerInfo is what Fault learns about a server.
type ServerInfo struct {
	ID, Name, FlavorName string
	RAM                  int
}

// hostRAM is the RAM of the biggest fake hypervisor (MiB).
const hostRAM = 65536

// New starts a cloud with default contents: domain Default, project demo,
// user demo (Password) with an application credential, flavors m1.tiny,
// m1.small, m1.medium, m1.large and g1.huge (too big for any host), images
// debian-12-genericcloud-amd64, debian-12-generic-arm64 and ubuntu-24.04-server,
// network private (10.0.0.0/24) and external network public (203.0.113.0/24).
// With tlsServer the endpoints use HTTPS with httptest's self-signed
// certificate (see Certificate).
func New(tlsServer bool) *Cloud {
	c := &Cloud{BuildPolls: 2, DeletePolls: 1, PowerPolls: 2, PageSize: 2, SecurityGroupRuleQuota: 100, tokens: map[string]token{}, keypairs: map[string]*keypair{}}
	c.seedContents()
	h := c.handler()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("openstacktest: listen on loopback: %v", err))
	}
	// Clients that reject the test certificate are expected; keep their
	// handshake errors out of the test log.
	quiet := log.New(io.Discard, "", 0)
	c.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: h, ErrorLog: quiet}}
	if tlsServer {
		c.srv.StartTLS()
	} else {
		c.srv.Start()
	}
	c.URL = c.srv.URL
	return c
}

// Close stops the server.
func (c *Cloud) Close() { c.srv.Close() }

// Client returns an HTTP client that trusts the cloud's certificate.
func (c *Cloud) Client() *http.Client { return c.srv.Client() }

// CertificatePEM returns the TLS server certificate in PEM form (for a
// cacert file); nil without TLS.
func (c *Cloud) CertificatePEM() []byte {
	cert := c.srv.Certificate()
	if cert == nil {
		return nil
	}
	return pemEncode(cert.Raw)
}

// AuthURL is Keystone's versioned endpoint, as clouds.yaml's auth_url.
func (c *Cloud) AuthURL() string { return c.URL + "/identity/v3" }

// Requests returns the requests received so far.
func (c *Cloud) Requests() []Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Request(nil), c.reqs...)
}

// ExpireTokens makes every issued token invalid (as if they had expired).
func (c *Cloud) ExpireTokens() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tokens = map[string]token{}
}

func (c *Cloud) newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func now() string { return time.Now().UTC().Format("2006-01-02T15:04:05Z") }

func (c *Cloud) seedContents() {
	for i, f := range []struct {
		name       string
		ram, vcpus int
		disk       int
	}{{"m1.tiny", 512, 1, 1}, {"m1.small", 2048, 1, 20}, {"m1.medium", 4096, 2, 40}, {"m1.large", 8192, 4, 80}, {"g1.huge", 1048576, 64, 1000}} {
		c.flavors = append(c.flavors, &flavor{ID: strconv.Itoa(i + 1), Name: f.name, RAM: f.ram, VCPUs: f.vcpus, Disk: f.disk})
	}
	for _, n := range []string{"debian-12-genericcloud-amd64", "debian-12-generic-arm64", "ubuntu-24.04-server", "cirros-0.6.2-x86_64-disk"} {
		c.images = append(c.images, &image{ID: c.newID(), Name: n, Created: now()})
	}
	priv := &network{ID: c.newID(), Name: NetworkPrivate}
	pub := &network{ID: c.newID(), Name: NetworkPublic, External: true}
	c.networks = append(c.networks, priv, pub)
	c.subnets = append(c.subnets,
		&subnet{ID: c.newID(), Name: "private-subnet", NetworkID: priv.ID, CIDR: netip.MustParsePrefix(PrivateCIDR)},
		&subnet{ID: c.newID(), Name: "public-subnet", NetworkID: pub.ID, CIDR: netip.MustParsePrefix(PublicCIDR)})
	priv.Subnets = []string{c.subnets[0].ID}
	pub.Subnets = []string{c.subnets[1].ID}
	// Every project has a "default" security group.
	c.addGroup("default", "Default security group")
}

// SetPublicCIDR moves the external network's subnet, which floating IPs
// come from, to cidr (before any floating IP is made). A test that runs
// the CLI outside a network namespace gives it a loopback range, so that
// the CLI's dials of the floating IPs stay on this machine (nothing
// answers there; the CLI moves on to the fixed address).
func (c *Cloud) SetPublicCIDR(cidr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.subnets {
		if s.Name == "public-subnet" {
			s.CIDR, s.next = netip.MustParsePrefix(cidr), 0
		}
	}
}

// AddNetwork adds a tenant network with one IPv4 subnet and returns its id.
func (c *Cloud) AddNetwork(name, cidr string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := &network{ID: c.newID(), Name: name}
	s := &subnet{ID: c.newID(), Name: name + "-subnet", NetworkID: n.ID, CIDR: netip.MustParsePrefix(cidr)}
	n.Subnets = []string{s.ID}
	c.networks = append(c.networks, n)
	c.subnets = append(c.subnets, s)
	return n.ID
}

// AddImage adds an image and returns its id.
func (c *Cloud) AddImage(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	im := &image{ID: c.newID(), Name: name, Created: now()}
	c.images = append(c.images, im)
	return im.ID
}

// Image visibilities (Glance v2).
const (
	VisibilityPublic    = "public"
	VisibilityPrivate   = "private"
	VisibilityShared    = "shared"
	VisibilityCommunity = "community"
)

// AddImageWith adds an image with a visibility and the os_hidden flag and
// returns its id. Like Glance, the default image list leaves out community
// and hidden images; a GET by id finds them.
func (c *Cloud) AddImageWith(name, visibility string, hidden bool) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	im := &image{ID: c.newID(), Name: name, Created: now(), Visibility: visibility, Hidden: hidden}
	c.images = append(c.images, im)
	return im.ID
}

// AddKeypair adds a Nova key pair.
func (c *Cloud) AddKeypair(name, publicKey string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keypairs[name] = &keypair{Name: name, PublicKey: publicKey, Fingerprint: "aa:bb:cc:dd"}
}

// NetworkID returns the id of the network called name ("" if none).
func (c *Cloud) NetworkID(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.networks {
		if n.Name == name {
			return n.ID
		}
	}
	return ""
}

// ImageID returns the id of the image called name ("" if none).
func (c *Cloud) ImageID(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, im := range c.images {
		if im.Name == name {
			return im.ID
		}
	}
	return ""
}

// Server is a snapshot of a server for tests.
type Server struct {
	ID, Name, Status, FlavorID, ImageID, KeyName string
	// TaskState is Nova's OS-EXT-STS:task_state ("" for none).
	TaskState string
	Metadata  map[string]string
	// UserData is the user-data as the guest would see it (decoded once
	// from the base64 the API received).
	UserData       []byte
	ConfigDrive    bool
	SecurityGroups []string
	Networks       []string
	FixedIP        string
	Deleted        bool
}

// Servers returns every server that exists (not deleted), oldest first.
func (c *Cloud) Servers() []Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Server
	for _, s := range c.servers {
		if s.gone {
			continue
		}
		out = append(out, s.snapshot(c))
	}
	return out
}

// SetConsole replaces a server's console output.
func (c *Cloud) SetConsole(id, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.server(id); s != nil {
		s.Console = text
	}
}

// SecurityGroup is a snapshot of a security group and its rules.
type SecurityGroup struct {
	ID, Name string
	Rules    []Rule
}

// Rule is one security group rule.
type Rule struct {
	Direction, EtherType, Protocol string
	PortMin, PortMax               int
	RemoteGroupID, RemoteIPPrefix  string
}

// SecurityGroups returns the security groups.
func (c *Cloud) SecurityGroups() []SecurityGroup {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []SecurityGroup
	for _, g := range c.groups {
		sg := SecurityGroup{ID: g.ID, Name: g.Name}
		for _, r := range c.rules {
			if r.GroupID == g.ID {
				sg.Rules = append(sg.Rules, Rule{r.Direction, r.EtherType, r.Protocol, r.PortMin, r.PortMax, r.RemoteGroupID, r.RemoteIPPrefix})
			}
		}
		out = append(out, sg)
	}
	return out
}

// AddRule adds rule r to security group groupID directly, as another
// client would have (no quota or duplicate check).
func (c *Cloud) AddRule(groupID string, r Rule) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rules = append(c.rules, &secRule{ID: c.newID(), GroupID: groupID, Direction: r.Direction, EtherType: r.EtherType, Protocol: r.Protocol,
		PortMin: r.PortMin, PortMax: r.PortMax, RemoteGroupID: r.RemoteGroupID, RemoteIPPrefix: r.RemoteIPPrefix})
}

// FloatingIP is a snapshot of a floating IP.
type FloatingIP struct {
	ID, Address, NetworkID, PortID, FixedIP string
}

// FloatingIPs returns the floating IPs.
func (c *Cloud) FloatingIPs() []FloatingIP {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []FloatingIP
	for _, f := range c.fips {
		out = append(out, FloatingIP{f.ID, f.Address, f.NetworkID, f.PortID, f.FixedIP})
	}
	return out
}

// Ports returns the number of ports.
func (c *Cloud) Ports() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ports)
}

// Objects returns "container/object" for every Swift object, sorted.
func (c *Cloud) Objects() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for cn, ct := range c.swift.containers {
		out = append(out, cn+"/")
		for on := range ct.objects {
			out = append(out, cn+"/"+on)
		}
	}
	sort.Strings(out)
	return out
}

// ---- HTTP plumbing -------------------------------------------------------

func (c *Cloud) handler() http.Handler {
	mux := http.NewServeMux()
	c.identityRoutes(mux)
	c.computeRoutes(mux)
	c.networkRoutes(mux)
	c.imageRoutes(mux)
	c.swiftRoutes(mux)
	c.versionRoutes(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		mv := r.Header.Get("X-OpenStack-Nova-API-Version")
		if v, ok := strings.CutPrefix(r.Header.Get("OpenStack-API-Version"), "compute "); ok {
			mv = v
		}
		if !strings.HasPrefix(r.URL.Path, "/compute/") {
			mv = ""
		}
		c.reqs = append(c.reqs, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Microversion: mv, Action: actionOf(r)})
		i := len(c.reqs) - 1
		c.mu.Unlock()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		mux.ServeHTTP(sw, r)
		c.mu.Lock()
		c.reqs[i].Status = sw.status
		c.mu.Unlock()
	})
}

// actionOf returns the action a POST to /compute/.../servers/ID/action
// asks for (the body's one key), leaving the body readable; "" for other
// requests.
func actionOf(r *http.Request) string {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/compute/") || !strings.HasSuffix(r.URL.Path, "/action") {
		return ""
	}
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil || len(m) != 1 {
		return ""
	}
	for k := range m {
		return k
	}
	return ""
}

// statusWriter notes the status a handler answered with (200 when it
// wrote without one).
type statusWriter struct {
	http.ResponseWriter
	status int
	set    bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.set {
		w.status, w.set = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.set = true
	return w.ResponseWriter.Write(b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	return dec.Decode(v)
}

// serviceMessage is an error whose text is the service's own message,
// written as the service writes it (capitalised, with a full stop).
type serviceMessage string

func (m serviceMessage) Error() string { return string(m) }

// pageOf applies limit/marker pagination to ids (in list order) and
// returns the slice bounds and the marker for the next page ("" if none).
func (c *Cloud) pageOf(r *http.Request, ids []string) (from, to int, next string, err error) {
	limit := c.PageSize
	if v := r.URL.Query().Get("limit"); v != "" {
		n, e := strconv.Atoi(v)
		if e != nil || n < 0 {
			return 0, 0, "", serviceMessage(fmt.Sprintf("Invalid input for limit: %q", v))
		}
		if n < limit || limit <= 0 {
			limit = n
		}
	}
	if marker := r.URL.Query().Get("marker"); marker != "" {
		from = -1
		for i, id := range ids {
			if id == marker {
				from = i + 1
			}
		}
		if from < 0 {
			return 0, 0, "", fmt.Errorf("marker [%s] not found", marker)
		}
	}
	to = len(ids)
	if limit > 0 && from+limit < len(ids) {
		to = from + limit
		next = ids[to-1]
	} else if limit > 0 && from+limit == len(ids) && len(ids) > 0 {
		// Like Nova and Neutron: a full page gets a next link even when
		// it happens to be the last; the next page is empty.
		to = len(ids)
		next = ids[to-1]
	}
	return from, to, next, nil
}

// nextURL is the request's absolute URL with marker set.
func (c *Cloud) nextURL(r *http.Request, marker string) string {
	q := r.URL.Query()
	q.Set("marker", marker)
	if q.Get("limit") == "" {
		q.Set("limit", strconv.Itoa(c.PageSize))
	}
	return c.URL + r.URL.Path + "?" + q.Encode()
}

// versionRoutes serve the version discovery documents of Nova, Neutron and
// Glance (the client checks them before it uses an endpoint).
func (c *Cloud) versionRoutes(mux *http.ServeMux) {
	link := func(href string) []any { return []any{map[string]any{"rel": "self", "href": href}} }
	mux.HandleFunc("GET /compute/v2.1/{$}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"version": map[string]any{"id": "v2.1", "status": "CURRENT",
			"version": MaxMicroversion, "min_version": MinMicroversion, "updated": "2013-07-23T11:33:21Z",
			"links": link(c.URL + "/compute/v2.1/")}})
	})
	mux.HandleFunc("GET /networking/{$}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"versions": []any{map[string]any{"id": "v2.0", "status": "CURRENT",
			"links": link(c.URL + "/networking/v2.0/")}}})
	})
	mux.HandleFunc("GET /image/{$}", func(w http.ResponseWriter, r *http.Request) {
		var vs []any
		for _, v := range []string{"v2.16", "v2.15", "v2.9", "v2.0"} {
			st := "SUPPORTED"
			if v == "v2.16" {
				st = "CURRENT"
			}
			vs = append(vs, map[string]any{"id": v, "status": st, "links": link(c.URL + "/image/v2/")})
		}
		writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": vs})
	})
}
