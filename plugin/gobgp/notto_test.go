package gobgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/plugin/gate"
)

// TestNewPathDoesNotReachANeighbourWhoseASWasInThePreviousOne is the
// blackhole lab's "primary comes up" with GoBGP alone: a prefix released
// on spine a's path (AS 65002) gets a better path from the receiver. GoBGP
// never sent spine b (AS 65002 too) the previous path, and exports it the
// new one in the same pass that chooses it: before any fence or copy.
// Spine b would send its traffic to the leaf, whose ASIC still forwards on
// the old route, back to the spines. The not-to set of AS 65002 keeps the
// new path from spine b until it is released; then b gets it. Since b is
// never told of the new path early, the prefix can be kept on a copy of
// a's path instead of being withdrawn.
func TestNewPathDoesNotReachANeighbourWhoseASWasInThePreviousOne(t *testing.T) {
	x := newMBBLab(t)
	atB := watchArrivals(t, x.b)
	p := netip.MustParsePrefix("198.51.100.0/24")
	x.releasedViaA(t, p)
	// The index follows GoBGP's neighbour listing, whose order is its
	// map's: the spines' AS must be in it, anywhere.
	if got := x.sp.NotToASes(); !slices.Contains(got, 65002) {
		t.Fatalf("not-to ASes %v; want the spines' 65002 among them", got)
	}
	if n := x.sp.NotToEntries(); n != 1 {
		t.Errorf("%d not-to entries; want 1 (the prefix, AS 65002)", n)
	}
	x.announce(t, x.recv, p, "127.0.0.4", false)
	x.installedVia(t, "127.0.0.4", p)
	lab.Eventually(t, 10*time.Second, "the copy", func() error {
		if n := x.sp.Kept(); n != 1 {
			return fmt.Errorf("%d copies", n)
		}
		return nil
	})
	// Whatever the leaf sent spine b before the sentinel has arrived.
	x.flushedAt(t, atB, "spine b", netip.MustParsePrefix("192.0.2.99/32"))
	if has, withdrawn := atB.at(p); has || withdrawn > 0 {
		t.Fatalf("spine b got %v's new path before it was released (holds it %v, withdrawn %d times)", p, has, withdrawn)
	}
	if err := x.sp.Advertise(context.Background(), ads(gate.Transit, p)); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "the released new path at spine b", func() error {
		if as, _ := atB.path(p); as != "{AsPath: 65001 65003}" {
			return fmt.Errorf("spine b: AS path %q", as)
		}
		return nil
	})
	// Taken back: out of the not-to sets once held.
	if err := x.sp.Withdraw(context.Background(), ads(gate.Transit, p)); err != nil {
		t.Fatal(err)
	}
	if n := members(t, x, 65003); n != 0 {
		t.Errorf("AS 65003's not-to set holds %d prefixes after the take-back; want 0", n)
	}
	if n := x.sp.NotToEntries(); n != 0 {
		t.Errorf("%d not-to entries after the take-back; want 0", n)
	}
}

// TestSameRouteNewASesLeavesTheNotToSets: a released prefix's path keeps
// its next hop and changes its AS path (spine a now sends it through AS
// 65003, the receiver's). Neighbours get the new attributes at once (the
// route is the same), so the prefix joins the receiver's not-to set;
// when a later path leaves 65003 out again, the prefix leaves the set and
// the receiver gets the path, which GoBGP had exported while the set
// still held the prefix.
func TestSameRouteNewASesLeavesTheNotToSets(t *testing.T) {
	x := newMBBLab(t)
	p := netip.MustParsePrefix("198.51.100.0/24")
	x.releasedViaA(t, p)
	if n := members(t, x, 65003); n != 0 {
		t.Fatalf("AS 65003's not-to set holds %d prefixes; want 0", n)
	}
	through := func(ases ...uint32) {
		x.announce(t, x.a, p, "127.0.0.2", false, asPath(ases...))
	}
	through(65003)
	lab.Eventually(t, 10*time.Second, "the prefix in AS 65003's not-to set", func() error {
		if n := members(t, x, 65003); n != 1 {
			return fmt.Errorf("%d members", n)
		}
		return nil
	})
	through(65100)
	lab.Eventually(t, 10*time.Second, "the new path at the receiver", func() error {
		if n := members(t, x, 65003); n != 0 {
			return fmt.Errorf("AS 65003's not-to set: %d members", n)
		}
		if as, _ := x.path(p); as != "{AsPath: 65001 65002 65100}" {
			return fmt.Errorf("receiver: AS path %q", as)
		}
		return nil
	})
	if !x.sp.IsReleased(p) {
		t.Errorf("%v not out: an attribute change on the same route is not taken back", p)
	}
}

// members counts the prefixes in AS as's IPv4 not-to set of the leaf.
func members(t *testing.T, x *mbbLab, as uint32) int {
	t.Helper()
	n := 0
	err := x.leaf.ListDefinedSet(context.Background(), &api.ListDefinedSetRequest{DefinedType: api.DefinedType_PREFIX, Name: x.sp.cfg.ntSet(as, true)},
		func(d *api.DefinedSet) {
			for _, e := range d.Prefixes {
				if e.IpPrefix != "0.0.0.0/32" {
					n++
				}
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// asPath is an AS_PATH attribute of one sequence.
func asPath(ases ...uint32) bgp.PathAttributeInterface {
	return bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, ases)})
}

// TestNotToSetsComeBackAfterAPolicyReload: a reload of GoBGP's policies
// deletes the not-to statements and sets with the rest of the gate; the
// re-install puts them back with the released prefixes in them, before
// it releases anything again.
func TestNotToSetsComeBackAfterAPolicyReload(t *testing.T) {
	x := newMBBLab(t)
	ctx := context.Background()
	p := netip.MustParsePrefix("198.51.100.0/24")
	x.releasedViaA(t, p)
	if n := members(t, x, 65002); n != 1 {
		t.Fatalf("AS 65002's not-to set holds %d prefixes; want 1", n)
	}
	if err := x.leaf.SetPolicies(ctx, &api.SetPoliciesRequest{}); err != nil {
		t.Fatal(err)
	}
	if again, err := x.sp.Check(ctx); err != nil || !again {
		t.Fatalf("Check = %v, %v; want a re-install", again, err)
	}
	if n := members(t, x, 65002); n != 1 {
		t.Errorf("after the re-install AS 65002's not-to set holds %d prefixes; want 1", n)
	}
	// AS 65003 (the receiver) is in no released path: it gets no
	// statements, which GoBGP would evaluate on every export.
	want := map[string]bool{x.sp.cfg.ntStmt(65002, true): true, x.sp.cfg.ntStmt(65002, false): true}
	var extra []string
	err := x.leaf.ListPolicy(ctx, &api.ListPolicyRequest{Name: x.sp.cfg.policy}, func(pol *api.Policy) {
		for _, st := range pol.Statements {
			if _, nt := x.sp.cfg.ntAS(st.Name, x.sp.cfg.policy); nt && !want[st.Name] {
				extra = append(extra, st.Name)
			}
			delete(want, st.Name)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(want) > 0 || len(extra) > 0 {
		t.Errorf("after the re-install, not-to statements missing from the gate's policy: %v; not needed: %v", want, extra)
	}
}

// TestNoNotToKeepsNoSets: with Config.NoNotTo the gate reads no AS paths,
// defines no not-to sets, and a path that comes up through another AS is
// fenced as before the sets: spine b may see it in the fence window, and
// never keeps it.
func TestNoNotToKeepsNoSets(t *testing.T) {
	x := newMBBLabConfig(t, Config{NoNotTo: true}, nil)
	p := netip.MustParsePrefix("198.51.100.0/24")
	x.releasedViaA(t, p)
	if got := x.sp.NotToASes(); len(got) != 0 {
		t.Errorf("not-to ASes %v; want none", got)
	}
	found := 0
	err := x.leaf.ListDefinedSet(context.Background(), &api.ListDefinedSetRequest{DefinedType: api.DefinedType_PREFIX}, func(d *api.DefinedSet) {
		if _, ok := x.sp.cfg.ntAS(d.Name, x.sp.cfg.Name); ok {
			found++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if found != 0 {
		t.Errorf("%d not-to sets in GoBGP; want none", found)
	}
	x.announce(t, x.recv, p, "127.0.0.4", false)
	x.installedVia(t, "127.0.0.4", p)
	lab.Eventually(t, 10*time.Second, "the fence", func() error {
		if x.sp.IsReleased(p) {
			return fmt.Errorf("%v still out (kept %d)", p, x.sp.Kept())
		}
		if fromLeaf(t, x.b, p) {
			return fmt.Errorf("spine b holds the leaf's path")
		}
		return nil
	})
}

// TestReleaseSendsTheSourceNoWithdrawal: GoBGP answers a release toggle's
// end with a withdrawal to the neighbour the released path came from,
// unless the HOLD path carries that neighbour's AS (holdPathThrough).
// Spine a, the source of ten released prefixes, is sent none, with the
// not-to sets or without them.
func TestReleaseSendsTheSourceNoWithdrawal(t *testing.T) {
	for _, cfg := range []Config{{}, {NoNotTo: true}} {
		t.Run(fmt.Sprintf("NoNotTo=%v", cfg.NoNotTo), func(t *testing.T) { releaseSendsNoWithdrawal(t, cfg) })
	}
}

func releaseSendsNoWithdrawal(t *testing.T, cfg Config) {
	x := newMBBLabConfig(t, cfg, nil)
	atA := watchArrivals(t, x.a)
	withdrawals := func() uint64 {
		var n uint64
		err := x.a.ListPeer(context.Background(), &api.ListPeerRequest{Address: "127.0.0.1"}, func(p *api.Peer) {
			n = p.GetState().GetMessages().GetReceived().GetWithdrawPrefix()
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := withdrawals()
	var ps []netip.Prefix
	for i := range 10 {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100 + byte(i/8), byte(i%8) * 32}), 27))
	}
	x.releasedViaA(t, ps...)
	x.flushedAt(t, atA, "spine a", netip.MustParsePrefix("192.0.2.99/32"))
	if n := withdrawals() - before; n != 0 {
		t.Errorf("spine a received %d withdrawn prefixes for 10 releases of its own paths; want 0", n)
	}
}

// TestPrefixEnteringTheScopeJoinsTheNotToSets: a prefix out ungated on
// spine a's path (AS 65002) enters the scope by Rescope. It counts as
// released there, and like a release it joins AS 65002's not-to set: a
// better path from the receiver then reaches spine b only once released,
// not in the fence window. Before, it joined at its next release.
func TestPrefixEnteringTheScopeJoinsTheNotToSets(t *testing.T) {
	elsewhere := []Range{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), MaxLen: 32}}
	x := newMBBLabConfig(t, Config{Scope: elsewhere}, nil)
	atB := watchArrivals(t, x.b)
	p := netip.MustParsePrefix("198.51.100.0/24")
	x.announce(t, x.a, p, "127.0.0.2", false, asPath(65100, 65101))
	lab.Eventually(t, 10*time.Second, "the ungated prefix at the receiver", func() error {
		if as, _ := x.arrivals.path(p); as != viaA {
			return fmt.Errorf("AS path %q", as)
		}
		return nil
	})
	if n := members(t, x, 65002); n != 0 {
		t.Fatalf("AS 65002's not-to set holds %d prefixes while %v is ungated; want 0", n, p)
	}
	if err := x.sp.Rescope(context.Background(), Config{}); err != nil {
		t.Fatal(err)
	}
	if !x.sp.IsReleased(p) {
		t.Fatalf("%v entered the scope while out: want it counted as released", p)
	}
	if n := members(t, x, 65002); n != 1 {
		t.Errorf("AS 65002's not-to set holds %d prefixes after %v entered the scope; want 1", n, p)
	}
	if n := x.sp.NotToEntries(); n != 1 {
		t.Errorf("%d not-to entries; want 1", n)
	}
	// The receiver's better path: spine b gets nothing until the release.
	x.announce(t, x.recv, p, "127.0.0.4", false)
	x.installedVia(t, "127.0.0.4", p)
	x.flushedAt(t, atB, "spine b", netip.MustParsePrefix("192.0.2.99/32"))
	if has, withdrawn := atB.at(p); has || withdrawn > 0 {
		t.Fatalf("spine b got %v's new path before it was released (holds it %v, withdrawn %d times)", p, has, withdrawn)
	}
}

// slowPeers is a backend whose neighbour listing takes as long as GoBGP's
// at a full table, where it counts every neighbour's adj-in.
type slowPeers struct {
	nopBackend
	took  time.Duration
	reads int
}

func (b *slowPeers) listPeers(context.Context, func(*api.Peer)) error {
	b.reads++
	time.Sleep(b.took)
	return nil
}

// TestNeighbourReadsAreSpacedByTheirCost: Check reads GoBGP's neighbours
// again at most every notToRefresh, and no sooner than refreshDuty times
// the last read's duration, so a listing that holds GoBGP's main loop for
// 50 ms is made every 5 s, not every second.
func TestNeighbourReadsAreSpacedByTheirCost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, c := range []struct {
			took time.Duration
			want int // reads in 10 s of a call every 100 ms
		}{{0, 9}, {50 * time.Millisecond, 2}} {
			b := &slowPeers{took: c.took}
			sp, err := newSpeaker(b, Config{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			sp.nt.refreshed = time.Now() // as after the first read
			start := time.Now()
			for time.Since(start) < 10*time.Second {
				sp.maybeRefresh(t.Context())
				time.Sleep(100 * time.Millisecond)
			}
			if b.reads != c.want {
				t.Errorf("a read taking %v: %d reads in 10 s, want %d", c.took, b.reads, c.want)
			}
		}
	})
}
