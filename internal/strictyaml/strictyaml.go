// Package strictyaml decodes YAML into Go structs strictly: every key that
// the target type does not know is an error that names the key, its line and
// the nearest known key, and all such problems are reported at once.
//
// yaml.v3's Decoder.KnownFields does this for a whole document but stops at
// the first problem and cannot be used on a yaml.Node (a provider's section
// of the cluster config), which is why this package exists.
package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/clusterctl/clusterctl/internal/textdist"
)

// Unmarshal parses data and decodes it strictly into v. name is used in
// messages (usually the file name).
func Unmarshal(name string, data []byte, v any) error {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, errEOF()) {
			return nil // empty document: keep defaults
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := Decode(&doc, v); err != nil {
		return prefix(name, err)
	}
	return nil
}

func errEOF() error {
	var n yaml.Node
	return yaml.NewDecoder(bytes.NewReader(nil)).Decode(&n)
}

// Decode checks node against v's type and then decodes it into v. A nil
// node leaves v unchanged.
func Decode(node *yaml.Node, v any) error {
	if node == nil {
		return nil
	}
	if node.Kind == yaml.DocumentNode && len(node.Content) == 1 {
		node = node.Content[0]
	}
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer {
		return fmt.Errorf("strictyaml: Decode needs a pointer, got %T", v)
	}
	if err := Duplicates(node); err != nil {
		return err
	}
	var problems []error
	c := checker{problems: &problems, budget: maxVisits}
	c.check(node, t.Elem(), "")
	if len(problems) > 0 {
		return errors.Join(problems...)
	}
	if err := node.Decode(v); err != nil {
		return err
	}
	return nil
}

// maxDuplicates bounds how many duplicate keys one error lists.
const maxDuplicates = 10

// Duplicates reports the keys that a mapping anywhere in the tree under n
// has twice (at most maxDuplicates of them, then a count), in time linear
// in the size of the tree; aliases are not followed, as their targets are
// in the tree themselves. yaml.v3 makes the same check when it decodes, but
// compares every key of a mapping with every other and makes a message for
// each pair: a 33 KB config repeating one key took minutes (quadratic time
// and memory), so Decode runs this first and never hands yaml.v3 a mapping
// with a duplicate key.
func Duplicates(n *yaml.Node) error {
	type key struct {
		kind  yaml.Kind
		value string
	}
	var errs []error
	more := 0
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			first := make(map[key]int, len(n.Content)/2)
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				id := key{k.Kind, k.Value}
				line, dup := first[id]
				switch {
				case !dup:
					first[id] = k.Line
				case len(errs) < maxDuplicates:
					errs = append(errs, fmt.Errorf("line %d: mapping key %q already defined at line %d", k.Line, k.Value, line))
				default:
					more++
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	if more > 0 {
		errs = append(errs, fmt.Errorf("and %d more duplicate keys", more))
	}
	return errors.Join(errs...)
}

func prefix(name string, err error) error {
	var lines []string
	for _, e := range unjoin(err) {
		lines = append(lines, name+": "+e.Error())
	}
	return errors.New(strings.Join(lines, "\n"))
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// maxVisits bounds the nodes one check visits, so a document of nested
// aliases ("billion laughs") cannot make it run for ever.
const maxVisits = 100000

type checker struct {
	problems *[]error
	budget   int
}

func (c *checker) check(n *yaml.Node, t reflect.Type, path string) {
	problems := c.problems
	if c.budget--; c.budget == 0 {
		*problems = append(*problems, fmt.Errorf("line %d: the document is too large or has too many nested aliases", n.Line))
	}
	if c.budget <= 0 {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // a type error; node.Decode reports it with its line
		}
		fields := fieldsOf(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				continue
			}
			ft, ok := fields[k.Value]
			if !ok {
				*problems = append(*problems, unknownKey(k, path, fields))
				continue
			}
			c.check(val, ft, join(path, k.Value))
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, e := range n.Content {
			c.check(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			c.check(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func unknownKey(k *yaml.Node, path string, fields map[string]reflect.Type) error {
	where := "at the top level"
	if path != "" {
		where = "in " + path
	}
	msg := fmt.Sprintf("line %d: unknown key %q %s", k.Line, k.Value, where)
	if near := nearest(k.Value, fields); near != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", near)
	} else {
		msg += fmt.Sprintf(" (known keys: %s)", strings.Join(keys(fields), ", "))
	}
	return errors.New(msg)
}

func keys(fields map[string]reflect.Type) []string {
	out := make([]string, 0, len(fields))
	for k := range fields {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// fieldsOf maps the YAML keys of struct type t to their field types,
// following yaml.v3's tag rules (inline structs are flattened).
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.PkgPath != "" && !f.Anonymous {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(","+opts+",", ",inline,") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range fieldsOf(ft) {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// nearest returns the known key closest to s when it is a plausible typo.
func nearest(s string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for _, k := range keys(fields) {
		if d := textdist.Distance(strings.ToLower(s), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}
