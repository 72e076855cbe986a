package openstacktest

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

type network struct {
	ID, Name string
	External bool
	Subnets  []string
}

type subnet struct {
	ID, Name, NetworkID string
	CIDR                netip.Prefix
	next                int // last host number handed out
}

type fixedIP struct {
	SubnetID, IP string
}

type port struct {
	ID, NetworkID, DeviceID, DeviceOwner, MAC string
	FixedIPs                                  []fixedIP
	SecurityGroups                            []string
}

type secGroup struct {
	ID, Name, Description string
}

type secRule struct {
	ID, GroupID, Direction, EtherType, Protocol string
	PortMin, PortMax                            int
	RemoteGroupID, RemoteIPPrefix               string
}

type floatingIP struct {
	ID, Address, NetworkID, PortID, FixedIP, Description string
}

// neutronError writes Neutron's error body.
func neutronError(w http.ResponseWriter, code int, typ, msg string) {
	writeJSON(w, code, map[string]any{"NeutronError": map[string]any{"type": typ, "message": msg, "detail": ""}})
}

func (c *Cloud) networkRoutes(mux *http.ServeMux) {
	const base = "/networking/v2.0"
	h := func(pattern string, fn http.HandlerFunc) {
		method, path, _ := strings.Cut(pattern, " ")
		mux.HandleFunc(method+" "+base+path, func(w http.ResponseWriter, r *http.Request) {
			if !c.authorized(r) {
				unauthorized(w)
				return
			}
			fn(w, r)
		})
	}
	h("GET /networks", c.listNetworks)
	h("GET /networks/{id}", c.getNetwork)
	h("GET /subnets", c.listSubnets)
	h("GET /ports", c.listPorts)
	h("GET /security-groups", c.listGroups)
	h("POST /security-groups", c.createGroup)
	h("DELETE /security-groups/{id}", c.deleteGroup)
	h("GET /security-group-rules", c.listRules)
	h("POST /security-group-rules", c.createRule)
	h("GET /floatingips", c.listFIPs)
	h("POST /floatingips", c.createFIP)
	h("DELETE /floatingips/{id}", c.deleteFIP)
	mux.HandleFunc(base+"/", func(w http.ResponseWriter, r *http.Request) {
		neutronError(w, http.StatusNotFound, "HTTPNotFound", "The resource could not be found.")
	})
}

func (c *Cloud) network(id string) *network {
	for _, n := range c.networks {
		if n.ID == id {
			return n
		}
	}
	return nil
}

func (n *network) json() map[string]any {
	return map[string]any{"id": n.ID, "name": n.Name, "status": "ACTIVE", "admin_state_up": true, "shared": false,
		"router:external": n.External, "subnets": n.Subnets, "tenant_id": ProjectID, "project_id": ProjectID,
		"mtu": 1450, "port_security_enabled": true, "availability_zones": []string{"nova"}, "description": "",
		"ipv4_address_scope": nil, "tags": []string{}, "revision_number": 1}
}

// filtered applies Neutron's equality filters (?name=x&router:external=true)
// to items described by fields.
func filtered(r *http.Request, fields map[string]string) bool {
	for k, vs := range r.URL.Query() {
		if k == "limit" || k == "marker" || k == "page_reverse" || k == "fields" || k == "sort_key" || k == "sort_dir" {
			continue
		}
		v, known := fields[k]
		if !known {
			continue // Neutron ignores filters on unknown attributes
		}
		match := false
		for _, want := range vs {
			if strings.EqualFold(v, want) {
				match = true
			}
		}
		if !match {
			return false
		}
	}
	return true
}

// listing writes one page of a Neutron collection.
func (c *Cloud) listing(w http.ResponseWriter, r *http.Request, coll string, ids []string, items []map[string]any) {
	from, to, next, err := c.pageOf(r, ids)
	if err != nil {
		neutronError(w, http.StatusBadRequest, "BadRequest", err.Error())
		return
	}
	page := make([]any, 0, to-from)
	for _, it := range items[from:to] {
		page = append(page, it)
	}
	body := map[string]any{coll: page}
	if next != "" {
		body[coll+"_links"] = []any{map[string]any{"rel": "next", "href": c.nextURL(r, next)}}
	}
	writeJSON(w, http.StatusOK, body)
}

func (c *Cloud) listNetworks(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	var items []map[string]any
	for _, n := range c.networks {
		if filtered(r, map[string]string{"id": n.ID, "name": n.Name, "router:external": strconv.FormatBool(n.External)}) {
			ids = append(ids, n.ID)
			items = append(items, n.json())
		}
	}
	c.listing(w, r, "networks", ids, items)
}

func (c *Cloud) getNetwork(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.network(r.PathValue("id"))
	if n == nil {
		neutronError(w, http.StatusNotFound, "NetworkNotFound", fmt.Sprintf("Network %s could not be found.", r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"network": n.json()})
}

func (c *Cloud) listSubnets(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	var items []map[string]any
	for _, s := range c.subnets {
		if !filtered(r, map[string]string{"id": s.ID, "name": s.Name, "network_id": s.NetworkID, "ip_version": "4"}) {
			continue
		}
		first := s.CIDR.Addr().Next()
		ids = append(ids, s.ID)
		items = append(items, map[string]any{"id": s.ID, "name": s.Name, "network_id": s.NetworkID, "ip_version": 4,
			"cidr": s.CIDR.String(), "gateway_ip": first.String(), "enable_dhcp": true, "tenant_id": ProjectID, "project_id": ProjectID,
			"allocation_pools": []any{map[string]any{"start": first.Next().String(), "end": lastHost(s.CIDR).String()}},
			"dns_nameservers":  []string{}, "host_routes": []any{}, "subnetpool_id": nil, "ipv6_address_mode": nil, "ipv6_ra_mode": nil})
	}
	c.listing(w, r, "subnets", ids, items)
}

func lastHost(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 2
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// allocate hands out the next address of the network's first subnet.
func (c *Cloud) allocate(networkID string) fixedIP {
	for _, s := range c.subnets {
		if s.NetworkID != networkID {
			continue
		}
		if s.next == 0 {
			s.next = 9 // .1 is the gateway; leave a few for DHCP/routers, like a real cloud
		}
		s.next++
		a := s.CIDR.Addr()
		for i := 0; i < s.next; i++ {
			a = a.Next()
		}
		return fixedIP{SubnetID: s.ID, IP: a.String()}
	}
	return fixedIP{}
}

func (c *Cloud) newPort(networkID, deviceID, owner string, groups []string) *port {
	c.seq++
	p := &port{ID: c.newID(), NetworkID: networkID, DeviceID: deviceID, DeviceOwner: owner,
		MAC:      fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", byte(c.seq>>16), byte(c.seq>>8), byte(c.seq)),
		FixedIPs: []fixedIP{c.allocate(networkID)}, SecurityGroups: groups}
	c.ports = append(c.ports, p)
	return p
}

// releasePorts deletes the ports Nova made for a server and disassociates
// their floating IPs (which, as in Neutron, stay allocated).
func (c *Cloud) releasePorts(deviceID string) {
	var keep []*port
	for _, p := range c.ports {
		if p.DeviceID != deviceID {
			keep = append(keep, p)
			continue
		}
		for _, f := range c.fips {
			if f.PortID == p.ID {
				f.PortID, f.FixedIP = "", ""
			}
		}
	}
	c.ports = keep
}

func (c *Cloud) listPorts(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	var items []map[string]any
	for _, p := range c.ports {
		if !filtered(r, map[string]string{"id": p.ID, "network_id": p.NetworkID, "device_id": p.DeviceID, "device_owner": p.DeviceOwner, "mac_address": p.MAC}) {
			continue
		}
		var fips []any
		for _, ip := range p.FixedIPs {
			fips = append(fips, map[string]any{"subnet_id": ip.SubnetID, "ip_address": ip.IP})
		}
		ids = append(ids, p.ID)
		items = append(items, map[string]any{"id": p.ID, "name": "", "network_id": p.NetworkID, "device_id": p.DeviceID,
			"device_owner": p.DeviceOwner, "mac_address": p.MAC, "fixed_ips": fips, "status": "ACTIVE", "admin_state_up": true,
			"security_groups": p.SecurityGroups, "tenant_id": ProjectID, "project_id": ProjectID, "allowed_address_pairs": []any{}})
	}
	c.listing(w, r, "ports", ids, items)
}

// ---- security groups -----------------------------------------------------

func (c *Cloud) addGroup(name, desc string) *secGroup {
	g := &secGroup{ID: c.newID(), Name: name, Description: desc}
	c.groups = append(c.groups, g)
	// Neutron gives every new group egress rules for IPv4 and IPv6.
	for _, et := range []string{"IPv4", "IPv6"} {
		c.rules = append(c.rules, &secRule{ID: c.newID(), GroupID: g.ID, Direction: "egress", EtherType: et})
	}
	return g
}

func (c *Cloud) groupByNameOrID(s string) *secGroup {
	for _, g := range c.groups {
		if g.ID == s {
			return g
		}
	}
	var found *secGroup
	for _, g := range c.groups {
		if g.Name == s {
			found = g
		}
	}
	return found
}

func (c *Cloud) groupJSON(g *secGroup) map[string]any {
	var rules []any
	for _, r := range c.rules {
		if r.GroupID == g.ID {
			rules = append(rules, ruleJSON(r))
		}
	}
	return map[string]any{"id": g.ID, "name": g.Name, "description": g.Description, "tenant_id": ProjectID,
		"project_id": ProjectID, "security_group_rules": rules, "stateful": true, "tags": []string{}, "revision_number": 1,
		"created_at": now(), "updated_at": now()}
}

func ruleJSON(r *secRule) map[string]any {
	opt := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	optInt := func(n int) any {
		if n == 0 {
			return nil
		}
		return n
	}
	return map[string]any{"id": r.ID, "security_group_id": r.GroupID, "direction": r.Direction, "ethertype": r.EtherType,
		"protocol": opt(r.Protocol), "port_range_min": optInt(r.PortMin), "port_range_max": optInt(r.PortMax),
		"remote_group_id": opt(r.RemoteGroupID), "remote_ip_prefix": opt(r.RemoteIPPrefix), "description": "",
		"tenant_id": ProjectID, "project_id": ProjectID}
}

func (c *Cloud) listGroups(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	var items []map[string]any
	for _, g := range c.groups {
		if filtered(r, map[string]string{"id": g.ID, "name": g.Name}) {
			ids = append(ids, g.ID)
			items = append(items, c.groupJSON(g))
		}
	}
	c.listing(w, r, "security_groups", ids, items)
}

func (c *Cloud) createGroup(w http.ResponseWriter, r *http.Request) {
	var req struct {
		SG struct {
			Name        string `json:"name"`
			Description string `json:"description"`
		} `json:"security_group"`
	}
	if err := decodeBody(r, &req); err != nil || req.SG.Name == "" {
		neutronError(w, http.StatusBadRequest, "BadRequest", "Invalid input for operation: a name is required.")
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if req.SG.Name == "default" {
		neutronError(w, http.StatusConflict, "SecurityGroupDefaultAlreadyExists", "Default security group already exists.")
		return
	}
	g := c.addGroup(req.SG.Name, req.SG.Description)
	writeJSON(w, http.StatusCreated, map[string]any{"security_group": c.groupJSON(g)})
}

func (c *Cloud) deleteGroup(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := r.PathValue("id")
	idx := -1
	for i, g := range c.groups {
		if g.ID == id {
			idx = i
		}
	}
	if idx < 0 {
		neutronError(w, http.StatusNotFound, "SecurityGroupNotFound", fmt.Sprintf("Security group %s does not exist", id))
		return
	}
	for _, p := range c.ports {
		for _, g := range p.SecurityGroups {
			if g == id {
				neutronError(w, http.StatusConflict, "SecurityGroupInUse", fmt.Sprintf("Security Group %s in use.", id))
				return
			}
		}
	}
	for _, s := range c.servers {
		if s.gone {
			continue
		}
		for _, g := range s.SecurityGroups {
			if g == id {
				neutronError(w, http.StatusConflict, "SecurityGroupInUse", fmt.Sprintf("Security Group %s in use.", id))
				return
			}
		}
	}
	c.groups = append(c.groups[:idx], c.groups[idx+1:]...)
	var keep []*secRule
	for _, ru := range c.rules {
		if ru.GroupID != id {
			keep = append(keep, ru)
		}
	}
	c.rules = keep
	w.WriteHeader(http.StatusNoContent)
}

func (c *Cloud) listRules(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	var items []map[string]any
	for _, ru := range c.rules {
		if filtered(r, map[string]string{"id": ru.ID, "security_group_id": ru.GroupID, "direction": ru.Direction, "protocol": ru.Protocol}) {
			ids = append(ids, ru.ID)
			items = append(items, ruleJSON(ru))
		}
	}
	c.listing(w, r, "security_group_rules", ids, items)
}

func (c *Cloud) createRule(w http.ResponseWriter, r *http.Request) {
	if c.BeforeRuleCreate != nil {
		c.BeforeRuleCreate()
	}
	var req struct {
		Rule struct {
			GroupID        string `json:"security_group_id"`
			Direction      string `json:"direction"`
			EtherType      string `json:"ethertype"`
			Protocol       string `json:"protocol"`
			PortMin        int    `json:"port_range_min"`
			PortMax        int    `json:"port_range_max"`
			RemoteGroupID  string `json:"remote_group_id"`
			RemoteIPPrefix string `json:"remote_ip_prefix"`
		} `json:"security_group_rule"`
	}
	if err := decodeBody(r, &req); err != nil {
		neutronError(w, http.StatusBadRequest, "BadRequest", "Malformed request body")
		return
	}
	ru := req.Rule
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.groupByNameOrID(ru.GroupID) == nil {
		neutronError(w, http.StatusNotFound, "SecurityGroupNotFound", fmt.Sprintf("Security group %s does not exist", ru.GroupID))
		return
	}
	if ru.Direction != "ingress" && ru.Direction != "egress" {
		neutronError(w, http.StatusBadRequest, "InvalidInput", fmt.Sprintf("Invalid input for direction. Reason: %s is not in valid_values.", ru.Direction))
		return
	}
	if ru.EtherType == "" {
		ru.EtherType = "IPv4"
	}
	if ru.RemoteGroupID != "" && ru.RemoteIPPrefix != "" {
		neutronError(w, http.StatusBadRequest, "SecurityGroupRemoteGroupAndRemoteIpPrefix", "Only remote_ip_prefix or remote_group_id may be provided.")
		return
	}
	if ru.RemoteIPPrefix != "" {
		pfx, err := netip.ParsePrefix(ru.RemoteIPPrefix)
		if err != nil {
			neutronError(w, http.StatusBadRequest, "InvalidInput", "Invalid input for remote_ip_prefix.")
			return
		}
		// Neutron's SecurityGroupRuleParameterConflict (an InvalidInput):
		// the ethertype must be the prefix's family.
		if fam := map[bool]string{true: "IPv4", false: "IPv6"}[pfx.Addr().Is4()]; ru.EtherType != fam {
			neutronError(w, http.StatusBadRequest, "SecurityGroupRuleParameterConflict", fmt.Sprintf("Conflicting value ethertype %s for CIDR %s", ru.EtherType, ru.RemoteIPPrefix))
			return
		}
	}
	if (ru.PortMin != 0 || ru.PortMax != 0) && ru.Protocol != "tcp" && ru.Protocol != "udp" {
		neutronError(w, http.StatusBadRequest, "SecurityGroupInvalidProtocolForPort", "Invalid protocol for port range")
		return
	}
	// Like Neutron, the quota is checked before the rule itself (the API
	// layer counts; the plugin finds duplicates).
	if q := c.SecurityGroupRuleQuota; q >= 0 && len(c.rules) >= q {
		neutronError(w, http.StatusConflict, "OverQuota", "Quota exceeded for resources: ['security_group_rule'].")
		return
	}
	for _, ex := range c.rules {
		if ex.GroupID == ru.GroupID && ex.Direction == ru.Direction && ex.EtherType == ru.EtherType && ex.Protocol == ru.Protocol &&
			ex.PortMin == ru.PortMin && ex.PortMax == ru.PortMax && ex.RemoteGroupID == ru.RemoteGroupID && ex.RemoteIPPrefix == ru.RemoteIPPrefix {
			neutronError(w, http.StatusConflict, "SecurityGroupRuleExists", fmt.Sprintf("Security group rule already exists. Rule id is %s.", ex.ID))
			return
		}
	}
	nr := &secRule{ID: c.newID(), GroupID: ru.GroupID, Direction: ru.Direction, EtherType: ru.EtherType, Protocol: ru.Protocol,
		PortMin: ru.PortMin, PortMax: ru.PortMax, RemoteGroupID: ru.RemoteGroupID, RemoteIPPrefix: ru.RemoteIPPrefix}
	c.rules = append(c.rules, nr)
	writeJSON(w, http.StatusCreated, map[string]any{"security_group_rule": ruleJSON(nr)})
}

// ---- floating IPs ---------------------------------------------------------

func (c *Cloud) fipJSON(f *floatingIP) map[string]any {
	opt := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	status := "DOWN"
	if f.PortID != "" {
		status = "ACTIVE"
	}
	return map[string]any{"id": f.ID, "floating_ip_address": f.Address, "floating_network_id": f.NetworkID,
		"port_id": opt(f.PortID), "fixed_ip_address": opt(f.FixedIP), "router_id": nil, "status": status,
		"description": f.Description, "tenant_id": ProjectID, "project_id": ProjectID, "tags": []string{}}
}

func (c *Cloud) listFIPs(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	var items []map[string]any
	for _, f := range c.fips {
		if filtered(r, map[string]string{"id": f.ID, "port_id": f.PortID, "floating_network_id": f.NetworkID, "floating_ip_address": f.Address}) {
			ids = append(ids, f.ID)
			items = append(items, c.fipJSON(f))
		}
	}
	c.listing(w, r, "floatingips", ids, items)
}

func (c *Cloud) createFIP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		FIP struct {
			NetworkID   string `json:"floating_network_id"`
			PortID      string `json:"port_id"`
			Description string `json:"description"`
		} `json:"floatingip"`
	}
	if err := decodeBody(r, &req); err != nil {
		neutronError(w, http.StatusBadRequest, "BadRequest", "Malformed request body")
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.network(req.FIP.NetworkID)
	if n == nil {
		neutronError(w, http.StatusNotFound, "NetworkNotFound", fmt.Sprintf("Network %s could not be found.", req.FIP.NetworkID))
		return
	}
	if !n.External {
		neutronError(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("Bad floatingip request: Network %s is not a valid external network.", n.ID))
		return
	}
	f := &floatingIP{ID: c.newID(), NetworkID: n.ID, Description: req.FIP.Description}
	f.Address = c.allocate(n.ID).IP
	if req.FIP.PortID != "" {
		var p *port
		for _, x := range c.ports {
			if x.ID == req.FIP.PortID {
				p = x
			}
		}
		if p == nil {
			neutronError(w, http.StatusNotFound, "PortNotFound", fmt.Sprintf("Port %s could not be found.", req.FIP.PortID))
			return
		}
		f.PortID, f.FixedIP = p.ID, p.FixedIPs[0].IP
	}
	c.fips = append(c.fips, f)
	writeJSON(w, http.StatusCreated, map[string]any{"floatingip": c.fipJSON(f)})
}

func (c *Cloud) deleteFIP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, f := range c.fips {
		if f.ID == r.PathValue("id") {
			c.fips = append(c.fips[:i], c.fips[i+1:]...)
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	neutronError(w, http.StatusNotFound, "FloatingIPNotFound", fmt.Sprintf("Floating IP %s could not be found", r.PathValue("id")))
}
