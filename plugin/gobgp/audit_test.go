//go:build linux

package gobgp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/plugin/audit"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/gobgp/internal/reexport"
)

// TestAuditBGPReadsWhatGoBGPAdvertisesAndHolds reads a real BgpServer with
// a feeder and a receiver: adj-out per neighbour, the RIB with learned,
// local and HOLD paths, and the held sets judged as GoBGP judges them.
func TestAuditBGPReadsWhatGoBGPAdvertisesAndHolds(t *testing.T) {
	x := newLoopLab(t)
	sp := x.speaker(t)
	ctx := context.Background()
	local := netip.MustParsePrefix("10.3.0.0/24")
	x.announce(t, false, p1, p2, p6)
	x.learned(t, p1, p2, p6)
	if err := sp.Advertise(ctx, append(ads(gate.Transit, p1, p6), gate.Advertisement{Prefix: local, Origin: gate.Originated})); err != nil {
		t.Fatal(err)
	}
	x.received(t, []netip.Prefix{p1, p2, p6, local}, p1, p6, local)
	receiver := netip.MustParseAddr(receiverAddr)

	b, err := sp.AuditBGP(ctx, audit.Ask{})
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
	if ps := b.RIB[p1]; len(ps) != 1 || !ps[0].Learned || !ps[0].Best || ps[0].Hold || ps[0].Nexthop != netip.MustParseAddr(feederAddr) || ps[0].ID != "" {
		t.Errorf("%v in the RIB: %+v, want one learned best path via %s (with no ID: only the gate's own paths get one)", p1, ps, feederAddr)
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

	// Only what the audit asks about is looked up in adj-out, and of that
	// only what GoBGP's gate lets out (p2 is held: no adj-out is needed to
	// know it goes nowhere); nothing when it asks about nothing (the
	// neighbours are listed all the same).
	if b, err = sp.AuditBGP(ctx, audit.Ask{Unconfirmed: func(p netip.Prefix) bool { return p == p6 || p == p2 }}); err != nil {
		t.Fatal(err)
	}
	if b.Checked != 1 || len(b.Out) != 1 || !slices.Contains(b.Out[p6], receiver) || len(b.RIB) != 4 || len(b.LetOut) != 1 || !b.LetOut[p6] {
		t.Errorf("asked about %v and %v: checked %d, out %v, let out %v, %d destinations; want 1, %v only, %v read, 4", p6, p2, b.Checked, b.Out, b.LetOut, len(b.RIB), p6, p6)
	}
	// Let out but not to be confirmed: named, not read.
	if b, err = sp.AuditBGP(ctx, audit.Ask{Unconfirmed: func(p netip.Prefix) bool { return p == p6 }, Confirm: func(netip.Prefix) bool { return false }}); err != nil {
		t.Fatal(err)
	}
	if b.Checked != 0 || len(b.Out) != 0 || len(b.LetOut) != 1 || b.LetOut[p6] {
		t.Errorf("asked about %v, confirming nothing: checked %d, out %v, let out %v; want it named, unread", p6, b.Checked, b.Out, b.LetOut)
	}
	// A large periodic pass (audit.Ask.Large): in process adj-out is read
	// all the same, the prefixes asked about only; through GoBGP's API,
	// which would export the whole table for it, it is left unread.
	unconfirmed6 := func(p netip.Prefix) bool { return p == p6 }
	for _, c := range []struct {
		name             string
		b                backend
		inProcess, large bool
		read             bool
	}{
		{"in process, large", sp.b, true, true, true},
		{"through the API, large", viaAPI{sp.b}, false, true, false},
		{"through the API", viaAPI{sp.b}, false, false, true},
	} {
		inProcess := sp.b
		sp.b = c.b
		b, err = sp.AuditBGP(ctx, audit.Ask{Unconfirmed: unconfirmed6, Large: c.large})
		sp.b = inProcess
		if err != nil {
			t.Fatal(err)
		}
		if _, cheap := c.b.(adjOutReader); cheap != c.inProcess {
			t.Fatalf("%s: the backend reads adj-out in process: %v", c.name, cheap)
		}
		if read := b.Checked == 1 && slices.Contains(b.Out[p6], receiver); read != c.read || b.LetOut[p6] != c.read || len(b.LetOut) != 1 {
			t.Errorf("%s: checked %d, out %v, let out %v; want %v read: %v", c.name, b.Checked, b.Out, b.LetOut, p6, c.read)
		}
	}
	if b, err = sp.AuditBGP(ctx, audit.Ask{Unconfirmed: func(netip.Prefix) bool { return false }}); err != nil {
		t.Fatal(err)
	}
	if b.Checked != 0 || len(b.Out) != 0 || len(b.Neighbours) != 2 || len(b.RIB) != 4 {
		t.Errorf("asked about nothing: checked %d, out %v, neighbours %v, %d destinations", b.Checked, b.Out, b.Neighbours, len(b.RIB))
	}
	// GoBGP counts every neighbour's adj-in to list the neighbours
	// (ListPeer), in its main loop: a pass lists them with its first
	// part, and a later part lists them again only to read adj-out.
	lists := &countPeers{backend: sp.b}
	sp.b = lists
	none := func(netip.Prefix) bool { return false }
	pass, err := sp.AuditBGP(ctx, audit.Ask{Unconfirmed: none})
	for range 3 {
		if err != nil {
			break
		}
		if len(pass.Neighbours) != 2 {
			t.Errorf("a part asking about nothing: neighbours %v, want the pass's 2", pass.Neighbours)
		}
		pass, err = sp.AuditBGP(ctx, audit.Ask{Unconfirmed: none, Carry: pass.Carry})
	}
	if err != nil {
		t.Fatal(err)
	}
	if lists.n != 1 {
		t.Errorf("four parts of a pass asking about nothing listed the neighbours %d times, want once", lists.n)
	}
	if pass, err = sp.AuditBGP(ctx, audit.Ask{Unconfirmed: unconfirmed6, Carry: pass.Carry}); err != nil {
		t.Fatal(err)
	}
	if lists.n != 2 || !slices.Contains(pass.Out[p6], receiver) || len(pass.Neighbours) != 2 {
		t.Errorf("a part reading adj-out: %d listings in all (want 2), out %v, neighbours %v", lists.n, pass.Out, pass.Neighbours)
	}
	sp.b = lists.backend

	// A whole read in process (the RIB's prefixes listed, then looked up a
	// slice at a time) reads what GoBGP's API lists.
	viaAPIRead, err := func() (*audit.BGP, error) {
		inProcess := sp.b
		sp.b = viaAPI{inProcess}
		defer func() { sp.b = inProcess }()
		return sp.AuditBGP(ctx, audit.Ask{})
	}()
	if err != nil {
		t.Fatal(err)
	}
	if b, err = sp.AuditBGP(ctx, audit.Ask{}); err != nil {
		t.Fatal(err)
	}
	if len(b.RIB) != 4 || !maps.EqualFunc(b.RIB, viaAPIRead.RIB, slices.Equal) || !maps.Equal(b.LetOut, viaAPIRead.LetOut) {
		t.Errorf("a whole read in process: RIB %v, let out %v; through the API: %v, %v", b.RIB, b.LetOut, viaAPIRead.RIB, viaAPIRead.LetOut)
	}
	// A whole read leaves out what a whole pass's parts read already.
	if b, err = sp.AuditBGP(ctx, audit.Ask{Except: func(p netip.Prefix) bool { return p == p1 || p == p6 }}); err != nil {
		t.Fatal(err)
	}
	if _, has := b.RIB[p1]; has || len(b.RIB) != 2 {
		t.Errorf("a whole read leaving out %v and %v: %d destinations (%v among them: %v)", p1, p6, len(b.RIB), p1, has)
	}

	// A HOLD path added by hand: best, so p1 leaves the adj-out.
	hp, err := sp.pb.holdPath(p1, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.leaf.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: hp}); err != nil {
		t.Fatal(err)
	}
	if b, err = sp.AuditBGP(ctx, audit.Ask{}); err != nil {
		t.Fatal(err)
	}
	if ps := b.RIB[p1]; len(ps) != 2 || !ps[0].Hold || !ps[0].Best || ps[0].Learned || ps[0].ID == "" || !ps[1].Learned || ps[1].Hold {
		t.Errorf("%v in the RIB with a HOLD path: %+v, want the HOLD path first (with its ID), then the learned one", p1, ps)
	}
	if _, ok := b.Out[p1]; ok {
		t.Errorf("%v in adj-out under a HOLD path", p1)
	}

	// With the gate out of the export chain (a policy reload the guard
	// has not repaired yet) nothing is held back.
	first := b
	if err := (serverBackend{x.leaf}).setExportAssignment(ctx, nil, api.RouteAction_ACCEPT); err != nil {
		t.Fatal(err)
	}
	// Except in a later part of a pass that began before (audit.Ask.Carry):
	// it judges by the export chain and held sets its first part read,
	// without reading them again.
	if b, err = sp.AuditBGP(ctx, audit.Ask{Carry: first.Carry}); err != nil {
		t.Fatal(err)
	}
	if !b.Holds(p2) || b.Carry != first.Carry {
		t.Errorf("a read with the pass's carry: Holds(%v) %v, carry %p (the pass's %p); want held, the same carry", p2, b.Holds(p2), b.Carry, first.Carry)
	}
	if b, err = sp.AuditBGP(ctx, audit.Ask{}); err != nil {
		t.Fatal(err)
	}
	if b.Holds(p2) {
		t.Errorf("Holds(%v) with the gate out of the export chain", p2)
	}
	if !slices.Contains(b.Out[p2], receiver) {
		t.Errorf("%v goes to %v without the gate, want the receiver among them", p2, b.Out[p2])
	}
}

// viaAPI is a backend that reads adj-out through GoBGP's API only, as
// fibgated's does: embedding the interface hides serverBackend's
// adjOutReader.
type viaAPI struct{ backend }

// countPeers counts a backend's neighbour listings (and, embedding the
// interface, hides the in-process readers as viaAPI does).
type countPeers struct {
	backend
	n int
}

func (c *countPeers) listPeers(ctx context.Context, fn func(*api.Peer)) error {
	c.n++
	return c.backend.listPeers(ctx, fn)
}

// nopBackend lists nothing (bench_test.go has the rest of it).
func (nopBackend) listPeers(context.Context, func(*api.Peer)) error { return nil }
func (nopBackend) watchPeers(context.Context, func(*api.Peer)) error {
	return errors.ErrUnsupported
}
func (nopBackend) listPath(context.Context, *api.ListPathRequest, func(*api.Destination)) error {
	return nil
}

func (nopBackend) localAS(context.Context) (uint32, error) { return 65000, nil }
func (nopBackend) multipath(context.Context) (bool, error) { return false, nil }
func (nopBackend) watchLearned(context.Context, func(learnedEvent)) error {
	return nil
}

// probeLoop measures how long GoBGP's main loop keeps others waiting: one
// cheap management operation (GetBgp) after the other, from now until the
// function it returns is called, which returns the longest wait.
func probeLoop(t *testing.T, s *server.BgpServer) func() time.Duration {
	stop, stalled := make(chan struct{}), make(chan time.Duration)
	go func() {
		var worst time.Duration
		for {
			select {
			case <-stop:
				stalled <- worst
				return
			default:
			}
			t0 := time.Now()
			if _, err := s.GetBgp(context.Background(), &api.GetBgpRequest{}); err != nil {
				t.Error(err)
			}
			worst = max(worst, time.Since(t0))
			time.Sleep(time.Millisecond)
		}
	}()
	return func() time.Duration {
		close(stop)
		return <-stalled
	}
}

// TestAuditBGPCost measures AuditBGP on a table of
// FIBGATE_AUDIT_COST_PREFIXES released transit prefixes (skipped unless
// set; docs/design-notes.md has the figures): the leaf has two established
// neighbours, so GoBGP computes two adj-outs a pass.
func TestAuditBGPCost(t *testing.T) {
	v := os.Getenv("FIBGATE_AUDIT_COST_PREFIXES")
	if v == "" {
		t.Skip("set FIBGATE_AUDIT_COST_PREFIXES to measure")
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatal(err)
	}
	x := newLoopLab(t)
	sp, err := NewInProcess(x.leaf, Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := sp.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	ps := make([]netip.Prefix, n)
	for i := range ps {
		ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(20 + i>>16), byte(i >> 8), byte(i), 0}), 24)
	}
	x.announce(t, false, ps...)
	lab.Eventually(t, 5*time.Minute, "leaf learned the table", func() error {
		if got := len(rib(t, x.leaf)); got < n {
			return fmt.Errorf("%d of %d", got, n)
		}
		return nil
	})
	if err := sp.Advertise(ctx, ads(gate.Transit, ps...)); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 5*time.Minute, "the receiver has the table", func() error {
		if got := len(rib(t, x.receiver)); got < n {
			return fmt.Errorf("%d of %d", got, n)
		}
		return nil
	})
	// The neighbours listed: by ListPeer, which counts each one's adj-in
	// in GoBGP's main loop, and from a peer watch's dump (peers.go).
	for range 2 {
		t0 := time.Now()
		if err := x.leaf.ListPeer(ctx, &api.ListPeerRequest{}, func(*api.Peer) {}); err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		if _, err := sp.establishedPeers(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("%d prefixes: GoBGP listed its neighbours in %v (ListPeer), %v (a peer watch's dump)", n, t1.Sub(t0).Round(10*time.Microsecond), time.Since(t1).Round(10*time.Microsecond))
	}
	for _, c := range []struct {
		name   string
		adjOut func(netip.Prefix) bool
		known  []netip.Prefix
		want   int
		idle   bool
	}{
		{name: "no audit (3 s)", idle: true},
		{"everything confirmed (no adj-out read)", func(netip.Prefix) bool { return false }, nil, 0, false},
		{"everything confirmed, the known prefixes read", func(netip.Prefix) bool { return false }, ps, 0, false},
		{"1% unconfirmed", func(p netip.Prefix) bool { return p.Addr().As4()[2] == 0 && p.Addr().As4()[1]%4 == 0 }, nil, -1, false},
		{"the whole adj-out", nil, nil, n, false},
	} {
		for range 2 {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			// CPU time of the process (GoBGP runs in it), not wall time:
			// the machine is shared.
			var r0, r1 syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
			stalled := probeLoop(t, x.leaf)
			start := time.Now()
			if c.idle {
				time.Sleep(3 * time.Second)
				t.Logf("%d prefixes, %s: GoBGP's main loop answered within %v", n, c.name, stalled().Round(time.Millisecond))
				continue
			}
			b, err := sp.AuditBGP(ctx, audit.Ask{Unconfirmed: c.adjOut, Known: c.known})
			took := time.Since(start)
			worst := stalled()
			if err != nil {
				t.Fatal(err)
			}
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
			runtime.ReadMemStats(&after)
			cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
			t.Logf("%d prefixes, %s: AuditBGP used %v of CPU (%v of wall time), allocated %d MB; GoBGP's main loop answered within %v; %d checked, %d advertised, %d destinations",
				n, c.name, cpu.Round(time.Millisecond), took.Round(time.Millisecond), (after.TotalAlloc-before.TotalAlloc)>>20, worst.Round(time.Millisecond), b.Checked, len(b.Out), len(b.RIB))
			if c.want >= 0 && len(b.Out) != c.want || len(b.RIB) != n {
				t.Errorf("read %d advertised and %d destinations, want %d and %d", len(b.Out), len(b.RIB), c.want, n)
			}
		}
	}
}

// TestAdvertisedJudgesAsGoBGPsAdjOut holds reexport.Advertised, the
// in-process audit's read of a neighbour's adj-out for the prefixes asked
// about only, to GoBGP's own adj-out (ListPath ADJ_OUT, EnableFiltered) of
// the same GoBGP at the same moment, for each neighbour and family:
// released and held prefixes, a local one, one the user's export policy
// rejects, one under a HOLD path, one GoBGP has no path of, and more than
// a slice of alternating answers. The feeder is not sent back its own
// paths, so the two neighbours' answers differ.
func TestAdvertisedJudgesAsGoBGPsAdjOut(t *testing.T) {
	x := newLoopLab(t)
	sp := x.speaker(t)
	ctx := context.Background()
	var (
		rejected  = netip.MustParsePrefix("10.99.1.0/24")
		local     = netip.MustParsePrefix("10.3.0.0/24")
		underHold = netip.MustParsePrefix("10.6.0.0/24")
		absent    = netip.MustParsePrefix("10.4.0.0/24")
	)
	learned := []netip.Prefix{p1, p2, p6, rejected, underHold}
	released := []netip.Prefix{p1, p6, rejected, underHold}
	var many []netip.Prefix // past one slice, every third held
	for i := range reexport.AdvertisedSlice + 44 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 5, byte(i >> 8), byte(i)}), 32)
		many = append(many, p)
		if i%3 != 0 {
			released = append(released, p)
		}
	}
	learned = append(learned, many...)
	x.announce(t, false, learned...)
	x.learned(t, learned...)
	if err := sp.Advertise(ctx, append(ads(gate.Transit, released...), gate.Advertisement{Prefix: local, Origin: gate.Originated})); err != nil {
		t.Fatal(err)
	}
	x.received(t, []netip.Prefix{p1, p2, p6, local}, p1, p6, local)
	// The user's export policy, after the gate's, rejects 10.99.0.0/16.
	u := userPolicies()
	if err := x.leaf.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: u.DefinedSets[0]}); err != nil {
		t.Fatal(err)
	}
	if err := x.leaf.AddPolicy(ctx, &api.AddPolicyRequest{Policy: u.Policies[0]}); err != nil {
		t.Fatal(err)
	}
	if err := x.leaf.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{Name: "global",
		Direction: api.PolicyDirection_EXPORT, Policies: []*api.Policy{{Name: u.Policies[0].Name}}}}); err != nil {
		t.Fatal(err)
	}
	hp, err := sp.pb.holdPath(underHold, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.leaf.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: hp}); err != nil {
		t.Fatal(err)
	}
	// The receiver keeps the rejected prefix (a policy applies to later
	// exports; adj-out is judged by today's), not the one under the HOLD
	// path.
	lab.Eventually(t, 5*time.Second, "the receiver without "+underHold.String(), func() error {
		if _, ok := rib(t, x.receiver)[underHold]; ok {
			return fmt.Errorf("it has it")
		}
		return nil
	})

	asked := append(slices.Clone(learned), local, absent)
	want := map[netip.Prefix]bool{p1: true, p6: true, local: true}
	for i, p := range many {
		want[p] = i%3 != 0
	}
	for _, nb := range []string{feederAddr, receiverAddr} {
		for _, f := range []*api.Family{familyV4, familyV6} {
			var ps []netip.Prefix
			for _, p := range asked {
				if p.Addr().Is4() == (f == familyV4) {
					ps = append(ps, p)
				}
			}
			got, err := reexport.Advertised(ctx, x.leaf, nb, ps)
			if err != nil {
				t.Fatalf("%s (%s): %v", nb, f.Afi, err)
			}
			// GoBGP's own adj-out, unfiltered paths only.
			sent := map[netip.Prefix]bool{}
			if err := x.leaf.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_ADJ_OUT, Name: nb, Family: f, EnableFiltered: true}, func(d *api.Destination) {
				if slices.ContainsFunc(d.Paths, func(x *api.Path) bool { return !x.Filtered }) {
					sent[netip.MustParsePrefix(d.Prefix)] = true
				}
			}); err != nil {
				t.Fatal(err)
			}
			for i, p := range ps {
				if got[i] != sent[p] {
					t.Errorf("to %s: %v advertised %v, GoBGP's adj-out says %v", nb, p, got[i], sent[p])
				}
				// And what the test set up: the feeder gets only what it
				// did not send (the local prefix).
				if w := want[p] && (nb == receiverAddr || p == local); got[i] != w {
					t.Errorf("to %s: %v advertised %v, want %v", nb, p, got[i], w)
				}
			}
		}
	}

	// The RIB's prefixes, listed without GoBGP's copy of the table, are
	// the ones its API lists.
	for _, f := range []*api.Family{familyV4, familyV6} {
		got, err := reexport.RIBPrefixes(ctx, x.leaf, f == familyV4)
		if err != nil {
			t.Fatal(err)
		}
		var want []netip.Prefix
		if err := x.leaf.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: f}, func(d *api.Destination) {
			want = append(want, netip.MustParsePrefix(d.Prefix))
		}); err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(got, netip.Prefix.Compare)
		slices.SortFunc(want, netip.Prefix.Compare)
		if !slices.Equal(got, want) || len(want) == 0 {
			t.Errorf("%s: RIBPrefixes lists %d prefixes, the API %d: %v, want %v", f.Afi, len(got), len(want), got, want)
		}
	}

	// A route-server client's export is per path: the API's to judge.
	if err := x.leaf.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{Conf: &api.PeerConf{NeighborAddress: "127.0.0.9", PeerAsn: 65009},
		RouteServer: &api.RouteServer{RouteServerClient: true}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := reexport.Advertised(ctx, x.leaf, "127.0.0.9", []netip.Prefix{p1}); !errors.Is(err, reexport.ErrAskAPI) {
		t.Errorf("a route-server client: %v, want ErrAskAPI", err)
	}
	if _, err := reexport.Advertised(ctx, x.leaf, "127.0.0.10", []netip.Prefix{p1}); err == nil || errors.Is(err, reexport.ErrAskAPI) {
		t.Errorf("no such neighbour: %v, want an error that is not ErrAskAPI", err)
	}
}
