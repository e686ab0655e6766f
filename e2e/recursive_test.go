//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/fibgate/fibgate/internal/lab"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// A next hop behind another route: an iBGP neighbour announces prefixes
// with its loopback as the next hop (what an iBGP session without
// next-hop-self, a route reflector's client or an eBGP multihop session
// gives), which the leaf reaches through a static route, as it would
// through an IGP.
//
//	          ┌── 10.0.1.0/30 ──┐
//	src (gobgpd 65001, lo 10.255.0.1) leaf (gated, 65001) ── 10.0.7.0/30 ── observer (gobgpd 65002)
//	          └── 10.0.2.0/30 ──┘
//
// The leaf writes each prefix through the static route's gateway (the
// kernel takes no gateway off a connected network), its sim programs it,
// and only then does the observer get it. The static route moves to the
// other link: the routes follow, and the observer keeps every prefix
// (the hardware forwards with the old entry until it has the new one);
// so does it when it becomes an onlink route through the source's
// loopback, on no connected network, as an IGP over unnumbered links
// installs it. The static route goes: the observer loses them, and the gate shows them
// refused, with the kernel's reason.
const (
	recLeafSrc1, recSrcLeaf1 = "10.0.1.1", "10.0.1.2"
	recLeafSrc2, recSrcLeaf2 = "10.0.2.1", "10.0.2.2"
	recLeafObs, recObs       = "10.0.7.1", "10.0.7.2"
	recPrefixes              = 20
)

// recSettings gates IPv4 on the sim with a latency the observer's clock
// can tell from an early release (notBeforeHardware).
var recSettings = strings.Replace(churnSettings, "latency: 1ms", "latency: 300ms", 1)

var (
	recLoopback = netip.MustParseAddr("10.255.0.1")
	recRange    = netip.MustParsePrefix("198.18.0.0/16") // the source's prefixes
)

func TestANextHopBehindAStaticRouteIsResolved(t *testing.T) { forEachLeaf(t, runRecursive) }

func runRecursive(t *testing.T, m leafMode) {
	src, obs := lab.NewNS(t, "src"), lab.NewNS(t, "obs")
	conf := lab.GobgpdConf{AS: churnLeafAS, RouterID: recLeafObs, Neighbours: []lab.Neighbour{
		{Address: recSrcLeaf1, AS: churnLeafAS}, {Address: recObs, AS: churnObserverAS}}}
	l := newGatedLeafWith(t, m, recSettings, conf, func(ns string) {
		lab.Link(t, ns, "to-src", recLeafSrc1, "fd00:1::1", src, "to-leaf", recSrcLeaf1, "fd00:1::2")
		lab.Link(t, ns, "to-src2", recLeafSrc2, "fd00:2::1", src, "to-leaf2", recSrcLeaf2, "fd00:2::2")
		lab.Link(t, ns, "to-obs", recLeafObs, "fd00:7::1", obs, "to-leaf", recObs, "fd00:7::2")
		lab.IP(t, ns, "route", "add", recLoopback.String()+"/32", "via", recSrcLeaf1, "proto", "static")
	})
	lab.IP(t, src, "addr", "add", recLoopback.String()+"/32", "dev", "lo")
	lab.IP(t, src, "link", "set", "lo", "up")
	source := lab.StartGobgpd(t, src, lab.ActiveSpeakerConf(churnLeafAS, recSrcLeaf1, lab.Neighbour{Address: recLeafSrc1, AS: churnLeafAS}))
	srcAPI := api.NewGobgpApiClient(source.Dial(t))
	waitSession(t, srcAPI, recLeafSrc1)
	observer := lab.StartGobgpd(t, obs, lab.ActiveSpeakerConf(churnObserverAS, recObs, lab.Neighbour{Address: recLeafObs, AS: churnLeafAS}))
	obsConn := observer.Dial(t)
	waitSession(t, api.NewGobgpApiClient(obsConn), recLeafObs)
	watch := lab.WatchBest(t, obsConn)

	var ps []netip.Prefix
	for i := range recPrefixes {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i), 0}), 24))
	}
	kroutes := lab.WatchRoutes(t, l.ns, recRange, 254, mirrorTable)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := lab.AnnounceIPv4(ctx, srcAPI, ps, recLoopback); err != nil {
		t.Fatal(err)
	}
	allVia := func(want string) func() error {
		return func() error {
			routes := l.bgpRoutesByPrefix(t)
			for _, p := range ps {
				if !strings.Contains(routes[p], want) {
					return fmt.Errorf("%v in the leaf's kernel: %q, want %q", p, routes[p], want)
				}
			}
			return nil
		}
	}
	lab.Eventually(t, 30*time.Second, "every prefix at the observer", allAt(watch, ps))
	lab.Eventually(t, 10*time.Second, "every route through the static route's gateway", allVia("via "+recSrcLeaf1+" dev to-src "))
	notBeforeHardware(t, kroutes, watch, start, ps)
	l.auditClean(t, "")

	// moveTo replaces the static route: every route follows it, and the
	// observer loses nothing (the hardware forwards with the old entry
	// until it has the new one) while the gate confirms them anew.
	moveTo := func(what, via string, args ...string) {
		t.Helper()
		moved := time.Now()
		lab.IP(t, l.ns, append([]string{"route", "replace", recLoopback.String() + "/32"}, args...)...)
		lab.Eventually(t, 20*time.Second, "every route "+what, allVia(via))
		lab.Eventually(t, 20*time.Second, "every prefix released on its new route", func() error {
			states, err := l.routesIn(context.Background(), recRange)
			if err != nil {
				return err
			}
			for _, p := range ps {
				if st := states[p]; st == nil || st.GetState() != pb.State_STATE_RELEASED || !st.GetConfirmedTime().AsTime().After(moved) {
					return fmt.Errorf("%v at the leaf: %v", p, st)
				}
			}
			return nil
		})
		for _, s := range watch.Since(moved) {
			if !s.Present {
				t.Errorf("the observer lost %v at %s when the static route moved %s", s.P, clock(s.At), what)
			}
		}
		l.auditClean(t, "after the move "+what)
	}
	// To the other link.
	moveTo("to the other link", "via "+recSrcLeaf2+" dev to-src2", "via", recSrcLeaf2, "proto", "static")
	// Unnumbered, as an IGP over unnumbered links installs it: through
	// the source's loopback itself, on no connected network, onlink.
	moveTo("onlink through the loopback", "via "+recLoopback.String()+" dev to-src2 metric 20 onlink",
		"via", recLoopback.String(), "dev", "to-src2", "onlink", "proto", "static")

	// The static route goes: nothing resolves the next hop any more.
	lab.IP(t, l.ns, "route", "del", recLoopback.String()+"/32")
	lab.Eventually(t, 20*time.Second, "every prefix gone from the observer and refused at the leaf", func() error {
		for _, p := range ps {
			if watch.Has(p) {
				return fmt.Errorf("%v still at the observer", p)
			}
		}
		states, err := l.routesIn(context.Background(), recRange)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if st := states[p]; st == nil || st.GetState() != pb.State_STATE_REFUSED {
				return fmt.Errorf("%v at the leaf: %v", p, st)
			}
		}
		return nil
	})
}
