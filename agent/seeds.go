package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Seed list formats of `clusterctl-agent seeds`.
const (
	SeedsAkka  = "akka"  // akka.cluster.seed-nodes = ["akka://SYSTEM@host:port", ...]
	SeedsPlain = "plain" // host:port, one a line
	SeedsJSON  = "json"  // ["host:port", ...]
)

// SeedFormats are the formats WriteSeeds knows.
var SeedFormats = []string{SeedsAkka, SeedsPlain, SeedsJSON}

// WriteSeeds writes seeds (host:port) to w in format; system is the Akka
// actor system's name (akka only).
func WriteSeeds(w io.Writer, format, system string, seeds []string) error {
	switch format {
	case SeedsAkka:
		quoted := make([]string, len(seeds))
		for i, s := range seeds {
			quoted[i] = strconv.Quote("akka://" + system + "@" + s)
		}
		_, err := fmt.Fprintf(w, "akka.cluster.seed-nodes = [%s]\n", strings.Join(quoted, ", "))
		return err
	case SeedsPlain:
		for _, s := range seeds {
			if _, err := fmt.Fprintln(w, s); err != nil {
				return err
			}
		}
		return nil
	case SeedsJSON:
		if seeds == nil {
			seeds = []string{}
		}
		b, _ := json.Marshal(seeds)
		_, err := fmt.Fprintf(w, "%s\n", b)
		return err
	}
	return fmt.Errorf("seed format %q is not one of %s", format, strings.Join(SeedFormats, ", "))
}
