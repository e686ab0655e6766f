//go:build linux

package gobgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"google.golang.org/grpc"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/internal/pkey"
)

// onCopy reports whether the Speaker has p out on a copy with its
// learned paths held in the held set.
func (x *mbbLab) onCopy(p netip.Prefix) bool {
	x.sp.mu.Lock()
	defer x.sp.mu.Unlock()
	st := x.sp.rec.get(p)
	return st.onCopy() && !st.released && x.sp.cp.has(p)
}

// TestReleaseByCopyKeepsNewAttributesUntilReleased: with releases by copy
// no learned path is ever exported, so a new best path never reaches a
// neighbour before the gate releases its route (the fence window of a
// release by toggle is gone). Prefixes released from spine a (a long AS
// path):
//   - p gets a better path from spine b: the installer is told of b's next
//     hop (read back on the UPDATE's event: GoBGP's best path is still the
//     copy), the receiver is sent nothing until the release, then b's path,
//     never a withdrawal;
//   - q gets a community from a, on the same next hop: the copy is replaced
//     at once, no withdrawal;
//   - r is withdrawn by a: taken back, the receiver gets the withdrawal;
//   - spine a's session goes down: s, which only a had, is withdrawn
//     (GoBGP drops a's paths without an UPDATE).
func TestReleaseByCopyKeepsNewAttributesUntilReleased(t *testing.T) {
	x := newMBBLabConfig(t, Config{ReleaseByCopy: true}, nil)
	p, q := netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24")
	r, s := netip.MustParsePrefix("192.0.2.0/25"), netip.MustParsePrefix("192.0.2.128/25")
	all := []netip.Prefix{p, q, r, s}
	x.releasedViaA(t, all...)
	keep := keepCommunity(mustCommunity(t, DefaultHoldCommunity))
	for _, pfx := range all {
		if !x.onCopy(pfx) {
			t.Fatalf("%v is not out on a copy", pfx)
		}
		if _, comms := x.path(pfx); slices.Contains(comms, keep) {
			t.Errorf("%v: the keep mark reached the receiver: %v", pfx, comms)
		}
	}
	if n := x.sp.NotToEntries(); n != 0 {
		t.Errorf("%d not-to entries for prefixes out on copies; want 0", n)
	}

	// p: spine b brings a shorter AS path on its own next hop.
	x.announce(t, x.b, p, "127.0.0.3", false)
	x.installedVia(t, "127.0.0.3", p)
	x.flushed(t, netip.MustParsePrefix("192.0.2.99/32"))
	if h := x.history(p); !slices.Equal(h, []string{viaA}) {
		t.Errorf("%v while its new route is pending: the receiver was sent %q; want a's path alone", p, h)
	}
	if !x.sp.IsReleased(p) {
		t.Errorf("%v: the Speaker does not count it as out", p)
	}
	if err := x.sp.Advertise(context.Background(), ads(gate.Transit, p)); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "b's path at the receiver", func() error {
		if as, _ := x.path(p); as != viaB {
			return fmt.Errorf("AS path %q", as)
		}
		return nil
	})
	if h := x.history(p); !slices.Equal(h, []string{viaA, viaB}) {
		t.Errorf("%v: the receiver was sent %q; want a's path, then b's", p, h)
	}
	if !x.onCopy(p) {
		t.Errorf("%v is not out on a copy after its release", p)
	}

	// q: the same next hop, a community more.
	long := bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65100, 65101})})
	comm := uint32(65002<<16 | 7)
	x.announce(t, x.a, q, "127.0.0.2", false, long, bgp.NewPathAttributeCommunities([]uint32{comm}))
	lab.Eventually(t, 10*time.Second, "q's community at the receiver", func() error {
		if _, comms := x.path(q); !slices.Contains(comms, comm) {
			return fmt.Errorf("communities %v", comms)
		}
		return nil
	})
	if _, wd := x.at(q); wd != 0 {
		t.Errorf("%v withdrawn %d times for a new community; want none", q, wd)
	}

	// r: withdrawn by its only neighbour.
	x.announce(t, x.a, r, "127.0.0.2", true)
	lab.Eventually(t, 10*time.Second, "r withdrawn at the receiver", func() error {
		if has, wd := x.at(r); has || wd == 0 {
			return fmt.Errorf("receiver has it %v, withdrawn %d times", has, wd)
		}
		if x.sp.IsReleased(r) {
			return errors.New("the Speaker still has it out")
		}
		return nil
	})

	// Spine a's session goes: s (and q) have no path left.
	if err := x.leaf.DisablePeer(context.Background(), &api.DisablePeerRequest{Address: "127.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "s and q withdrawn at the receiver", func() error {
		for _, pfx := range []netip.Prefix{s, q} {
			if has, _ := x.at(pfx); has {
				return fmt.Errorf("receiver still has %v", pfx)
			}
		}
		if n := x.sp.Kept(); n != 1 {
			return fmt.Errorf("%d prefixes on copies; want 1 (p)", n)
		}
		return nil
	})
	if h := x.history(p); !slices.Equal(h, []string{viaA, viaB}) {
		t.Errorf("%v (on spine b) was sent %q when spine a went; want nothing new", p, h)
	}
}

// TestReleaseByCopyWithdrawsFromANeighbourWhoseASJoinsThePath: the new
// path carries the receiver's AS, so GoBGP filters the new copy towards it
// and would leave it holding the old one. The release sends a HOLD path
// first: the receiver gets a withdrawal, then nothing.
func TestReleaseByCopyWithdrawsFromANeighbourWhoseASJoinsThePath(t *testing.T) {
	x := newMBBLabConfig(t, Config{ReleaseByCopy: true}, nil)
	p := netip.MustParsePrefix("198.51.100.0/24")
	x.releasedViaA(t, p)
	through := bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65003})})
	x.announce(t, x.b, p, "127.0.0.3", false, through)
	x.installedVia(t, "127.0.0.3", p)
	if err := x.sp.Advertise(context.Background(), ads(gate.Transit, p)); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "p withdrawn at the receiver", func() error {
		if has, wd := x.at(p); has || wd != 1 {
			return fmt.Errorf("receiver has it %v, withdrawn %d times", has, wd)
		}
		return nil
	})
	if !x.onCopy(p) {
		t.Errorf("%v is not out on the new copy", p)
	}
}

// TestReleaseByCopyIsRefusedOverTheAPI: a copy added through gobgpd's API
// would outlive fibgated.
func TestReleaseByCopyIsRefusedOverTheAPI(t *testing.T) {
	var conn grpc.ClientConnInterface // never dialled
	if _, err := NewClient(conn, Config{ReleaseByCopy: true}); !errors.Is(err, ErrCopyNeedsInProcess) {
		t.Fatalf("NewClient with ReleaseByCopy: %v; want ErrCopyNeedsInProcess", err)
	}
}

// TestPrefixQueueTakesASliceAndStaysReady: what is left after a slice
// keeps the queue ready, so WatchBest comes back for it.
func TestPrefixQueueTakesASliceAndStaysReady(t *testing.T) {
	q := newPrefixQueue()
	for i := range 5 {
		q.add(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i), 0}), 24))
	}
	seen := map[netip.Prefix]bool{}
	for round := 0; round < 3; round++ {
		select {
		case <-q.ready:
		default:
			t.Fatalf("round %d: not ready with %d of 5 taken", round, len(seen))
		}
		for _, p := range q.take(2) {
			if seen[p] {
				t.Fatalf("%v taken twice", p)
			}
			seen[p] = true
		}
	}
	if len(seen) != 5 {
		t.Fatalf("took %d of 5", len(seen))
	}
	select {
	case <-q.ready:
		t.Fatal("ready with nothing left")
	default:
	}
}

// TestPrefixQueueTakesWhatAddAllQueuedToo: prefixes queued one by one
// and in bulk (every copy, after a session went down) all come out, a
// slice at a time, and the queue stays ready until the last.
func TestPrefixQueueTakesWhatAddAllQueuedToo(t *testing.T) {
	q := newPrefixQueue()
	pfx := func(i int) netip.Prefix { return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i), 0}), 24) }
	q.add(pfx(0))
	q.addAll([]netip.Prefix{pfx(1), pfx(2), pfx(3), pfx(4)})
	q.add(pfx(5))
	q.addAll(nil)
	seen := map[netip.Prefix]bool{}
	for round := 0; len(seen) < 6; round++ {
		if round == 6 {
			t.Fatalf("took %d of 6 in 6 rounds", len(seen))
		}
		select {
		case <-q.ready:
		default:
			t.Fatalf("round %d: not ready with %d of 6 taken", round, len(seen))
		}
		got := q.take(4)
		if len(got) == 0 || len(got) > 4 {
			t.Fatalf("round %d: took %d, want 1 to 4", round, len(got))
		}
		for _, p := range got {
			if seen[p] {
				t.Fatalf("%v taken twice", p)
			}
			seen[p] = true
		}
	}
	select {
	case <-q.ready:
		t.Fatal("ready with nothing left")
	default:
	}
}

// TestReleaseByCopyFencesWhenTheCopiedPathGoes is the blackhole lab's
// "primary withdrawn" releasing by copy: the path the copy was made from
// is withdrawn and the best path left (spine b's, other attributes) waits
// for its route. The copy must not stay out meanwhile (it advertises a
// path its neighbour no longer forwards on): the receiver gets a
// withdrawal, then b's path at the release.
func TestReleaseByCopyFencesWhenTheCopiedPathGoes(t *testing.T) {
	x := newMBBLabConfig(t, Config{ReleaseByCopy: true}, nil)
	p := netip.MustParsePrefix("198.51.100.0/24")
	longer := bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65100, 65101, 65102})})
	x.releasedViaA(t, p)
	x.announce(t, x.b, p, "127.0.0.3", false, longer)
	lab.Eventually(t, 10*time.Second, "b's path in the leaf's RIB too", func() error {
		d, err := x.sp.lookup(context.Background(), []netip.Prefix{p})
		if err != nil {
			return err
		}
		if n := len(learnedPaths(d[p])); n != 2 {
			return fmt.Errorf("%d learned paths", n)
		}
		return nil
	})
	x.announce(t, x.a, p, "127.0.0.2", true)
	x.installedVia(t, "127.0.0.3", p)
	lab.Eventually(t, 10*time.Second, "p withdrawn at the receiver", func() error {
		if has, wd := x.at(p); has || wd != 1 {
			return fmt.Errorf("receiver has it %v, withdrawn %d times", has, wd)
		}
		return nil
	})
	if x.sp.IsReleased(p) {
		t.Errorf("%v: still out after the path its copy came from went", p)
	}
	if err := x.sp.Advertise(context.Background(), ads(gate.Transit, p)); err != nil {
		t.Fatal(err)
	}
	const viaBLonger = "{AsPath: 65001 65002 65100 65101 65102}"
	lab.Eventually(t, 10*time.Second, "b's path at the receiver", func() error {
		if as, _ := x.path(p); as != viaBLonger {
			return fmt.Errorf("AS path %q", as)
		}
		return nil
	})
}

// TestReleaseByCopyAddsALostCopyAgain: a local path added by hand for a
// prefix out on a copy replaces the copy (GoBGP keeps one local path a
// prefix); once it is deleted, the learned path is best, held, and the
// Speaker adds the copy again.
func TestReleaseByCopyAddsALostCopyAgain(t *testing.T) {
	x := newMBBLabConfig(t, Config{ReleaseByCopy: true}, nil)
	p := netip.MustParsePrefix("198.51.100.0/24")
	x.releasedViaA(t, p)
	// As `gobgp global rib add P community 65534:4711 local-pref 4294967295`.
	var attrs [][]byte
	for _, a := range []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
		bgp.NewPathAttributeCommunities([]uint32{mustCommunity(t, DefaultHoldCommunity)}), bgp.NewPathAttributeLocalPref(4294967295)} {
		b, err := a.Serialize()
		if err != nil {
			t.Fatal(err)
		}
		attrs = append(attrs, b)
	}
	hold, err := build(p, netip.IPv4Unspecified(), attrs, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := x.leaf.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: hold}); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "p withdrawn at the receiver", func() error {
		if has, _ := x.at(p); has {
			return errors.New("receiver still has it")
		}
		return nil
	})
	hold.IsWithdraw = true
	if err := x.leaf.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: hold.Family, Path: hold}); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "a's path back at the receiver", func() error {
		if as, _ := x.path(p); as != viaA {
			return fmt.Errorf("AS path %q", as)
		}
		if !x.onCopy(p) {
			return errors.New("not on a copy")
		}
		return nil
	})
}

// record is WatchBest's record of p's best path (its route's next hops
// and attributes), and whether it has one.
func (x *mbbLab) record(p netip.Prefix) (reported, bool) { return x.sp.bestRecord(p) }

// setRecord puts r back as WatchBest's record of p: the record a release
// step reads while WatchBest has not yet heard of GoBGP's new best path.
func (x *mbbLab) setRecord(p netip.Prefix, r reported) {
	x.sp.nt.mu.Lock()
	defer x.sp.nt.mu.Unlock()
	x.sp.nt.last[pkey.Of(p)] = r
}

// TestReleaseByCopyCopiesThePathOfTheRouteReleased: GoBGP chooses a new
// best path before WatchBest hears of it, and the new path's fence waits
// while a release step holds the Speaker. A release of the previous
// route in that window must not copy the new best path, whose route is
// not programmed (make bench-churn MOVES=1 on a loaded machine sent 2,059
// of 15,000 returns to the observer so). The test puts WatchBest's
// record back to what it was before spine b's better path, as it is in
// that window:
//   - p, with spine a's path still there: the release keeps the copy of
//     a's path, the path of the route it releases; the receiver is sent
//     nothing new;
//   - q, with a's path gone: nothing to copy, the release is refused as
//     stale and the receiver gets nothing; released again once the
//     record has b's path, q goes out on b's.
//
// WatchBest also keeps the previous record until the fence of the new
// path is done (the fence hook reads it).
func TestReleaseByCopyCopiesThePathOfTheRouteReleased(t *testing.T) {
	p, q := netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24")
	var x *mbbLab
	var atFence sync.Map // prefix -> the record when its fence was done
	x = newMBBLabConfig(t, Config{ReleaseByCopy: true}, nil, WithFenceHook(func(FenceEvent) {
		for _, pfx := range []netip.Prefix{p, q} {
			if r, ok := x.record(pfx); ok {
				atFence.LoadOrStore(pfx, r)
			}
		}
	}))
	x.releasedViaA(t, p, q)
	viaARecord := map[netip.Prefix]reported{}
	for _, pfx := range []netip.Prefix{p, q} {
		r, ok := x.record(pfx)
		if !ok {
			t.Fatalf("WatchBest has no record of %v", pfx)
		}
		viaARecord[pfx] = r
	}

	// p: spine b brings a shorter path on its own next hop; a's path
	// stays.
	x.announce(t, x.b, p, "127.0.0.3", false)
	x.installedVia(t, "127.0.0.3", p)
	if r, _ := atFence.Load(p); r != viaARecord[p] {
		t.Errorf("%v: WatchBest's record when the new path's fence was done %+v; want the previous path's %+v", p, r, viaARecord[p])
	}
	if r, _ := x.record(p); r == viaARecord[p] {
		t.Errorf("%v: WatchBest's record is still the previous path's after its fence", p)
	}
	x.setRecord(p, viaARecord[p])
	if err := x.sp.Advertise(context.Background(), ads(gate.Transit, p)); err != nil {
		t.Fatal(err)
	}
	x.flushed(t, netip.MustParsePrefix("192.0.2.99/32"))
	if h := x.history(p); !slices.Equal(h, []string{viaA}) {
		t.Errorf("%v: a release of a's route sent the receiver %q; want a's path alone", p, h)
	}
	if !x.onCopy(p) {
		t.Errorf("%v is not out on a copy", p)
	}

	// q: a withdraws, q is taken back, and b brings its path; then the
	// release of a's route.
	x.announce(t, x.a, q, "127.0.0.2", true)
	lab.Eventually(t, 10*time.Second, "q withdrawn at the receiver", func() error {
		if has, wd := x.at(q); has || wd == 0 {
			return fmt.Errorf("receiver has it %v, withdrawn %d times", has, wd)
		}
		return nil
	})
	x.announce(t, x.b, q, "127.0.0.3", false)
	x.installedVia(t, "127.0.0.3", q)
	viaBRecord, _ := x.record(q)
	x.setRecord(q, viaARecord[q])
	err := x.sp.Advertise(context.Background(), ads(gate.Transit, q))
	if se := (*gate.StaleError)(nil); !errors.As(err, &se) || !slices.Equal(se.Prefixes, []netip.Prefix{q}) || se.Err != nil {
		t.Fatalf("a release of q on a's route, gone: %v; want q refused as stale", err)
	}
	x.flushed(t, netip.MustParsePrefix("192.0.2.98/32"))
	if has, _ := x.at(q); has {
		t.Fatalf("%v at the receiver after a stale release: %q", q, x.history(q))
	}
	x.setRecord(q, viaBRecord)
	if err := x.sp.Advertise(context.Background(), ads(gate.Transit, q)); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "b's path of q at the receiver", func() error {
		if as, _ := x.path(q); as != viaB {
			return fmt.Errorf("AS path %q", as)
		}
		return nil
	})
}

// lagging is a backend whose best-path events can be held back and let
// go later, in order: GoBGP's events queued behind WatchBest's fences on
// a loaded machine.
type lagging struct {
	backend
	mu   sync.Mutex
	held [][]watched // nil while not holding
	on   bool
	fn   func([]watched)
}

func (l *lagging) watchBest(ctx context.Context, fn func([]watched), errc chan<- error) (bool, error) {
	return l.backend.watchBest(ctx, func(ps []watched) {
		l.mu.Lock()
		if l.on {
			l.held = append(l.held, ps)
			l.mu.Unlock()
			return
		}
		l.fn = fn
		l.mu.Unlock()
		fn(ps)
	}, errc)
}

// hold holds back the events from now on.
func (l *lagging) hold() {
	l.mu.Lock()
	l.on = true
	l.mu.Unlock()
}

// release delivers the held events and stops holding; it reports how
// many batches it delivered.
func (l *lagging) release() int {
	l.mu.Lock()
	held, fn := l.held, l.fn
	l.held, l.on = nil, false
	l.mu.Unlock()
	for _, ps := range held {
		fn(ps)
	}
	return len(held)
}

// TestReleaseByCopyIgnoresBestPathEventsOlderThanTheCopy: best-path events
// queued behind WatchBest's work must not take the installer back to a
// path older than what the read-back under the copy found. p is out on a
// copy of spine a's path; a withdraws it (p fails over to b, whose copy
// is released) and announces it again (p returns to a). The events GoBGP
// sent meanwhile, b best among them, are let through only then: the
// installer must stay on a.
func TestReleaseByCopyIgnoresBestPathEventsOlderThanTheCopy(t *testing.T) {
	lag := &lagging{}
	x := newMBBLabConfig(t, Config{ReleaseByCopy: true}, func(b backend) backend {
		lag.backend = b
		return lag
	})
	p := netip.MustParsePrefix("198.51.100.0/24")
	x.releasedViaA(t, p)
	long := bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65100, 65101, 65102})})
	x.announce(t, x.b, p, "127.0.0.3", false, long) // the backup: one AS longer
	x.flushed(t, netip.MustParsePrefix("192.0.2.99/32"))

	lag.hold()
	x.announce(t, x.a, p, "127.0.0.2", true)
	x.installedVia(t, "127.0.0.3", p)
	if err := x.sp.Advertise(context.Background(), ads(gate.Transit, p)); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "b's path at the receiver", func() error {
		if as, _ := x.path(p); as != "{AsPath: 65001 65002 65100 65101 65102}" {
			return fmt.Errorf("AS path %q", as)
		}
		return nil
	})
	x.announce(t, x.a, p, "127.0.0.2", false, bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65100, 65101})}))
	x.installedVia(t, "127.0.0.2", p)
	if n := lag.release(); n == 0 {
		t.Fatal("no best-path event was held back")
	}
	// The released events go through WatchBest before a later one's (one
	// queue): once the installer has a prefix learned after them, it has
	// their outcome.
	r := netip.MustParsePrefix("192.0.2.0/25")
	x.announce(t, x.b, r, "127.0.0.3", false)
	x.installedVia(t, "127.0.0.3", r)
	if nhs := x.best.nexthops(p); len(nhs) != 1 || nhs[0] != netip.MustParseAddr("127.0.0.2") {
		t.Errorf("%v: the installer was taken to %v after the late events; want spine a's 127.0.0.2", p, nhs)
	}
}

// TestCopyWatchReadsBackWhatAnEventCanChange: which copied prefixes each
// learned-path event has WatchBest read back. An UPDATE names its own; a
// session leaving Established, the Idle of one that went down, and the
// End-of-RIB of one that went down can each change paths of any prefix
// with no UPDATE, so all; a neighbour that never came up, or the
// End-of-RIB of one that did not go down, change nothing.
func TestCopyWatchReadsBackWhatAnEventCanChange(t *testing.T) {
	cp := newCopySet()
	p, q := netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/32")
	other := netip.MustParsePrefix("203.0.113.0/24") // not on a copy
	cp.set(p, 1)
	cp.set(q, 2)
	under := newPrefixQueue()
	w := newCopyWatch(cp, under, testLogger(t))
	all := []netip.Prefix{p, q}
	const a, b = "192.0.2.1", "192.0.2.2"
	// An UPDATE as WatchEvent hands it over, read by learnedOf.
	apiForm := &api.WatchEventResponse{Event: &api.WatchEventResponse_Table{Table: &api.WatchEventResponse_TableEvent{
		Paths: []*api.Path{mustPath(t, q, false), mustPath(t, other, true)}}}}
	for i, c := range []struct {
		name string
		ev   learnedEvent
		resp *api.WatchEventResponse // instead of ev
		want []netip.Prefix
	}{
		{"an UPDATE's prefixes", learnedEvent{prefixes: []netip.Prefix{p, other}}, nil, []netip.Prefix{p}},
		{"an UPDATE in the API's form", learnedEvent{}, apiForm, []netip.Prefix{q}},
		{"a comes up", learnedEvent{peer: a, state: api.PeerState_ESTABLISHED}, nil, nil},
		{"b tries to connect", learnedEvent{peer: b, state: api.PeerState_ACTIVE}, nil, nil},
		{"b idle, never up", learnedEvent{peer: b, state: api.PeerState_IDLE}, nil, nil},
		{"a's End-of-RIB", learnedEvent{peer: a, eor: true}, nil, nil},
		{"a goes down", learnedEvent{peer: a, state: api.PeerState_ACTIVE}, nil, all},
		{"a connecting again", learnedEvent{peer: a, state: api.PeerState_CONNECT}, nil, nil},
		{"a idle: a restart timer's end", learnedEvent{peer: a, state: api.PeerState_IDLE}, nil, all},
		{"a back", learnedEvent{peer: a, state: api.PeerState_ESTABLISHED}, nil, nil},
		{"a's End-of-RIB after its restart", learnedEvent{peer: a, eor: true}, nil, all},
		{"a's End-of-RIB again", learnedEvent{peer: a, eor: true}, nil, nil},
		{"the UPDATE watch failed", learnedEvent{lost: errors.New("an event of another shape")}, nil, all},
	} {
		if c.resp != nil {
			learnedOf(c.resp, w.event)
		} else {
			w.event(c.ev)
		}
		var got []netip.Prefix
		select {
		case <-under.ready:
			got = under.take(10)
		default:
		}
		slices.SortFunc(got, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
		if !slices.Equal(got, c.want) {
			t.Errorf("%d %s: read back %v, want %v", i, c.name, got, c.want)
		}
	}
}

// mustPath is p's path in the API's form, as a watch hands it over.
func mustPath(t *testing.T, p netip.Prefix, withdraw bool) *api.Path {
	t.Helper()
	path, err := build(p, netip.MustParseAddr("192.0.2.1"), nil, withdraw)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// TestReleaseByCopyFollowsASoftResetIn: a soft reset in runs a new import
// policy over spine a's paths and refuses p's; GoBGP reports no event of
// it (no UPDATE, no session change), so the copy of a's path would stay
// out until WatchBest's sweep. ReadCopiesBack, which gobgpd-ext calls
// after a soft reset in, has it read back at once: p is taken back (a
// withdrawal at the receiver), q, still accepted, stays out on its copy.
func TestReleaseByCopyFollowsASoftResetIn(t *testing.T) { softResetUnderCopies(t, true) }

// TestReleaseByCopySweepsWhatNoEventReports: the same soft reset in, and
// nobody asks; WatchBest's sweep of every copy (copySweep, here 300 ms)
// finds p's path refused.
func TestReleaseByCopySweepsWhatNoEventReports(t *testing.T) {
	was := copySweep
	copySweep = 300 * time.Millisecond
	t.Cleanup(func() { copySweep = was })
	softResetUnderCopies(t, false)
}

// softResetUnderCopies releases p and q by copy, refuses p's path by a
// new import policy and a soft reset in, then asks for the copies to be
// read back (asked) or waits for the sweep.
func softResetUnderCopies(t *testing.T, asked bool) {
	x := newMBBLabConfig(t, Config{ReleaseByCopy: true}, nil)
	p, q := netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24")
	x.releasedViaA(t, p, q)
	ctx := context.Background()
	set := &api.DefinedSet{DefinedType: api.DefinedType_PREFIX, Name: "t-refused",
		Prefixes: []*api.Prefix{{IpPrefix: p.String(), MaskLengthMin: uint32(p.Bits()), MaskLengthMax: uint32(p.Bits())}}}
	if err := x.leaf.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: set}); err != nil {
		t.Fatal(err)
	}
	pol := &api.Policy{Name: "t-import", Statements: []*api.Statement{{
		Name:       "t-refuse",
		Conditions: &api.Conditions{PrefixSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: set.Name}},
		Actions:    &api.Actions{RouteAction: api.RouteAction_REJECT},
	}}}
	if err := x.leaf.AddPolicy(ctx, &api.AddPolicyRequest{Policy: pol}); err != nil {
		t.Fatal(err)
	}
	if err := x.leaf.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_IMPORT, Policies: []*api.Policy{{Name: pol.Name}}, DefaultAction: api.RouteAction_ACCEPT}}); err != nil {
		t.Fatal(err)
	}
	if err := x.leaf.ResetPeer(ctx, &api.ResetPeerRequest{Address: "127.0.0.2", Soft: true, Direction: api.ResetPeerRequest_IN}); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "a's path of p refused", func() error {
		d, err := x.sp.lookup(ctx, []netip.Prefix{p})
		if err != nil {
			return err
		}
		if n := len(learnedPaths(d[p])); n != 0 {
			return fmt.Errorf("%d learned paths", n)
		}
		return nil
	})
	if asked {
		x.sp.ReadCopiesBack()
	}
	lab.Eventually(t, 10*time.Second, "p withdrawn at the receiver", func() error {
		if has, wd := x.at(p); has || wd != 1 {
			return fmt.Errorf("receiver has it %v, withdrawn %d times", has, wd)
		}
		return nil
	})
	x.flushed(t, netip.MustParsePrefix("192.0.2.99/32"))
	if has, wd := x.at(q); !has || wd != 0 {
		t.Errorf("%v: receiver has it %v, withdrawn %d times; want it kept", q, has, wd)
	}
	if !x.onCopy(q) {
		t.Errorf("%v is no longer out on its copy", q)
	}
}
