package cloudinit

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/kdomanski/iso9660"
)

// readISO opens the ISO at path and returns its volume label and a map of
// file name to content for the files in its root directory.
func readISO(t *testing.T, path string) (string, map[string][]byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := iso9660.OpenImage(f)
	if err != nil {
		t.Fatalf("OpenImage: %v", err)
	}
	label, err := img.Label()
	if err != nil {
		t.Fatalf("Label: %v", err)
	}
	root, err := img.RootDir()
	if err != nil {
		t.Fatalf("RootDir: %v", err)
	}
	children, err := root.GetChildren()
	if err != nil {
		t.Fatalf("GetChildren: %v", err)
	}
	files := map[string][]byte{}
	for _, c := range children {
		data, err := io.ReadAll(c.Reader())
		if err != nil {
			t.Fatalf("reading %q: %v", c.Name(), err)
		}
		files[c.Name()] = data
	}
	return label, files
}

func TestWriteSeedISO(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "clusterctl-agent")
	agentData := bytes.Repeat([]byte("\x7fELF binary "), 1000) // spans several sectors
	if err := os.WriteFile(agent, agentData, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "agent-link")
	if err := os.Symlink(agent, link); err != nil {
		t.Fatal(err)
	}
	seed := Rendered{
		UserData:      []byte("#cloud-config\nhostname: red\n"),
		MetaData:      []byte("instance-id: i-1\nlocal-hostname: red\n"),
		NetworkConfig: []byte("version: 2\n"),
	}
	tests := []struct {
		name  string
		seed  Rendered
		agent string
		want  map[string][]byte
	}{
		{"all files", seed, agent, map[string][]byte{
			"user-data": seed.UserData, "meta-data": seed.MetaData,
			"network-config": seed.NetworkConfig, "agent": agentData,
		}},
		{"agent through symlink", seed, link, map[string][]byte{
			"user-data": seed.UserData, "meta-data": seed.MetaData,
			"network-config": seed.NetworkConfig, "agent": agentData,
		}},
		{"no network-config, no agent", Rendered{UserData: seed.UserData, MetaData: seed.MetaData}, "", map[string][]byte{
			"user-data": seed.UserData, "meta-data": seed.MetaData,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "seed.iso")
			if err := WriteSeedISO(path, tt.seed, tt.agent); err != nil {
				t.Fatalf("WriteSeedISO: %v", err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Errorf("mode = %v, want 0600", perm)
			}
			label, files := readISO(t, path)
			if label != "cidata" {
				t.Errorf("label = %q, want %q", label, "cidata")
			}
			if len(files) != len(tt.want) {
				t.Errorf("files on ISO = %d, want %d", len(files), len(tt.want))
			}
			for name, want := range tt.want {
				got, ok := files[name]
				if !ok {
					t.Errorf("file %q missing from ISO", name)
					continue
				}
				if !bytes.Equal(got, want) {
					t.Errorf("file %q: got %d bytes, want %d bytes (content differs)", name, len(got), len(want))
				}
			}
			assertNoTempFiles(t, filepath.Dir(path))
		})
	}
}

func TestWriteSeedISOErrorsLeaveOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "seed.iso")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	seed := Rendered{UserData: []byte("#cloud-config\n"), MetaData: []byte("instance-id: x\n")}
	tests := []struct {
		name  string
		seed  Rendered
		agent string
	}{
		{"missing agent", seed, filepath.Join(dir, "nope")},
		{"agent is a directory", seed, dir},
		{"no user-data", Rendered{MetaData: seed.MetaData}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := WriteSeedISO(path, tt.seed, tt.agent)
			if err == nil {
				t.Fatal("WriteSeedISO succeeded, want error")
			}
			got, rerr := os.ReadFile(path)
			if rerr != nil || string(got) != "old" {
				t.Errorf("existing file changed: %q, %v", got, rerr)
			}
			assertNoTempFiles(t, dir)
		})
	}
}

func TestWriteSeedISOUnwritableDir(t *testing.T) {
	err := WriteSeedISO(filepath.Join(t.TempDir(), "missing", "seed.iso"),
		Rendered{UserData: []byte("#cloud-config\n"), MetaData: []byte("instance-id: x\n")}, "")
	if err == nil {
		t.Fatal("WriteSeedISO into a missing directory succeeded")
	}
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, ".seed.iso.tmp-*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(matches) > 0 {
		t.Errorf("temporary files left behind: %v", matches)
	}
}
