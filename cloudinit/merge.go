package cloudinit

import (
	"errors"
	"fmt"
	"path"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/internal/strictyaml"
)

// ownedScalars are the top-level keys whose value the user-data owns: Extra
// may repeat them only with the same value.
var ownedScalars = map[string]bool{
	"hostname":                  true,
	"fqdn":                      true,
	"manage_etc_hosts":          true,
	"preserve_hostname":         true,
	"prefer_fqdn_over_hostname": true,
}

// maxNodes bounds alias expansion so that a small document cannot expand
// into a huge one.
const maxNodes = 100_000

// parseOurs parses the executed template into its top-level mapping node.
func parseOurs(name, text string) (*yaml.Node, error) {
	m, err := parseMapping([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("%s: output of the template: %w", name, err)
	}
	return m, nil
}

// parseExtra parses the user's extra cloud-config into a mapping node.
func parseExtra(extra []byte) (*yaml.Node, error) {
	m, err := parseMapping(extra)
	if err != nil {
		return nil, fmt.Errorf("cloudinit.extra: %w", err)
	}
	if err := checkKeys(m); err != nil {
		return nil, err
	}
	return m, nil
}

// checkKeys rejects every mapping key in n that is not a non-empty string
// (a null key "?", a number, a list): cloud-config keys are names, and a
// key like that would turn into "”" or a different type in the user-data.
// All such keys are reported at once.
func checkKeys(n *yaml.Node) error {
	var errs []error
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if n.Kind != yaml.MappingNode {
			for _, c := range n.Content {
				walk(c, path)
			}
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!str" && k.Value != "" {
				walk(n.Content[i+1], path+k.Value+".")
				continue
			}
			where := ""
			if path != "" {
				where = " under " + strings.TrimSuffix(path, ".")
			}
			errs = append(errs, fmt.Errorf("cloudinit.extra: line %d: the key %s%s is not a name; cloud-config keys are non-empty strings (quote a key that YAML reads as a number or boolean)", k.Line, describeKey(k), where))
		}
	}
	walk(n, "")
	return errors.Join(errs...)
}

// describeKey names a rejected key for an error message.
func describeKey(k *yaml.Node) string {
	switch {
	case k.Kind != yaml.ScalarNode:
		return "that is a " + kindName(k)
	case isNull(k):
		return "that is null (an empty \"?\" key)"
	case k.Value == "":
		return `""`
	}
	return fmt.Sprintf("%s (a %s)", k.Value, strings.TrimPrefix(k.ShortTag(), "!!"))
}

// parseMapping parses a single YAML document that must be a mapping (or
// empty) and returns it with aliases expanded, merge keys rejected, and
// comments and quoting of multi-line strings dropped so the encoder can lay
// them out.
func parseMapping(data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	// Duplicate keys first, in linear time: yaml.v3's own check (below)
	// is quadratic in the number of keys of a mapping.
	if err := strictyaml.Duplicates(&doc); err != nil {
		return nil, err
	}
	var check any // catches alias bombs
	if err := yaml.Unmarshal(data, &check); err != nil {
		return nil, err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode && root.Kind != yaml.AliasNode {
		return nil, fmt.Errorf("line %d: the document is a %s, not a mapping of cloud-config keys", root.Line, kindName(root))
	}
	budget := maxNodes
	out, err := normalize(root, &budget)
	if err != nil {
		return nil, err
	}
	if out.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: the document is a %s, not a mapping of cloud-config keys", root.Line, kindName(out))
	}
	return out, nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return "scalar"
	}
	return "alias"
}

// normalize returns a deep copy of n with aliases replaced by copies of
// their targets, anchors and comments removed, and multi-line quoted
// strings turned into literal blocks (the encoder falls back to quoting
// when a literal block cannot hold the string). Merge keys ("<<") are an
// error: the user-data is merged key by key and a merge key would hide keys
// from that.
func normalize(n *yaml.Node, budget *int) (*yaml.Node, error) {
	if *budget--; *budget < 0 {
		return nil, errors.New("the document is too large after expanding aliases")
	}
	if n.Kind == yaml.AliasNode {
		return normalize(n.Alias, budget)
	}
	c := *n
	c.Anchor, c.HeadComment, c.LineComment, c.FootComment = "", "", "", ""
	if c.Kind == yaml.ScalarNode && c.ShortTag() == "!!str" && c.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 && containsNewline(c.Value) {
		c.Style = yaml.LiteralStyle
	}
	if c.Kind == yaml.MappingNode || c.Kind == yaml.SequenceNode {
		c.Style &^= yaml.FlowStyle
	}
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, child := range n.Content {
		if c.Kind == yaml.MappingNode && i%2 == 0 && child.ShortTag() == "!!merge" {
			return nil, fmt.Errorf("line %d: merge keys (<<) are not supported; write the keys out", child.Line)
		}
		cc, err := normalize(child, budget)
		if err != nil {
			return nil, err
		}
		c.Content[i] = cc
	}
	return &c, nil
}

func containsNewline(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return true
		}
	}
	return false
}

// mergeExtra merges the mapping extra into ours: lists are concatenated
// (ours first), mappings merged recursively, other scalars taken from
// extra. Owned scalar keys may only be repeated with the same value, and
// extra may not write files at paths ours writes.
func mergeExtra(ours, extra *yaml.Node) error {
	if err := checkWriteFiles(ours, extra); err != nil {
		return err
	}
	return mergeMapping(ours, extra, "")
}

func mergeMapping(ours, extra *yaml.Node, prefix string) error {
	var errs []error
	for i := 0; i+1 < len(extra.Content); i += 2 {
		k, v := extra.Content[i], extra.Content[i+1]
		key := prefix + k.Value
		j := findKey(ours, k.Value)
		if j < 0 {
			if prefix == "" && ownedScalars[k.Value] {
				errs = append(errs, fmt.Errorf("cloudinit.extra: line %d: key %q is set by clusterctl and cannot be changed", k.Line, key))
				continue
			}
			ours.Content = append(ours.Content, k, v)
			continue
		}
		if err := mergeValue(ours, j+1, v, k, key, prefix == "" && ownedScalars[k.Value]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// mergeValue merges v (the value of extra's key k) into parent.Content[idx].
func mergeValue(parent *yaml.Node, idx int, v, k *yaml.Node, key string, owned bool) error {
	o := parent.Content[idx]
	switch {
	case owned:
		if !sameValue(o, v) {
			return fmt.Errorf("cloudinit.extra: line %d: key %q is set by clusterctl and cannot be changed", k.Line, key)
		}
	case isNull(v):
		// "key:" with no value adds nothing.
	case o.Kind == yaml.MappingNode && v.Kind == yaml.MappingNode:
		return mergeMapping(o, v, key+".")
	case o.Kind == yaml.SequenceNode && v.Kind == yaml.SequenceNode:
		o.Content = append(o.Content, v.Content...)
	case o.Kind == yaml.ScalarNode && v.Kind == yaml.ScalarNode, isNull(o):
		parent.Content[idx] = v
	default:
		return fmt.Errorf("cloudinit.extra: line %d: key %q is a %s here but a %s in the user-data; cannot merge them", k.Line, key, kindName(v), kindName(o))
	}
	return nil
}

func findKey(m *yaml.Node, key string) int {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return i
		}
	}
	return -1
}

// sameValue compares two nodes by the values they decode to.
func sameValue(a, b *yaml.Node) bool {
	var va, vb any
	if a.Decode(&va) != nil || b.Decode(&vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// checkWriteFiles rejects write_files entries in extra whose path is one
// that ours writes.
func checkWriteFiles(ours, extra *yaml.Node) error {
	owned := map[string]bool{}
	for _, p := range writeFilePaths(ours) {
		owned[cleanPath(p.Value)] = true
	}
	var errs []error
	for _, p := range writeFilePaths(extra) {
		if owned[cleanPath(p.Value)] {
			errs = append(errs, fmt.Errorf("cloudinit.extra: line %d: write_files entry for %q: clusterctl writes that file", p.Line, p.Value))
		}
	}
	return errors.Join(errs...)
}

// writeFilePaths returns the path nodes of the write_files entries of m.
func writeFilePaths(m *yaml.Node) []*yaml.Node {
	i := findKey(m, "write_files")
	if i < 0 || m.Content[i+1].Kind != yaml.SequenceNode {
		return nil
	}
	var paths []*yaml.Node
	for _, e := range m.Content[i+1].Content {
		if e.Kind != yaml.MappingNode {
			continue
		}
		if j := findKey(e, "path"); j >= 0 && e.Content[j+1].Kind == yaml.ScalarNode {
			paths = append(paths, e.Content[j+1])
		}
	}
	return paths
}

func cleanPath(p string) string {
	return path.Clean("/" + p)
}
