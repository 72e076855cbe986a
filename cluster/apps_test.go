package cluster_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clusterctl/clusterctl/cluster"
	"github.com/clusterctl/clusterctl/internal/usererr"
	"github.com/clusterctl/clusterctl/provider/fake"
)

func TestAppConfigErrorsAreBadInput(t *testing.T) {
	for name, text := range map[string]string{
		"role not a label": "node:\n  role: Worker_1\n",
		"handler event":    "handlers:\n  - on: [member-joined]\n    run: /usr/local/bin/h\n",
		"handler path":     "handlers:\n  - on: [member-join]\n    run: h.sh\n",
		"handler role":     "handlers:\n  - on: [member-join]\n    role: A\n    run: /h\n",
		"tags over budget": "node:\n  tags:\n    big: " + strings.Repeat("x", 300) + "\n",
		"role over budget": "node:\n  role: w\n  tags:\n    a: " + strings.Repeat("x", 60) + "\n    b: " + strings.Repeat("x", 60) + "\n    c: " + strings.Repeat("x", 60) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := cluster.LoadConfig(writeConfig(t, text), true)
			var in *usererr.InputError
			if !errors.As(err, &in) || in.Fix == "" {
				t.Fatalf("error %v: want an input error with a fix", err)
			}
		})
	}
	cfg, err := cluster.LoadConfig(writeConfig(t, "node:\n  role: worker\n  tags:\n    zone: a\nhandlers:\n  - on: [member-join, member-failed]\n    role: worker\n    run: /etc/clusterctl/on-change\n    timeout: 10s\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Node.Role != "worker" || len(cfg.Handlers) != 1 || cfg.Handlers[0].Timeout != 10*time.Second || cfg.Handlers[0].On[1] != "member-failed" {
		t.Errorf("config: %+v %+v", cfg.Node, cfg.Handlers)
	}
}

func TestUpRoleRendersAndStatusShowsIt(t *testing.T) {
	p, b := bootingFake(t)
	m, _ := newManager(t, p, "node:\n  tags:\n    zone: a\nhandlers:\n  - on: [member-failed]\n    role: worker\n    run: /etc/clusterctl/on-fail\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := m.Up(ctx, cluster.UpRequest{Names: []string{"red", "blue"}, Role: "worker"}); err != nil {
		t.Fatalf("up: %v", err)
	}
	if _, err := m.Up(ctx, cluster.UpRequest{Names: []string{"boss"}}); err != nil {
		t.Fatalf("up: %v", err)
	}
	if c := b.configs["red"]; c.AppRole != "worker" || len(c.Handlers) != 1 || c.Handlers[0].Run != "/etc/clusterctl/on-fail" || c.Tags["zone"] != "a" {
		t.Errorf("red's agent config: role %q handlers %+v tags %v", c.AppRole, c.Handlers, c.Tags)
	}
	if c := b.configs["boss"]; c.AppRole != "" {
		t.Errorf("boss's role %q, want none", c.AppRole)
	}
	rep, err := m.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]string{}
	for _, n := range rep.Nodes {
		roles[n.Name] = n.Role
		if n.Tags["zone"] != "a" {
			t.Errorf("%s tags %v", n.Name, n.Tags)
		}
	}
	if roles["red"] != "worker" || roles["blue"] != "worker" || roles["boss"] != "" {
		t.Errorf("status roles: %v", roles)
	}
}

func TestUpRefusesBadRoleAndTagsOverBudgetBeforeMakingAnything(t *testing.T) {
	// The longest tag value that cluster.yaml validation lets through
	// (with its nominal node name) no longer fits a 63-character name.
	n := 0
	for ; n < 512; n++ {
		if _, err := cluster.LoadConfig(writeConfig(t, "node:\n  tags:\n    t: "+strings.Repeat("x", n+1)+"\n"), true); err != nil {
			break
		}
	}
	if n == 512 {
		t.Fatal("no tag was too big for the config")
	}
	long := strings.Repeat("n", 63)
	for name, tc := range map[string]struct {
		cfg string
		req cluster.UpRequest
	}{
		"bad role":    {"", cluster.UpRequest{Names: []string{"red"}, Role: "Worker"}},
		"over budget": {"node:\n  tags:\n    t: " + strings.Repeat("x", n) + "\n", cluster.UpRequest{Names: []string{long}}},
	} {
		t.Run(name, func(t *testing.T) {
			p := fake.New()
			m, _ := newManager(t, p, tc.cfg)
			_, err := m.Up(context.Background(), tc.req)
			var in *usererr.InputError
			if !errors.As(err, &in) {
				t.Fatalf("error %v: want an input error", err)
			}
			if len(p.Calls) > 0 && strings.HasPrefix(p.Calls[0], "Create") {
				t.Errorf("provider was asked to create: %v", p.Calls)
			}
		})
	}
}
