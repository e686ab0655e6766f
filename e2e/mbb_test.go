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

func TestMakeBeforeBreak(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end with namespaces and four BGP speakers: skipped in -short mode")
	}
	lab.RequireRoot(t)
	binaries(t)
	lab.GobgpBinaries(t)
	for _, sidecar := range []bool{false, true} {
		name := map[bool]string{false: "gobgpd-ext", true: "gobgpd+fibgated"}[sidecar]
		t.Run(name, func(t *testing.T) { runMakeBeforeBreak(t, name, sidecar) })
	}
}

func runMakeBeforeBreak(t *testing.T, name string, sidecar bool) {
	ctx := context.Background()
	s1, s2, obs := lab.NewNS(t, "s1"), lab.NewNS(t, "s2"), lab.NewNS(t, "obs")
	conf := lab.GobgpdConf{AS: churnLeafAS, RouterID: mbbLeafS1, Neighbours: []lab.Neighbour{
		{Address: mbbS1Leaf, AS: mbbSpineAS}, {Address: mbbS2Leaf, AS: mbbSpineAS}, {Address: mbbObs, AS: churnObserverAS}},
		Extra: "[global.use-multiple-paths.config]\n  enabled = true\n"}
	l := newGatedLeaf(t, name, sidecar, conf, func(ns string) {
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
	c1, c2 := spine(s1, mbbS1Leaf), spine(s2, mbbS2Leaf)
	observer := lab.StartGobgpd(t, obs, lab.ActiveSpeakerConf(churnObserverAS, mbbObs, lab.Neighbour{Address: mbbLeafObs, AS: churnLeafAS}))
	obsConn := observer.Dial(t)
	waitSession(t, api.NewGobgpApiClient(obsConn), mbbLeafObs)
	watch := lab.WatchBest(t, obsConn)

	ps := lab.HostPrefixes(churnBase, mbbPrefixes)
	for _, sp := range []struct {
		c  api.GobgpApiClient
		nh string
	}{{c1, mbbS1Leaf}, {c2, mbbS2Leaf}} {
		if err := lab.AnnounceIPv4(ctx, sp.c, ps, netip.MustParseAddr(sp.nh)); err != nil {
			t.Fatal(err)
		}
	}
	// Every prefix over both spines in the leaf's hardware, and out.
	lab.Eventually(t, 60*time.Second, "every prefix programmed over both spines and at the observer", func() error {
		if k, _ := watch.Count(); k != len(ps) {
			return fmt.Errorf("observer has %d of %d", k, len(ps))
		}
		states, err := l.churnRoutes(ctx)
		if err != nil {
			return err
		}
		for _, p := range ps {
			st := states[p]
			if st == nil || len(st.GetNexthopFlags()) != 2 || st.GetState() != pb.State_STATE_RELEASED {
				return fmt.Errorf("%v at the leaf: %v", p, st)
			}
		}
		return nil
	})

	l.setLatency(t, mbbLatency)
	fail := time.Now()
	if _, err := c1.DisablePeer(ctx, &api.DisablePeerRequest{Address: mbbLeafS1, Communication: "spine1 fails"}); err != nil {
		t.Fatal(err)
	}
	// The replacement pending behind the kept advertisement, then
	// confirmed: the mechanism is exercised, not skipped.
	kept := map[netip.Prefix]bool{}
	lab.Eventually(t, 60*time.Second, "every prefix programmed over spine2 alone", func() error {
		states, err := l.churnRoutes(ctx)
		if err != nil {
			return err
		}
		done := 0
		for _, p := range ps {
			st := states[p]
			if st == nil {
				continue
			}
			if strings.Contains(st.GetReason(), "make-before-break") {
				kept[p] = true
			}
			if len(st.GetNexthopFlags()) == 1 && st.GetConfirmedTime() != nil && st.GetConfirmedTime().AsTime().After(fail) &&
				st.GetState() == pb.State_STATE_RELEASED {
				done++
			}
		}
		if done != len(ps) {
			return fmt.Errorf("%d of %d on the new route", done, len(ps))
		}
		return nil
	})
	took := time.Since(fail)
	if len(kept) == 0 {
		t.Errorf("no prefix was ever seen pending behind its kept advertisement")
	}
	if took < mbbLatency {
		t.Errorf("the new routes were confirmed %v after the failure, before the sim's %v: the hardware was not waited for", took, mbbLatency)
	}
	lost := map[netip.Prefix]time.Duration{}
	for _, s := range watch.Since(fail) {
		if _, seen := lost[s.P]; !s.Present && !seen {
			lost[s.P] = s.At.Sub(fail)
		}
	}
	if len(lost) > 0 {
		var eg []string
		for p, at := range lost {
			if len(eg) < 3 {
				eg = append(eg, fmt.Sprintf("%v at +%v", p, at.Round(time.Millisecond)))
			}
		}
		t.Errorf("the observer lost %d of %d prefixes when spine1 failed (e.g. %s): it should have kept them while the new routes were programmed", len(lost), len(ps), strings.Join(eg, ", "))
	}
	if k, _ := watch.Count(); k != len(ps) {
		t.Errorf("observer has %d of %d prefixes at the end", k, len(ps))
	}
	t.Logf("%s: spine1 failed; %d prefixes moved to spine2 in hardware within %v (sim %v), %d seen pending behind their kept advertisement, %d lost at the observer",
		name, len(ps), took.Round(time.Millisecond), mbbLatency, len(kept), len(lost))
}
