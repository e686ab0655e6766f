package gate

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// recSpeaker is BGP as the gate sees it: the set of prefixes that are out.
// With failing set, calls fail and apply a random part of their batch, as a
// speaker that dies halfway through would. It fences like gobgp.Speaker:
// fence takes a transit prefix back at once and refuses releases
// confirmed on routes not newer than the fence. With block set, calls
// wait for it to close: a tracker that cannot keep up.
type recSpeaker struct {
	mu      sync.Mutex
	out     map[netip.Prefix]Advertisement
	fences  map[netip.Prefix]uint64
	rng     *rand.Rand
	failing bool
	calls   int
	block   chan struct{}
}

func newRecSpeaker(seed uint64) *recSpeaker {
	return &recSpeaker{out: map[netip.Prefix]Advertisement{}, fences: map[netip.Prefix]uint64{}, rng: rand.New(rand.NewPCG(seed, 99))}
}

var errSpeaker = errors.New("speaker unavailable")

func (s *recSpeaker) apply(ads []Advertisement, out bool) error {
	s.mu.Lock()
	block := s.block
	s.mu.Unlock()
	if block != nil {
		<-block
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	fail := s.failing && s.rng.IntN(2) == 0
	var stale []netip.Prefix
	for _, ad := range ads {
		if fail && s.rng.IntN(2) == 0 {
			continue
		}
		f, fenced := s.fences[ad.Prefix]
		if out && fenced && ad.Origin == Transit && ad.Version <= f {
			stale = append(stale, ad.Prefix)
			continue
		}
		if fenced && ad.Version > f {
			delete(s.fences, ad.Prefix)
		}
		if out {
			s.out[ad.Prefix] = ad
		} else {
			delete(s.out, ad.Prefix)
		}
	}
	var err error
	if fail {
		err = errSpeaker
	}
	if len(stale) > 0 {
		return &StaleError{Prefixes: stale, Err: err}
	}
	return err
}

// fence is what the installer does before it rewrites or removes a
// transit route: the speaker holds the prefix again, at once.
func (s *recSpeaker) fence(p netip.Prefix, clock uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ad, ok := s.out[p]; ok && ad.Origin == Transit {
		delete(s.out, p)
	}
	s.fences[p] = clock
}

func (s *recSpeaker) Advertise(_ context.Context, ads []Advertisement) error {
	return s.apply(ads, true)
}
func (s *recSpeaker) Withdraw(_ context.Context, ads []Advertisement) error {
	return s.apply(ads, false)
}

func (s *recSpeaker) snapshot() map[netip.Prefix]Advertisement {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[netip.Prefix]Advertisement, len(s.out))
	for k, v := range s.out {
		out[k] = v
	}
	return out
}

// propertyPolicy gates 10/8 strictly (fail-closed, hold-down) and
// 198.18/15 with a fail-open timeout of 2 s.
func propertyPolicy() Policy {
	strict := DefaultScope()
	strict.Name = "strict"
	strict.Prefixes = []PrefixRange{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), MaxLen: 32}}
	open := DefaultScope()
	open.Name = "open"
	open.Prefixes = []PrefixRange{{Prefix: netip.MustParsePrefix("198.18.0.0/15"), MaxLen: 32}}
	open.PendingTimeout, open.FailOpen = 2*time.Second, true
	open.HoldDown = HoldDown{}
	return Policy{Scopes: []Scope{strict, open}}
}

var propertyPrefixes = []string{"10.0.0.0/24", "10.0.1.0/24", "10.1.0.0/16", "198.18.0.0/24", "198.19.1.0/24", "192.0.2.0/24"}

// TestSafetyAndLivenessOverRandomRuns is the gate's central property: over
// long random sequences of route additions and removals, hardware flag
// changes, time passing, source resyncs, tracker restarts (with the
// speaker's reconcile at start-up) and a speaker that fails halfway,
//   - safety: whenever the system is quiet and the speaker reliable, every
//     prefix that is out has a forwarding route whose hardware state
//     confirms it under its scope, or has waited out its fail-open timeout;
//   - liveness: after the system settles (hold-downs expired, retries
//     done), every such prefix is out.
func TestSafetyAndLivenessOverRandomRuns(t *testing.T) {
	steps := 600
	if testing.Short() {
		steps = 150
	}
	// 60 seeds: 6 let a model mistake (seed 275's) go unseen; 1,000 pass
	// in seconds when run by hand.
	for seed := uint64(1); seed <= 60; seed++ {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runProperty(t, seed, steps) })
		})
	}
}

func runProperty(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 1))
	src := newModelSource()
	sp := newRecSpeaker(seed)
	policy := propertyPolicy()
	classify := ByProtocol(fib.ProtoBGP, fib.ProtoStatic)
	// present: when the wait for hardware that a fail-open scope counts
	// began: the current route's arrival, or, for a route that replaced
	// one while the prefix stayed out on a kept version, the start of that
	// make-before-break chain (the tracker keeps the first replacement's
	// start, and its keep limit is the pending timeout).
	present := map[netip.Prefix]time.Time{}
	routes := map[netip.Prefix]fib.Route{}
	// kept: prefixes whose route was replaced without a fence while they
	// were out; make-before-break may keep them out on that version.
	type keptOn struct {
		ver   uint64
		since time.Time
	}
	kept := map[netip.Prefix]keptOn{}

	var stop func()
	var tr *Tracker
	start := func() {
		var err error
		// As the daemons do: the tracker asks the speaker what is out
		// (a fence takes prefixes back behind its back).
		tr, err = NewTracker(src, policy, WithSpeaker(sp, classify), WithRetention(time.Minute),
			WithAlreadyOut(func(p netip.Prefix) bool { _, ok := sp.snapshot()[p]; return ok }))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = tr.Run(ctx); close(done) }()
		stop = func() { cancel(); <-done }
	}
	start()
	defer func() { stop() }()

	// wantOut says whether p may (and, settled, must) be out now.
	wantOut := func(p netip.Prefix) bool {
		r, ok := routes[p]
		if !ok {
			return false
		}
		if _, ok := classify(&r); !ok {
			return false
		}
		s, ok := policy.Match(r.Table, p)
		if !ok {
			return false // not gated: BGP handles it, the gate never advertises it
		}
		cur, _ := src.f.Find(&r)
		switch v, _ := s.Judge(&cur); v {
		case VerdictConfirmed:
			return true
		case VerdictFailed:
			return false // an explicit failure is never fail-open
		}
		return s.FailOpen && time.Since(present[p]) >= s.PendingTimeout
	}
	// keptOut says whether p may be out on an earlier route, as
	// make-before-break allows: the version it was out on when its route
	// was replaced, the new route neither failed nor older than the keep
	// limit.
	keptOut := func(p netip.Prefix, ad Advertisement) bool {
		k, ok := kept[p]
		r, present := routes[p]
		if !ok || !present || ad.Version != k.ver {
			return false
		}
		s, _ := policy.Match(r.Table, p)
		cur, _ := src.f.Find(&r)
		v, _ := s.Judge(&cur)
		return v == VerdictPending && time.Since(k.since) < keepLimit(s)
	}
	checkSafety := func(step int, what string) {
		t.Helper()
		checkCounts(t, tr)
		for p, ad := range sp.snapshot() {
			if keptOut(p, ad) {
				continue
			}
			if !wantOut(p) {
				t.Fatalf("step %d (%s): %s is out without confirmation", step, what, p)
			}
			if v := src.f.Version(fib.TableMain, p); ad.Origin == Transit && ad.Version != v {
				t.Fatalf("step %d (%s): %s is out on route version %d, the FIB has version %d", step, what, p, ad.Version, v)
			}
		}
	}
	// fence is the installer's part before it touches a transit route.
	fence := func(r fib.Route) {
		delete(kept, r.Prefix)
		if r.Protocol == fib.ProtoBGP {
			sp.fence(r.Prefix, src.clock())
		}
	}

	for i := range steps {
		p := netip.MustParsePrefix(propertyPrefixes[rng.IntN(len(propertyPrefixes))])
		what := ""
		switch op := rng.IntN(14); {
		case op == 12:
			// BGP moved the best path: the installer replaces the route.
			// With new attributes the speaker fences the prefix first;
			// with the same ones (an ECMP member lost) it does not, and
			// the prefix may stay out on its old route meanwhile.
			r, ok := routes[p]
			if !ok || r.Protocol != fib.ProtoBGP {
				continue
			}
			since := time.Now()
			if rng.IntN(2) == 0 {
				fence(r)
			} else if ad, out := sp.snapshot()[p]; out {
				if _, already := kept[p]; !already || kept[p].ver != ad.Version {
					kept[p] = keptOn{ad.Version, time.Now()}
				}
				since = kept[p].since
			}
			nr := r.Clone()
			nr.Nexthops[0].LinkIndex = 5 - r.Nexthops[0].LinkIndex // 2 <-> 3
			src.replace(t, r, nr)
			routes[p], present[p] = nr, since
			what = "replace " + p.String()
		case op == 13:
			// Bulk churn behind a backlog: while the tracker is stuck in
			// a speaker call, every transit route is withdrawn and learned
			// again, some confirmed at once by fast hardware. Nothing may
			// be out that is not confirmed on the route now in the FIB.
			sp.mu.Lock()
			sp.block = make(chan struct{})
			sp.mu.Unlock()
			for q, r := range routes {
				if r.Protocol != fib.ProtoBGP {
					continue
				}
				fence(r)
				src.del(t, r)
				nr := route(q.String())
				src.add(t, nr)
				if rng.IntN(2) == 0 {
					src.flags(nr, fib.Offload)
				}
				routes[q], present[q] = nr, time.Now()
			}
			synctest.Wait()
			checkSafety(i, "churn, tracker stuck")
			sp.mu.Lock()
			close(sp.block)
			sp.block = nil
			sp.mu.Unlock()
			what = "churn"
		case op < 3:
			if _, ok := routes[p]; ok {
				continue
			}
			r := route(p.String())
			r.Protocol = []fib.Protocol{fib.ProtoBGP, fib.ProtoStatic, fib.ProtoKernel}[rng.IntN(3)]
			src.add(t, r)
			routes[p], present[p] = r, time.Now()
			what = "add " + p.String()
		case op < 4:
			r, ok := routes[p]
			if !ok {
				continue
			}
			fence(r)
			src.del(t, r)
			delete(routes, p)
			delete(present, p)
			what = "delete " + p.String()
		case op < 8:
			r, ok := routes[p]
			if !ok {
				continue
			}
			f := []fib.HWFlags{0, fib.Trap, fib.Offload, fib.OffloadFailed, fib.Trap | fib.OffloadFailed}[rng.IntN(5)]
			src.flags(r, f)
			what = fmt.Sprintf("flags %s %s", p, f)
		case op < 10:
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond)
			what = "time passes"
		case op < 11:
			// The source resyncs: every route is reported again, unchanged.
			src.mu.Lock()
			var evs []fib.Event
			for r := range src.f.All() {
				c := r.Clone()
				evs = append(evs, fib.Event{Kind: fib.Changed, Resync: true, Old: &c, New: &c})
			}
			src.hub.Publish(evs)
			src.mu.Unlock()
			what = "resync"
		default:
			// Restart: the tracker dies; the speaker adapter reconciles at
			// start-up, taking back whatever the new gate does not confirm.
			stop()
			sp.mu.Lock()
			clear(sp.out)
			sp.mu.Unlock()
			start()
			what = "restart"
		}
		failing := rng.IntN(8) == 0
		sp.mu.Lock()
		sp.failing = failing
		sp.mu.Unlock()
		synctest.Wait()
		if failing {
			// What a failed call left out stays out until the retry; let
			// the retries run with a reliable speaker (backoff tops at 10 s).
			sp.mu.Lock()
			sp.failing = false
			sp.mu.Unlock()
			time.Sleep(11 * time.Second)
			synctest.Wait()
		}
		checkSafety(i, what)
	}
	// Settle: a reliable speaker, every hold-down and retry over.
	sp.mu.Lock()
	sp.failing = false
	sp.mu.Unlock()
	time.Sleep(2 * time.Minute)
	synctest.Wait()
	checkSafety(steps, "settled")
	out := sp.snapshot()
	for p := range routes {
		if wantOut(p) {
			if _, ok := out[p]; !ok {
				t.Errorf("settled: %s is confirmed but not out", p)
			}
		}
	}
	if sp.calls == 0 {
		t.Fatal("the speaker was never called: the test exercised nothing")
	}
}

func TestAdvertisedStateAndWithdrawOnFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		sp := newRecSpeaker(1)
		tr, err := NewTracker(src, DefaultPolicy(), WithSpeaker(sp, ByProtocol(fib.ProtoBGP, fib.ProtoStatic)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go tr.Run(ctx)
		transit := route("10.0.0.0/24") // proto bgp: transit
		kernelRoute := route("10.0.9.0/24")
		kernelRoute.Protocol = fib.ProtoKernel // never advertised
		src.add(t, transit)
		src.add(t, kernelRoute)
		synctest.Wait()
		if len(sp.snapshot()) != 0 {
			t.Fatalf("advertised before confirmation: %v", sp.snapshot())
		}
		src.flags(transit, fib.Offload)
		src.flags(kernelRoute, fib.Offload)
		st := stateOf(t, tr, "10.0.0.0/24")
		if st.State != Advertised || st.AdvertisedAt.IsZero() || sp.snapshot()[transit.Prefix].Origin != Transit {
			t.Fatalf("confirmed transit prefix: %v, out %v", st.State, sp.snapshot())
		}
		if st := stateOf(t, tr, "10.0.9.0/24"); st.State != Confirmed || len(sp.snapshot()) != 1 {
			t.Errorf("kernel route: %v, out %v; want confirmed and not advertised", st.State, sp.snapshot())
		}
		src.flags(transit, fib.OffloadFailed)
		st = stateOf(t, tr, "10.0.0.0/24")
		if st.State != Failed || st.WithdrawnAt.IsZero() || len(sp.snapshot()) != 0 {
			t.Fatalf("after failure: %v, out %v", st.State, sp.snapshot())
		}
		if s := tr.Stats(); s.Advertised != 1 {
			t.Errorf("stats.Advertised = %d", s.Advertised)
		}
	})
}

// checkCounts compares the per-state counts the tracker keeps as states
// change with a count over its entries.
func checkCounts(t *testing.T, tr *Tracker) {
	t.Helper()
	want := map[State]int{}
	for _, st := range tr.List() {
		want[st.State]++
	}
	if got := tr.Stats().ByState; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Stats().ByState = %v, the entries say %v", got, want)
	}
}

// TestBulkChurnBehindABacklog is the full-table failure in small: the
// tracker is stuck in a speaker call while every transit route is
// withdrawn and learned again (the installer fences each first). While it
// is stuck nothing may be out that the FIB does not confirm on its current
// route; once it catches up, judging the whole backlog at once, every
// prefix whose new route is confirmed is out again on that route, and the
// others are not.
func TestBulkChurnBehindABacklog(t *testing.T) {
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
		const n = 200
		routes := make([]fib.Route, n)
		for i := range routes {
			routes[i] = route(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256))
			src.add(t, routes[i])
			src.flags(routes[i], fib.Offload)
		}
		synctest.Wait()
		if got := len(sp.snapshot()); got != n {
			t.Fatalf("%d of %d out before the churn", got, n)
		}
		// Stuck: the first route fails and its Withdraw blocks.
		sp.mu.Lock()
		sp.block = make(chan struct{})
		sp.mu.Unlock()
		src.flags(routes[0], fib.OffloadFailed)
		synctest.Wait()
		for i, r := range routes[1:] {
			sp.fence(r.Prefix, src.clock())
			src.del(t, r)
			src.add(t, r)
			if i%2 == 0 {
				src.flags(r, fib.Offload) // fast hardware: confirmed at once
			}
		}
		synctest.Wait()
		out := sp.snapshot()
		for p, ad := range out {
			if p == routes[0].Prefix {
				continue // its withdrawal is the call the tracker is stuck in
			}
			cur, _ := src.f.First(fib.TableMain, p)
			if cur.Flags&fib.Offload == 0 || ad.Version != src.f.Version(fib.TableMain, p) {
				t.Errorf("while the tracker is stuck, %s is out on version %d (FIB: version %d, flags %s)", p, ad.Version, src.f.Version(fib.TableMain, p), cur.Flags)
			}
		}
		sp.mu.Lock()
		close(sp.block)
		sp.block = nil
		sp.mu.Unlock()
		synctest.Wait()
		out = sp.snapshot()
		for i, r := range routes[1:] {
			ad, isOut := out[r.Prefix]
			if want := i%2 == 0; isOut != want || isOut && ad.Version != src.f.Version(fib.TableMain, r.Prefix) {
				t.Errorf("caught up: %s out=%v (version %d of %d), want out=%v", r.Prefix, isOut, ad.Version, src.f.Version(fib.TableMain, r.Prefix), want)
			}
		}
		if _, isOut := out[routes[0].Prefix]; isOut {
			t.Errorf("%s failed but is out", routes[0].Prefix)
		}
		checkCounts(t, tr)
	})
}
