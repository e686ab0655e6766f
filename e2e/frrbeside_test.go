//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/lab"
)

// TestFRRBesideTheLeafKeepsItsRoutes: FRR on the leaf itself (a BGP
// underlay, or any other use of FRR there) learns a prefix from its own
// neighbour, and its zebra writes it as protocol bgp with metric 20, the
// FIB installer's defaults, over a nexthop object. The gated leaf runs
// with those defaults, is stopped (its flush) and started again (its
// reconcile): FRR's route stays in the kernel throughout, and the leaf
// says that another daemon writes as its installer does.
func TestFRRBesideTheLeafKeepsItsRoutes(t *testing.T) {
	lab.RequireFRR(t)
	forLeaves(t, leafModes[:2], runFRRBeside) // gobgpd-ext, and gobgpd with fibgated
}

func runFRRBeside(t *testing.T, m leafMode) {
	const leafFRRAS, peerAS = 65031, 65030
	underlay := netip.MustParsePrefix("100.70.0.0/24")
	peer := lab.NewNS(t, "frrpeer")
	// GoBGP listens on 1790: FRR's bgpd has 179 in the same namespace.
	conf := lab.GobgpdConf{AS: churnLeafAS, RouterID: "10.0.9.1", Port: 1790}
	l := newGatedLeaf(t, m, conf, func(ns string) {
		lab.Link(t, ns, "to-frrpeer", "10.0.9.1", "fd00:9::1", peer, "to-leaf", "10.0.9.2", "fd00:9::2")
	})
	lab.StartFRR(t, peer, peerAS, lab.BGPConfig(peerAS, "10.0.9.2", []lab.Neighbour{{Address: "10.0.9.1", AS: leafFRRAS}}, []netip.Prefix{underlay}))
	lab.StartFRR(t, l.ns, leafFRRAS, lab.BGPConfig(leafFRRAS, "10.0.9.1", []lab.Neighbour{{Address: "10.0.9.2", AS: peerAS}}, nil))
	frrRoute := func() string {
		out, _ := exec.Command("ip", "-n", l.ns, "route", "show", underlay.String()).Output()
		return strings.TrimSpace(string(out))
	}
	lab.Eventually(t, 60*time.Second, "FRR's route in the leaf's kernel", func() error {
		if got := frrRoute(); !strings.Contains(got, "proto bgp") || !strings.Contains(got, "metric 20") || !strings.Contains(got, "nhid") {
			return fmt.Errorf("ip route show %v: %q, want FRR's (proto bgp metric 20, over a nexthop object)", underlay, got)
		}
		return nil
	})

	if code := l.proc.SignalAndWait(t, syscall.SIGTERM, 60*time.Second); code != 0 {
		t.Fatalf("%s exit status %d, want 0", m.name, code)
	}
	if got := frrRoute(); !strings.Contains(got, "nhid") {
		t.Fatalf("after the leaf's stop (its flush) FRR's route is %q, want it kept", got)
	}
	l.run(t)
	const warning = "another daemon writes routes as the FIB installer's"
	lab.Eventually(t, 30*time.Second, "the leaf's warning", func() error {
		b, _ := os.ReadFile(l.proc.Log)
		if !strings.Contains(string(b), warning) {
			return fmt.Errorf("not in %s yet", l.proc.Log)
		}
		return nil
	})
	if got := frrRoute(); !strings.Contains(got, "nhid") {
		t.Errorf("after the leaf's start (its reconcile) FRR's route is %q, want it kept", got)
	}
}
