package gate

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// modelRewriter writes routes of a modelSource again as the kernel does
// for kernel.RouteWriter.Rewrite (the route goes and comes back, its flags
// cleared), and plays the driver: latency after a rewrite it sets the flags
// that answer returns.
type modelRewriter struct {
	src     *modelSource
	latency time.Duration
	answer  func() fib.HWFlags

	mu    sync.Mutex
	times []time.Time
}

func (w *modelRewriter) Rewrite(_ context.Context, routes []fib.Route) []error {
	errs := make([]error, len(routes))
	for i, r := range routes {
		w.src.mu.Lock()
		cur, ok := w.src.f.Find(&r)
		if !ok {
			w.src.mu.Unlock()
			errs[i] = syscall.ESRCH
			continue
		}
		if _, err := w.src.f.Delete(cur); err != nil {
			panic(err)
		}
		fresh := cur.Clone()
		fresh.Flags = 0
		if _, err := w.src.f.Add(fresh, fib.NLMCreate|fib.NLMExcl); err != nil {
			panic(err)
		}
		w.src.hub.Publish([]fib.Event{{Kind: fib.Removed, Old: &cur}, {Kind: fib.Added, New: &fresh}})
		w.src.mu.Unlock()
		w.mu.Lock()
		w.times = append(w.times, time.Now())
		w.mu.Unlock()
		time.AfterFunc(w.latency, func() { w.src.flags(fresh, w.answer()) })
	}
	return errs
}

func (w *modelRewriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.times)
}

// answers is a driver's answer that the test can change.
type answers struct {
	mu sync.Mutex
	f  fib.HWFlags
}

func (a *answers) get() fib.HWFlags {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f
}

func (a *answers) set(f fib.HWFlags) {
	a.mu.Lock()
	a.f = f
	a.mu.Unlock()
}

func startRetryTracker(t *testing.T, src *modelSource, p Policy, rw Rewriter, opts ...TrackerOption) *Tracker {
	t.Helper()
	tr, err := NewTracker(src, p, append([]TrackerOption{WithRewriter(rw)}, opts...)...)
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

// watchStates collects every state the tracker publishes for prefix.
func watchStates(t *testing.T, tr *Tracker, prefix string) func() []RouteState {
	t.Helper()
	p := netip.MustParsePrefix(prefix)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch := tr.Watch(ctx, false)
	var mu sync.Mutex
	var seen []RouteState
	go func() {
		for b := range ch {
			mu.Lock()
			for _, st := range b {
				if st.Prefix == p {
					seen = append(seen, st)
				}
			}
			mu.Unlock()
		}
	}()
	return func() []RouteState {
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		return append([]RouteState(nil), seen...)
	}
}

// TestAFailedRouteIsWrittenAgainWithBackoffAndRecovers: with the default
// retry, a route whose programming failed is written again after about 1 s,
// 2 s, 4 s, ... (less up to a fifth of jitter), stays failed meanwhile
// (never pending: watchers see no churn), and recovers without anything
// outside the gate touching it once the driver accepts.
func TestAFailedRouteIsWrittenAgainWithBackoffAndRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		drv := &answers{f: fib.OffloadFailed}
		rw := &modelRewriter{src: src, latency: 10 * time.Millisecond, answer: drv.get}
		tr := startRetryTracker(t, src, DefaultPolicy(), rw)
		seen := watchStates(t, tr, "10.0.0.0/24")
		r := route("10.0.0.0/24")
		src.add(t, r)
		start := time.Now()
		src.flags(r, fib.OffloadFailed)
		st := stateOf(t, tr, "10.0.0.0/24")
		if st.State != Failed || st.Retries != 0 || st.NextRetry.IsZero() || st.Reason != "hardware reported offload_failed" {
			t.Fatalf("after the failure: %v %q retries %d next %v", st.State, st.Reason, st.Retries, st.NextRetry)
		}
		time.Sleep(8 * time.Second)
		synctest.Wait()
		rw.mu.Lock()
		times := append([]time.Time(nil), rw.times...)
		rw.mu.Unlock()
		if len(times) != 3 {
			t.Fatalf("%d rewrites in 8 s, want 3 (about 1 s, 2 s and 4 s apart): %v", len(times), times)
		}
		prev := start
		for i, at := range times {
			base := time.Second << i
			gap := at.Sub(prev)
			if gap > base+20*time.Millisecond || gap < time.Duration(float64(base)*0.8) {
				t.Errorf("rewrite %d came %s after the one before, want %s less up to 20%% (plus the driver's 10 ms)", i+1, gap, base)
			}
			prev = at
		}
		st = stateOf(t, tr, "10.0.0.0/24")
		if st.State != Failed || st.Retries != 3 {
			t.Errorf("after 3 retries: %v retries %d", st.State, st.Retries)
		}
		if rs := tr.RetryStats(); rs.Rewrites != 3 || rs.RewriteErrors != 0 {
			t.Errorf("retry stats %+v, want 3 rewrites", rs)
		}

		// The driver accepts again: the next rewrite brings the route back.
		drv.set(fib.Trap)
		time.Sleep(8 * time.Second)
		st = stateOf(t, tr, "10.0.0.0/24")
		if st.State != Confirmed || st.Flags != fib.Trap || st.Retries != 0 || !st.NextRetry.IsZero() {
			t.Fatalf("after the driver recovered: %v %s retries %d next %v, want confirmed on trap", st.State, st.Flags, st.Retries, st.NextRetry)
		}
		n := rw.count()
		time.Sleep(10 * time.Minute)
		if rw.count() != n {
			t.Errorf("%d rewrites of a confirmed route", rw.count()-n)
		}
		// Watchers hear of the failure once and of the recovery, not of
		// every retry.
		var states []State
		for _, s := range seen() {
			states = append(states, s.State)
		}
		if len(states) > 0 && states[0] == Pending {
			states = states[1:] // the add, when judged before its failure
		}
		if len(states) != 2 || states[0] != Failed || states[1] != Confirmed {
			t.Errorf("watch saw %v, want failed once, then confirmed", states)
		}
	})
}

// TestAFlappingDriverIsStillHeldDown: retries bring a route back, and a
// driver that keeps failing it after confirming it is damped by the
// hold-down as before, with longer holds each time.
func TestAFlappingDriverIsStillHeldDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		drv := &answers{f: fib.Trap}
		rw := &modelRewriter{src: src, latency: 10 * time.Millisecond, answer: drv.get}
		tr := startRetryTracker(t, src, DefaultPolicy(), rw)
		r := route("10.0.0.0/24")
		src.add(t, r)
		src.flags(r, fib.Trap)
		for flap, hold := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
			if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Confirmed {
				t.Fatalf("before flap %d: %v (%s)", flap+1, st.State, st.Reason)
			}
			cur, _ := src.f.First(fib.TableMain, r.Prefix)
			src.flags(cur, fib.OffloadFailed)
			if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Failed || st.Flaps != flap+1 {
				t.Fatalf("flap %d: %v flaps %d", flap+1, st.State, st.Flaps)
			}
			// A retry has the driver trap it again: held down. Retries of
			// a flapping route back off too (1 s, 2 s, 4 s, ...).
			st := stateOf(t, tr, "10.0.0.0/24")
			for wait := 0; st.State == Failed && wait < 100; wait++ {
				time.Sleep(100 * time.Millisecond)
				st = stateOf(t, tr, "10.0.0.0/24")
			}
			if st.State != HeldDown {
				t.Fatalf("flap %d, after the retry: %v (%s), want held down", flap+1, st.State, st.Reason)
			}
			if rw.count() != flap+1 {
				t.Errorf("flap %d: %d rewrites, want one per failure", flap+1, rw.count())
			}
			if got := st.HoldUntil.Sub(st.StateSince); got != hold {
				t.Errorf("flap %d: held down for %s, want %s", flap+1, got, hold)
			}
			time.Sleep(hold)
		}
	})
}

func TestRetryOffLeavesAFailedRouteAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		rw := &modelRewriter{src: src, answer: func() fib.HWFlags { return fib.Trap }}
		s := DefaultScope()
		s.Retry = Retry{}
		tr := startRetryTracker(t, src, Policy{Scopes: []Scope{s}}, rw)
		r := route("10.0.0.0/24")
		src.add(t, r)
		src.flags(r, fib.OffloadFailed)
		time.Sleep(time.Hour)
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Failed || rw.count() != 0 || st.Reason != "hardware reported offload_failed" {
			t.Errorf("retry off: %v %q after %d rewrites", st.State, st.Reason, rw.count())
		}
		// RetryNow writes it again all the same.
		n, err := tr.RetryNow(context.Background(), 0, netip.Prefix{})
		if n != 1 || err != nil {
			t.Fatalf("RetryNow = %d, %v", n, err)
		}
		time.Sleep(time.Second)
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Confirmed {
			t.Errorf("after RetryNow: %v (%s)", st.State, st.Reason)
		}
	})
}

func TestRetryNowSkipsTheBackoffAndOnlyFailedPrefixes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		drv := &answers{f: fib.OffloadFailed}
		rw := &modelRewriter{src: src, latency: time.Millisecond, answer: drv.get}
		s := DefaultScope()
		s.Retry = Retry{Initial: time.Hour, Max: time.Hour}
		tr := startRetryTracker(t, src, Policy{Scopes: []Scope{s}}, rw)
		failed, fine := route("10.0.0.0/24"), route("10.0.1.0/24")
		src.add(t, failed)
		src.add(t, fine)
		src.flags(failed, fib.OffloadFailed)
		src.flags(fine, fib.Trap)
		synctest.Wait()
		drv.set(fib.Trap)
		n, err := tr.RetryNow(context.Background(), fib.TableMain, netip.MustParsePrefix("10.0.1.0/24"))
		if n != 0 || err != nil {
			t.Errorf("RetryNow of a confirmed prefix = %d, %v; want nothing done", n, err)
		}
		if n, err = tr.RetryNow(context.Background(), 0, netip.Prefix{}); n != 1 || err != nil {
			t.Fatalf("RetryNow = %d, %v; want the failed route only", n, err)
		}
		time.Sleep(10 * time.Millisecond) // the driver's latency
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Confirmed || st.Retries != 0 {
			t.Errorf("after RetryNow: %v retries %d (%s)", st.State, st.Retries, st.Reason)
		}
		if rw.count() != 1 {
			t.Errorf("%d rewrites, want 1", rw.count())
		}
	})
}

func TestRetryNeedsARewriter(t *testing.T) {
	tr, err := NewTracker(newModelSource(), DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.RetryNow(context.Background(), 0, netip.Prefix{}); err != ErrNoRewriter {
		t.Errorf("RetryNow without a rewriter: %v", err)
	}
	p := DefaultPolicy()
	p.Scopes[0].Retry = Retry{Initial: time.Minute, Max: time.Second}
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "scopes[0].retry") {
		t.Errorf("retry initial above max: %v", err)
	}
}

// TestARefusedRouteShowsUntilTheKernelTakesIt: the FIB installer reports a
// route the kernel refused; the prefix shows as refused with the kernel's
// error and the retries, and once the kernel takes the route it is judged
// as usual.
func TestARefusedRouteShowsUntilTheKernelTakesIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		tr := startTracker(t, src, DefaultPolicy())
		seen := watchStates(t, tr, "10.0.0.0/24")
		p := netip.MustParsePrefix("10.0.0.0/24")
		const kerr = "operation not permitted: Exceeded number of supported fib entries"
		tr.Refused([]Refusal{{Table: fib.TableMain, Prefix: p, Err: kerr, Attempts: 1, NextRetry: time.Now().Add(time.Second)}})
		st := stateOf(t, tr, "10.0.0.0/24")
		if st.State != Refused || !strings.Contains(st.Reason, kerr) || st.Retries != 1 || st.Scope != "default" {
			t.Fatalf("refused: %v %q retries %d scope %q", st.State, st.Reason, st.Retries, st.Scope)
		}
		time.Sleep(time.Second)
		tr.Refused([]Refusal{{Table: fib.TableMain, Prefix: p, Err: kerr, Attempts: 2, NextRetry: time.Now().Add(2 * time.Second)}})
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Refused || st.Retries != 2 || !st.NextRetry.Equal(time.Now().Add(2*time.Second)) {
			t.Errorf("refused again: %v %q retries %d", st.State, st.Reason, st.Retries)
		}
		if s, rs := tr.Stats(), tr.RetryStats(); s.ByState[Refused] != 1 || rs.RefusedWrites != 2 || rs.Refusals != 1 {
			t.Errorf("stats: %d refused now, retry stats %+v; want 1, 2 refused writes, 1 refusal", s.ByState[Refused], rs)
		}
		// Out of scope: nothing to show.
		tr.Refused([]Refusal{{Table: 100, Prefix: p, Err: kerr}})
		if _, ok := tr.Get(100, p); ok {
			t.Error("a refusal in a table no scope gates is shown")
		}

		// The kernel takes it; its route shows in the FIB a moment later.
		tr.Installed(fib.TableMain, []netip.Prefix{p})
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Pending {
			t.Errorf("taken, route not seen yet: %v (%s)", st.State, st.Reason)
		}
		src.add(t, route("10.0.0.0/24"))
		src.flags(route("10.0.0.0/24"), fib.Trap)
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Confirmed || st.Retries != 0 {
			t.Errorf("programmed: %v retries %d (%s)", st.State, st.Retries, st.Reason)
		}
		var states []State
		for _, s := range seen() {
			states = append(states, s.State)
		}
		if len(states) < 3 || states[0] != Refused || states[len(states)-1] != Confirmed {
			t.Errorf("watch saw %v, want refused ... confirmed", states)
		}
	})
}

func TestARefusedRouteNoLongerWantedIsWithdrawn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		tr := startTracker(t, src, DefaultPolicy())
		p := netip.MustParsePrefix("10.0.0.0/24")
		tr.Refused([]Refusal{{Table: fib.TableMain, Prefix: p, Err: "no room"}})
		stateOf(t, tr, "10.0.0.0/24")
		tr.Abandoned(fib.TableMain, []netip.Prefix{p})
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Withdrawn || !strings.Contains(st.Reason, "no longer has a path") {
			t.Errorf("abandoned: %v (%s)", st.State, st.Reason)
		}
		// The kernel took a route but it never showed: gone after a while.
		q := netip.MustParsePrefix("10.0.1.0/24")
		tr.Refused([]Refusal{{Table: fib.TableMain, Prefix: q, Err: "no room"}})
		stateOf(t, tr, "10.0.1.0/24")
		tr.Installed(fib.TableMain, []netip.Prefix{q})
		time.Sleep(awaitRoute)
		if st := stateOf(t, tr, "10.0.1.0/24"); st.State != Withdrawn {
			t.Errorf("taken but never seen: %v (%s)", st.State, st.Reason)
		}
		if s := tr.Stats(); s.ByState[Refused] != 0 || s.ByState[Withdrawn] != 2 {
			t.Errorf("states %v", s.ByState)
		}
	})
}

// TestARefusedReplaceTakesTheAdvertisedPrefixBack: BGP moved to a new
// path, the kernel refused the new route and kept the old one. The prefix
// is refused, not confirmed on the old route: it is taken back.
func TestARefusedReplaceTakesTheAdvertisedPrefixBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		sp := newRecSpeaker(1)
		tr, err := NewTracker(src, DefaultPolicy(), WithSpeaker(sp, ByProtocol(fib.ProtoBGP)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go tr.Run(ctx)
		r := route("10.0.0.0/24")
		src.add(t, r)
		src.flags(r, fib.Trap)
		synctest.Wait()
		if _, out := sp.out[r.Prefix]; !out {
			t.Fatal("the confirmed prefix is not out")
		}
		tr.Refused([]Refusal{{Table: fib.TableMain, Prefix: r.Prefix, Err: "operation not permitted"}})
		synctest.Wait()
		if st, _ := tr.Get(fib.TableMain, r.Prefix); st.State != Refused || st.Flags != fib.Trap {
			t.Errorf("state %v flags %s, want refused with the old route's trap", st.State, st.Flags)
		}
		if _, out := sp.out[r.Prefix]; out {
			t.Error("the refused prefix is still out")
		}
	})
}
