// Command partitions is an example application on clusterctl nodes: each
// node takes its share of 12 work partitions from the agent's
// members.json and rebalances when the membership changes, without
// talking to the other nodes. Every node reads the same members.json
// content for the same view (sorted by name), so they all compute the same
// assignment: partition p belongs to the (p mod n)-th alive member.
//
//	partitions [-members /run/clusterctl/members.json] [-self /run/clusterctl/self.json]
//	           [-role worker] [-partitions 12] [-interval 500ms] [-once]
//
// It prints one line whenever its share changes:
//
//	version=3 members=2 owned=0,2,4,6,8,10
//
// See docs/applications.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// view is the part of members.json this program reads.
type view struct {
	Version uint64 `json:"version"`
	Members []struct {
		Name   string `json:"name"`
		Role   string `json:"role"`
		Status string `json:"status"`
	} `json:"members"`
}

type options struct {
	members, self, role string
	partitions          int
	interval            time.Duration
	once                bool
}

func main() {
	var o options
	flag.StringVar(&o.members, "members", "/run/clusterctl/members.json", "the agent's members file")
	flag.StringVar(&o.self, "self", "/run/clusterctl/self.json", "the agent's self file (this node's name)")
	flag.StringVar(&o.role, "role", "", "share the work among the members of this role only")
	flag.IntVar(&o.partitions, "partitions", 12, "how many partitions")
	flag.DurationVar(&o.interval, "interval", 500*time.Millisecond, "how often to look at the members file")
	flag.BoolVar(&o.once, "once", false, "print this node's share and exit")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "partitions:", err)
		os.Exit(1)
	}
}

// run prints this node's share, then (unless once) again at every change.
func run(ctx context.Context, o options, w io.Writer) error {
	self, err := selfName(o.self)
	if err != nil {
		return err
	}
	var last []int
	first := true
	for {
		v, err := readView(o.members)
		if err != nil && (o.once || first) {
			return err
		}
		if err == nil {
			owners := alive(v, o.role)
			owned := share(owners, self, o.partitions)
			if first || !slices.Equal(owned, last) {
				fmt.Fprintf(w, "version=%d members=%d owned=%s\n", v.Version, len(owners), join(owned))
				last, first = owned, false
			}
		}
		if o.once {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.interval):
		}
	}
}

func selfName(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var s struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(b, &s); err != nil || s.Name == "" {
		return "", fmt.Errorf("%s: no name (%v)", path, err)
	}
	return s.Name, nil
}

func readView(path string) (view, error) {
	var v view
	b, err := os.ReadFile(path)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// alive lists the alive members of role (any if ""), in the file's order
// (by name).
func alive(v view, role string) []string {
	var out []string
	for _, m := range v.Members {
		if m.Status == "alive" && (role == "" || m.Role == role) {
			out = append(out, m.Name)
		}
	}
	return out
}

// share is the partitions of self: p such that owners[p mod n] is self.
func share(owners []string, self string, partitions int) []int {
	i := slices.Index(owners, self)
	if i < 0 {
		return nil
	}
	var out []int
	for p := i; p < partitions; p += len(owners) {
		out = append(out, p)
	}
	return out
}

func join(ps []int) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(p)
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}
