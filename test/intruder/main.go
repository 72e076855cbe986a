// Command intruder is a test tool: a plain hashicorp/serf member, as anyone
// who holds the cluster's gossip key and label can run, with no identity
// from the cluster's CA. The agent's process tests run it in a network
// namespace to check what such a sender can make real agents do. It runs
// one serf member per -member flag ("name|advertise|tags" with tags as
// k=v;k=v), each bound to -bind on a free port, joins -join with each, and,
// with -planted, runs serf's key manager (install and use the planted key,
// remove the cluster's key). It prints one line per outcome and stays up
// for -stay.
package main

import (
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

type members []string

func (m *members) String() string     { return strings.Join(*m, ",") }
func (m *members) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	var (
		ms      members
		bind    = flag.String("bind", "127.0.0.1", "address to bind")
		key     = flag.String("key", "", "gossip key, base64")
		label   = flag.String("label", "", "memberlist label (the cluster name)")
		join    = flag.String("join", "", "host:port of an agent")
		planted = flag.String("planted", "", "base64 key to plant with serf's key manager")
		stay    = flag.Duration("stay", 10*time.Second, "how long to stay up")
	)
	flag.Var(&ms, "member", `"name|advertise|k=v;k=v" (repeatable)`)
	flag.Parse()
	k, err := base64.StdEncoding.DecodeString(*key)
	if err != nil {
		fail(err)
	}
	var all []*serf.Serf
	for _, spec := range ms {
		parts := strings.SplitN(spec, "|", 3)
		if len(parts) != 3 {
			fail(fmt.Errorf("bad -member %q", spec))
		}
		tags := map[string]string{}
		for _, kv := range strings.Split(parts[2], ";") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				tags[k] = v
			}
		}
		kr, err := memberlist.NewKeyring(nil, k)
		if err != nil {
			fail(err)
		}
		sc := serf.DefaultConfig()
		sc.NodeName, sc.Tags, sc.LogOutput = parts[0], tags, io.Discard
		sc.MemberlistConfig = memberlist.DefaultLANConfig()
		mc := sc.MemberlistConfig
		mc.Name, mc.Label, mc.Keyring, mc.LogOutput = parts[0], *label, kr, io.Discard
		mc.BindAddr, mc.BindPort = *bind, 0
		mc.AdvertiseAddr = parts[1]
		s, err := serf.Create(sc)
		if err != nil {
			fail(err)
		}
		all = append(all, s)
		n, err := s.Join([]string{*join}, true)
		fmt.Printf("member %q joined=%d err=%v\n", parts[0], n, err)
	}
	if *planted != "" && len(all) > 0 {
		km := all[0].KeyManager()
		r, err := km.InstallKey(*planted)
		fmt.Printf("install-key answered=%d of %d err=%v\n", resp(r), nodes(r), err)
		r, err = km.UseKey(*planted)
		fmt.Printf("use-key answered=%d of %d err=%v\n", resp(r), nodes(r), err)
		r, err = km.RemoveKey(*key)
		fmt.Printf("remove-key answered=%d of %d err=%v\n", resp(r), nodes(r), err)
	}
	time.Sleep(*stay)
	for _, s := range all {
		_ = s.Shutdown()
	}
}

func resp(r *serf.KeyResponse) int {
	if r == nil {
		return 0
	}
	return r.NumResp
}

func nodes(r *serf.KeyResponse) int {
	if r == nil {
		return 0
	}
	return r.NumNodes
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "intruder:", err)
	os.Exit(2)
}
