// Package sshkeys makes and encodes the SSH keys clusterctl hands out: the
// per-cluster ed25519 user key (its public half goes to the image's default
// user through cloud-init) and each node's ed25519 host key, generated before
// the node boots so that its identity is known without trust on first use.
// It also writes the known_hosts file clusterctl manages.
//
// Private keys are secret: no function here puts one in an error message.
package sshkeys

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Pair is one ed25519 key pair in OpenSSH's encodings.
type Pair struct {
	// Private is the OpenSSH private key file ("-----BEGIN OPENSSH PRIVATE
	// KEY-----"), unencrypted. Secret.
	Private []byte
	// Public is the public key in authorized_keys form without a comment:
	// "ssh-ed25519 AAAA...".
	Public string
}

// Generate makes a new ed25519 key pair. comment is stored in the private
// key file (ssh-keygen -l shows it).
func Generate(comment string) (Pair, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("generate ed25519 key: %w", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return Pair{}, fmt.Errorf("encode ed25519 public key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return Pair{}, fmt.Errorf("encode ed25519 private key: %w", err)
	}
	return Pair{Private: pem.EncodeToMemory(block), Public: publicString(sp)}, nil
}

// FromPrivate reads an OpenSSH private key file and returns the pair. The
// key must be an unencrypted ed25519 key. Errors never quote the file.
func FromPrivate(private []byte) (Pair, error) {
	signer, err := ssh.ParsePrivateKey(private)
	if err != nil {
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return Pair{}, errors.New("the private key is protected by a passphrase")
		}
		return Pair{}, errors.New("not an OpenSSH private key")
	}
	if signer.PublicKey().Type() != ssh.KeyAlgoED25519 {
		return Pair{}, fmt.Errorf("the key is %s, not ed25519", signer.PublicKey().Type())
	}
	return Pair{Private: private, Public: publicString(signer.PublicKey())}, nil
}

// ParsePublic parses one public key in authorized_keys form (options and a
// comment are allowed) and returns it as "type base64".
func ParsePublic(line string) (string, error) {
	if strings.ContainsAny(line, "\r\n") {
		return "", errors.New("a public key must be one line")
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return "", fmt.Errorf("not an SSH public key: %w", err)
	}
	return publicString(pk), nil
}

func publicString(pk ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
}

// HostKeyAlias is the name under which a node's host key is kept in the
// managed known_hosts file, and which ssh is told to look up (HostKeyAlias)
// instead of the node's address: an address that another node used before
// can never match that node's key.
func HostKeyAlias(cluster, node string) string {
	return node + "." + cluster + ".clusterctl"
}

// KnownHost is one entry of a known_hosts file.
type KnownHost struct {
	Alias string // see HostKeyAlias
	Key   string // "ssh-ed25519 AAAA..."
}

// KnownHosts renders a known_hosts file with one line per host, sorted by
// alias, after a comment saying who owns the file. Keys are re-encoded, so
// a malformed key is an error rather than a line ssh would skip.
func KnownHosts(hosts []KnownHost) ([]byte, error) {
	sorted := append([]KnownHost(nil), hosts...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Alias < sorted[j].Alias })
	var b strings.Builder
	b.WriteString("# Managed by clusterctl: rewritten from the cluster's state on every\n")
	b.WriteString("# ssh, cp and logs --agent. Changes here are lost.\n")
	for _, h := range sorted {
		if h.Alias == "" || strings.ContainsAny(h.Alias, " \t\r\n,#*?!") {
			return nil, fmt.Errorf("host key alias %q is not a plain host name", h.Alias)
		}
		key, err := ParsePublic(h.Key)
		if err != nil {
			return nil, fmt.Errorf("host key of %s: %w", h.Alias, err)
		}
		fmt.Fprintf(&b, "%s %s\n", h.Alias, key)
	}
	return []byte(b.String()), nil
}
