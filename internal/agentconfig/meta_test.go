package agentconfig

import (
	"reflect"
	"strings"
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	m := Meta{Cluster: "lab", Name: "red", Nonce: "4f1c2a", Provider: "qemu", InstanceID: "i-1",
		Hostname: "red", Role: RoleNode, Tags: map[string]string{"zone": "a", "role": "db"}}
	tags, err := m.SerfTags()
	if err != nil {
		t.Fatal(err)
	}
	// A user tag named like a built-in one does not shadow it.
	if tags[TagRole] != RoleNode || tags[UserTagPrefix+"role"] != "db" {
		t.Errorf("tags = %v", tags)
	}
	if got := MetaFromTags(tags); !reflect.DeepEqual(got, m) {
		t.Errorf("round trip: got %+v, want %+v", got, m)
	}
}

func TestMetaTooLarge(t *testing.T) {
	m := Meta{Cluster: "lab", Name: "red", Role: RoleNode, Tags: map[string]string{"big": strings.Repeat("x", MetaMaxSize)}}
	_, err := m.SerfTags()
	if err == nil {
		t.Fatal("SerfTags accepted tags over 512 bytes")
	}
	for _, w := range []string{`"red"`, "512", "bytes"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %s", err, w)
		}
	}
}

func TestMetaUnknownRole(t *testing.T) {
	if _, err := (Meta{Name: "x", Role: "boss"}).SerfTags(); err == nil {
		t.Error("SerfTags accepted an unknown role")
	}
}
