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
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/fibgate/fibgate/internal/lab"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// Make-before-break (issue 14 #1): an ECMP leaf loses one of its spines.
//
//	spine1 (gobgpd 65000) ─┐
//	                       ├─ leaf (the gate under test, 65001, multipath) ── observer (gobgpd 65002)
//	spine2 (gobgpd 65000) ─┘
//
// Both spines announce the same prefixes with the same attributes, so the
// leaf forwards over both and the observer receives one path per prefix.
// With the leaf's sim at 300 ms, spine1's session goes down: every route
// is replaced by one over spine2 alone, which the sim programs 300 ms
// later. Meanwhile the leaf's ASIC still forwards with the old entry, and
// neighbours receive nothing new (the same attributes), so the observer
// must never lose a prefix; the gate shows the replacement pending behind
// the kept advertisement, then confirms the new route.
const (
	mbbSpineAS = 65000

	mbbLeafS1, mbbS1Leaf = "10.0.5.1", "10.0.5.2"
	mbbLeafS2, mbbS2Leaf = "10.0.6.1", "10.0.6.2"
	mbbLeafObs, mbbObs   = "10.0.7.1", "10.0.7.2"

	mbbPrefixes = 500
	mbbLatency  = 300 * time.Millisecond
)

func TestMakeBeforeBreak(t *testing.T) { forEachLeaf(t, runMakeBeforeBreak) }

// forEachLeaf runs a make-before-break scenario on every gated leaf
// (leafModes): gobgpd-ext, gobgpd + fibgated, gobgpd-ext releasing by copy.
func forEachLeaf(t *testing.T, run func(t *testing.T, m leafMode)) { forLeaves(t, leafModes, run) }

// forLeaves runs a scenario on each of the gated leaves modes, skipped in
// -short mode and without root.
func forLeaves(t *testing.T, modes []leafMode, run func(t *testing.T, m leafMode)) {
	if testing.Short() {
		t.Skip("end-to-end with namespaces and four BGP speakers: skipped in -short mode")
	}
	lab.RequireRoot(t)
	binaries(t)
	lab.GobgpBinaries(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { run(t, m) })
	}
}

// mbbLab is the make-before-break topology, sessions up.
type mbbLab struct {
	l      *leaf
	c1, c2 api.GobgpApiClient
	watch  *lab.BestWatch // the observer's best paths, with AS path lengths
	ps     []netip.Prefix
}

func newMBBLab(t *testing.T, m leafMode) *mbbLab {
	s1, s2, obs := lab.NewNS(t, "s1"), lab.NewNS(t, "s2"), lab.NewNS(t, "obs")
	conf := lab.GobgpdConf{AS: churnLeafAS, RouterID: mbbLeafS1, Neighbours: []lab.Neighbour{
		{Address: mbbS1Leaf, AS: mbbSpineAS}, {Address: mbbS2Leaf, AS: mbbSpineAS}, {Address: mbbObs, AS: churnObserverAS}},
		Extra: "[global.use-multiple-paths.config]\n  enabled = true\n"}
	x := &mbbLab{ps: lab.HostPrefixes(churnBase, mbbPrefixes)}
	x.l = newGatedLeaf(t, m, conf, func(ns string) {
		lab.Link(t, ns, "to-s1", mbbLeafS1, "fd00:5::1", s1, "to-leaf", mbbS1Leaf, "fd00:5::2")
		lab.Link(t, ns, "to-s2", mbbLeafS2, "fd00:6::1", s2, "to-leaf", mbbS2Leaf, "fd00:6::2")
		lab.Link(t, ns, "to-obs", mbbLeafObs, "fd00:7::1", obs, "to-leaf", mbbObs, "fd00:7::2")
	})
	spine := func(ns, addr string) api.GobgpApiClient {
		g := lab.StartGobgpd(t, ns, lab.ActiveSpeakerConf(mbbSpineAS, addr, lab.Neighbour{Address: strings.TrimSuffix(addr, "2") + "1", AS: churnLeafAS}))
		c := api.NewGobgpApiClient(g.Dial(t))
		waitSession(t, c, strings.TrimSuffix(addr, "2")+"1")
		return c
	}
	x.c1, x.c2 = spine(s1, mbbS1Leaf), spine(s2, mbbS2Leaf)
	observer := lab.StartGobgpd(t, obs, lab.ActiveSpeakerConf(churnObserverAS, mbbObs, lab.Neighbour{Address: mbbLeafObs, AS: churnLeafAS}))
	obsConn := observer.Dial(t)
	waitSession(t, api.NewGobgpApiClient(obsConn), mbbLeafObs)
	x.watch = lab.WatchBestASPaths(t, obsConn)
	return x
}

// settled waits until every prefix is programmed over n next hops in the
// leaf's hardware, released, and at the observer.
func (x *mbbLab) settled(t *testing.T, n int) {
	t.Helper()
	lab.Eventually(t, 60*time.Second, fmt.Sprintf("every prefix programmed over %d next hops and at the observer", n), func() error {
		if k, _ := x.watch.Count(); k != len(x.ps) {
			return fmt.Errorf("observer has %d of %d", k, len(x.ps))
		}
		states, err := x.l.churnRoutes(context.Background())
		if err != nil {
			return err
		}
		for _, p := range x.ps {
			st := states[p]
			if st == nil || len(st.GetNexthopFlags()) != n || st.GetState() != pb.State_STATE_RELEASED {
				return fmt.Errorf("%v at the leaf: %v", p, st)
			}
		}
		return nil
	})
}

// moved waits until every prefix is confirmed on a new route of one next
// hop after since, and returns when each was confirmed and which were
// seen pending behind their kept advertisement.
func (x *mbbLab) moved(t *testing.T, since time.Time) (confirmed map[netip.Prefix]time.Time, kept map[netip.Prefix]bool) {
	t.Helper()
	kept = map[netip.Prefix]bool{}
	lab.Eventually(t, 60*time.Second, "every prefix programmed on its new route", func() error {
		states, err := x.l.churnRoutes(context.Background())
		if err != nil {
			return err
		}
		confirmed = map[netip.Prefix]time.Time{}
		for _, p := range x.ps {
			st := states[p]
			if st == nil {
				continue
			}
			if strings.Contains(st.GetReason(), "make-before-break") {
				kept[p] = true
			}
			if len(st.GetNexthopFlags()) == 1 && st.GetConfirmedTime() != nil && st.GetConfirmedTime().AsTime().After(since) &&
				st.GetState() == pb.State_STATE_RELEASED {
				confirmed[p] = st.GetConfirmedTime().AsTime()
			}
		}
		if len(confirmed) != len(x.ps) {
			return fmt.Errorf("%d of %d on the new route", len(confirmed), len(x.ps))
		}
		return nil
	})
	return confirmed, kept
}

// lost returns the prefixes the observer lost after since, with when.
func (x *mbbLab) lost(since time.Time) map[netip.Prefix]time.Duration {
	lost := map[netip.Prefix]time.Duration{}
	for _, s := range x.watch.Since(since) {
		if _, seen := lost[s.P]; !s.Present && !seen {
			lost[s.P] = s.At.Sub(since)
		}
	}
	return lost
}

func describeLost(lost map[netip.Prefix]time.Duration) string {
	var eg []string
	for p, at := range lost {
		if len(eg) < 3 {
			eg = append(eg, fmt.Sprintf("%v at +%v", p, at.Round(time.Millisecond)))
		}
	}
	return strings.Join(eg, ", ")
}

func runMakeBeforeBreak(t *testing.T, m leafMode) {
	ctx := context.Background()
	name := m.name
	x := newMBBLab(t, m)
	for _, sp := range []struct {
		c  api.GobgpApiClient
		nh string
	}{{x.c1, mbbS1Leaf}, {x.c2, mbbS2Leaf}} {
		if err := lab.AnnounceIPv4(ctx, sp.c, x.ps, netip.MustParseAddr(sp.nh)); err != nil {
			t.Fatal(err)
		}
	}
	// Every prefix over both spines in the leaf's hardware, and out.
	x.settled(t, 2)

	x.l.setLatency(t, mbbLatency)
	fail := time.Now()
	if _, err := x.c1.DisablePeer(ctx, &api.DisablePeerRequest{Address: mbbLeafS1, Communication: "spine1 fails"}); err != nil {
		t.Fatal(err)
	}
	// The replacement pending behind the kept advertisement, then
	// confirmed: the mechanism is exercised, not skipped.
	_, kept := x.moved(t, fail)
	took := time.Since(fail)
	if len(kept) == 0 {
		t.Errorf("no prefix was ever seen pending behind its kept advertisement")
	}
	if took < mbbLatency {
		t.Errorf("the new routes were confirmed %v after the failure, before the sim's %v: the hardware was not waited for", took, mbbLatency)
	}
	lost := x.lost(fail)
	if len(lost) > 0 {
		t.Errorf("the observer lost %d of %d prefixes when spine1 failed (e.g. %s): it should have kept them while the new routes were programmed", len(lost), len(x.ps), describeLost(lost))
	}
	if k, _ := x.watch.Count(); k != len(x.ps) {
		t.Errorf("observer has %d of %d prefixes at the end", k, len(x.ps))
	}
	t.Logf("%s: spine1 failed; %d prefixes moved to spine2 in hardware within %v (sim %v), %d seen pending behind their kept advertisement, %d lost at the observer",
		name, len(x.ps), took.Round(time.Millisecond), mbbLatency, len(kept), len(lost))
}

// TestMakeBeforeBreakOnNewAttributes: the leaf's best path moves to one
// with attributes its neighbours have not seen. Spine1's paths (a longer
// AS path) are out; spine2 then announces the same prefixes with a
// shorter one. With the sim at 300 ms the observer must keep every prefix,
// hold spine1's attributes until the leaf's new route is programmed (the
// gate keeps a copy of spine1's path out meanwhile), and spine2's after.
// GoBGP exports the new path for the fence window before the copy takes
// its place (docs/design-notes.md, "Make-before-break"); the log says how
// often and how long the observer saw that. A leaf that releases by copy
// never exports a learned path, so it must show no window at all.
func TestMakeBeforeBreakOnNewAttributes(t *testing.T) {
	forEachLeaf(t, runMakeBeforeBreakOnNewAttributes)
}

func runMakeBeforeBreakOnNewAttributes(t *testing.T, m leafMode) {
	ctx := context.Background()
	name := m.name
	x := newMBBLab(t, m)
	// At the observer: leaf, spine and 65100 (3) on spine1's path; leaf
	// and spine (2) on spine2's.
	const viaS1, viaS2 = 3, 2
	long := bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65100})})
	if err := lab.AnnounceIPv4With(ctx, x.c1, x.ps, netip.MustParseAddr(mbbS1Leaf), long); err != nil {
		t.Fatal(err)
	}
	x.settled(t, 1)
	held := func(at time.Time) map[netip.Prefix]int {
		m := map[netip.Prefix]int{}
		for _, s := range x.watch.ASPathsSince(time.Time{}) {
			if !s.At.After(at) {
				m[s.P] = s.Len
			}
		}
		return m
	}
	for p, n := range held(time.Now()) {
		if n != viaS1 {
			t.Fatalf("%v at the observer with an AS path of %d before the change, want %d", p, n, viaS1)
		}
	}

	x.l.setLatency(t, mbbLatency)
	change := time.Now()
	if err := lab.AnnounceIPv4(ctx, x.c2, x.ps, netip.MustParseAddr(mbbS2Leaf)); err != nil {
		t.Fatal(err)
	}
	confirmed, kept := x.moved(t, change)
	took := time.Since(change)
	lab.Eventually(t, 30*time.Second, "spine2's paths at the observer", func() error {
		now := held(time.Now())
		for _, p := range x.ps {
			if now[p] != viaS2 {
				return fmt.Errorf("%v: AS path of %d", p, now[p])
			}
		}
		return nil
	})

	if lost := x.lost(change); len(lost) > 0 {
		t.Errorf("the observer lost %d of %d prefixes when the best path moved to spine2 (e.g. %s): the gate should have kept spine1's path out until the new routes were programmed", len(lost), len(x.ps), describeLost(lost))
	}
	if len(kept) == 0 {
		t.Errorf("no prefix was ever seen pending behind its kept advertisement")
	}
	// Right before its new route was programmed, the observer held each
	// prefix on spine1's path.
	var early []string
	flashes, longest := 0, time.Duration(0)
	log := x.watch.ASPathsSince(change)
	for _, p := range x.ps {
		var before int
		var since time.Time
		for _, s := range log {
			if s.P != p {
				continue
			}
			if !since.IsZero() {
				longest, since = max(longest, s.At.Sub(since)), time.Time{}
			}
			if s.At.Before(confirmed[p]) {
				before = s.Len
				if s.Len == viaS2 {
					flashes++
					since = s.At
				}
			}
		}
		if before == 0 {
			before = viaS1 // unchanged since the change
		}
		if before != viaS1 && len(early) < 3 {
			early = append(early, fmt.Sprintf("%v (AS path of %d)", p, before))
		}
		if before != viaS1 {
			t.Errorf("%v: the observer held an AS path of %d when the leaf's new route was programmed, want spine1's (%d) until then", p, before, viaS1)
		}
	}
	if m.byCopy() && flashes > 0 {
		// Released by copy, no learned path is exported: no window.
		t.Errorf("the observer saw spine2's attributes %d times before the leaf's new route was programmed (for up to %v); releasing by copy, it must see none", flashes, longest.Round(time.Millisecond))
	}
	t.Logf("%s: best path moved to spine2; %d prefixes programmed within %v (sim %v), %d seen pending behind their kept advertisement; "+
		"the observer saw spine2's attributes early %d times (the fence window), for at most %v",
		name, len(x.ps), took.Round(time.Millisecond), mbbLatency, len(kept), flashes, longest.Round(time.Millisecond))
}
