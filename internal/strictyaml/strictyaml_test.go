package strictyaml

import (
	"strings"
	"testing"
)

type inner struct {
	Size int    `yaml:"size"`
	Name string `yaml:"name"`
}

type outer struct {
	Title  string           `yaml:"title"`
	Inner  inner            `yaml:"inner"`
	List   []inner          `yaml:"list"`
	ByName map[string]inner `yaml:"by_name"`
	Ptr    *inner           `yaml:"ptr"`
	Embed  `yaml:",inline"`
}

type Embed struct {
	Extra string `yaml:"extra"`
}

func TestUnknownKeysEverywhereAtOnce(t *testing.T) {
	doc := `title: t
titel: x
inner: {size: 1, nmae: a}
list:
  - size: 2
  - sise: 3
by_name:
  a: {name: b, colour: red}
ptr: {szie: 4}
extra: ok
`
	var v outer
	err := Unmarshal("f.yaml", []byte(doc), &v)
	if err == nil {
		t.Fatal("unknown keys were accepted")
	}
	for _, want := range []string{
		`f.yaml: line 2: unknown key "titel" at the top level (did you mean "title"?)`,
		`line 3: unknown key "nmae" in inner (did you mean "name"?)`,
		`line 6: unknown key "sise" in list[1] (did you mean "size"?)`,
		`line 8: unknown key "colour" in by_name.a (known keys: name, size)`,
		`line 9: unknown key "szie" in ptr`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
}

func TestKnownKeysDecode(t *testing.T) {
	var v outer
	if err := Unmarshal("f.yaml", []byte("title: t\ninner: {size: 1}\nlist: [{name: x}]\nextra: e\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.Title != "t" || v.Inner.Size != 1 || len(v.List) != 1 || v.List[0].Name != "x" || v.Extra != "e" {
		t.Errorf("decoded %+v", v)
	}
	if err := Unmarshal("f.yaml", nil, &v); err != nil {
		t.Errorf("an empty document: %v", err)
	}
}

func TestTypeErrorsCarryLines(t *testing.T) {
	var v outer
	err := Unmarshal("f.yaml", []byte("title: t\ninner:\n  size: big\n"), &v)
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("type error without its line: %v", err)
	}
}

func TestNestedAliasesAreBounded(t *testing.T) {
	doc := "a: &a [{size: 1},{size: 1},{size: 1},{size: 1},{size: 1},{size: 1},{size: 1},{size: 1},{size: 1},{size: 1}]\n"
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g"} {
		doc += n + ": &" + n + " [" + strings.Repeat("*"+prev+",", 9) + "*" + prev + "]\n"
		prev = n
	}
	var d struct {
		A []inner           `yaml:"a"`
		B [][]inner         `yaml:"b"`
		C [][][]inner       `yaml:"c"`
		D [][][][]inner     `yaml:"d"`
		E [][][][][]inner   `yaml:"e"`
		F [][][][][][]inner `yaml:"f"`
		G any               `yaml:"g"`
	}
	err := Unmarshal("f.yaml", []byte(doc), &d)
	if err == nil || !strings.Contains(err.Error(), "too many nested aliases") {
		t.Fatalf("a document of millions of aliased nodes: %v", err)
	}
}

// A key given twice is an error naming both lines, wherever the mapping
// is (an anchored one too); a document repeating one key thousands of times
// lists a few and counts the rest (yaml.v3's own check makes a message per
// pair of keys, which took minutes for this document).
func TestDuplicateKeys(t *testing.T) {
	var v outer
	err := Unmarshal("f.yaml", []byte("title: a\ninner: &i {size: 1, size: 2}\ntitle: b\nptr: *i\n"), &v)
	if err == nil {
		t.Fatal("duplicate keys accepted")
	}
	for _, want := range []string{`f.yaml: line 2: mapping key "size" already defined at line 2`, `f.yaml: line 3: mapping key "title" already defined at line 1`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\ndoes not contain %q", err, want)
		}
	}

	doc := "by_name:\n  a: {name: x}\n" + strings.Repeat("title: t\n", 3000)
	err = Unmarshal("big.yaml", []byte(doc), &v)
	if err == nil {
		t.Fatal("duplicate keys accepted")
	}
	msg := err.Error()
	if n := strings.Count(msg, "already defined"); n != maxDuplicates {
		t.Errorf("%d duplicates listed, want %d", n, maxDuplicates)
	}
	if !strings.Contains(msg, "and 2989 more duplicate keys") {
		t.Errorf("error does not count the rest: %q", msg)
	}
}
