package ec2

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"

	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider"
)

// MaxUserData is EC2's limit on user-data, counted before base64 encoding.
const MaxUserData = 16384

// EncodeUserData gzips the user-data (cloud-init recognises gzip by its
// magic bytes), checks EC2's 16 KB limit and returns the base64 text
// RunInstances wants (the SDK does not encode it). Over the limit is an
// *usererr.InputError that names the sizes.
func EncodeUserData(userData []byte) (string, error) {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(userData); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	if buf.Len() > MaxUserData {
		return "", usererr.BadInput("make cloudinit.extra (or the cloudinit.template) smaller: large files belong in S3 or the image, not in user-data",
			"ec2: user-data is %d bytes gzipped (%d bytes before gzip), over EC2's limit of %d bytes", buf.Len(), len(userData), MaxUserData)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// DecodeUserData reverses EncodeUserData (and accepts plain user-data):
// what a booted instance's cloud-init would read.
func DecodeUserData(b64 string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("user-data is not base64: %w", err)
	}
	if len(raw) < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
		return raw, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if _, err := out.ReadFrom(zr); err != nil {
		return nil, fmt.Errorf("user-data: gunzip: %w", err)
	}
	return out.Bytes(), nil
}

// CheckSeed implements provider.SeedChecker: the user-data must fit EC2's
// limit once gzipped.
func (p *Provider) CheckSeed(spec provider.NodeSpec) error {
	_, err := EncodeUserData(spec.Seed.UserData)
	return err
}
