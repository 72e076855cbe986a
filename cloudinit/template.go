package cloudinit

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"
	"unicode/utf8"

	"github.com/clusterctl/clusterctl/templates"
)

// TemplateData is what a user-data template receives as ".". Its fields are
// documented for template authors in templates/README.md.
type TemplateData struct {
	Cluster    string
	Name       string // host name (RFC 1123 label)
	Domain     string
	FQDN       string // Name + "." + Domain
	InstanceID string
	Address    string // the node's cluster address, "" when the provider assigns it
	Prefix     string // Address with prefix length ("192.168.56.10/24"), or ""
	Peers      []TemplatePeer
	Hosts      string // complete /etc/hosts content, with the agent's marked block
	// AgentConfig is the agent's JSON config (secret: holds the gossip key).
	AgentConfig string
	AgentUnit   string // the systemd unit that runs the agent
	// AgentInstall is the runcmd entry (an argv list) that installs the
	// agent binary (checks it, when preinstalled) and sets up its user,
	// group and hosts file (see templates.InstallAgent).
	AgentInstall  []string
	AgentUnitName string
	Paths         TemplatePaths
	// SSH is nil when clusterctl does not set up SSH (ssh: false).
	SSH *TemplateSSH
}

// TemplateSSH is Input.SSH as a template sees it.
type TemplateSSH struct {
	AuthorizedKeys []string
}

// TemplatePeer is a Peer as a template sees it.
type TemplatePeer struct {
	Name    string
	FQDN    string
	Address string
}

// TemplatePaths are the node paths the user-data owns.
type TemplatePaths struct {
	Hosts, AgentConfig, AgentUnit, AgentBinary string
}

// newTemplateData builds the data for a validated Input.
func newTemplateData(in Input) TemplateData {
	d := TemplateData{
		Cluster:       in.Cluster,
		Name:          in.Name,
		Domain:        in.Domain,
		FQDN:          in.Name + "." + in.Domain,
		InstanceID:    in.InstanceID,
		Hosts:         hostsFile(in),
		AgentConfig:   string(in.AgentConfig),
		AgentUnit:     templates.AgentUnit(),
		AgentInstall:  agentInstall(in.Agent),
		AgentUnitName: AgentUnitName,
		Paths:         TemplatePaths{HostsPath, AgentConfigPath, AgentUnitPath, AgentBinaryPath},
	}
	if in.SSH != nil {
		d.SSH = &TemplateSSH{AuthorizedKeys: in.SSH.AuthorizedKeys}
	}
	if in.Address.IsValid() {
		d.Address, d.Prefix = in.Address.Addr().String(), in.Address.String()
	}
	for _, p := range in.Peers {
		d.Peers = append(d.Peers, TemplatePeer{Name: p.Name, FQDN: p.Name + "." + in.Domain, Address: p.Address.String()})
	}
	return d
}

// agentInstall returns the runcmd argv that installs the agent.
func agentInstall(a AgentSource) []string {
	argv := []string{"sh", "-ec", templates.InstallAgent(), "clusterctl-agent-install", a.Kind}
	if a.Kind == AgentURL {
		return append(argv, a.URL, strings.ToLower(a.SHA256))
	}
	return argv
}

// hostsFile renders /etc/hosts. The node's name maps to its cluster address
// (never to 127.0.1.1); the peers sit between HostsBegin and HostsEnd.
func hostsFile(in Input) string {
	var b strings.Builder
	b.WriteString("# Written by clusterctl. The clusterctl agent rewrites the lines between\n")
	b.WriteString("# the BEGIN and END markers as cluster members join and leave.\n")
	b.WriteString("127.0.0.1 localhost\n")
	b.WriteString("::1 localhost ip6-localhost ip6-loopback\n")
	b.WriteString("ff02::1 ip6-allnodes\n")
	b.WriteString("ff02::2 ip6-allrouters\n")
	if in.Address.IsValid() {
		fmt.Fprintf(&b, "%s %s.%s %s\n", in.Address.Addr(), in.Name, in.Domain, in.Name)
	}
	b.WriteString(HostsBegin + "\n")
	for _, p := range in.Peers {
		fmt.Fprintf(&b, "%s %s.%s %s\n", p.Address, p.Name, in.Domain, p.Name)
	}
	b.WriteString(HostsEnd + "\n")
	return b.String()
}

// quoteFuncs are the functions a user-data template may call. Every action
// that prints something must end in one of them (see checkQuoted).
var quoteFuncs = template.FuncMap{"yaml": quoteYAML}

// executeTemplate parses src, checks that every printed value is quoted,
// and executes it with data.
func executeTemplate(name, src string, data TemplateData) (string, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(quoteFuncs).Parse(src)
	if err != nil {
		return "", fmt.Errorf("user-data template: %w", err)
	}
	if err := checkQuoted(t); err != nil {
		return "", fmt.Errorf("user-data template: %w", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return "", fmt.Errorf("user-data template: %w", err)
	}
	return buf.String(), nil
}

// quoteYAML renders v as a YAML scalar that cannot change the structure of
// the document around it: strings (and fmt.Stringers) become double-quoted
// scalars using only printable ASCII, []string becomes a flow sequence of
// them, and bools and ints are written as they are.
func quoteYAML(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return quoteString(v)
	case fmt.Stringer:
		return quoteString(v.String())
	case bool, int:
		return fmt.Sprint(v), nil
	case []string:
		items := make([]string, len(v))
		for i, s := range v {
			q, err := quoteString(s)
			if err != nil {
				return "", err
			}
			items[i] = q
		}
		return "[" + strings.Join(items, ", ") + "]", nil
	}
	return "", fmt.Errorf("yaml: cannot quote a value of type %T", v)
}

// quoteString returns s as a YAML double-quoted scalar. Everything outside
// printable ASCII is escaped, so the result is one line of plain ASCII that
// every YAML parser reads back as exactly s.
func quoteString(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", errors.New("yaml: cannot quote a string that is not valid UTF-8")
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			fmt.Fprintf(&b, `\U%08X`, r)
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}

// checkQuoted reports every action in t that prints a value without
// passing it through a quoting function last.
func checkQuoted(t *template.Template) error {
	var errs []error
	for _, tt := range t.Templates() {
		if tt.Tree == nil || tt.Tree.Root == nil {
			continue
		}
		walkActions(tt.Tree.Root, func(a *parse.ActionNode) {
			if len(a.Pipe.Decl) == 0 && !endsQuoted(a.Pipe) {
				loc, _ := tt.Tree.ErrorContext(a)
				errs = append(errs, fmt.Errorf("%s: %s prints a value without quoting it: end the pipeline with \"| yaml\"", loc, a))
			}
		})
	}
	return errors.Join(errs...)
}

// walkActions calls f for every action node under n.
func walkActions(n parse.Node, f func(*parse.ActionNode)) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walkActions(c, f)
		}
	case *parse.ActionNode:
		f(n)
	case *parse.IfNode:
		walkBranch(&n.BranchNode, f)
	case *parse.RangeNode:
		walkBranch(&n.BranchNode, f)
	case *parse.WithNode:
		walkBranch(&n.BranchNode, f)
	}
}

func walkBranch(b *parse.BranchNode, f func(*parse.ActionNode)) {
	walkActions(b.List, f)
	if b.ElseList != nil {
		walkActions(b.ElseList, f)
	}
}

// endsQuoted reports whether the last command of p is a call of a quoting
// function.
func endsQuoted(p *parse.PipeNode) bool {
	if len(p.Cmds) == 0 {
		return false
	}
	last := p.Cmds[len(p.Cmds)-1]
	if len(last.Args) == 0 {
		return false
	}
	id, ok := last.Args[0].(*parse.IdentifierNode)
	return ok && quoteFuncs[id.Ident] != nil
}
