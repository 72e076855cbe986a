package dnslabel

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	for s, want := range map[string]bool{
		"red": true, "a": true, "0": true, "node-1": true,
		strings.Repeat("a", 63): true, strings.Repeat("a", 64): false,
		"": false, "-red": false, "red-": false, "Red": false, "red_1": false, "red.blue": false,
	} {
		if got := Valid(s); got != want {
			t.Errorf("Valid(%q) = %v, want %v", s, got, want)
		}
	}
	for s, want := range map[string]bool{"Red": true, "RED-1": true, "-Red": false, "": false} {
		if got := ValidHost(s); got != want {
			t.Errorf("ValidHost(%q) = %v, want %v", s, got, want)
		}
	}
}
