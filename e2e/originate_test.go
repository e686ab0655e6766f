//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/lab"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// sidecarLeaf starts a stock gobgpd with the fallback policy of settings
// in its config (first in its export chain, as deploy/ packages it) and
// fibgated on it, in the namespace ns. settings is a format with one %s,
// the API socket.
func sidecarLeaf(t *testing.T, name, ns string, conf lab.GobgpdConf, settings string) *leaf {
	t.Helper()
	bin := binaries(t)
	lab.GobgpBinaries(t)
	l := &leaf{name: name, ns: ns, as: conf.AS, dir: dir(t), owner: t}
	l.api = filepath.Join(l.dir, "fibgate.sock")
	file := filepath.Join(l.dir, "fibgate.yaml")
	if err := os.WriteFile(file, fmt.Appendf(nil, settings, l.api), 0o644); err != nil {
		t.Fatal(err)
	}
	fallback, err := exec.Command(filepath.Join(bin, "fibgated"), "--print-fallback", "-c", file).Output()
	if err != nil {
		t.Fatalf("fibgated --print-fallback: %v", err)
	}
	conf.Extra = string(fallback) + conf.Extra
	if !strings.Contains(conf.Extra, "[global.apply-policy.config]") {
		conf.Extra += "[global.apply-policy.config]\n  export-policy-list = [\"fibgate-fallback\"]\n  default-export-policy = \"accept-route\"\n"
	}
	l.gobgpd = lab.StartGobgpd(t, ns, conf.String())
	l.start = func(tb testing.TB) *lab.Process {
		return lab.Start(tb, l.ns, l.dir, fmt.Sprintf("fibgated.%d", l.starts), filepath.Join(bin, "fibgated"),
			"--gobgpd", l.gobgpd.Target, "-c", file)
	}
	l.run(t)
	return l
}

// TestOriginatedRouteWithAGatewayReachesAnEBGPNeighbour is issue 12 #6: a
// static kernel route via a gateway, originated by fibgated, used to go out
// with that gateway as its BGP next hop, which an eBGP neighbour on another
// link cannot reach and rejects (BIRD: "Invalid NEXT_HOP attribute"),
// while fibgate said "advertised". Now originated prefixes go out with
// next hop self, and the state says only what fibgate knows: released to
// GoBGP.
//
//	gw (10.0.7.2) ── leaf (stock gobgpd + fibgated, AS 65001) ── bird (AS 65010)
func TestOriginatedRouteWithAGatewayReachesAnEBGPNeighbour(t *testing.T) {
	if testing.Short() {
		t.Skip("namespaces, gobgpd and BIRD: skipped in -short mode")
	}
	lab.RequireRoot(t)
	lab.RequireBird(t)
	leafNS, gw, birdNS := lab.NewNS(t, "leaf"), lab.NewNS(t, "gw"), lab.NewNS(t, "bird")
	lab.Link(t, leafNS, "to-gw", "10.0.7.1", "fd00:7::1", gw, "to-leaf", "10.0.7.2", "fd00:7::2")
	lab.Link(t, leafNS, "to-bird", "10.0.6.1", "fd00:6::1", birdNS, "to-leaf", "10.0.6.2", "fd00:6::2")

	l := sidecarLeaf(t, "leaf", leafNS, lab.GobgpdConf{AS: 65001, RouterID: "10.0.6.1",
		Neighbours: []lab.Neighbour{{Address: "10.0.6.2", AS: 65010}}}, `log_level: info
notify_mode: "1"
backend:
  type: sim
  sim:
    latency: 1ms
api:
  socket: %s
bgp:
  originate_protocols: [static]
`)
	bird := lab.StartBird(t, birdNS, `router id 10.0.6.2;
protocol device {}
protocol bgp leaf {
  local 10.0.6.2 as 65010;
  neighbor 10.0.6.1 as 65001;
  ipv4 { import all; export none; };
}
`)
	p := netip.MustParsePrefix("198.51.100.0/24")
	l.ip(t, "route", "add", p.String(), "via", "10.0.7.2", "proto", "static")

	var got string
	lab.Eventually(t, 30*time.Second, "BIRD imports "+p.String(), func() error {
		out, err := bird.Birdc("show", "route", "for", p.String(), "all")
		if err != nil {
			return err
		}
		if !strings.Contains(out, p.String()) {
			b, _ := os.ReadFile(bird.Log)
			return fmt.Errorf("not in BIRD's table: %s\nBIRD's log:\n%s", out, b)
		}
		got = out
		return nil
	})
	// Next hop self: the leaf's address on the link to BIRD, not the
	// gateway 10.0.7.2 behind it.
	if !strings.Contains(got, "BGP.next_hop: 10.0.6.1") || strings.Contains(got, "10.0.7.2") {
		t.Errorf("BIRD has %v with the wrong next hop (want 10.0.6.1, self):\n%s", p, got)
	}
	r, err := l.route(p)
	if err != nil {
		t.Fatal(err)
	}
	if r.GetState() != pb.State_STATE_RELEASED {
		t.Errorf("fibgate says %s for %v, want %s", r.GetState(), p, pb.State_STATE_RELEASED)
	}
	if b, _ := os.ReadFile(bird.Log); strings.Contains(string(b), "Invalid NEXT_HOP") {
		t.Errorf("BIRD refused a next hop:\n%s", b)
	}
}
