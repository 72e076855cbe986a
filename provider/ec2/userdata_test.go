package ec2_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

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
	var ie *provider.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "(17000 bytes before gzip)") || !strings.Contains(err.Error(), "16384") {
		t.Fatalf("oversized user-data: %v", err)
	}
}
