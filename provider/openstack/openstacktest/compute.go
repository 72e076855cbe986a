package openstacktest

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

type flavor struct {
	ID         string
	Name       string
	RAM, VCPUs int
	Disk       int
}

type keypair struct {
	Name, PublicKey, Fingerprint string
}

type server struct {
	ID, Name, FlavorID, ImageID, KeyName string
	Metadata                             map[string]string
	UserData                             []byte
	ConfigDrive                          bool
	SecurityGroups                       []string // ids
	NetworkIDs                           []string
	Created                              string
	Status, TaskState, VMState           string
	FaultMsg                             string
	Console                              string
	polls                                int // GETs seen in the current transition
	deleting, gone                       bool
}

func (s *server) snapshot(c *Cloud) Server {
	out := Server{ID: s.ID, Name: s.Name, Status: s.Status, TaskState: s.TaskState, FlavorID: s.FlavorID, ImageID: s.ImageID, KeyName: s.KeyName,
		Metadata: map[string]string{}, UserData: append([]byte(nil), s.UserData...), ConfigDrive: s.ConfigDrive,
		SecurityGroups: append([]string(nil), s.SecurityGroups...), Networks: append([]string(nil), s.NetworkIDs...), Deleted: s.gone}
	for k, v := range s.Metadata {
		out.Metadata[k] = v
	}
	for _, p := range c.ports {
		if p.DeviceID == s.ID && len(p.FixedIPs) > 0 {
			out.FixedIP = p.FixedIPs[0].IP
		}
	}
	return out
}

// novaError writes Nova's error body, e.g. {"itemNotFound": {...}}.
func novaError(w http.ResponseWriter, code int, kind, msg string) {
	writeJSON(w, code, map[string]any{kind: map[string]any{"code": code, "message": msg}})
}

// parseMicroversion turns "2.47" into (2, 47).
func parseMicroversion(v string) (major, minor int, ok bool) {
	a, b, found := strings.Cut(v, ".")
	if !found {
		return 0, 0, false
	}
	ma, err1 := strconv.Atoi(a)
	mi, err2 := strconv.Atoi(b)
	return ma, mi, err1 == nil && err2 == nil
}

// microversion negotiates the compute microversion of r and sets the
// response headers. It returns the minor version (of 2.x) and false after
// writing a 406 when the version is not supported.
func microversion(w http.ResponseWriter, r *http.Request) (int, bool) {
	v := r.Header.Get("X-OpenStack-Nova-API-Version")
	if s, ok := strings.CutPrefix(r.Header.Get("OpenStack-API-Version"), "compute "); ok {
		v = s
	}
	_, maxMinor, _ := parseMicroversion(MaxMicroversion)
	minor := 1
	switch v {
	case "":
	case "latest":
		minor = maxMinor
	default:
		ma, mi, ok := parseMicroversion(v)
		if !ok {
			novaError(w, http.StatusBadRequest, "badRequest", fmt.Sprintf("Invalid API version request string %s", v))
			return 0, false
		}
		if ma != 2 || mi < 1 || mi > maxMinor {
			novaError(w, http.StatusNotAcceptable, "computeFault",
				fmt.Sprintf("Version %s is not supported by the API. Minimum is %s and maximum is %s.", v, MinMicroversion, MaxMicroversion))
			return 0, false
		}
		minor = mi
	}
	ver := "2." + strconv.Itoa(minor)
	w.Header().Set("OpenStack-API-Version", "compute "+ver)
	w.Header().Set("X-OpenStack-Nova-API-Version", ver)
	w.Header().Set("Vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version")
	return minor, true
}

func (c *Cloud) computeRoutes(mux *http.ServeMux) {
	const base = "/compute/v2.1"
	h := func(pattern string, fn func(w http.ResponseWriter, r *http.Request, mv int)) {
		method, path, _ := strings.Cut(pattern, " ")
		mux.HandleFunc(method+" "+base+path, func(w http.ResponseWriter, r *http.Request) {
			if !c.authorized(r) {
				unauthorized(w)
				return
			}
			mv, ok := microversion(w, r)
			if !ok {
				return
			}
			fn(w, r, mv)
		})
	}
	h("GET /flavors/detail", c.listFlavors)
	h("GET /flavors/{id}", c.getFlavor)
	h("GET /os-keypairs/{name}", c.getKeypair)
	h("POST /servers", c.createServer)
	h("GET /servers/detail", c.listServers)
	h("GET /servers/{id}", c.getServer)
	h("DELETE /servers/{id}", c.deleteServer)
	h("POST /servers/{id}/action", c.serverAction)
	mux.HandleFunc(base+"/", func(w http.ResponseWriter, r *http.Request) {
		novaError(w, http.StatusNotFound, "itemNotFound", "The resource could not be found.")
	})
}

func (f *flavor) json(c *Cloud) map[string]any {
	return map[string]any{"id": f.ID, "name": f.Name, "ram": f.RAM, "vcpus": f.VCPUs, "disk": f.Disk,
		"OS-FLV-EXT-DATA:ephemeral": 0, "swap": 0, "rxtx_factor": 1.0, "os-flavor-access:is_public": true,
		"OS-FLV-DISABLED:disabled": false, "description": nil, "extra_specs": map[string]any{},
		"links": []any{map[string]any{"rel": "self", "href": c.URL + "/compute/v2.1/flavors/" + f.ID}}}
}

func (c *Cloud) listFlavors(w http.ResponseWriter, r *http.Request, _ int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, len(c.flavors))
	for i, f := range c.flavors {
		ids[i] = f.ID
	}
	from, to, next, err := c.pageOf(r, ids)
	if err != nil {
		novaError(w, http.StatusBadRequest, "badRequest", err.Error())
		return
	}
	items := []any{}
	for _, f := range c.flavors[from:to] {
		items = append(items, f.json(c))
	}
	body := map[string]any{"flavors": items}
	if next != "" {
		body["flavors_links"] = []any{map[string]any{"rel": "next", "href": c.nextURL(r, next)}}
	}
	writeJSON(w, http.StatusOK, body)
}

func (c *Cloud) flavor(id string) *flavor {
	for _, f := range c.flavors {
		if f.ID == id {
			return f
		}
	}
	return nil
}

func (c *Cloud) getFlavor(w http.ResponseWriter, r *http.Request, _ int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.flavor(r.PathValue("id"))
	if f == nil {
		novaError(w, http.StatusNotFound, "itemNotFound", fmt.Sprintf("Flavor %s could not be found.", r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"flavor": f.json(c)})
}

func (c *Cloud) getKeypair(w http.ResponseWriter, r *http.Request, _ int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.keypairs[r.PathValue("name")]
	if k == nil {
		novaError(w, http.StatusNotFound, "itemNotFound", fmt.Sprintf("Keypair %s not found for user %s", r.PathValue("name"), UserID))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keypair": map[string]any{"name": k.Name, "public_key": k.PublicKey,
		"fingerprint": k.Fingerprint, "user_id": UserID, "type": "ssh", "id": 1, "deleted": false, "created_at": now()}})
}

type createServerReq struct {
	Server struct {
		Name           string            `json:"name"`
		ImageRef       string            `json:"imageRef"`
		FlavorRef      string            `json:"flavorRef"`
		KeyName        string            `json:"key_name"`
		UserData       *string           `json:"user_data"`
		Metadata       map[string]string `json:"metadata"`
		ConfigDrive    *bool             `json:"config_drive"`
		SecurityGroups []struct {
			Name string `json:"name"`
		} `json:"security_groups"`
		Networks any `json:"networks"` // a list, or "auto"/"none" from 2.37
		MinCount int `json:"min_count"`
		MaxCount int `json:"max_count"`
	} `json:"server"`
}

// metadataKeyPattern is the pattern of Nova's metadata schema
// (patternProperties); values are strings of at most 255 characters.
const metadataKeyPattern = `^[a-zA-Z0-9-_:. ]{1,255}$`

var metadataKeyRE = regexp.MustCompile(metadataKeyPattern)

// checkMetadata validates server metadata like Nova's JSON schema and
// returns its 400 message ("" when valid). Nova reports the first problem
// as "Invalid input for field/attribute metadata. Value: <the dict>.
// <jsonschema's message>".
func checkMetadata(md map[string]string) string {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var bad []string
	for _, k := range keys {
		if !metadataKeyRE.MatchString(k) {
			bad = append(bad, pyRepr(k))
		}
	}
	if len(bad) > 0 {
		verb := "does"
		if len(bad) > 1 {
			verb = "do"
		}
		return fmt.Sprintf("Invalid input for field/attribute metadata. Value: %s. %s %s not match any of the regexes: %s",
			pyDict(md, keys), strings.Join(bad, ", "), verb, pyRepr(metadataKeyPattern))
	}
	for _, k := range keys {
		if v := md[k]; len(v) > 255 {
			return fmt.Sprintf("Invalid input for field/attribute %s. Value: %s. %s is too long", k, pyRepr(v), pyRepr(v))
		}
	}
	return ""
}

// pyRepr quotes s as Python's repr of a str does (in the common case).
func pyRepr(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }

func pyDict(md map[string]string, keys []string) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = pyRepr(k) + ": " + pyRepr(md[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// maxUserData is Nova's limit on the base64 user_data.
const maxUserData = 65535

func (c *Cloud) createServer(w http.ResponseWriter, r *http.Request, mv int) {
	var req createServerReq
	if err := decodeBody(r, &req); err != nil {
		novaError(w, http.StatusBadRequest, "badRequest", "Malformed request body: "+err.Error())
		return
	}
	s := req.Server
	bad := func(msg string) { novaError(w, http.StatusBadRequest, "badRequest", msg) }
	if s.Name == "" || len(s.Name) > 255 {
		bad("Invalid input for field/attribute name.")
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	srv := &server{ID: c.newID(), Name: s.Name, FlavorID: s.FlavorRef, ImageID: s.ImageRef, KeyName: s.KeyName,
		Metadata: map[string]string{}, Created: now(), Status: "BUILD", TaskState: "scheduling", VMState: "building"}
	if c.flavor(s.FlavorRef) == nil {
		bad(fmt.Sprintf("Flavor %s could not be found.", s.FlavorRef))
		return
	}
	if c.image(s.ImageRef) == nil {
		bad(fmt.Sprintf("Image %s could not be found.", s.ImageRef))
		return
	}
	if s.KeyName != "" && c.keypairs[s.KeyName] == nil {
		bad("Invalid key_name provided.")
		return
	}
	if msg := checkMetadata(s.Metadata); msg != "" {
		bad(msg)
		return
	}
	for k, v := range s.Metadata {
		srv.Metadata[k] = v
	}
	if len(srv.Metadata) > 128 {
		novaError(w, http.StatusForbidden, "forbidden", "Quota exceeded for metadata_items: Requested 129, but already used 0 of 128 metadata_items")
		return
	}
	if s.UserData != nil {
		if len(*s.UserData) > maxUserData {
			bad(fmt.Sprintf("Invalid input for field/attribute user_data. Value: %d bytes is too long", len(*s.UserData)))
			return
		}
		ud, err := base64.StdEncoding.DecodeString(*s.UserData)
		if err != nil {
			bad("User data needs to be valid base 64.")
			return
		}
		srv.UserData = ud
	}
	if s.ConfigDrive != nil {
		srv.ConfigDrive = *s.ConfigDrive
	}
	for _, g := range s.SecurityGroups {
		sg := c.groupByNameOrID(g.Name)
		if sg == nil {
			bad(fmt.Sprintf("Security group %s not found for project %s.", g.Name, ProjectID))
			return
		}
		srv.SecurityGroups = append(srv.SecurityGroups, sg.ID)
	}
	if len(srv.SecurityGroups) == 0 {
		srv.SecurityGroups = []string{c.groupByNameOrID("default").ID}
	}
	switch nets := s.Networks.(type) {
	case []any:
		for _, n := range nets {
			m, _ := n.(map[string]any)
			uuid, _ := m["uuid"].(string)
			if m["port"] != nil {
				bad("this fake does not implement pre-made ports")
				return
			}
			nw := c.network(uuid)
			if nw == nil {
				bad(fmt.Sprintf("Network %s could not be found.", uuid))
				return
			}
			if nw.External {
				novaError(w, http.StatusForbidden, "forbidden", fmt.Sprintf("It is not allowed to create an interface on external network %s", uuid))
				return
			}
			srv.NetworkIDs = append(srv.NetworkIDs, uuid)
		}
	case nil:
		if mv >= 37 {
			bad("Invalid input for field/attribute server. Value: 'networks' is a required property")
			return
		}
	case string:
		if nets != "auto" && nets != "none" || mv < 37 {
			bad("Invalid input for field/attribute networks.")
			return
		}
	}
	if len(srv.NetworkIDs) == 0 {
		bad("no network given; this fake needs one")
		return
	}
	srv.Console = fmt.Sprintf("[    0.000000] Linux version 6.1.0-28-cloud-amd64\n[    1.234567] Run /sbin/init as init process\n"+
		"Cloud-init v. 22.4.2 running 'init-local' at %s. Up 3.10 seconds.\n%s login: \n", now(), s.Name)
	c.servers = append(c.servers, srv)
	building := 0
	for _, x := range c.servers {
		if x.Status == "BUILD" && !x.gone {
			building++
		}
	}
	c.maxBuilding = max(c.maxBuilding, building)
	var sgs []any
	for _, id := range srv.SecurityGroups {
		sgs = append(sgs, map[string]any{"name": c.groupByNameOrID(id).Name})
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"server": map[string]any{
		"id": srv.ID, "OS-DCF:diskConfig": "MANUAL", "security_groups": sgs,
		"adminPass": "AdminPass-" + srv.ID[:8], // Nova returns a generated password; clients must not show it
		"links":     []any{map[string]any{"rel": "self", "href": c.URL + "/compute/v2.1/servers/" + srv.ID}},
	}})
}

func (c *Cloud) server(id string) *server {
	for _, s := range c.servers {
		if s.ID == id && !s.gone {
			return s
		}
	}
	return nil
}

// advance moves a server one step along its life cycle; called on each GET.
func (c *Cloud) advance(s *server) {
	s.polls++
	switch {
	case s.deleting:
		if s.polls > c.DeletePolls {
			s.gone = true
			c.releasePorts(s.ID)
		}
	case s.Status == "BUILD":
		if s.polls == 1 {
			s.TaskState = "spawning"
		}
		if s.polls <= c.BuildPolls {
			return
		}
		fault := c.defaultFault
		if c.Fault != nil {
			fault = c.Fault
		}
		f := c.flavor(s.FlavorID)
		if msg := fault(ServerInfo{ID: s.ID, Name: s.Name, FlavorName: f.Name, RAM: f.RAM}); msg != "" {
			s.Status, s.TaskState, s.VMState, s.FaultMsg = "ERROR", "", "error", msg
			return
		}
		s.Status, s.TaskState, s.VMState = "ACTIVE", "", "active"
		for _, nid := range s.NetworkIDs {
			c.newPort(nid, s.ID, "compute:nova", s.SecurityGroups)
		}
	case s.TaskState == "powering-off" && s.polls > c.PowerPolls:
		// The guest shut down (or Nova powered it off): vm_state stopped,
		// shown as status SHUTOFF. Ports and floating IPs stay.
		s.Status, s.TaskState, s.VMState = "SHUTOFF", "", "stopped"
	case s.TaskState == "powering-on" && s.polls > c.PowerPolls:
		s.Status, s.TaskState, s.VMState = "ACTIVE", "", "active"
	}
}

// powerAction is Nova's os-stop or os-start (compute API stop/start): the
// server must be in one of the vm_states the action allows and have no
// task under way (Nova's check_instance_state, vm_state first, then
// task_state), else 409 conflictingRequest worded as Nova's
// raise_http_conflict_for_instance_invalid_state; accepted, the server
// gets the action's task_state and the answer is 202 with no body.
func (c *Cloud) powerAction(w http.ResponseWriter, s *server, action string) {
	verb, task, allowed := "stop", "powering-off", []string{"active", "error"}
	if action == "os-start" {
		verb, task, allowed = "start", "powering-on", []string{"stopped"}
	}
	conflict := func(attr, state string) {
		novaError(w, http.StatusConflict, "conflictingRequest",
			fmt.Sprintf("Cannot '%s' instance %s while it is in %s %s", verb, s.ID, attr, state))
	}
	ok := false
	for _, a := range allowed {
		ok = ok || s.VMState == a
	}
	switch {
	case !ok:
		conflict("vm_state", s.VMState)
	case s.TaskState != "":
		conflict("task_state", s.TaskState)
	default:
		s.TaskState, s.polls = task, 0
		w.WriteHeader(http.StatusAccepted)
	}
}

func (c *Cloud) defaultFault(s ServerInfo) string {
	if s.RAM > hostRAM {
		return NoValidHost
	}
	return ""
}

func (c *Cloud) serverJSON(s *server, mv int) map[string]any {
	addresses := map[string]any{}
	for _, p := range c.ports {
		if p.DeviceID != s.ID {
			continue
		}
		nw := c.network(p.NetworkID)
		var list []any
		for _, ip := range p.FixedIPs {
			list = append(list, map[string]any{"version": 4, "addr": ip.IP, "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": p.MAC})
		}
		for _, f := range c.fips {
			if f.PortID == p.ID {
				list = append(list, map[string]any{"version": 4, "addr": f.Address, "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": p.MAC})
			}
		}
		addresses[nw.Name] = list
	}
	f := c.flavor(s.FlavorID)
	flavorJSON := map[string]any{"id": f.ID, "links": []any{map[string]any{"rel": "bookmark", "href": c.URL + "/compute/flavors/" + f.ID}}}
	if mv >= 47 {
		flavorJSON = map[string]any{"original_name": f.Name, "vcpus": f.VCPUs, "ram": f.RAM, "disk": f.Disk, "ephemeral": 0, "swap": 0, "extra_specs": map[string]any{}}
	}
	var sgs []any
	for _, id := range s.SecurityGroups {
		if g := c.groupByNameOrID(id); g != nil {
			sgs = append(sgs, map[string]any{"name": g.Name})
		}
	}
	var key any
	if s.KeyName != "" {
		key = s.KeyName
	}
	cd := ""
	if s.ConfigDrive {
		cd = "True"
	}
	var task any
	if s.TaskState != "" {
		task = s.TaskState
	}
	out := map[string]any{
		"id": s.ID, "name": s.Name, "status": s.Status, "tenant_id": ProjectID, "user_id": UserID,
		"metadata": s.Metadata, "hostId": "", "created": s.Created, "updated": now(),
		"image":     map[string]any{"id": s.ImageID, "links": []any{map[string]any{"rel": "bookmark", "href": c.URL + "/compute/images/" + s.ImageID}}},
		"flavor":    flavorJSON,
		"addresses": addresses, "accessIPv4": "", "accessIPv6": "", "config_drive": cd, "key_name": key,
		"progress": 0, "OS-DCF:diskConfig": "MANUAL", "OS-EXT-AZ:availability_zone": "nova",
		"OS-EXT-STS:task_state": task, "OS-EXT-STS:vm_state": s.VMState, "OS-EXT-STS:power_state": powerState(s.VMState),
		"OS-SRV-USG:launched_at": nil, "OS-SRV-USG:terminated_at": nil,
		"os-extended-volumes:volumes_attached": []any{}, "security_groups": sgs,
		"links": []any{map[string]any{"rel": "self", "href": c.URL + "/compute/v2.1/servers/" + s.ID}},
	}
	if s.Status == "ERROR" {
		out["fault"] = map[string]any{"code": 500, "created": s.Created, "message": s.FaultMsg}
	}
	if mv >= 26 {
		out["tags"] = []string{}
	}
	return out
}

// powerState is Nova's OS-EXT-STS:power_state for a vm_state: 1 RUNNING,
// 4 SHUTDOWN, 0 NOSTATE (building, error).
func powerState(vmState string) int {
	switch vmState {
	case "active":
		return 1
	case "stopped", "soft-delete":
		return 4
	}
	return 0
}

func (c *Cloud) getServer(w http.ResponseWriter, r *http.Request, mv int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.server(r.PathValue("id"))
	if s != nil {
		c.advance(s)
	}
	if s == nil || s.gone {
		novaError(w, http.StatusNotFound, "itemNotFound", fmt.Sprintf("Instance %s could not be found.", r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"server": c.serverJSON(s, mv)})
}

func (c *Cloud) listServers(w http.ResponseWriter, r *http.Request, mv int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var live []*server
	name := r.URL.Query().Get("name")
	for _, s := range c.servers {
		if !s.gone && (name == "" || strings.Contains(s.Name, name)) {
			live = append(live, s)
		}
	}
	ids := make([]string, len(live))
	for i, s := range live {
		ids[i] = s.ID
	}
	from, to, next, err := c.pageOf(r, ids)
	if err != nil {
		novaError(w, http.StatusBadRequest, "badRequest", err.Error())
		return
	}
	items := []any{}
	for _, s := range live[from:to] {
		items = append(items, c.serverJSON(s, mv))
	}
	body := map[string]any{"servers": items}
	if next != "" {
		body["servers_links"] = []any{map[string]any{"rel": "next", "href": c.nextURL(r, next)}}
	}
	writeJSON(w, http.StatusOK, body)
}

func (c *Cloud) deleteServer(w http.ResponseWriter, r *http.Request, _ int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.server(r.PathValue("id"))
	if s == nil {
		novaError(w, http.StatusNotFound, "itemNotFound", fmt.Sprintf("Instance %s could not be found.", r.PathValue("id")))
		return
	}
	switch {
	case s.deleting:
	case c.SoftDelete:
		// reclaim_instance_interval > 0: the server stays, powered off,
		// with its ports, until it is reclaimed or force-deleted.
		s.Status, s.VMState, s.TaskState = "SOFT_DELETED", "soft-delete", ""
	default:
		s.deleting, s.polls, s.TaskState = true, 0, "deleting"
	}
	w.WriteHeader(http.StatusNoContent)
}

func (c *Cloud) serverAction(w http.ResponseWriter, r *http.Request, _ int) {
	var body map[string]map[string]any
	if err := decodeBody(r, &body); err != nil {
		novaError(w, http.StatusBadRequest, "badRequest", "Malformed request body")
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.server(r.PathValue("id"))
	if s == nil {
		novaError(w, http.StatusNotFound, "itemNotFound", fmt.Sprintf("Instance %s could not be found.", r.PathValue("id")))
		return
	}
	if _, ok := body["forceDelete"]; ok {
		// os-deferred-delete: deletes a server in any state at once.
		if !s.deleting {
			s.deleting, s.polls, s.TaskState = true, 0, "deleting"
		}
		w.WriteHeader(http.StatusAccepted)
		return
	}
	for _, a := range []string{"os-stop", "os-start"} {
		if _, ok := body[a]; ok {
			c.powerAction(w, s, a)
			return
		}
	}
	args, ok := body["os-getConsoleOutput"]
	if !ok {
		novaError(w, http.StatusBadRequest, "badRequest", "this fake only implements os-getConsoleOutput, os-stop, os-start and forceDelete")
		return
	}
	if s.Status == "BUILD" || s.Status == "ERROR" {
		novaError(w, http.StatusConflict, "conflictingRequest",
			fmt.Sprintf("Cannot 'get_console_output' instance %s while it is in vm_state %s", s.ID, s.VMState))
		return
	}
	out := s.Console
	if l, ok := args["length"]; ok && l != nil {
		n, _ := strconv.Atoi(fmt.Sprint(l))
		lines := strings.SplitAfter(out, "\n")
		if lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		}
		if n >= 0 && n < len(lines) {
			lines = lines[len(lines)-n:]
		}
		out = strings.Join(lines, "")
	}
	writeJSON(w, http.StatusOK, map[string]any{"output": out})
}
