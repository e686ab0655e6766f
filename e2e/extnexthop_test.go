//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/fibgate/fibgate/internal/lab"
)

// IPv4 prefixes with an IPv6 next hop (RFC 8950, which replaced RFC 5549),
// as a fabric with an IPv6-only underlay carries them: the link between
// the source and the leaf has no IPv4 address at all.
//
//	src (FRR 65010) ── fd00:8::/64 only ── leaf (gated, 65001) ── 10.0.7.0/30 ── observer (gobgpd 65020)
//
// The leaf must install each IPv4 prefix through the IPv6 neighbour (the
// kernel's RTA_VIA: "via inet6"), its simulated ASIC (spectrum mode, which
// offloads a route only once the IPv6 neighbour is resolved) must program
// it, and only then may the observer have it; a withdrawal takes it out
// of both.
const (
	extnhLeafSrc, extnhSrcLeaf = "fd00:8::1", "fd00:8::2"
	extnhLeafObs, extnhObs     = "10.0.7.1", "10.0.7.2"

	extnhSourceAS, extnhObserverAS = 65010, 65020
	extnhPrefixes                  = 20
	extnhLatency                   = 300 * time.Millisecond
)

// extnhSettings gates IPv4 on the sim in spectrum mode with a latency the
// observer's clock can tell from an early release.
var extnhSettings = fmt.Sprintf(`log_level: info
notify_mode: "1"
backend:
  type: sim
  sim:
    mode: spectrum
    latency: %s
api:
  socket: %%s
policy:
  scopes:
    - name: v4
      family: ipv4
`, extnhLatency)

func TestIPv4PrefixesOverAnIPv6NextHop(t *testing.T) {
	lab.RequireFRR(t)
	forEachLeaf(t, runIPv4OverIPv6)
}

func runIPv4OverIPv6(t *testing.T, m leafMode) {
	src, obs := lab.NewNS(t, "src"), lab.NewNS(t, "obs")
	both := []string{"ipv4", "ipv6"}
	conf := lab.GobgpdConf{AS: churnLeafAS, RouterID: extnhLeafObs, Neighbours: []lab.Neighbour{
		{Address: extnhSrcLeaf, AS: extnhSourceAS, Families: both}, {Address: extnhObs, AS: extnhObserverAS}}}
	l := newGatedLeafWith(t, m, extnhSettings, conf, func(ns string) {
		lab.IP(t, ns, "link", "add", "to-src", "type", "veth", "peer", "name", "to-leaf", "netns", src)
		lab.IP(t, ns, "-6", "addr", "add", extnhLeafSrc+"/64", "dev", "to-src", "nodad")
		lab.IP(t, src, "-6", "addr", "add", extnhSrcLeaf+"/64", "dev", "to-leaf", "nodad")
		lab.IP(t, ns, "link", "set", "to-src", "up")
		lab.IP(t, src, "link", "set", "to-leaf", "up")
		lab.Link(t, ns, "to-obs", extnhLeafObs, "fd00:7::1", obs, "to-leaf", extnhObs, "fd00:7::2")
	})
	observer := lab.StartGobgpd(t, obs, lab.ActiveSpeakerConf(extnhObserverAS, extnhObs, lab.Neighbour{Address: extnhLeafObs, AS: churnLeafAS}))
	obsConn := observer.Dial(t)
	waitSession(t, api.NewGobgpApiClient(obsConn), extnhLeafObs)
	watch := lab.WatchBest(t, obsConn)

	var ps []netip.Prefix
	for i := range extnhPrefixes {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i), 0}), 24))
	}
	kroutes := lab.WatchRoutes(t, l.ns, netip.MustParsePrefix("198.18.0.0/16"), 254, mirrorTable)
	start := time.Now()
	frr := lab.StartFRR(t, src, extnhSourceAS, lab.BGPConfig(extnhSourceAS, "10.255.0.1",
		[]lab.Neighbour{{Address: extnhLeafSrc, AS: churnLeafAS, Families: both}}, ps))
	frr.WaitEstablished(extnhLeafSrc, 30*time.Second)

	lab.Eventually(t, 30*time.Second, "every prefix at the observer", allAt(watch, ps))
	// Installed through the IPv6 neighbour, in the kernel and so in the
	// sim's hardware.
	routes := l.bgpRoutesByPrefix(t)
	for _, p := range ps {
		if want := "via inet6 " + extnhSrcLeaf + " dev to-src"; !strings.Contains(routes[p], want) {
			t.Errorf("%v in the leaf's kernel: %q, want %q", p, routes[p], want)
		}
	}
	notBeforeHardware(t, kroutes, watch, start, ps)
	// The audit compares GoBGP's IPv6 next hops with the kernel's RTA_VIA
	// routes and the sim's flags.
	l.auditClean(t, "")

	// A withdrawal takes the prefix out of the observer and the kernel.
	gone := ps[0]
	frr.Announce(gone, true)
	lab.Eventually(t, 20*time.Second, fmt.Sprintf("%v withdrawn at the observer and the leaf", gone), func() error {
		if watch.Has(gone) {
			return fmt.Errorf("still at the observer")
		}
		for _, line := range l.kernelBGPRoutes(t) {
			if strings.HasPrefix(line, gone.String()+" ") {
				return fmt.Errorf("still in the leaf's kernel: %s", line)
			}
		}
		return nil
	})
}
