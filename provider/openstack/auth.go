package openstack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

// Auth methods, as named in messages.
const (
	methodPassword = "password"
	methodAppCred  = "application credential"
	methodToken    = "token"
)

// credentials is where and how to authenticate, from clouds.yaml (with
// secure.yaml) or from OS_* variables. Its String never shows a secret.
type credentials struct {
	// Source names where the credentials came from, for messages:
	// `cloud "mycloud" in /home/u/.config/openstack/clouds.yaml`.
	Source string

	AuthType                              string
	AuthURL                               string
	Username, UserID, Password            string
	UserDomainName, UserDomainID          string
	ProjectName, ProjectID                string
	ProjectDomainName, ProjectDomainID    string
	DomainName, DomainID                  string
	AppCredID, AppCredName, AppCredSecret string
	Token                                 string
	Region, Interface                     string
	CACert, Cert, Key                     string
	Insecure                              bool
}

func (c credentials) String() string {
	return fmt.Sprintf("%s auth at %s from %s", c.Method(), c.AuthURL, c.Source)
}

// GoString keeps %#v from printing secrets.
func (c credentials) GoString() string { return c.String() }

// Method is the auth method these credentials use.
func (c credentials) Method() string {
	switch strings.ToLower(strings.ReplaceAll(c.AuthType, "_", "")) {
	case "v3applicationcredential", "applicationcredential":
		return methodAppCred
	case "token", "v3token":
		return methodToken
	case "password", "v3password":
		return methodPassword
	}
	switch {
	case c.AppCredID != "" || c.AppCredName != "":
		return methodAppCred
	case c.Token != "" && c.Password == "":
		return methodToken
	}
	return methodPassword
}

// who names the principal, for messages (never a secret).
func (c credentials) who() string {
	switch c.Method() {
	case methodAppCred:
		if c.AppCredID != "" {
			return fmt.Sprintf("application credential %s", c.AppCredID)
		}
		return fmt.Sprintf("application credential %q of user %q", c.AppCredName, firstOf(c.Username, c.UserID))
	case methodToken:
		return "a token"
	}
	return fmt.Sprintf("user %q", firstOf(c.Username, c.UserID))
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// check reports what is missing for the chosen method.
func (c credentials) check() error {
	var missing []string
	need := func(ok bool, what string) {
		if !ok {
			missing = append(missing, what)
		}
	}
	need(c.AuthURL != "", "auth_url (OS_AUTH_URL)")
	switch c.Method() {
	case methodAppCred:
		need(c.AppCredSecret != "", "application_credential_secret (OS_APPLICATION_CREDENTIAL_SECRET)")
		if c.AppCredID == "" {
			need(c.AppCredName != "" && (c.UserID != "" || c.Username != ""), "application_credential_id, or application_credential_name with username")
		}
	case methodToken:
		need(c.Token != "", "token (OS_TOKEN)")
	default:
		need(c.Username != "" || c.UserID != "", "username (OS_USERNAME) or user_id")
		need(c.Password != "", "password (OS_PASSWORD, or secure.yaml)")
		need(c.ProjectID != "" || c.ProjectName != "", "project_name or project_id (OS_PROJECT_NAME / OS_PROJECT_ID)")
		if c.UserID == "" {
			need(c.UserDomainName != "" || c.UserDomainID != "" || c.DomainName != "" || c.DomainID != "", "user_domain_name (OS_USER_DOMAIN_NAME), e.g. Default")
		}
		if c.ProjectID == "" && c.ProjectName != "" {
			need(c.ProjectDomainName != "" || c.ProjectDomainID != "" || c.DomainName != "" || c.DomainID != "", "project_domain_name (OS_PROJECT_DOMAIN_NAME), e.g. Default")
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return usererr.BadInput("add them to "+c.Source,
		"openstack: %s auth from %s is missing: %s", c.Method(), c.Source, strings.Join(missing, "; "))
}

// authOptions turns the credentials into gophercloud's.
func (c credentials) authOptions() gophercloud.AuthOptions {
	ao := gophercloud.AuthOptions{IdentityEndpoint: c.AuthURL}
	switch c.Method() {
	case methodAppCred:
		ao.ApplicationCredentialID = c.AppCredID
		ao.ApplicationCredentialName = c.AppCredName
		ao.ApplicationCredentialSecret = c.AppCredSecret
		ao.UserID, ao.Username = c.UserID, c.Username
		ao.DomainID = firstOf(c.UserDomainID, c.DomainID)
		ao.DomainName = firstOf(c.UserDomainName, c.DomainName)
		ao.AllowReauth = true
		return ao
	case methodToken:
		ao.TokenID = c.Token
	default:
		ao.UserID, ao.Username, ao.Password = c.UserID, c.Username, c.Password
		ao.DomainID = firstOf(c.UserDomainID, c.DomainID)
		ao.DomainName = firstOf(c.UserDomainName, c.DomainName)
		if ao.DomainID != "" {
			ao.DomainName = ""
		}
		ao.AllowReauth = true
	}
	scope := &gophercloud.AuthScope{}
	if c.ProjectID != "" {
		scope.ProjectID = c.ProjectID
	} else if c.ProjectName != "" {
		scope.ProjectName = c.ProjectName
		scope.DomainID = firstOf(c.ProjectDomainID, c.DomainID)
		if scope.DomainID == "" {
			scope.DomainName = firstOf(c.ProjectDomainName, c.DomainName)
		}
	}
	if *scope != (gophercloud.AuthScope{}) {
		ao.Scope = scope
	}
	return ao
}

// ---- clouds.yaml ---------------------------------------------------------

type cloudsFile struct {
	Clouds map[string]cloudEntry `yaml:"clouds"`
}

type cloudEntry struct {
	Auth struct {
		AuthURL           string `yaml:"auth_url"`
		Username          string `yaml:"username"`
		UserID            string `yaml:"user_id"`
		Password          string `yaml:"password"`
		UserDomainName    string `yaml:"user_domain_name"`
		UserDomainID      string `yaml:"user_domain_id"`
		ProjectName       string `yaml:"project_name"`
		ProjectID         string `yaml:"project_id"`
		TenantName        string `yaml:"tenant_name"`
		TenantID          string `yaml:"tenant_id"`
		ProjectDomainName string `yaml:"project_domain_name"`
		ProjectDomainID   string `yaml:"project_domain_id"`
		DomainName        string `yaml:"domain_name"`
		DomainID          string `yaml:"domain_id"`
		AppCredID         string `yaml:"application_credential_id"`
		AppCredName       string `yaml:"application_credential_name"`
		AppCredSecret     string `yaml:"application_credential_secret"`
		Token             string `yaml:"token"`
	} `yaml:"auth"`
	AuthType   string        `yaml:"auth_type"`
	RegionName string        `yaml:"region_name"`
	Regions    []cloudRegion `yaml:"regions"`
	Interface  string        `yaml:"interface"`
	CACert     string        `yaml:"cacert"`
	Cert       string        `yaml:"cert"`
	Key        string        `yaml:"key"`
	Verify     *bool         `yaml:"verify"`
}

// cloudRegion is one entry of a cloud's regions: list, either a name or
// {name: ..., values: {...}} whose values override the cloud's for that
// region (as in openstacksdk).
type cloudRegion struct {
	Name   string
	Values *cloudEntry
}

// UnmarshalYAML accepts both forms of a regions: entry.
func (r *cloudRegion) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		r.Name = n.Value
		return nil
	}
	var v struct {
		Name   string      `yaml:"name"`
		Values *cloudEntry `yaml:"values"`
	}
	if err := n.Decode(&v); err != nil {
		return err
	}
	if v.Name == "" {
		return fmt.Errorf("line %d: a regions: entry needs a name", n.Line)
	}
	r.Name, r.Values = v.Name, v.Values
	return nil
}

// chooseRegion applies a cloud's regions: list the way openstacksdk does:
// the region asked for (openstack.region / --region, else region_name) must
// be one of them; with none asked for, the first is used. A region's
// values override the cloud's.
func chooseRegion(c credentials, entry cloudEntry, want string) (credentials, error) {
	if want == "" {
		want = entry.RegionName
	}
	if len(entry.Regions) == 0 {
		c.Region = want
		return c, nil
	}
	names := make([]string, len(entry.Regions))
	for i, r := range entry.Regions {
		names[i] = r.Name
	}
	pick := entry.Regions[0]
	if want != "" {
		i := slices.Index(names, want)
		if i < 0 {
			return c, usererr.BadInput("set region (openstack.region, --region or region_name) to one of: "+strings.Join(names, ", "),
				"openstack: region %q is not one of the regions of %s", want, c.Source)
		}
		pick = entry.Regions[i]
	}
	if pick.Values != nil {
		src := c.Source
		c = pick.Values.credentials().merge(c)
		c.Source = src
	}
	c.Region = pick.Name
	return c, nil
}

// merge fills c's empty fields from base (secure.yaml over clouds.yaml).
func (c credentials) merge(base credentials) credentials {
	out := c
	pairs := []struct{ dst, src *string }{
		{&out.AuthType, &base.AuthType}, {&out.AuthURL, &base.AuthURL}, {&out.Username, &base.Username}, {&out.UserID, &base.UserID},
		{&out.Password, &base.Password}, {&out.UserDomainName, &base.UserDomainName}, {&out.UserDomainID, &base.UserDomainID},
		{&out.ProjectName, &base.ProjectName}, {&out.ProjectID, &base.ProjectID}, {&out.ProjectDomainName, &base.ProjectDomainName},
		{&out.ProjectDomainID, &base.ProjectDomainID}, {&out.DomainName, &base.DomainName}, {&out.DomainID, &base.DomainID},
		{&out.AppCredID, &base.AppCredID}, {&out.AppCredName, &base.AppCredName}, {&out.AppCredSecret, &base.AppCredSecret},
		{&out.Token, &base.Token}, {&out.Region, &base.Region}, {&out.Interface, &base.Interface}, {&out.CACert, &base.CACert},
		{&out.Cert, &base.Cert}, {&out.Key, &base.Key},
	}
	for _, p := range pairs {
		if *p.dst == "" {
			*p.dst = *p.src
		}
	}
	out.Insecure = out.Insecure || base.Insecure
	return out
}

func (e cloudEntry) credentials() credentials {
	a := e.Auth
	c := credentials{AuthType: e.AuthType, AuthURL: a.AuthURL, Username: a.Username, UserID: a.UserID, Password: a.Password,
		UserDomainName: a.UserDomainName, UserDomainID: a.UserDomainID, ProjectName: firstOf(a.ProjectName, a.TenantName),
		ProjectID: firstOf(a.ProjectID, a.TenantID), ProjectDomainName: a.ProjectDomainName, ProjectDomainID: a.ProjectDomainID,
		DomainName: a.DomainName, DomainID: a.DomainID, AppCredID: a.AppCredID, AppCredName: a.AppCredName,
		AppCredSecret: a.AppCredSecret, Token: a.Token, Region: e.RegionName, Interface: e.Interface,
		CACert: e.CACert, Cert: e.Cert, Key: e.Key}
	if e.Verify != nil && !*e.Verify {
		c.Insecure = true
	}
	return c
}

// searchDirs are where clouds.yaml and secure.yaml are looked for, in
// order, like the OpenStack client: the working directory, the user's
// config directory, /etc/openstack.
func searchDirs() []string {
	dirs := []string{"."}
	cfgHome := os.Getenv("XDG_CONFIG_HOME")
	if cfgHome == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cfgHome = filepath.Join(home, ".config")
		}
	}
	if cfgHome != "" {
		dirs = append(dirs, filepath.Join(cfgHome, "openstack"))
	}
	return append(dirs, "/etc/openstack")
}

// findFile returns the first existing file among explicit (if set) or
// name in the search directories, and the paths it tried.
func findFile(explicit, name string) (string, []string) {
	if explicit != "" {
		return explicit, []string{explicit}
	}
	var tried []string
	for _, d := range searchDirs() {
		for _, ext := range []string{".yaml", ".yml"} {
			p := filepath.Join(d, name+ext)
			tried = append(tried, p)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p, tried
			}
		}
	}
	return "", tried
}

func readClouds(path string) (cloudsFile, error) {
	var f cloudsFile
	b, err := os.ReadFile(path)
	if err != nil {
		return f, err
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// loadCredentials finds the credentials the config asks for: the cloud
// named by openstack.cloud or OS_CLOUD in clouds.yaml (merged with its
// secure.yaml), else the OS_* variables.
func loadCredentials(cfg Config, getenv func(string) string) (credentials, error) {
	name := cfg.Cloud
	if name == "" {
		name = getenv("OS_CLOUD")
	}
	var c credentials
	if name == "" {
		if getenv("OS_AUTH_URL") == "" {
			return c, usererr.BadInput(
				`set openstack.cloud (or OS_CLOUD) to a cloud in clouds.yaml, or source your project's openrc file (OS_AUTH_URL, OS_USERNAME, ...)`,
				"openstack: no credentials: no cloud named and OS_AUTH_URL is not set")
		}
		c = envCredentials(getenv)
	} else {
		explicit := cfg.CloudsFile
		if explicit == "" {
			explicit = getenv("OS_CLIENT_CONFIG_FILE")
		}
		path, tried := findFile(explicit, "clouds")
		if path == "" {
			return c, usererr.BadInput("create clouds.yaml (your cloud's dashboard offers one for download) in one of those places, or set openstack.clouds_file",
				"openstack: cloud %q: no clouds.yaml found (looked at %s)", name, strings.Join(tried, ", "))
		}
		f, err := readClouds(path)
		if err != nil {
			return c, usererr.BadInput("fix or replace the file", "openstack: read clouds.yaml: %w", err)
		}
		entry, ok := f.Clouds[name]
		if !ok {
			var names []string
			for n := range f.Clouds {
				names = append(names, n)
			}
			sort.Strings(names)
			msg := fmt.Sprintf("openstack: cloud %q is not in %s", name, path)
			if near := nearMatches(name, names); len(near) > 0 {
				msg += fmt.Sprintf(" (did you mean %s?)", quoteList(near))
			}
			fix := "clouds in that file: " + strings.Join(names, ", ")
			if len(names) == 0 {
				fix = "that file defines no clouds; add one under clouds:"
			}
			return c, usererr.BadInput(fix, "%s", msg)
		}
		c = entry.credentials()
		c.Source = fmt.Sprintf("cloud %q in %s", name, path)
		if c, err = chooseRegion(c, entry, cfg.Region); err != nil {
			return c, err
		}
		securePath := getenv("OS_CLIENT_SECURE_FILE")
		if securePath == "" {
			if p := filepath.Join(filepath.Dir(path), "secure.yaml"); fileExists(p) {
				securePath = p
			} else {
				securePath, _ = findFile("", "secure")
			}
		}
		if securePath != "" {
			sf, err := readClouds(securePath)
			if err != nil {
				return c, usererr.BadInput("fix or replace the file", "openstack: read secure.yaml: %w", err)
			}
			if se, ok := sf.Clouds[name]; ok {
				src := c.Source
				c = se.credentials().merge(c)
				c.Source = src + " and " + securePath
			}
		}
		if c.CACert != "" && !filepath.IsAbs(c.CACert) {
			// As in the OpenStack client: relative to the working directory.
			if abs, err := filepath.Abs(c.CACert); err == nil {
				c.CACert = abs
			}
		}
	}
	if cfg.Region != "" {
		c.Region = cfg.Region
	}
	if cfg.Interface != "" {
		c.Interface = cfg.Interface
	}
	if cfg.CACert != "" {
		c.CACert = cfg.CACert
	}
	if cfg.Insecure != nil {
		c.Insecure = *cfg.Insecure
	}
	return c, c.check()
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func envCredentials(getenv func(string) string) credentials {
	c := credentials{Source: "OS_* environment variables",
		AuthType: getenv("OS_AUTH_TYPE"), AuthURL: getenv("OS_AUTH_URL"),
		Username: getenv("OS_USERNAME"), UserID: getenv("OS_USER_ID"), Password: getenv("OS_PASSWORD"),
		UserDomainName: getenv("OS_USER_DOMAIN_NAME"), UserDomainID: getenv("OS_USER_DOMAIN_ID"),
		ProjectName: firstOf(getenv("OS_PROJECT_NAME"), getenv("OS_TENANT_NAME")), ProjectID: firstOf(getenv("OS_PROJECT_ID"), getenv("OS_TENANT_ID")),
		ProjectDomainName: getenv("OS_PROJECT_DOMAIN_NAME"), ProjectDomainID: getenv("OS_PROJECT_DOMAIN_ID"),
		DomainName: getenv("OS_DOMAIN_NAME"), DomainID: getenv("OS_DOMAIN_ID"),
		AppCredID: getenv("OS_APPLICATION_CREDENTIAL_ID"), AppCredName: getenv("OS_APPLICATION_CREDENTIAL_NAME"),
		AppCredSecret: getenv("OS_APPLICATION_CREDENTIAL_SECRET"), Token: getenv("OS_TOKEN"),
		Region: getenv("OS_REGION_NAME"), Interface: firstOf(getenv("OS_INTERFACE"), getenv("OS_ENDPOINT_TYPE")),
		CACert: getenv("OS_CACERT"), Cert: getenv("OS_CERT"), Key: getenv("OS_KEY"),
	}
	if v, err := strconv.ParseBool(getenv("OS_INSECURE")); err == nil {
		c.Insecure = v
	}
	return c
}

// ---- TLS and HTTP ----------------------------------------------------------

// httpClient builds the HTTP client for the credentials' TLS options.
func (c credentials) httpClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tcfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CACert != "" {
		pem, err := os.ReadFile(c.CACert)
		if err != nil {
			return nil, usererr.BadInput("point cacert at the PEM file of the cloud's CA", "openstack: cacert: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usererr.BadInput("point cacert at a PEM file with BEGIN CERTIFICATE blocks", "openstack: cacert %q holds no PEM certificate", c.CACert)
		}
		tcfg.RootCAs = pool
	}
	if c.Cert != "" || c.Key != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, usererr.BadInput("set both cert and key to the PEM files of your client certificate", "openstack: client certificate: %w", err)
		}
		tcfg.Certificates = []tls.Certificate{cert}
	}
	tcfg.InsecureSkipVerify = c.Insecure //nolint:gosec // the user asked for it (verify: false / insecure: true)
	tr.TLSClientConfig = tcfg
	tr.ResponseHeaderTimeout = 2 * time.Minute
	return &http.Client{Transport: tr}, nil
}

// authError turns a failed authentication into what the user reads: which
// method was tried, as whom, against which endpoint, and what to do.
func authError(c credentials, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("openstack: authenticate at %s: %w", c.AuthURL, err)
	}
	base := fmt.Sprintf("openstack: %s auth as %s at %s (from %s)", c.Method(), c.who(), c.AuthURL, c.Source)
	switch {
	case gophercloud.ResponseCodeIs(err, http.StatusUnauthorized):
		fix := "check the username, password and project (or the secure.yaml / OS_PASSWORD they come from)"
		switch c.Method() {
		case methodAppCred:
			fix = "the application credential may have expired or been deleted: make a new one (`openstack application credential create`) and update its id and secret"
		case methodToken:
			fix = "the token has expired: get a new one, or use a password or application credential"
		}
		return usererr.BadInput(fix, "%s: the credentials were refused (HTTP 401)", base)
	case gophercloud.ResponseCodeIs(err, http.StatusNotFound):
		return usererr.BadInput("set auth_url to the Keystone endpoint, e.g. https://keystone.example.org:5000/v3", "%s: no identity API there (HTTP 404)", base)
	case gophercloud.ResponseCodeIs(err, http.StatusBadRequest):
		return usererr.BadInput("check the domain and project settings", "%s: the request was rejected (HTTP 400): %s", base, responseMessage(err))
	}
	var x509Err x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &x509Err) || errors.As(err, &hostErr) || errors.As(err, &certErr) {
		return usererr.BadInput("set cacert (clouds.yaml, OS_CACERT or openstack.cacert) to the cloud's CA bundle; insecure: true only for tests",
			"%s: the server's TLS certificate is not trusted: %v", base, err)
	}
	var gpErr gophercloud.ErrEndpointNotFound
	if errors.As(err, &gpErr) {
		return usererr.BadInput("check region (region_name / OS_REGION_NAME) and interface", "%s: %v", base, err)
	}
	return usererr.WithHint(fmt.Errorf("%s: %w", base, err), "check auth_url and that this machine can reach the cloud")
}

// responseMessage extracts the service's own message from an HTTP error.
func responseMessage(err error) string {
	var ue gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &ue) {
		return err.Error()
	}
	return serviceMessage(ue.Body, ue.Actual)
}

// serviceMessage finds the human message in an OpenStack error body:
// {"itemNotFound": {"message": ...}}, {"NeutronError": {"message": ...}},
// {"error": {"message": ...}} or Glance's plain text.
func serviceMessage(body []byte, code int) string {
	var m map[string]any
	if err := jsonUnmarshal(body, &m); err == nil {
		for _, v := range m {
			if inner, ok := v.(map[string]any); ok {
				if msg, ok := inner["message"].(string); ok && msg != "" {
					return strings.TrimSpace(msg)
				}
			}
		}
	}
	s := strings.TrimSpace(string(body))
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && !strings.HasPrefix(l, strconv.Itoa(code)) {
			if len(l) > 300 {
				l = l[:300]
			}
			return l
		}
	}
	return http.StatusText(code)
}
