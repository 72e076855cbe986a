// Option parsing as VBoxManage does it (RTGetOpt): "--opt value",
// "--opt=value", bare flags, and numbered options such as --nicN.

package vboxtest

import (
	"regexp"
	"strconv"
	"strings"
)

// opts parses "--opt value", "--opt=value" and bare flags. spec maps an
// option (or a pattern with N for a digit run, e.g. "--nicN") to its number
// of values. Positional arguments are returned in order.
type parsed struct {
	vals map[string][]string
	pos  []string
	ord  []string // options in the order given
}

// machineOpts parses "VM --option value ...": the machine named first, then
// options only (no positional arguments), as storagectl and storageattach
// take them.
func machineOpts(r *Registry, args []string, spec map[string]int) (*Machine, parsed, error) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return nil, parsed{}, syntaxErr("Not enough parameters")
	}
	m, err := r.machine(args[0])
	if err != nil {
		return nil, parsed{}, err
	}
	p, err := parseOpts(args[1:], spec)
	if err != nil {
		return nil, parsed{}, err
	}
	if len(p.pos) > 0 {
		return nil, parsed{}, syntaxErr("Invalid parameter '%s'", p.pos[0])
	}
	return m, p, nil
}

func parseOpts(args []string, spec map[string]int) (parsed, error) {
	p := parsed{vals: map[string][]string{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			p.pos = append(p.pos, a)
			continue
		}
		name, inline, hasInline := strings.Cut(a, "=")
		n, ok := lookupSpec(spec, name)
		if !ok {
			return p, syntaxErr("Unknown option: %s", name)
		}
		var vals []string
		if hasInline {
			if n == 0 {
				return p, syntaxErr("Option %s takes no value", name)
			}
			vals = append(vals, inline)
			n--
		}
		for ; n > 0; n-- {
			i++
			if i >= len(args) {
				return p, syntaxErr("Missing value for option %s", name)
			}
			vals = append(vals, args[i])
		}
		p.vals[name] = vals
		p.ord = append(p.ord, name)
	}
	return p, nil
}

var digits = regexp.MustCompile(`[0-9]+$`)

func lookupSpec(spec map[string]int, name string) (int, bool) {
	if n, ok := spec[name]; ok {
		return n, true
	}
	if d := digits.FindString(name); d != "" {
		if n, ok := spec[strings.TrimSuffix(name, d)+"N"]; ok {
			if i, _ := strconv.Atoi(d); i >= 1 && i <= 8 {
				return n, true
			}
		}
	}
	return 0, false
}

func (p parsed) has(k string) bool { _, ok := p.vals[k]; return ok }
func (p parsed) get(k string) string {
	if v := p.vals[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func onOff(opt, v string) error {
	if v != "on" && v != "off" {
		return syntaxErr("Invalid %s argument '%s'", opt, v)
	}
	return nil
}

func atoi(opt, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, syntaxErr("Invalid %s argument '%s'", opt, v)
	}
	return n, nil
}
