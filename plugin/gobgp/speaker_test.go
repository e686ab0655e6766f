//go:build linux

package gobgp

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/internal/flat"
)

// These tests use loopLab (three BgpServers on loopback, no root): what
// the leaf sent is read from the receiver's RIB.

var (
	p1 = netip.MustParsePrefix("10.1.1.0/24")
	p2 = netip.MustParsePrefix("10.2.0.0/16")
	p6 = netip.MustParsePrefix("2001:db8:1::/48")
)

func TestInvalidAdvertisementsAreReportedAndTheRestIsDone(t *testing.T) {
	sp, err := newSpeaker(nopBackend{}, Config{Scope: []Range{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), MaxLen: 32}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := sp.Advertise(ctx, ads(gate.Transit, p1)); !errors.Is(err, ErrNotBootstrapped) {
		t.Fatalf("before Bootstrap: %v, want ErrNotBootstrapped", err)
	}
	if err := sp.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	err = sp.Advertise(ctx, []gate.Advertisement{
		{Prefix: netip.Prefix{}, Origin: gate.Transit},
		{Prefix: netip.MustParsePrefix("10.1.1.1/24"), Origin: gate.Transit},
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Origin: gate.Transit},
		{Prefix: p2, Origin: gate.Origin(9)},
		{Prefix: p1, Origin: gate.Transit},
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Origin: gate.Originated}, // out of scope is fine
	})
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, ErrOutOfScope) {
		t.Fatalf("error %v: want ErrInvalid and ErrOutOfScope", err)
	}
	if st := sp.rec.get(p1); !st.transit || !st.released {
		t.Errorf("valid transit %v not released: %+v", p1, st)
	}
	if st := sp.rec.get(netip.MustParsePrefix("192.0.2.0/24")); !st.originated || st.released {
		t.Errorf("originated out-of-scope prefix: %+v, want originated and not in the held set", st)
	}
	if _, err := newSpeaker(nopBackend{}, Config{HoldCommunity: "65535:666"}, nil); err == nil {
		t.Error("BLACKHOLE accepted as hold community")
	}
}

func TestBootstrapAgainChangesNothing(t *testing.T) {
	x := newLoopLab(t)
	sp, err := NewInProcess(x.leaf, Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := sp.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	x.announce(t, false, p1, p2, p6)
	x.learned(t, p1, p2, p6)
	if err := sp.Advertise(ctx, ads(gate.Transit, p1, p6)); err != nil {
		t.Fatal(err)
	}
	before := x.received(t, []netip.Prefix{p1, p2, p6}, p1, p6)
	for range 2 {
		if err := sp.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
	}
	after := x.received(t, []netip.Prefix{p1, p2, p6}, p1, p6)
	for _, p := range []netip.Prefix{p1, p6} {
		if !after[p].Equal(before[p]) {
			t.Errorf("%v announced again by a repeated Bootstrap", p)
		}
	}
}

// releasedByAPredecessor is a leaf where a first Speaker released p1 and
// p2 as transit and then went away without closing (a crash); it returns
// what the receiver has.
func releasedByAPredecessor(t *testing.T) (*loopLab, map[netip.Prefix]time.Time) {
	t.Helper()
	x := newLoopLab(t)
	ctx := context.Background()
	first, err := NewInProcess(x.leaf, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	x.announce(t, false, p1, p2)
	x.learned(t, p1, p2)
	if err := first.Advertise(ctx, ads(gate.Transit, p1, p2)); err != nil {
		t.Fatal(err)
	}
	return x, x.received(t, []netip.Prefix{p1, p2}, p1, p2)
}

func TestNewSpeakerWithdrawsWhatAnEarlierOneReleased(t *testing.T) {
	x, _ := releasedByAPredecessor(t)
	ctx := context.Background()

	// A restart: the new Speaker knows nothing, so nothing stays out on
	// stale state; the gate releases again what it confirms.
	second, err := NewInProcess(x.leaf, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	x.received(t, []netip.Prefix{p1, p2})
	if err := second.Advertise(ctx, ads(gate.Transit, p1)); err != nil {
		t.Fatal(err)
	}
	x.received(t, []netip.Prefix{p1, p2}, p1)
}

// TestNewSpeakerAdoptsWhatIsStillConfirmed: a restart with WithAdopt keeps
// out what the daemon's FIB view says is confirmed (the neighbour sees no
// update at all) and withdraws the rest.
func TestNewSpeakerAdoptsWhatIsStillConfirmed(t *testing.T) {
	x, before := releasedByAPredecessor(t)
	ctx := context.Background()

	var asked []netip.Prefix
	second, err := NewInProcess(x.leaf, Config{}, WithAdopt(func(p netip.Prefix) bool {
		asked = append(asked, p)
		return p == p1 // p2's route is no longer confirmed
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	after := x.received(t, []netip.Prefix{p1, p2}, p1)
	if !after[p1].Equal(before[p1]) {
		t.Errorf("%v was withdrawn and sent again on adoption (age %v -> %v)", p1, before[p1], after[p1])
	}
	if got := second.Released(); len(got) != 1 || got[0].Prefix != p1 || got[0].Origin != gate.Transit {
		t.Errorf("Released() = %v, want %v as transit", got, p1)
	}
	// Adoption is the first Bootstrap's alone.
	asked = nil
	if _, err := second.Check(ctx); err != nil || len(asked) != 0 {
		t.Errorf("Check asked adopt about %v (%v)", asked, err)
	}
}

func TestNewConfigurationSwapsThePolicyAndDeletesTheOld(t *testing.T) {
	x := newLoopLab(t)
	ctx := context.Background()
	old, err := NewInProcess(x.leaf, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	x.announce(t, false, p1, p2)
	x.learned(t, p1, p2)
	if err := old.Advertise(ctx, ads(gate.Transit, p1)); err != nil {
		t.Fatal(err)
	}
	x.received(t, []netip.Prefix{p1, p2}, p1)

	nw, err := NewInProcess(x.leaf, Config{Scope: []Range{{Prefix: netip.MustParsePrefix("10.1.0.0/16"), MaxLen: 32}}, HoldCommunity: "65534:1"})
	if err != nil {
		t.Fatal(err)
	}
	if nw.cfg.policy == old.cfg.policy {
		t.Fatal("a new configuration got the old policy name")
	}
	if err := nw.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := nw.b.exportAssignment(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Policies) != 1 || a.Policies[0].Name != nw.cfg.policy {
		t.Fatalf("global export chain %v, want only %s", a.Policies, nw.cfg.policy)
	}
	var names []string
	if err := nw.b.listPolicies(ctx, func(p *api.Policy) { names = append(names, p.Name) }); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(names, old.cfg.policy) {
		t.Errorf("old policy %s still defined: %v", old.cfg.policy, names)
	}
	// p1 was released under the old configuration only: withdrawn.
	x.received(t, []netip.Prefix{p1, p2})
}

// flaky fails the nth call of sendPaths (counting from 1) and passes
// everything else to the real backend.
type flaky struct {
	backend
	n, calls atomic.Int32
}

func (f *flaky) sendPaths(ctx context.Context, paths []*api.Path) error {
	if f.calls.Add(1) == f.n.Load() {
		return errors.New("injected failure")
	}
	return f.backend.sendPaths(ctx, paths)
}

func TestFailedCallIsCompletedFailClosedByCheckAndClose(t *testing.T) {
	x := newLoopLab(t)
	ctx := context.Background()
	fb := &flaky{backend: serverBackend{x.leaf}}
	sp, err := newSpeaker(fb, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	x.announce(t, false, p1, p2)
	x.learned(t, p1, p2)
	if err := sp.Advertise(ctx, ads(gate.Transit, p1, p2)); err != nil {
		t.Fatal(err)
	}
	x.received(t, []netip.Prefix{p1, p2}, p1, p2)

	// Withdraw fails at its last step (deleting the HOLD paths): peers
	// got the withdraw, the HOLD paths stay.
	fb.n.Store(fb.calls.Load() + 2)
	if err := sp.Withdraw(ctx, ads(gate.Transit, p1)); err == nil {
		t.Fatal("Withdraw did not report the injected failure")
	}
	x.received(t, []netip.Prefix{p1, p2}, p2)
	if n := countHold(t, sp.b, sp.cfg.hold); n != 1 {
		t.Fatalf("%d HOLD paths after the failure, want 1", n)
	}
	if again, err := sp.Check(ctx); err != nil || !again {
		t.Fatalf("Check = %v, %v; want a repair", again, err)
	}
	if n := countHold(t, sp.b, sp.cfg.hold); n != 0 {
		t.Fatalf("%d HOLD paths after Check", n)
	}
	x.received(t, []netip.Prefix{p1, p2}, p2)

	// Advertise fails sending its paths after the held set released p1
	// (its first call, the HOLD path's add, goes through): Check takes
	// the release back (fail-closed); nothing leaks.
	fb.n.Store(fb.calls.Load() + 2)
	if err := sp.Advertise(ctx, ads(gate.Transit, p1)); err == nil {
		t.Fatal("Advertise did not report the injected failure")
	}
	if _, err := sp.Check(ctx); err != nil {
		t.Fatal(err)
	}
	x.received(t, []netip.Prefix{p1, p2}, p2)
	if err := sp.Advertise(ctx, ads(gate.Transit, p1)); err != nil {
		t.Fatal(err)
	}
	x.received(t, []netip.Prefix{p1, p2}, p1, p2)

	// A HOLD path left by a failure is deleted by Close.
	fb.n.Store(fb.calls.Load() + 2)
	if err := sp.Withdraw(ctx, ads(gate.Transit, p2)); err == nil {
		t.Fatal("Withdraw did not report the injected failure")
	}
	if err := sp.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countHold(t, sp.b, sp.cfg.hold); n != 0 {
		t.Fatalf("%d HOLD paths after Close", n)
	}
	x.received(t, []netip.Prefix{p1, p2}, p1)
}

// A prefix fibgate originates may also be learned from a peer. Taking the
// originated one back must not let the learned one out: a plain
// DeletePath while the prefix is still released would make the learned
// path best and export it, so the Speaker goes through a HOLD path.
func TestTakingBackAnOriginatedPrefixDoesNotLetALearnedOneOut(t *testing.T) {
	x := newLoopLab(t)
	ctx := context.Background()
	sp, err := NewInProcess(x.leaf, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	x.announce(t, false, p1)
	x.learned(t, p1)
	if err := sp.Advertise(ctx, ads(gate.Originated, p1)); err != nil {
		t.Fatal(err)
	}
	x.received(t, []netip.Prefix{p1}, p1)
	if err := sp.Withdraw(ctx, ads(gate.Originated, p1)); err != nil {
		t.Fatal(err)
	}
	x.received(t, []netip.Prefix{p1})
	lab.Never(t, quiet/2, "the learned path stays held", func() error {
		if _, ok := rib(t, x.receiver)[p1]; ok {
			return errors.New("receiver got the learned path")
		}
		return nil
	})
	// Released as transit, the learned path goes out.
	if err := sp.Advertise(ctx, ads(gate.Transit, p1)); err != nil {
		t.Fatal(err)
	}
	x.received(t, []netip.Prefix{p1}, p1)
}

// SetPolicies drops the whole global export chain, user policies and
// default action included, because the gate's policy is in it (without
// fibgate they would survive). The re-install puts them back.
func TestReinstallRestoresTheUserChainAReloadDropped(t *testing.T) {
	x := newLoopLab(t)
	ctx := context.Background()
	b := serverBackend{x.leaf}
	if err := x.leaf.SetPolicies(ctx, userPolicies()); err != nil {
		t.Fatal(err)
	}
	if err := b.setExportAssignment(ctx, []string{"user-export"}, api.RouteAction_REJECT); err != nil {
		t.Fatal(err)
	}
	sp, err := NewInProcess(x.leaf, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	if err := x.leaf.SetPolicies(ctx, userPolicies()); err != nil {
		t.Fatal(err)
	}
	a, err := b.exportAssignment(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Policies) != 0 || a.DefaultAction != api.RouteAction_ACCEPT {
		t.Fatalf("GoBGP changed: after SetPolicies the chain is %v, default %v", a.Policies, a.DefaultAction)
	}
	if again, err := sp.Check(ctx); err != nil || !again {
		t.Fatalf("Check = %v, %v", again, err)
	}
	if a, err = b.exportAssignment(ctx); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range a.Policies {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{sp.cfg.policy, "user-export"}) || a.DefaultAction != api.RouteAction_REJECT {
		t.Fatalf("chain %v, default %v; want the gate, user-export, reject", names, a.DefaultAction)
	}
}

// TestPrefixStateIsSmallAndFlat: the Speaker keeps a prefixState for every
// released prefix of a full table, in a map the collector must never scan:
// neither its key nor its state may hold a pointer, and the state stays at
// 24 bytes; an originated path's next hop lives in Speaker.onh.
func TestPrefixStateIsSmallAndFlat(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are for 64-bit platforms")
	}
	if n := unsafe.Sizeof(prefixState{}); n > 24 {
		t.Errorf("prefixState is %d bytes, more than 24", n)
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[prefixState](), reflect.TypeFor[record]().Field(0).Type.Key()} {
		if flat.HasPointers(typ) {
			t.Errorf("%v holds a pointer", typ)
		}
	}
}
