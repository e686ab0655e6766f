package gate

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/internal/fanout"
)

// modelSource is an in-memory Source: a real fib model whose changes are
// published as events, the way the kernel listener does.
type modelSource struct {
	mu    sync.RWMutex
	f     *fib.FIB
	hub   fanout.Hub[fib.Event]
	ready chan struct{}
}

func newModelSource() *modelSource {
	s := &modelSource{f: fib.New(fib.WithNotifyMode(fib.IPv4, fib.NotifyAll), fib.WithNotifyMode(fib.IPv6, fib.NotifyAll)), ready: make(chan struct{})}
	close(s.ready)
	return s
}

func (s *modelSource) Ready() <-chan struct{} { return s.ready }
func (s *modelSource) View(fn func(*fib.FIB)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn(s.f)
}
func (s *modelSource) Events(ctx context.Context, snapshot bool) <-chan []fib.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first []fib.Event
	if snapshot {
		for r := range s.f.All() {
			c := r.Clone()
			first = append(first, fib.Event{Kind: fib.Added, Snapshot: true, New: &c})
		}
	}
	return s.hub.Subscribe(ctx, first)
}

func (s *modelSource) add(t testing.TB, r fib.Route) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.f.Add(r, fib.NLMCreate|fib.NLMExcl); err != nil {
		t.Fatal(err)
	}
	c := r.Clone()
	s.hub.Publish([]fib.Event{{Kind: fib.Added, New: &c}})
}

func (s *modelSource) del(t testing.TB, r fib.Route) {
	t.Helper()
	s.together(removed(t, r))
}

// replace rewrites old into r in place, as the FIB installer does.
func (s *modelSource) replace(t *testing.T, old, r fib.Route) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.f.Add(r, fib.NLMCreate|fib.NLMReplace); err != nil {
		t.Fatal(err)
	}
	o, c := old.Clone(), r.Clone()
	s.hub.Publish([]fib.Event{{Kind: fib.Changed, Old: &o, New: &c}})
}

func (s *modelSource) clock() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.f.Clock()
}

func (s *modelSource) flags(r fib.Route, f fib.HWFlags) { s.together(flagged(r, f)) }

// together applies changes to the model and publishes their events as one
// batch, so the tracker judges them in one turn: each change returns its
// event (nil: none; nothing is published when none has one).
func (s *modelSource) together(changes ...func(f *fib.FIB) *fib.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var evs []fib.Event
	for _, c := range changes {
		if ev := c(s.f); ev != nil {
			evs = append(evs, *ev)
		}
	}
	if len(evs) > 0 {
		s.hub.Publish(evs)
	}
}

// removed is a change for together: r leaves the model.
func removed(t testing.TB, r fib.Route) func(f *fib.FIB) *fib.Event {
	return func(f *fib.FIB) *fib.Event {
		if _, err := f.Delete(r); err != nil {
			t.Fatal(err)
		}
		c := r.Clone()
		return &fib.Event{Kind: fib.Removed, Old: &c}
	}
}

// flagged is a change for together: r's hardware flags become hw.
func flagged(r fib.Route, hw fib.HWFlags) func(f *fib.FIB) *fib.Event {
	return func(f *fib.FIB) *fib.Event {
		old, _ := f.Find(&r)
		if len(f.SetFlags(&r, hw)) == 0 {
			return nil
		}
		cur, _ := f.Find(&r)
		return &fib.Event{Kind: fib.Changed, Old: &old, New: &cur}
	}
}

func route(p string) fib.Route {
	return fib.Route{Table: fib.TableMain, Prefix: netip.MustParsePrefix(p), Type: fib.TypeUnicast,
		Protocol: fib.ProtoBGP, Nexthops: []fib.Nexthop{{LinkIndex: 2}}}
}

// startTracker runs a tracker in the current synctest bubble.
func startTracker(t testing.TB, src Source, p Policy, opts ...TrackerOption) *Tracker {
	t.Helper()
	tr, err := NewTracker(src, p, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	<-tr.Ready()
	return tr
}

func stateOf(t *testing.T, tr *Tracker, p string) RouteState {
	t.Helper()
	synctest.Wait()
	st, _ := tr.Get(fib.TableMain, netip.MustParsePrefix(p))
	return st
}

func TestTrackerConfirmsOnlyWhenHardwareDoes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		src.add(t, route("10.0.0.0/24")) // before start: comes in the snapshot
		tr := startTracker(t, src, DefaultPolicy())
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Pending || st.Reason != "waiting for hardware" {
			t.Fatalf("snapshot route: %v %q, want pending", st.State, st.Reason)
		}
		src.add(t, route("10.0.1.0/24"))
		time.Sleep(300 * time.Millisecond) // the hardware takes its time
		if tr.HardwareSeen() {
			t.Error("HardwareSeen before any route had a flag")
		}
		src.flags(route("10.0.1.0/24"), fib.Trap)
		st := stateOf(t, tr, "10.0.1.0/24")
		if !tr.HardwareSeen() || !tr.HardwareSeenIn(fib.IPv4) || tr.HardwareSeenIn(fib.IPv6) {
			t.Errorf("after an IPv4 route trapped: HardwareSeen %t, in IPv4 %t, in IPv6 %t; want true, true, false",
				tr.HardwareSeen(), tr.HardwareSeenIn(fib.IPv4), tr.HardwareSeenIn(fib.IPv6))
		}
		if v4, v6 := tr.PendingIn(fib.IPv4), tr.PendingIn(fib.IPv6); v4 != 1 || v6 != 0 {
			t.Errorf("pending by family: %d IPv4, %d IPv6; want 1, 0", v4, v6)
		}
		if st.State != Confirmed || st.ConfirmedAt.Sub(st.SeenAt) != 300*time.Millisecond {
			t.Fatalf("trapped route: %v seen %v confirmed %v", st.State, st.SeenAt, st.ConfirmedAt)
		}
		if s := tr.Stats(); s.TimeToHardware.Count != 1 || s.TimeToHardware.Max != 300*time.Millisecond || s.ByState[Pending] != 1 {
			t.Errorf("stats = %+v", s)
		}
		// Without a Speaker nothing releases: one pending, one confirmed.
		if moving, all := tr.Unsettled(); moving != 2 || all != 2 {
			t.Errorf("Unsettled() = %d, %d; want 2 on their way of 2", moving, all)
		}
		src.flags(route("10.0.0.0/24"), fib.Offload)
		synctest.Wait()
		src.del(t, route("10.0.1.0/24"))
		synctest.Wait()
		if moving, all := tr.Unsettled(); moving != 1 || all != 2 {
			t.Errorf("after a deletion: Unsettled() = %d, %d; want 1 of 2 (the withdrawn one is not on its way)", moving, all)
		}
	})
}

// The audit reads Briefs where it read List: the same prefixes, in the
// same order, with the same state and release time.
func TestBriefsAgreeWithList(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		for _, p := range []string{"2001:db8::/64", "10.0.1.0/24", "10.0.0.0/24", "10.0.0.0/16"} {
			src.add(t, route(p))
		}
		tr := startTracker(t, src, DefaultPolicy())
		src.flags(route("10.0.1.0/24"), fib.Trap)
		src.flags(route("2001:db8::/64"), fib.Offload)
		if st := stateOf(t, tr, "10.0.1.0/24"); st.State != Confirmed {
			t.Fatalf("trapped route: %v, want confirmed", st.State)
		}
		list, briefs := tr.List(), tr.Briefs()
		if len(list) != 4 || len(briefs) != len(list) {
			t.Fatalf("List has %d, Briefs %d; want 4 each", len(list), len(briefs))
		}
		for i, st := range list {
			want := Brief{Table: st.Table, State: st.State, Prefix: st.Prefix, AdvertisedAt: st.AdvertisedAt}
			if briefs[i] != want {
				t.Errorf("Briefs[%d] = %+v, want %+v", i, briefs[i], want)
			}
		}
	})
}

func TestTrackerHoldsDownAFlappingPrefix(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		tr := startTracker(t, src, DefaultPolicy())
		r := route("10.0.0.0/24")
		src.add(t, r)
		src.flags(r, fib.Trap)
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Confirmed {
			t.Fatalf("state %v, want confirmed", st.State)
		}
		src.flags(r, fib.OffloadFailed)
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Failed || st.Flaps != 1 {
			t.Fatalf("after failure: %v flaps %d", st.State, st.Flaps)
		}
		src.flags(r, fib.Trap)
		st := stateOf(t, tr, "10.0.0.0/24")
		if st.State != HeldDown || time.Until(st.HoldUntil) != time.Second {
			t.Fatalf("after recovery: %v until %v, want held down for 1 s", st.State, st.HoldUntil)
		}
		time.Sleep(time.Second)
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Confirmed {
			t.Fatalf("after the hold time: %v, want confirmed", st.State)
		}
		// A second flap doubles the hold time.
		src.flags(r, 0)
		src.flags(r, fib.Trap)
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != HeldDown || time.Until(st.HoldUntil) != 2*time.Second {
			t.Fatalf("second flap: %v until %v, want held down for 2 s", st.State, st.HoldUntil)
		}
	})
}

func TestTrackerPendingTimeout(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		name := map[bool]string{false: "fail-closed keeps holding", true: "fail-open advertises"}[failOpen]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := DefaultScope()
				s.PendingTimeout, s.FailOpen = 5*time.Second, failOpen
				src := newModelSource()
				tr := startTracker(t, src, Policy{Scopes: []Scope{s}})
				src.add(t, route("10.0.0.0/24"))
				time.Sleep(4 * time.Second)
				if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Pending {
					t.Fatalf("before the timeout: %v", st.State)
				}
				time.Sleep(time.Second)
				st := stateOf(t, tr, "10.0.0.0/24")
				if failOpen && (st.State != Confirmed || !strings.Contains(st.Reason, "fail-open")) ||
					!failOpen && (st.State != Pending || !strings.Contains(st.Reason, "fail-closed")) {
					t.Fatalf("after the timeout: %v %q", st.State, st.Reason)
				}
			})
		})
	}
}

func TestTrackerWithdrawsAndForgets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		tr := startTracker(t, src, DefaultPolicy())
		r := route("10.0.0.0/24")
		src.add(t, r)
		src.flags(r, fib.Trap)
		synctest.Wait() // the tracker sees it confirmed before it goes
		src.del(t, r)
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Withdrawn || st.WithdrawnAt.IsZero() {
			t.Fatalf("after delete: %v", st.State)
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if _, ok := tr.Get(fib.TableMain, r.Prefix); ok {
			t.Errorf("withdrawn prefix still listed after the retention time")
		}
		if n := tr.Stats().Withdrawn; n != 0 {
			t.Errorf("withdrawals = %d without BGP, want 0: they count what BGP took back", n)
		}
	})
}

func TestTrackerFollowsPolicyChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		only10 := DefaultScope()
		only10.Prefixes = []PrefixRange{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), MaxLen: 32}}
		tr := startTracker(t, src, Policy{Scopes: []Scope{only10}})
		src.add(t, route("10.0.0.0/24"))
		src.add(t, route("192.0.2.0/24"))
		if _, ok := tr.Get(fib.TableMain, netip.MustParsePrefix("192.0.2.0/24")); ok || stateOf(t, tr, "10.0.0.0/24").State != Pending {
			t.Fatalf("scope not applied: %v", tr.List())
		}
		watch := tr.Watch(t.Context(), true)
		if snap := <-watch; len(snap) != 1 {
			t.Fatalf("watch snapshot has %d states, want 1", len(snap))
		}
		fibOnly := DefaultScope()
		fibOnly.Level = LevelFIB
		if err := tr.SetPolicy(Policy{Scopes: []Scope{fibOnly}}); err != nil {
			t.Fatal(err)
		}
		changes := <-watch
		if len(changes) != 2 || changes[0].State != Confirmed || changes[1].State != Confirmed {
			t.Fatalf("after policy change: %+v", changes)
		}
		if err := tr.SetPolicy(Policy{Scopes: []Scope{{}}}); err == nil {
			t.Errorf("an invalid policy was accepted")
		}
	})
}

// TestAdoptedPrefixesThatAreNotConfirmedAreWithdrawn: after a restart the
// Speaker may have kept releases of its predecessor (WithAlreadyOut); the
// tracker must take back those whose route is not confirmed now, and leave
// the confirmed ones out.
func TestAdoptedPrefixesThatAreNotConfirmedAreWithdrawn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		confirmed, stale := route("192.0.2.0/24"), route("198.51.100.0/24")
		src.add(t, confirmed)
		src.add(t, stale)
		src.flags(confirmed, fib.Trap)
		sp := newRecSpeaker(1)
		for _, r := range []fib.Route{confirmed, stale} { // what the predecessor left out
			sp.out[r.Prefix] = Advertisement{Prefix: r.Prefix, Origin: Transit}
		}
		tr, err := NewTracker(src, DefaultPolicy(), WithSpeaker(sp, ByProtocol(fib.ProtoBGP)),
			WithAlreadyOut(func(p netip.Prefix) bool { _, ok := sp.snapshot()[p]; return ok }))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tr.Run(ctx) }()
		<-tr.Ready()
		synctest.Wait()
		out := sp.snapshot()
		if _, ok := out[stale.Prefix]; ok {
			t.Errorf("%v is not confirmed but still out", stale.Prefix)
		}
		if _, ok := out[confirmed.Prefix]; !ok {
			t.Errorf("%v is confirmed but was taken back", confirmed.Prefix)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestEventsAreReadWhileBGPIsBusy: while the tracker waits for BGP to take
// a release, the source's events are read as they come (inbox), so the
// backlog is a set of prefixes the tracker holds, not the source's queue
// of events with their routes; it counts among the prefixes on their way
// (Unsettled), and is judged once BGP answers.
func TestEventsAreReadWhileBGPIsBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		sp := newRecSpeaker(1)
		block := make(chan struct{})
		sp.block = block
		tr := startTracker(t, src, DefaultPolicy(), WithSpeaker(sp, ByProtocol(fib.ProtoBGP)))
		src.add(t, route("10.0.0.0/24"))
		synctest.Wait() // judged pending: the flags come in an event of their own
		src.flags(route("10.0.0.0/24"), fib.Offload)
		synctest.Wait() // the release waits for BGP
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Confirmed {
			t.Fatalf("first prefix %v, want confirmed while BGP takes it", st.State)
		}
		const n = 1000
		for i := range n {
			src.add(t, route(fmt.Sprintf("10.1.%d.%d/32", i/256, i%256)))
		}
		synctest.Wait()
		if _, items := src.hub.Backlog(); items != 0 {
			t.Errorf("the source still queues %d events for the tracker while BGP is busy, want 0", items)
		}
		if moving, _ := tr.Unsettled(); moving != n+1 {
			t.Errorf("Unsettled() = %d on their way, want %d (the read prefixes and the release)", moving, n+1)
		}
		close(block)
		synctest.Wait()
		if st := stateOf(t, tr, "10.1.3.231/32"); st.State != Pending {
			t.Errorf("a prefix read while BGP was busy: %v, want pending once judged", st.State)
		}
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Released {
			t.Errorf("first prefix %v, want released", st.State)
		}
	})
}
