// Package dnslabel is the one rule for names that must be a DNS label
// (RFC 1123): cluster names, node names, host names.
package dnslabel

import "regexp"

// MaxLen is the longest DNS label.
const MaxLen = 63

var lower = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Valid reports whether s is a lower-case RFC 1123 label: 1 to 63 characters
// of a-z, 0-9 and '-', starting and ending with a letter or digit. Cluster
// and node names must be Valid.
func Valid(s string) bool { return lower.MatchString(s) }

// ValidHost reports whether s is an RFC 1123 label in any case (a host name
// a guest reports may have capitals).
func ValidHost(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := range b {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return Valid(string(b))
		}
	}
	return Valid(s)
}
