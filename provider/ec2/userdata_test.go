package ec2_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
	"github.com/clusterctl/clusterctl/provider/ec2"
)

func TestEncodeUserData(t *testing.T) {
	// Compressible text far above 16 KB fits after gzip.
	text := []byte("#cloud-config\n" + strings.Repeat("# a comment line that compresses well\n", 2000))
	enc, err := ec2.EncodeUserData(text)
	if err != nil {
		t.Fatalf("%d bytes of text: %v", len(text), err)
	}
	back, err := ec2.DecodeUserData(enc)
	if err != nil || !bytes.Equal(back, text) {
		t.Fatalf("round trip: %v", err)
	}
	// Random bytes do not compress: over the limit, named in the message.
	big := make([]byte, 17000)
	_, _ = rand.Read(big)
	_, err = ec2.EncodeUserData(big)
	var ie *usererr.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "(17000 bytes before gzip)") || !strings.Contains(err.Error(), "16384") {
		t.Fatalf("oversized user-data: %v", err)
	}
}

// TestCheckSeed: CheckSeed is the one user-data size check (Preflight's
// specs carry no seed): an oversized user-data is bad input (exit 2) that
// names the sizes, before anything is asked of AWS; a user-data that
// fits after gzip passes.
func TestCheckSeed(t *testing.T) {
	p, err := ec2.New(provider.Env{Cluster: "seed", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 24000)
	_, _ = rand.Read(big)
	err = p.CheckSeed(provider.NodeSpec{Cluster: "seed", Name: "one", Seed: provider.Seed{UserData: big}})
	var ie *usererr.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "over EC2's limit of 16384 bytes") || !strings.Contains(err.Error(), "(24000 bytes before gzip)") || ie.Fix == "" {
		t.Fatalf("CheckSeed of 24000 random bytes: %T %v", err, err)
	}
	text := []byte("#cloud-config\n" + strings.Repeat("# compresses well\n", 3000))
	if err := p.CheckSeed(provider.NodeSpec{Cluster: "seed", Name: "one", Seed: provider.Seed{UserData: text}}); err != nil {
		t.Errorf("CheckSeed of %d bytes that gzip well: %v", len(text), err)
	}
	if len(p.Calls()) != 0 {
		t.Errorf("CheckSeed called AWS: %v", p.Calls())
	}
}
