package cluster

import (
	"fmt"
	"testing"
)

func TestNewOutput(t *testing.T) {
	var long []byte
	for i := 0; i < 500; i++ {
		long = fmt.Appendf(long, "line %d\n", i)
	}
	cases := []struct {
		name, prev, cur, want string
	}{
		{"first read", "", "boot\n", "boot\n"},
		{"grows", "boot\n", "boot\nlogin:\n", "login:\n"},
		{"unchanged", "boot\n", "boot\n", ""},
		// A provider that keeps only the end (EC2: 64 KiB) dropped the start.
		{"window moved", string(long), string(long[len(long)-1000:]) + "new\n", "new\n"},
		{"reset", "old log\n", "fresh boot\n", "fresh boot\n"},
	}
	for _, c := range cases {
		if got := string(newOutput([]byte(c.prev), []byte(c.cur))); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}
