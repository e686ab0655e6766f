package gobgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
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
	bothForms(t, newPathDoesNotReachANeighbour)
}

func newPathDoesNotReachANeighbour(t *testing.T, complement bool) {
	x := newMBBLab(t)
	atB := watchArrivals(t, x.b)
	p := netip.MustParsePrefix("198.51.100.0/24")
	x.releasedViaA(t, p)
	// The index follows GoBGP's neighbour listing, whose order is its
	// map's: the spines' AS must be in it, anywhere.
	if got := x.sp.NotToASes(); !slices.Contains(got, 65002) {
		t.Fatalf("not-to ASes %v; want the spines' 65002 among them", got)
	}
	want := 1 // the prefix, AS 65002
	if complement {
		x.weigh(t, 65002)
		want = 0 // nothing carved out
	}
	if n := x.sp.NotToEntries(); n != want {
		t.Errorf("%d not-to entries; want %d", n, want)
	}
	if !rejects(t, x, 65002, p) {
		t.Fatalf("AS 65002's not-to set does not hold %v", p)
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
	if rejects(t, x, 65003, p) {
		t.Errorf("AS 65003's not-to set holds %v after the take-back", p)
	}
	want = 0
	if complement {
		want = 1 // the sentinel's carve-out: an originated prefix goes to AS 65002 too
	}
	if n := x.sp.NotToEntries(); n != want {
		t.Errorf("%d not-to entries after the take-back; want %d", n, want)
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
	bothForms(t, sameRouteNewASes)
}

func sameRouteNewASes(t *testing.T, complement bool) {
	x := newMBBLab(t)
	p := netip.MustParsePrefix("198.51.100.0/24")
	x.releasedViaA(t, p)
	if rejects(t, x, 65003, p) {
		t.Fatalf("AS 65003's not-to set holds %v", p)
	}
	through := func(ases ...uint32) {
		x.announce(t, x.a, p, "127.0.0.2", false, asPath(ases...))
	}
	through(65003)
	lab.Eventually(t, 10*time.Second, "the prefix in AS 65003's not-to set", func() error {
		if !rejects(t, x, 65003, p) {
			return errors.New("not in it")
		}
		return nil
	})
	if complement {
		x.weigh(t, 65003)
		if !rejects(t, x, 65003, p) {
			t.Fatalf("AS 65003's not-to set in complement form does not hold %v", p)
		}
	}
	through(65100)
	lab.Eventually(t, 10*time.Second, "the new path at the receiver", func() error {
		if rejects(t, x, 65003, p) {
			return errors.New("AS 65003's not-to set still holds it")
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

// members counts the entries of AS as's IPv4 not-to set of the leaf, its
// seed left out: in member form, its members.
func members(t *testing.T, x *mbbLab, as uint32) int {
	t.Helper()
	n := 0
	for p, ls := range ntEntries(t, x, as) {
		if p != nullPrefix(32) {
			n += len(ls)
		}
	}
	return n
}

// ntEntries reads AS as's IPv4 not-to set from the leaf's GoBGP; nil when
// there is none.
func ntEntries(t *testing.T, x *mbbLab, as uint32) map[netip.Prefix]lengths {
	t.Helper()
	var out map[netip.Prefix]lengths
	err := x.leaf.ListDefinedSet(context.Background(), &api.ListDefinedSetRequest{DefinedType: api.DefinedType_PREFIX, Name: x.sp.cfg.ntSet(as, true)},
		func(d *api.DefinedSet) {
			out = make(map[netip.Prefix]lengths)
			for _, e := range d.Prefixes {
				p := netip.MustParsePrefix(e.IpPrefix)
				out[p] = append(out[p], interval{uint8(e.MaskLengthMin), uint8(e.MaskLengthMax)})
			}
		})
	if err != nil && !strings.Contains(err.Error(), "not found") {
		t.Fatal(err)
	}
	return out
}

// rejects says whether AS as's not-to set in the leaf's GoBGP matches p,
// as GoBGP matches it (gobgpMatch), whatever its form.
func rejects(t *testing.T, x *mbbLab, as uint32, p netip.Prefix) bool {
	t.Helper()
	return gobgpMatch(ntEntries(t, x, as), p)
}

// bothForms runs f with the not-to sets in member form, and again with
// sets switched to complement form where the test weighs them (weigh).
func bothForms(t *testing.T, f func(t *testing.T, complement bool)) {
	for _, complement := range []bool{false, true} {
		name := "member"
		if complement {
			name = "complement"
		}
		t.Run(name, func(t *testing.T) { f(t, complement) })
	}
}

// weigh has Check weigh the not-to sets' forms now, with one member enough
// for the complement form, and requires AS as's set in complement form.
func (x *mbbLab) weigh(t *testing.T, as uint32) {
	t.Helper()
	x.sp.mu.Lock()
	x.sp.nt.minComplement = 1
	x.sp.mu.Unlock()
	if again, err := x.sp.Check(context.Background()); err != nil || again {
		t.Fatalf("Check = %v, %v; want no re-install", again, err)
	}
	x.sp.mu.Lock()
	comp := x.sp.nt.comp[as] != nil
	x.sp.mu.Unlock()
	if !comp {
		t.Fatalf("AS %d's not-to set not in complement form after Check", as)
	}
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
	bothForms(t, notToSetsComeBack)
}

func notToSetsComeBack(t *testing.T, complement bool) {
	x := newMBBLab(t)
	ctx := context.Background()
	p := netip.MustParsePrefix("198.51.100.0/24")
	x.releasedViaA(t, p)
	if n := members(t, x, 65002); n != 1 {
		t.Fatalf("AS 65002's not-to set holds %d prefixes; want 1", n)
	}
	if complement {
		x.weigh(t, 65002)
	}
	if err := x.leaf.SetPolicies(ctx, &api.SetPoliciesRequest{}); err != nil {
		t.Fatal(err)
	}
	if again, err := x.sp.Check(ctx); err != nil || !again {
		t.Fatalf("Check = %v, %v; want a re-install", again, err)
	}
	// In member form again, whatever form it had.
	if n := members(t, x, 65002); n != 1 || !rejects(t, x, 65002, p) {
		t.Errorf("after the re-install AS 65002's not-to set holds %d entries (%v holds %v); want 1", n, ntEntries(t, x, 65002), p)
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
			// GoBGP's prefix sets match by AFI alone: a statement on one
			// names its unicast family, or it rejects VPN and
			// labeled-unicast paths too (TestOtherFamiliesPassTheGate).
			if c := st.GetConditions(); c.GetPrefixSet() != nil {
				if fs := c.GetAfiSafiIn(); len(fs) != 1 || fs[0].GetSafi() != api.Family_SAFI_UNICAST {
					t.Errorf("statement %s on prefix set %s holds families %v; want its unicast family alone", st.Name, c.GetPrefixSet().GetName(), fs)
				}
			}
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

// sessionPeers is a backend whose session watch the test drives: up
// sends a session state change, broken makes the watch fail (now and on
// every retry).
type sessionPeers struct {
	slowPeers
	up     chan api.PeerState_SessionState
	broken chan struct{}
}

func (b *sessionPeers) watchPeers(ctx context.Context, fn func(*api.Peer)) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-b.broken:
			return errors.New("stream reset")
		case st := <-b.up:
			fn(&api.Peer{State: &api.PeerState{NeighborAddress: "10.0.0.9", SessionState: st}})
		}
	}
}

// TestNeighbourReadsFollowSessions: while Check follows GoBGP's sessions
// it reads the neighbours once when the watch starts, within
// notToRefresh of a session coming up (not of one going down), and
// otherwise only every notToBackstop; with the watch broken it polls
// every notToRefresh as before (and tries the watch again every
// notToBackstop). Each read is a ListPeer that holds
// GoBGP's main loop while it counts every neighbour's adj-in.
func TestNeighbourReadsFollowSessions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &sessionPeers{up: make(chan api.PeerState_SessionState), broken: make(chan struct{})}
		sp, err := newSpeaker(b, Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		sp.nt.refreshed = time.Now() // as after the install's read
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); sp.followSessions(ctx) }()
		checkFor, expect := checks(t, sp, &b.reads)
		checkFor(10 * time.Second)
		expect("10 s after the watch started, no session came up", 1)
		b.up <- api.PeerState_ACTIVE
		checkFor(5 * time.Second)
		expect("a session went down", 1)
		b.up <- api.PeerState_ESTABLISHED
		checkFor(1500 * time.Millisecond)
		expect("1.5 s after a session came up", 2)
		checkFor(notToBackstop - 2*time.Second)
		expect("just under the backstop after that read", 2)
		checkFor(3 * time.Second)
		expect("past the backstop", 3)
		close(b.broken)
		checkFor(10 * time.Second)
		if b.reads < 3+8 {
			t.Errorf("10 s with the watch broken: %d reads in all, want a read about every second", b.reads)
		}
		cancel()
		<-done
		if sp.nt.following.Load() {
			t.Error("followSessions ended and says it follows")
		}
	})
}

// checks drives Check's neighbour reads as Check does, every 100 ms (the
// default guard interval), for a while (checkFor), and tells whether the
// backend saw the reads a test expects so far (expect).
func checks(t *testing.T, sp *Speaker, reads *int) (checkFor func(time.Duration), expect func(string, int)) {
	checkFor = func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); {
			sp.maybeRefresh(t.Context())
			time.Sleep(100 * time.Millisecond)
		}
	}
	expect = func(when string, want int) {
		t.Helper()
		if *reads != want {
			t.Errorf("%s: %d reads, want %d", when, *reads, want)
		}
	}
	return checkFor, expect
}

// dumpingPeers is sessionPeers with a peer watch's dump (peerLister): one
// neighbour, never established, whose address the test sets, so that the
// dump's fingerprint changes when it does.
type dumpingPeers struct {
	sessionPeers
	sig   atomic.Uint64
	dumps atomic.Int64
}

func (b *dumpingPeers) dumpPeers(_ context.Context, fn func(*api.PeerState)) error {
	b.dumps.Add(1)
	fn(&api.PeerState{NeighborAddress: strconv.FormatUint(b.sig.Load(), 10), PeerAsn: 65000})
	return nil
}

// TestBackstopReadsOnlyWhenTheNeighboursChange: while Check follows
// GoBGP's sessions and none comes up, the backstop reads the neighbours
// (a ListPeer that holds GoBGP's main loop: 0.6 s at a full table from two
// upstreams) only when a peer watch's dump fingerprints them otherwise
// than at the last read, or that read is notToFullBackstop old.
func TestBackstopReadsOnlyWhenTheNeighboursChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &dumpingPeers{sessionPeers: sessionPeers{up: make(chan api.PeerState_SessionState), broken: make(chan struct{})}}
		b.sig.Store(1)
		sp, err := newSpeaker(b, Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); sp.followSessions(ctx) }()
		synctest.Wait() // the watch is in place
		checkFor, expect := checks(t, sp, &b.reads)
		checkFor(2 * time.Second)
		expect("the watch started", 1)
		checkFor(3 * time.Minute)
		expect("3 min with the same neighbours", 1)
		if b.dumps.Load() < 2+5 {
			t.Errorf("%d dumps in 3 min, want the read's and one every backstop", b.dumps.Load())
		}
		b.sig.Store(2) // a neighbour added, gone, or of another AS or state
		checkFor(notToBackstop + time.Second)
		expect("a backstop after the neighbours changed", 2)
		checkFor(notToFullBackstop - notToBackstop - 2*time.Second)
		expect("just under notToFullBackstop after that read", 2)
		checkFor(notToBackstop + 2*time.Second)
		expect("past notToFullBackstop", 3)
		b.up <- api.PeerState_ESTABLISHED
		checkFor(1500 * time.Millisecond)
		expect("a session came up", 4)
		cancel()
		<-done
	})
}

// TestSessionWatchSeesASessionComeUp: both backends' watchPeers report a
// session of GoBGP's that comes up, which is what the not-to index's
// reads now wait for; here the spine's FRR clears its sessions.
func TestSessionWatchSeesASessionComeUp(t *testing.T) {
	for _, a := range adapters() {
		t.Run(a.name, func(t *testing.T) {
			topo := lab.NewTopology(t, false)
			r := a.start(t, topo, Config{})
			topo.SpineFRR.WaitEstablished(lab.LeafSpine4, 10*time.Second)
			ctx, cancel := context.WithCancel(context.Background())
			up := make(chan string, 64)
			ended := make(chan error, 1)
			go func() {
				ended <- r.api.b.watchPeers(ctx, func(p *api.Peer) {
					if p.GetState().GetSessionState() == api.PeerState_ESTABLISHED {
						select {
						case up <- p.GetState().GetNeighborAddress():
						default:
						}
					}
				})
			}()
			defer func() {
				cancel()
				if err := <-ended; !errors.Is(err, context.Canceled) {
					t.Errorf("watchPeers ended with %v, want the context's end", err)
				}
			}()
			// The watch is in place once GoBGP answers after it; clear
			// until an event comes (a clear before the watch shows none).
			deadline := time.After(30 * time.Second)
			for {
				if _, err := topo.SpineFRR.Vtysh("clear bgp *"); err != nil {
					t.Fatal(err)
				}
				select {
				case a := <-up:
					if a != lab.SpineLeaf4 && a != lab.SpineLeaf6 {
						t.Errorf("a session came up with %s, want the spine's", a)
					}
					return
				case <-time.After(5 * time.Second):
				case <-deadline:
					t.Fatal("no session came up in 30 s of clearing the spine's sessions")
				}
			}
		})
	}
}

// TestAPathWithoutTheASReachesItsNeighbours: in complement form AS X's
// set matches the whole scope but its carve-outs (ntform.go). So the
// release of a prefix whose path lacks X must carve it out before the
// held set lets it out, or X's neighbours would never get it; and its
// take-back must keep the carve-out until the withdrawal went out, since
// GoBGP judges the previous path by today's policy to decide whether X
// was sent it, and would leave X with it. Spine b (AS 65002) gets q,
// learned from the receiver alone, at its release and its withdrawal at
// the take-back, with AS 65002's set in either form; a re-install and a
// Rescope bring the set back to member form with the same judgements.
func TestAPathWithoutTheASReachesItsNeighbours(t *testing.T) {
	bothForms(t, pathWithoutTheAS)
}

func pathWithoutTheAS(t *testing.T, complement bool) {
	ctx := context.Background()
	x := newMBBLab(t)
	atB := watchArrivals(t, x.b)
	// Five prefixes over spine a, so that q and the sentinel carved out
	// are the smaller form.
	var ps []netip.Prefix
	for i := range 5 {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i) * 32}), 27))
	}
	p, q := ps[0], netip.MustParsePrefix("203.0.113.0/24")
	x.releasedViaA(t, ps...)
	if complement {
		x.weigh(t, 65002)
	}
	x.announce(t, x.recv, q, "127.0.0.4", false)
	x.installedVia(t, "127.0.0.4", q)
	release := func() {
		t.Helper()
		if err := x.sp.Advertise(ctx, ads(gate.Transit, q)); err != nil {
			t.Fatal(err)
		}
		lab.Eventually(t, 10*time.Second, "q at spine b", func() error {
			if has, _ := atB.at(q); !has {
				return errors.New("not there")
			}
			return nil
		})
	}
	release()
	if !rejects(t, x, 65002, p) || rejects(t, x, 65002, q) {
		t.Fatalf("AS 65002's set %v: want it to hold %v and not %v", ntEntries(t, x, 65002), p, q)
	}
	// q in AS 65003's set, and the five in AS 65002's (member form) or
	// q carved out of it (complement form).
	want := 6
	if complement {
		want = 2
	}
	if n := x.sp.NotToEntries(); n != want {
		t.Errorf("%d not-to entries; want %d", n, want)
	}
	if err := x.sp.Withdraw(ctx, ads(gate.Transit, q)); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "q withdrawn at spine b", func() error {
		if has, withdrawn := atB.at(q); has || withdrawn == 0 {
			return fmt.Errorf("spine b holds q %v, withdrawn %d times", has, withdrawn)
		}
		return nil
	})
	want = 5 // member form
	if complement {
		want = 0 // q's carve-out gone with q
	}
	if n := x.sp.NotToEntries(); n != want {
		t.Errorf("%d not-to entries after the take-back; want %d", n, want)
	}
	release()

	// A re-install (a call failed midway) finds the set in whatever form
	// and leaves it in member form.
	x.sp.mu.Lock()
	x.sp.dirty = true
	x.sp.mu.Unlock()
	if again, err := x.sp.Check(ctx); err != nil || !again {
		t.Fatalf("Check = %v, %v; want a re-install", again, err)
	}
	if n := members(t, x, 65002); n != 5 || !rejects(t, x, 65002, p) || rejects(t, x, 65002, q) {
		t.Errorf("after the re-install AS 65002's set is %v; want %v alone", ntEntries(t, x, 65002), ps)
	}
	// Rescope does too, before it edits the scope a complement encodes.
	if complement {
		x.weigh(t, 65002)
	}
	scope := []Range{{Prefix: netip.MustParsePrefix("192.0.0.0/3"), MaxLen: 32}}
	if err := x.sp.Rescope(ctx, Config{Scope: scope}); err != nil {
		t.Fatal(err)
	}
	if n := members(t, x, 65002); n != 5 || !rejects(t, x, 65002, p) || rejects(t, x, 65002, q) {
		t.Errorf("after Rescope AS 65002's set is %v; want %v alone", ntEntries(t, x, 65002), ps)
	}
	x.flushedAt(t, atB, "spine b", netip.MustParsePrefix("192.0.2.99/32"))
	if has, withdrawn := atB.at(q); !has || withdrawn != 1 {
		t.Errorf("spine b: q there %v, withdrawn %d times; want there, once", has, withdrawn)
	}
}

// TestAdoptedReleasesKeepTheirNotToSets: a new Speaker that adopts an
// earlier instance's releases (WithAdopt: fibgated restarted while gobgpd
// runs) keeps them in the not-to sets that instance put them in, in
// either form. Before, its first install read the sets while its record
// was still empty, deleted every member as no one's, and adopted the
// prefixes without them: out unprotected until their next release.
func TestAdoptedReleasesKeepTheirNotToSets(t *testing.T) {
	bothForms(t, adoptedKeepNotTo)
}

func adoptedKeepNotTo(t *testing.T, complement bool) {
	ctx := context.Background()
	x := newMBBLab(t)
	var ps []netip.Prefix
	for i := range 5 {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i) * 32}), 27))
	}
	x.releasedViaA(t, ps...)
	if complement {
		x.weigh(t, 65002)
	}
	if err := x.sp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	second, err := newSpeaker(serverBackend{x.leaf}, Config{}, []Option{WithLogger(testLogger(t)), WithAdopt(func(netip.Prefix) bool { return true })})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.Close(context.Background()) })
	if err := second.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	second.mu.Lock()
	var missing []netip.Prefix
	for _, p := range ps {
		if !second.notToHas(p)(65002) {
			missing = append(missing, p)
		}
	}
	second.mu.Unlock()
	if len(missing) > 0 {
		t.Errorf("adopted %v without AS 65002's not-to set", missing)
	}
	if n := members(t, x, 65002); n != len(ps) {
		t.Errorf("AS 65002's set holds %d entries (%v); want the %d adopted prefixes, in member form", n, ntEntries(t, x, 65002), len(ps))
	}
	for _, p := range ps {
		if !rejects(t, x, 65002, p) {
			t.Errorf("AS 65002's set does not hold %v", p)
		}
	}
	if got := second.Released(); len(got) != len(ps) {
		t.Errorf("%d prefixes adopted as released; want %d", len(got), len(ps))
	}
}
