package publicip

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/clusterctl/clusterctl/internal/usererr"
)

func TestSourceDetectsOnceOrUsesTheList(t *testing.T) {
	t.Setenv(EnvURL, "")
	srv, hits := answering(t, 200, "203.0.113.7\n")
	s := &Source{Key: "ec2.api_from", Options: Options{URLs: []string{srv.URL}}}
	for range 3 {
		got, err := s.Prefixes(context.Background())
		if err != nil || len(got) != 1 || got[0].String() != "203.0.113.7/32" {
			t.Fatalf("Prefixes = %v, %v; want the detected 203.0.113.7/32", got, err)
		}
	}
	if n := *hits; n != 1 {
		t.Errorf("the endpoint was asked %d times, want once", n)
	}

	listed := &Source{Key: "ec2.api_from", Listed: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, Options: Options{URLs: []string{srv.URL}}}
	if got, err := listed.Prefixes(context.Background()); err != nil || len(got) != 1 || got[0].String() != "198.51.100.0/24" {
		t.Fatalf("Prefixes with a list = %v, %v; want the list", got, err)
	}
	if n := *hits; n != 1 {
		t.Errorf("a listed source asked the endpoint (%d hits)", n)
	}
}

func TestSourceDetectionFailureNamesTheKey(t *testing.T) {
	t.Setenv(EnvURL, "")
	srv, _ := answering(t, 503, "busy")
	s := &Source{Key: "openstack.api_from", Options: Options{URLs: []string{srv.URL}}}
	_, err := s.Prefixes(context.Background())
	var ie *usererr.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error()+ie.Fix, "openstack.api_from") {
		t.Fatalf("err = %v; want bad input naming openstack.api_from", err)
	}
}
