package cloudinit

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kdomanski/iso9660"

	"github.com/clusterctl/clusterctl/internal/atomicfile"
)

// SeedLabel is the volume label cloud-init's NoCloud datasource looks for.
const SeedLabel = "cidata"

// Names of the files on the seed ISO. The agent binary is called "agent";
// the rendered user-data installs it from there (AgentSource Kind "seed").
const (
	FileUserData      = "user-data"
	FileMetaData      = "meta-data"
	FileNetworkConfig = "network-config"
	FileAgent         = "agent"
)

// WriteSeedISO writes a NoCloud seed ISO (volume label "cidata") to path. It
// holds user-data and meta-data, network-config when seed.NetworkConfig is
// not nil, and, when agentBinary is not empty, that file's content as
// "agent". The image is written to a temporary file in path's directory and
// renamed into place, so path is either the old file or the complete new one.
// The file has mode 0600: the user-data carries the cluster's gossip key.
func WriteSeedISO(path string, seed Rendered, agentBinary string) error {
	if seed.UserData == nil || seed.MetaData == nil {
		return fmt.Errorf("seed ISO %q: user-data and meta-data are required", path)
	}
	w, err := iso9660.NewWriter()
	if err != nil {
		return fmt.Errorf("seed ISO %q: staging: %w", path, err)
	}
	defer w.Cleanup()
	if err := stageSeed(w, seed, agentBinary); err != nil {
		return fmt.Errorf("seed ISO %q: %w", path, err)
	}
	if err := atomicfile.Write(path, 0o600, func(out io.Writer) error {
		bw := bufio.NewWriterSize(out, 256<<10)
		if err := w.WriteTo(bw, SeedLabel); err != nil {
			return err
		}
		return bw.Flush()
	}); err != nil {
		return fmt.Errorf("seed ISO %q: %w", path, err)
	}
	return nil
}

// stageSeed adds the seed documents and the agent binary to w.
func stageSeed(w *iso9660.ImageWriter, seed Rendered, agentBinary string) error {
	files := []struct {
		name string
		data []byte
	}{
		{FileUserData, seed.UserData},
		{FileMetaData, seed.MetaData},
		{FileNetworkConfig, seed.NetworkConfig},
	}
	for _, f := range files {
		if f.data == nil {
			continue
		}
		if err := w.AddFile(bytes.NewReader(f.data), f.name); err != nil {
			return fmt.Errorf("adding %q: %w", f.name, err)
		}
	}
	if agentBinary == "" {
		return nil
	}
	return stageAgent(w, agentBinary)
}

// stageAgent adds the agent binary as "agent". Symlinks are resolved first
// (the ISO writer refuses them); the writer hard-links when it can.
func stageAgent(w *iso9660.ImageWriter, agentBinary string) error {
	real, err := filepath.EvalSymlinks(agentBinary)
	if err != nil {
		return fmt.Errorf("agent binary %q: %w", agentBinary, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return fmt.Errorf("agent binary %q: %w", agentBinary, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("agent binary %q: not a regular file", agentBinary)
	}
	if err := w.AddLocalFile(real, FileAgent); err != nil {
		return fmt.Errorf("adding agent binary %q: %w", agentBinary, err)
	}
	return nil
}
