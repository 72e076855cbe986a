package agent

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

func TestMetaRoundTrip(t *testing.T) {
	m := Meta{Cluster: "lab", Name: "red", Nonce: "4f1c2a", Provider: "qemu", InstanceID: "i-1",
		Hostname: "red", Role: RoleNode, Tags: map[string]string{"zone": "a"}}
	b, err := EncodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("round trip: got %+v, want %+v", got, m)
	}
}

func TestMetaTooLarge(t *testing.T) {
	m := Meta{Cluster: "lab", Name: "red", Role: RoleNode, Tags: map[string]string{"big": strings.Repeat("x", memberlist.MetaMaxSize)}}
	_, err := EncodeMeta(m)
	if err == nil {
		t.Fatal("EncodeMeta accepted meta over 512 bytes")
	}
	for _, w := range []string{`"red"`, "512", "bytes"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %s", err, w)
		}
	}
	// New refuses such a node before it starts gossiping.
	cfg := testConfig("red")
	cfg.Tags = m.Tags
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "512") {
		t.Errorf("New with oversized tags: err = %v", err)
	}
}

func TestMetaBadInput(t *testing.T) {
	if _, err := DecodeMeta(nil); err == nil {
		t.Error("DecodeMeta(nil) succeeded")
	}
	if _, err := DecodeMeta([]byte("{")); err == nil {
		t.Error("DecodeMeta of broken JSON succeeded")
	}
	if _, err := EncodeMeta(Meta{Name: "x", Role: "boss"}); err == nil {
		t.Error("EncodeMeta accepted an unknown role")
	}
}
