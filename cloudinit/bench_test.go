package cloudinit

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// benchAgentSource is a small program that pulls in net/http and
// encoding/json, so that its binary is about as large as a real agent's.
const benchAgentSource = `package main

import (
	"encoding/json"
	"net/http"
	"os"
)

func main() {
	json.NewEncoder(os.Stdout).Encode(http.StatusText(200))
	http.ListenAndServe("127.0.0.1:0", nil)
}
`

// buildBenchAgent compiles benchAgentSource into dir and returns the path.
func buildBenchAgent(b *testing.B, dir string) string {
	b.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		b.Skipf("go is not on PATH: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(benchAgentSource), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module benchagent\n\ngo 1.22\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "agent")
	cmd := exec.Command(goBin, "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("building the benchmark agent: %v\n%s", err, msg)
	}
	return out
}

// BenchmarkWriteSeedISO writes a seed ISO with rendered documents and a
// real Go binary as the agent. SetBytes is the ISO's size, so MB/s is the
// write rate; B/op and allocs/op show the Go heap the writer needs.
func BenchmarkWriteSeedISO(b *testing.B) {
	dir := b.TempDir()
	agent := buildBenchAgent(b, dir)
	r, err := Render(sampleInput())
	if err != nil {
		b.Fatal(err)
	}
	seed := r
	path := filepath.Join(dir, "seed.iso")
	if err := WriteSeedISO(path, seed, agent); err != nil {
		b.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	ai, err := os.Stat(agent)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := WriteSeedISO(path, seed, agent); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(ai.Size()), "agent-bytes")
}

// BenchmarkRender renders the sample node's documents.
func BenchmarkRender(b *testing.B) {
	in := sampleInput()
	in.Extra = []byte(schemaExtra)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Render(in); err != nil {
			b.Fatal(err)
		}
	}
}
