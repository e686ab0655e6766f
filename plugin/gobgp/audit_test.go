//go:build linux

package gobgp

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/fibgate/fibgate/plugin/gate"
)

// TestAuditBGPReadsWhatGoBGPAdvertisesAndHolds reads a real BgpServer with
// a feeder and a receiver: adj-out per neighbour, the RIB with learned,
// local and HOLD paths, and the held sets judged as GoBGP judges them.
func TestAuditBGPReadsWhatGoBGPAdvertisesAndHolds(t *testing.T) {
	x := newLoopLab(t)
	sp, err := NewInProcess(x.leaf, Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := sp.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	local := netip.MustParsePrefix("10.3.0.0/24")
	x.announce(t, false, p1, p2, p6)
	x.learned(t, p1, p2, p6)
	if err := sp.Advertise(ctx, append(ads(gate.Transit, p1, p6), gate.Advertisement{Prefix: local, Origin: gate.Originated})); err != nil {
		t.Fatal(err)
	}
	x.received(t, []netip.Prefix{p1, p2, p6, local}, p1, p6, local)
	receiver := netip.MustParseAddr(receiverAddr)

	b, err := sp.AuditBGP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Addr{netip.MustParseAddr(feederAddr), receiver}; !slices.Equal(slices.SortedFunc(slices.Values(b.Neighbours), netip.Addr.Compare), want) {
		t.Errorf("neighbours %v, want %v", b.Neighbours, want)
	}
	for _, p := range []netip.Prefix{p1, p6, local} {
		if !slices.Contains(b.Out[p], receiver) {
			t.Errorf("%v goes to %v, want the receiver among them", p, b.Out[p])
		}
	}
	if nbs, ok := b.Out[p2]; ok {
		t.Errorf("held %v goes to %v", p2, nbs)
	}
	if ps := b.RIB[p1]; len(ps) != 1 || !ps[0].Learned || !ps[0].Best || ps[0].Hold || ps[0].Nexthop != netip.MustParseAddr(feederAddr) || ps[0].ID == "" {
		t.Errorf("%v in the RIB: %+v, want one learned best path via %s", p1, ps, feederAddr)
	}
	if ps := b.RIB[p6]; len(ps) != 1 || ps[0].Nexthop != netip.MustParseAddr("2001:db8::2") {
		t.Errorf("%v in the RIB: %+v, want one path via 2001:db8::2", p6, ps)
	}
	if ps := b.RIB[local]; len(ps) != 1 || ps[0].Learned || ps[0].Hold {
		t.Errorf("%v in the RIB: %+v, want one local path", local, ps)
	}
	for p, want := range map[netip.Prefix]bool{p1: false, p6: false, local: false, p2: true, netip.MustParsePrefix("10.1.1.128/25"): true} {
		if got := b.Holds(p); got != want {
			t.Errorf("Holds(%v) = %v, want %v", p, got, want)
		}
		if !b.InScope(p) {
			t.Errorf("%v out of the default scope", p)
		}
	}

	// A HOLD path added by hand: best, so p1 leaves the adj-out.
	hp, err := sp.pb.holdPath(p1, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.leaf.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: hp}); err != nil {
		t.Fatal(err)
	}
	if b, err = sp.AuditBGP(ctx); err != nil {
		t.Fatal(err)
	}
	if ps := b.RIB[p1]; len(ps) != 2 || !ps[0].Hold || !ps[0].Best || ps[0].Learned || !ps[1].Learned || ps[1].Hold {
		t.Errorf("%v in the RIB with a HOLD path: %+v, want the HOLD path first, then the learned one", p1, ps)
	}
	if _, ok := b.Out[p1]; ok {
		t.Errorf("%v in adj-out under a HOLD path", p1)
	}

	// With the gate out of the export chain (a policy reload the guard
	// has not repaired yet) nothing is held back.
	if err := (serverBackend{x.leaf}).setExportAssignment(ctx, nil, api.RouteAction_ACCEPT); err != nil {
		t.Fatal(err)
	}
	if b, err = sp.AuditBGP(ctx); err != nil {
		t.Fatal(err)
	}
	if b.Holds(p2) {
		t.Errorf("Holds(%v) with the gate out of the export chain", p2)
	}
	if !slices.Contains(b.Out[p2], receiver) {
		t.Errorf("%v goes to %v without the gate, want the receiver among them", p2, b.Out[p2])
	}
}

// nopBackend lists nothing (bench_test.go has the rest of it).
func (nopBackend) listPeers(context.Context, func(*api.Peer)) error { return nil }
func (nopBackend) listPath(context.Context, *api.ListPathRequest, func(*api.Destination)) error {
	return nil
}
