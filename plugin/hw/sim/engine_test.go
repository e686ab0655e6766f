package sim

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// The tests in this file drive the engine (through the public API where it
// can) with fake time: testing/synctest makes latency, jitter, rate and
// batching exact and instant, without a kernel.

// call is one report the sim made.
type call struct {
	at    time.Time
	route fib.Route
	nh    int // -1: route flags
	flags fib.HWFlags
}

// recorder is a Reporter that remembers every call.
type recorder struct {
	mu    sync.Mutex
	calls []call
}

func (r *recorder) SetFlags(rt *fib.Route, f fib.HWFlags) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{at: time.Now(), route: rt.Clone(), nh: -1, flags: f})
}

func (r *recorder) SetNexthopFlags(rt *fib.Route, nh int, f fib.HWFlags) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call{at: time.Now(), route: rt.Clone(), nh: nh, flags: f})
}

// of returns the route-flag calls for prefix p.
func (r *recorder) of(p string) []call {
	pfx := netip.MustParsePrefix(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []call
	for _, c := range r.calls {
		if c.route.Prefix == pfx && c.nh < 0 {
			out = append(out, c)
		}
	}
	return out
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

func route(p string, opts ...func(*fib.Route)) fib.Route {
	r := fib.Route{Table: fib.TableMain, Prefix: netip.MustParsePrefix(p), Type: fib.TypeUnicast,
		Protocol: fib.ProtoStatic, Nexthops: []fib.Nexthop{{LinkIndex: 2}}}
	if r.Prefix.Addr().Is6() {
		r.Priority = 1024
	}
	for _, o := range opts {
		o(&r)
	}
	return r
}

func metric(m uint32) func(*fib.Route) { return func(r *fib.Route) { r.Priority = m } }

func via(gw string) func(*fib.Route) {
	return func(r *fib.Route) { r.Nexthops[0].Gateway = netip.MustParseAddr(gw) }
}

func replace(r fib.Route) fib.DriverEvent { return fib.DriverEvent{Kind: fib.DriverReplace, Route: r} }
func del(r fib.Route) fib.DriverEvent     { return fib.DriverEvent{Kind: fib.DriverDel, Route: r} }

// runSim runs a flags-only sim in the bubble until the test ends.
func runSim(t *testing.T, cfg Config) (*Sim, *recorder) {
	t.Helper()
	s, err := New(cfg, WithoutForwarding())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, rec) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s, rec
}

func hwFlags(s *Sim, p string) (fib.HWFlags, bool) {
	var f fib.HWFlags
	var ok bool
	s.View(func(x *fib.FIB) {
		var r fib.Route
		r, ok = x.First(fib.TableMain, netip.MustParsePrefix(p))
		f = r.Flags
	})
	return f, ok
}

func TestFirstProgramComesAfterTheLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Latency = 10 * time.Millisecond
		s, rec := runSim(t, cfg)
		t0 := time.Now()
		_ = s.Event(replace(route("192.0.2.0/24")))
		time.Sleep(cfg.Latency - time.Nanosecond)
		synctest.Wait()
		if n := rec.len(); n != 0 {
			t.Fatalf("%d reports before the latency passed", n)
		}
		if _, ok := s.ProgrammedAt(fib.TableMain, netip.MustParsePrefix("192.0.2.0/24")); ok {
			t.Fatal("ProgrammedAt answers before the latency passed")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		got := rec.of("192.0.2.0/24")
		if len(got) != 1 || got[0].flags != fib.Trap || !got[0].at.Equal(t0.Add(cfg.Latency)) {
			t.Fatalf("reports %+v, want one trap at +%s", got, cfg.Latency)
		}
		at, ok := s.ProgrammedAt(fib.TableMain, netip.MustParsePrefix("192.0.2.0/24"))
		if !ok || !at.Equal(t0.Add(cfg.Latency)) {
			t.Errorf("ProgrammedAt = %v %v, want +%s", at.Sub(t0), ok, cfg.Latency)
		}
		if st := s.Stats(); st.Programmed != 1 || st.Trapped != 1 || st.Queue != 0 || st.Ops != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestJitterDelaysWithinItsBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Latency, cfg.Jitter = 10*time.Millisecond, 5*time.Millisecond
		s, _ := runSim(t, cfg)
		t0 := time.Now()
		for i := range 50 {
			_ = s.Event(replace(route(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16).String())))
		}
		time.Sleep(cfg.Latency + cfg.Jitter)
		synctest.Wait()
		seen := map[time.Duration]bool{}
		for i := range 50 {
			at, ok := s.ProgrammedAt(fib.TableMain, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16))
			d := at.Sub(t0)
			if !ok || d < cfg.Latency || d > cfg.Latency+cfg.Jitter {
				t.Errorf("route %d programmed at +%s (%v), want within [%s, %s]", i, d, ok, cfg.Latency, cfg.Latency+cfg.Jitter)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Error("jitter made no difference")
		}
	})
}

func TestRateProgramsWholeBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Latency, cfg.Rate, cfg.Batch = time.Millisecond, 1000, 10
		s, _ := runSim(t, cfg)
		t0 := time.Now()
		pfx := make([]netip.Prefix, 100)
		for i := range pfx {
			pfx[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16)
			_ = s.Event(replace(route(pfx[i].String())))
		}
		time.Sleep(time.Second)
		synctest.Wait()
		// All are due after 1 ms; 10 routes cost 10 ms of tokens at
		// 1000/s, so batch k goes at 1ms + k*10ms.
		for i, p := range pfx {
			at, ok := s.ProgrammedAt(fib.TableMain, p)
			want := cfg.Latency + time.Duration(i/10)*10*time.Millisecond
			if d := at.Sub(t0); !ok || d < want || d > want+time.Microsecond {
				t.Errorf("route %d programmed at +%s (%v), want +%s", i, d, ok, want)
			}
		}
		if st := s.Stats(); st.Programmed != 100 || st.Ops != 100 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestADeleteBeforeProgrammingCostsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Latency = 10 * time.Millisecond
		s, rec := runSim(t, cfg)
		r := route("192.0.2.0/24")
		_ = s.Event(replace(r))
		time.Sleep(time.Millisecond)
		_ = s.Event(del(r))
		time.Sleep(time.Second)
		synctest.Wait()
		if n := rec.len(); n != 0 {
			t.Errorf("%d reports for a route deleted before it was programmed", n)
		}
		if st := s.Stats(); st.Ops != 0 || st.Programmed != 0 || st.Queue != 0 {
			t.Errorf("stats %+v, want no hardware work", st)
		}
	})
}

func TestReplaceClearsTheOldRouteAndDeleteLeavesFlags(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, rec := runSim(t, DefaultConfig())
		a, c := route("192.0.2.0/24", metric(100)), route("192.0.2.0/24", metric(50))
		_ = s.Event(replace(a))
		time.Sleep(time.Second)
		_ = s.Event(replace(c))
		time.Sleep(time.Second)
		_ = s.Event(del(c))
		time.Sleep(time.Second)
		synctest.Wait()
		got := rec.of("192.0.2.0/24")
		// behaviour 26: the new route is trapped, then the old one cleared;
		// behaviour 29: a delete sets no flags.
		want := []struct {
			metric uint32
			flags  fib.HWFlags
		}{{100, fib.Trap}, {50, fib.Trap}, {100, 0}}
		if len(got) != len(want) {
			t.Fatalf("reports %+v, want %+v", got, want)
		}
		for i, w := range want {
			if got[i].route.Priority != w.metric || got[i].flags != w.flags {
				t.Errorf("report %d: metric %d %s, want metric %d %s", i, got[i].route.Priority, got[i].flags, w.metric, w.flags)
			}
		}
		if _, ok := hwFlags(s, "192.0.2.0/24"); ok {
			t.Error("deleted route still in the hardware table")
		}
	})
}

func TestTableFullFailsAndRecoversWhenRoomFrees(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Capacity.IPv4Prefix = 2
		s, rec := runSim(t, cfg)
		p1, p2, p3 := route("10.1.0.0/16"), route("10.2.0.0/16"), route("10.3.0.0/16")
		for _, r := range []fib.Route{p1, p2, p3, route("10.9.9.9/32")} {
			_ = s.Event(replace(r))
			time.Sleep(time.Millisecond) // one after the other, as the kernel adds them
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if f, _ := hwFlags(s, "10.3.0.0/16"); f != fib.OffloadFailed {
			t.Fatalf("third prefix shows %s, want offload_failed (table full)", f)
		}
		if f, _ := hwFlags(s, "10.9.9.9/32"); f != fib.Trap {
			t.Errorf("host route shows %s, want trap: hosts have their own room", f)
		}
		if st := s.Stats(); st.Failed != 1 || st.Used.IPv4Prefix != 2 || st.Used.IPv4Host != 1 {
			t.Errorf("stats %+v", st)
		}
		_ = s.Event(del(p1))
		time.Sleep(time.Second)
		synctest.Wait()
		got := rec.of("10.3.0.0/16")
		if len(got) != 2 || got[0].flags != fib.OffloadFailed || got[1].flags != fib.Trap {
			t.Fatalf("reports for the third prefix %+v, want offload_failed then trap", got)
		}

		// A larger table takes in what waits for room.
		_ = s.Event(replace(route("10.4.0.0/16")))
		time.Sleep(time.Second)
		synctest.Wait()
		if f, _ := hwFlags(s, "10.4.0.0/16"); f != fib.OffloadFailed {
			t.Fatalf("fourth prefix shows %s, want offload_failed", f)
		}
		if err := s.SetCapacity(Capacity{IPv4Prefix: 3}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if f, _ := hwFlags(s, "10.4.0.0/16"); f != fib.Trap {
			t.Errorf("after growing the table the fourth prefix shows %s, want trap", f)
		}
	})
}

func TestInjectedFailureAndItsClearing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Latency = 10 * time.Millisecond
		s, rec := runSim(t, cfg)
		bad := netip.MustParsePrefix("192.0.2.0/24")
		if err := s.InjectFailure(bad); err != nil {
			t.Fatal(err)
		}
		_ = s.Event(replace(route("192.0.2.0/24")))
		_ = s.Event(replace(route("198.51.100.0/24")))
		time.Sleep(time.Second)
		synctest.Wait()
		if f, _ := hwFlags(s, "192.0.2.0/24"); f != fib.OffloadFailed {
			t.Errorf("injected prefix shows %s, want offload_failed", f)
		}
		if f, _ := hwFlags(s, "198.51.100.0/24"); f != fib.Trap {
			t.Errorf("other prefix shows %s, want trap", f)
		}
		if _, ok := s.ProgrammedAt(fib.TableMain, bad); ok {
			t.Error("ProgrammedAt answers for a failed route")
		}
		tc := time.Now()
		if err := s.ClearFailure(bad); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if at, ok := s.ProgrammedAt(fib.TableMain, bad); !ok || at.Sub(tc) != cfg.Latency {
			t.Errorf("after ClearFailure programmed at +%s (%v), want +%s", at.Sub(tc), ok, cfg.Latency)
		}
		// Injecting into a programmed route writes it again, and it fails.
		ti := time.Now()
		_ = s.InjectFailure(netip.MustParsePrefix("198.51.100.0/24"))
		time.Sleep(time.Second)
		synctest.Wait()
		got := rec.of("198.51.100.0/24")
		if last := got[len(got)-1]; last.flags != fib.OffloadFailed || last.at.Sub(ti) != cfg.Latency {
			t.Errorf("programmed route after InjectFailure: %s at +%s, want offload_failed at +%s", last.flags, last.at.Sub(ti), cfg.Latency)
		}
		if err := s.InjectFailure(netip.Prefix{}); err == nil {
			t.Error("InjectFailure accepted an invalid prefix")
		}
	})
}

func TestFailProbability(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.FailProbability = 1
		s, _ := runSim(t, cfg)
		for i := range 20 {
			_ = s.Event(replace(route(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16).String())))
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if st := s.Stats(); st.Failed != 20 || st.Programmed != 0 {
			t.Errorf("probability 1: stats %+v, want all 20 failed", st)
		}
		if err := s.SetFailProbability(0.5); err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			_ = s.Event(replace(route(netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(i), 0, 0}), 16).String())))
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if st := s.Stats(); st.Failed <= 20 || st.Failed >= 120 {
			t.Errorf("probability 0.5: %d of 100 more failed", st.Failed-20)
		}
		if err := s.SetFailProbability(1.5); err == nil {
			t.Error("probability 1.5 accepted")
		}
	})
}

func TestStopClearsEveryFlag(t *testing.T) {
	rec := &recorder{}
	synctest.Test(t, func(t *testing.T) {
		s, err := New(DefaultConfig(), WithoutForwarding())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx, rec) }()
		_ = s.Event(replace(route("192.0.2.0/24")))
		_ = s.Event(replace(route("2001:db8::/64")))
		time.Sleep(time.Second)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Programmed != 0 {
			t.Errorf("after stop: %+v", st)
		}
		if err := s.Run(context.Background(), rec); err == nil {
			t.Error("a second Run was accepted")
		}
	})
	for _, p := range []string{"192.0.2.0/24", "2001:db8::/64"} {
		got := rec.of(p)
		if len(got) != 2 || got[1].flags != 0 {
			t.Errorf("%s: reports %+v, want trap then cleared on stop", p, got)
		}
	}
}

// fakeNeighbours is a resolver the test flips.
type fakeNeighbours struct {
	mu sync.Mutex
	ok map[netip.Addr]bool
}

func (f *fakeNeighbours) resolved(_ int, gw netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ok[gw]
}

func TestSpectrumPromotesWhenTheNeighbourResolves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Mode = ModeSpectrum
		e := newEngine(cfg, slog.New(slog.DiscardHandler))
		res := &fakeNeighbours{ok: map[netip.Addr]bool{}}
		e.res = res
		rec := &recorder{}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go e.run(ctx, rec)
		gw := netip.MustParseAddr("10.0.0.2")
		e.event(replace(route("198.51.100.0/24", via("10.0.0.2"))))
		time.Sleep(time.Second)
		synctest.Wait()
		res.mu.Lock()
		res.ok[gw] = true
		res.mu.Unlock()
		e.neighbourChanged(gw)
		synctest.Wait()
		res.mu.Lock()
		res.ok[gw] = false
		res.mu.Unlock()
		e.neighbourChanged(gw)
		synctest.Wait()
		got := rec.of("198.51.100.0/24")
		want := []fib.HWFlags{fib.Trap, fib.Offload, fib.Trap}
		if len(got) != 3 {
			t.Fatalf("reports %+v, want %v", got, want)
		}
		for i := range want {
			if got[i].flags != want[i] {
				t.Errorf("report %d: %s, want %s", i, got[i].flags, want[i])
			}
		}
		rec.mu.Lock()
		var nh []fib.HWFlags
		for _, c := range rec.calls {
			if c.nh == 0 {
				nh = append(nh, c.flags)
			}
		}
		rec.mu.Unlock()
		if !slices.Equal(nh, []fib.HWFlags{0, fib.Offload, 0}) {
			t.Errorf("nexthop flags %v, want none, offload, none (behaviour 69)", nh)
		}
	})
}

// TestFinalStateIsTheLastEvent is a property test: whatever the order and
// timing of replaces and deletes, once the queue is empty the hardware
// holds exactly the last route the driver was given per prefix.
func TestFinalStateIsTheLastEvent(t *testing.T) {
	for seed := range uint64(20) {
		synctest.Test(t, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			cfg := DefaultConfig()
			cfg.Latency, cfg.Jitter, cfg.Rate, cfg.Batch = 5*time.Millisecond, 3*time.Millisecond, 2000, 4
			s, _ := runSim(t, cfg)
			last := map[netip.Prefix]*fib.Route{}
			for range 300 {
				p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(rng.IntN(8)), 0, 0}), 16)
				r := route(p.String(), metric(uint32(rng.IntN(3))))
				if rng.IntN(3) == 0 {
					_ = s.Event(del(r))
					last[p] = nil
				} else {
					_ = s.Event(replace(r))
					last[p] = &r
				}
				time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
			}
			time.Sleep(10 * time.Second)
			synctest.Wait()
			s.View(func(hw *fib.FIB) {
				for p, want := range last {
					got, ok := hw.First(fib.TableMain, p)
					switch {
					case want == nil && ok:
						t.Errorf("seed %d: %s deleted last but hardware holds %s", seed, p, got.String())
					case want != nil && (!ok || !got.SameAs(want) || got.Flags != fib.Trap):
						t.Errorf("seed %d: %s: hardware holds %s (%v), want %s trapped", seed, p, got.String(), ok, want.String())
					}
				}
			})
			if st := s.Stats(); st.Queue != 0 {
				t.Errorf("seed %d: queue %d after settling", seed, st.Queue)
			}
		})
	}
}

// refusingPlane is a data plane whose flush refuses the routes of one
// prefix, as the kernel may refuse a mirrored route.
type refusingPlane struct{ refuse netip.Prefix }

func (*refusingPlane) install(*fib.Route) error { return nil }
func (*refusingPlane) remove(*fib.Route) error  { return nil }
func (p *refusingPlane) flush() []key {
	return []key{keyFor(fib.TableMain, p.refuse)}
}

// TestRefusedWriteIsAFailure: a route the data plane refuses when the
// step's writes are flushed ends up offload_failed, like one refused at
// once: the driver's report says so, and it counts as a write error.
func TestRefusedWriteIsAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := New(DefaultConfig(), WithoutForwarding())
		if err != nil {
			t.Fatal(err)
		}
		s.e.dp = &refusingPlane{refuse: netip.MustParsePrefix("192.0.2.0/24")}
		rec := &recorder{}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go s.Run(ctx, rec)
		_ = s.Event(replace(route("192.0.2.0/24")))
		_ = s.Event(replace(route("198.51.100.0/24")))
		time.Sleep(time.Second) // past the default latency
		synctest.Wait()
		if got := rec.of("192.0.2.0/24"); len(got) != 1 || got[0].flags != fib.OffloadFailed {
			t.Errorf("refused route reported %+v, want offload_failed once", got)
		}
		if got := rec.of("198.51.100.0/24"); len(got) != 1 || got[0].flags != fib.Trap {
			t.Errorf("other route reported %+v, want trap", got)
		}
		if f, _ := hwFlags(s, "192.0.2.0/24"); f != fib.OffloadFailed {
			t.Errorf("hardware table holds the refused route with %s", f)
		}
		if st := s.Stats(); st.WriteErrors != 1 {
			t.Errorf("WriteErrors = %d, want 1", st.WriteErrors)
		}
	})
}

// TestTheEventsNextHopsAreNotWritten: the listener hands the sim its
// model's next-hop list uncopied (fib.Driver), and the sim queues it as
// given; programming clears the hardware state of the next hops in its own
// copy, never in that list, which the model shares among its routes.
func TestTheEventsNextHopsAreNotWritten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Latency = 0
		s, rec := runSim(t, cfg)
		shared := []fib.Nexthop{{Gateway: netip.MustParseAddr("192.0.2.1"), LinkIndex: 2, HW: fib.Offload}}
		before := slices.Clone(shared)
		r := route("198.51.100.0/24")
		r.Nexthops = shared
		_ = s.Event(replace(r))
		synctest.Wait()
		if got := rec.of("198.51.100.0/24"); len(got) != 1 || got[0].flags != fib.Trap {
			t.Fatalf("reports %+v, want one trap", got)
		}
		if !slices.Equal(shared, before) {
			t.Errorf("the event's next hops were written: %+v, were %+v", shared, before)
		}
		s.View(func(x *fib.FIB) {
			hw, ok := x.First(fib.TableMain, netip.MustParsePrefix("198.51.100.0/24"))
			if !ok || len(hw.Nexthops) != 1 || hw.Nexthops[0].HW != 0 {
				t.Errorf("in hardware: %+v %v, want the route with its next hop's state cleared", hw, ok)
			}
		})
	})
}
