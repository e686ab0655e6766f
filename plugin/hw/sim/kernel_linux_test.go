//go:build linux

package sim

import (
	"context"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/kernel"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
)

// These tests attach the sim to a real listener in a throwaway namespace:
// the kernel FIB drives it, and its flags come back as listener events.

const waitLimit = 20 * time.Second

// rig is a sim attached to a listener in one namespace.
type rig struct {
	ns   string
	sim  *Sim
	l    *kernel.Listener
	evs  <-chan []kernel.Event
	stop func() // stops both and checks their errors; also run at cleanup
}

// startRig sets fib_notify_on_flag_change to mode in ns, then runs a
// listener with the sim attached until the test ends.
func startRig(t *testing.T, ns string, mode int, cfg Config, opts ...Option) *rig {
	t.Helper()
	for _, fam := range []fib.Family{fib.IPv4, fib.IPv6} {
		if err := kernel.SetNotifyMode(kernel.Options{NetNS: ns}, fam, mode); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New(cfg, append([]Option{WithNetNS(ns)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	l := kernel.NewListener(kernel.WithNetNS(ns), kernel.WithDriver(s))
	ctx, cancel := context.WithCancel(context.Background())
	lerr, serr := make(chan error, 1), make(chan error, 1)
	go func() { lerr <- l.Run(ctx) }()
	go func() { serr <- s.Run(ctx, l) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-serr; err != nil {
			t.Errorf("sim stopped with error: %v", err)
		}
		if err := <-lerr; err != nil {
			t.Errorf("listener stopped with error: %v", err)
		}
	}
	t.Cleanup(stop)
	select {
	case <-l.Ready():
	case err := <-lerr:
		t.Fatalf("listener failed to start: %v", err)
	case <-time.After(waitLimit):
		t.Fatal("listener not ready")
	}
	return &rig{ns: ns, sim: s, l: l, evs: l.Events(ctx, false), stop: stop}
}

// waitEvent reads events until one satisfies pred.
func (r *rig) waitEvent(t *testing.T, what string, pred func(kernel.Event) bool) kernel.Event {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case batch, ok := <-r.evs:
			if !ok {
				t.Fatalf("event stream closed while waiting for %s", what)
			}
			for _, ev := range batch {
				if pred(ev) {
					return ev
				}
			}
		case <-deadline:
			t.Fatalf("no event %s within %s", what, waitLimit)
		}
	}
}

func is(kind kernel.EventKind, table uint32, prefix string) func(kernel.Event) bool {
	p := netip.MustParsePrefix(prefix)
	return func(ev kernel.Event) bool {
		return ev.Kind == kind && ev.Route().Prefix == p && ev.Route().Table == table
	}
}

// changed matches a Changed event of (table, prefix) from one state to another.
func changed(table uint32, prefix string, from, to fib.HWFlags) func(kernel.Event) bool {
	match := is(kernel.Changed, table, prefix)
	return func(ev kernel.Event) bool { return match(ev) && ev.Old.Flags == from && ev.New.Flags == to }
}

// flags returns the flags of the forwarding route of (table, prefix) in the
// listener's model, which is what the gate reads.
func (r *rig) flags(table uint32, prefix string) (fib.HWFlags, bool) {
	var f fib.HWFlags
	var ok bool
	r.l.View(func(x *fib.FIB) {
		var rt fib.Route
		rt, ok = x.First(table, netip.MustParsePrefix(prefix))
		f = rt.Flags
	})
	return f, ok
}

// waitFlags polls the listener's model until (table, prefix) shows want.
func (r *rig) waitFlags(t *testing.T, table uint32, prefix string, want fib.HWFlags) {
	t.Helper()
	waitFor(t, prefix+" "+want.String(), func() bool {
		f, ok := r.flags(table, prefix)
		return ok && f == want
	})
}

// waitFor polls cond with a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, waitLimit)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

// fast is the default config with a short latency that is still measurable.
func fast() Config {
	c := DefaultConfig()
	c.Latency = 20 * time.Millisecond
	return c
}

func TestTrapModeFlagsFollowTheNotifyMode(t *testing.T) {
	for _, mode := range []int{0, 1, 2} {
		name := []string{"mode 0 stores trap silently (18)", "mode 1 announces add then trap (19)",
			"mode 2 announces only the add (20)"}[mode]
		t.Run(name, func(t *testing.T) {
			ns := kerneltest.NewNS(t)
			kerneltest.AddLink(t, ns, "eth1")
			r := startRig(t, ns, mode, fast())
			for _, p := range []string{"192.0.2.0/24", "2001:db8:1::/64"} {
				kerneltest.IP(t, ns, "route", "add", p, "dev", "eth1")
				added := r.waitEvent(t, "add "+p, is(kernel.Added, fib.TableMain, p))
				if added.New.Flags != 0 {
					t.Errorf("%s announced with %s before it was programmed", p, added.New.Flags)
				}
				if mode == 1 {
					ch := r.waitEvent(t, "trap "+p, is(kernel.Changed, fib.TableMain, p))
					if ch.Old.Flags != 0 || ch.New.Flags != fib.Trap {
						t.Errorf("%s changed %s -> %s, want none -> trap", p, ch.Old.Flags, ch.New.Flags)
					}
					if d := ch.Time.Sub(added.Time); d < fast().Latency {
						t.Errorf("%s trapped %s after its add, want at least the latency %s", p, d, fast().Latency)
					}
				}
				r.waitFlags(t, fib.TableMain, p, fib.Trap)
				at, ok := r.sim.ProgrammedAt(fib.TableMain, netip.MustParsePrefix(p))
				if !ok || at.Sub(added.Time) < fast().Latency {
					t.Errorf("%s programmed %s after its add (%v), want at least %s", p, at.Sub(added.Time), ok, fast().Latency)
				}
				if mode != 1 {
					// A marker added now is announced after any flag message
					// for p, since p's flags were stored (and any message
					// queued) before we saw them.
					marker := "198.18." + map[bool]string{true: "6", false: "4"}[strings.Contains(p, ":")] + ".0/24"
					kerneltest.IP(t, ns, "route", "add", marker, "dev", "eth1")
					ev := r.waitEvent(t, "marker", func(ev kernel.Event) bool {
						if ev.Kind == kernel.Changed && ev.Route().Prefix == netip.MustParsePrefix(p) {
							t.Errorf("mode %d announced a trap of %s", mode, p)
						}
						return is(kernel.Added, fib.TableMain, marker)(ev)
					})
					_ = ev
				}
			}
			if mode == 2 {
				// behaviours 23 and 24: a failure and its recovery are announced.
				p := netip.MustParsePrefix("192.0.2.0/24")
				if err := r.sim.InjectFailure(p); err != nil {
					t.Fatal(err)
				}
				ch := r.waitEvent(t, "offload_failed", is(kernel.Changed, fib.TableMain, "192.0.2.0/24"))
				if ch.New.Flags != fib.OffloadFailed {
					t.Errorf("failure announced as %s, want offload_failed", ch.New.Flags)
				}
				if err := r.sim.ClearFailure(p); err != nil {
					t.Fatal(err)
				}
				ch = r.waitEvent(t, "recovery", is(kernel.Changed, fib.TableMain, "192.0.2.0/24"))
				if ch.New.Flags != fib.Trap {
					t.Errorf("recovery announced as %s, want trap", ch.New.Flags)
				}
			}
		})
	}
}

func TestCapacityFailsAndRecovers(t *testing.T) {
	ns := kerneltest.NewNS(t)
	kerneltest.AddLink(t, ns, "eth1")
	cfg := fast()
	cfg.Tables = []uint32{fib.TableMain} // the local table's 127/8 would take room
	cfg.Capacity.IPv4Prefix = 2
	r := startRig(t, ns, 1, cfg)
	for _, p := range []string{"10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"} {
		kerneltest.IP(t, ns, "route", "add", p, "dev", "eth1")
		r.waitEvent(t, "flags of "+p, is(kernel.Changed, fib.TableMain, p))
	}
	for p, want := range map[string]fib.HWFlags{"10.1.0.0/16": fib.Trap, "10.2.0.0/16": fib.Trap, "10.3.0.0/16": fib.OffloadFailed} {
		if f, ok := r.flags(fib.TableMain, p); !ok || f != want {
			t.Errorf("%s shows %s, want %s", p, f, want)
		}
	}
	// The kernel keeps the route that did not fit: it is no veto (the
	// flags live in the listener's model; the kernel never sees them).
	if out := kerneltest.IP(t, ns, "route", "show", "10.3.0.0/16"); !strings.Contains(out, "10.3.0.0/16 dev eth1") {
		t.Errorf("kernel route of the failed prefix: %q, want it present", out)
	}
	kerneltest.IP(t, ns, "route", "del", "10.1.0.0/16")
	ch := r.waitEvent(t, "recovery", is(kernel.Changed, fib.TableMain, "10.3.0.0/16"))
	if ch.Old.Flags != fib.OffloadFailed || ch.New.Flags != fib.Trap {
		t.Errorf("after a delete the waiting prefix went %s -> %s, want offload_failed -> trap", ch.Old.Flags, ch.New.Flags)
	}
}

func TestInjectedAndRandomFailures(t *testing.T) {
	ns := kerneltest.NewNS(t)
	kerneltest.AddLink(t, ns, "eth1")
	r := startRig(t, ns, 1, fast())
	bad := netip.MustParsePrefix("192.0.2.0/24")
	if err := r.sim.InjectFailure(bad); err != nil {
		t.Fatal(err)
	}
	kerneltest.IP(t, ns, "route", "add", "192.0.2.0/24", "dev", "eth1")
	ch := r.waitEvent(t, "failure", is(kernel.Changed, fib.TableMain, "192.0.2.0/24"))
	if ch.New.Flags != fib.OffloadFailed {
		t.Fatalf("injected prefix got %s, want offload_failed (22)", ch.New.Flags)
	}
	if err := r.sim.ClearFailure(bad); err != nil {
		t.Fatal(err)
	}
	ch = r.waitEvent(t, "recovery", is(kernel.Changed, fib.TableMain, "192.0.2.0/24"))
	if ch.Old.Flags != fib.OffloadFailed || ch.New.Flags != fib.Trap {
		t.Errorf("after ClearFailure %s -> %s, want offload_failed -> trap", ch.Old.Flags, ch.New.Flags)
	}

	if err := r.sim.SetFailProbability(1); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"198.51.100.0/24", "203.0.113.0/24", "2001:db8:9::/64"} {
		kerneltest.IP(t, ns, "route", "add", p, "dev", "eth1")
		ch := r.waitEvent(t, "flags of "+p, is(kernel.Changed, fib.TableMain, p))
		if ch.New.Flags != fib.OffloadFailed {
			t.Errorf("probability 1: %s got %s, want offload_failed", p, ch.New.Flags)
		}
	}
}

func TestReplaceClearsTheOldRoute(t *testing.T) {
	ns := kerneltest.NewNS(t)
	kerneltest.AddLink(t, ns, "eth1")
	kerneltest.AddLink(t, ns, "eth2")
	r := startRig(t, ns, 1, fast())
	kerneltest.IP(t, ns, "route", "add", "192.0.2.0/24", "dev", "eth1", "metric", "100")
	r.waitFlags(t, fib.TableMain, "192.0.2.0/24", fib.Trap)
	// A lower metric forwards now: the driver is told REPLACE(new).
	kerneltest.IP(t, ns, "route", "add", "192.0.2.0/24", "dev", "eth2", "metric", "50")
	var newTrap, oldClear bool
	r.waitEvent(t, "old route cleared", func(ev kernel.Event) bool {
		if ev.Kind != kernel.Changed || ev.Route().Prefix != netip.MustParsePrefix("192.0.2.0/24") {
			return false
		}
		switch ev.Route().Priority {
		case 50:
			newTrap = ev.New.Flags == fib.Trap
		case 100:
			oldClear = ev.Old.Flags == fib.Trap && ev.New.Flags == 0
			if oldClear && !newTrap {
				t.Error("old route cleared before the new one was trapped (26)")
			}
		}
		return oldClear
	})
	var routes []fib.Route
	r.sim.View(func(hw *fib.FIB) { routes = hw.Routes(fib.TableMain, netip.MustParsePrefix("192.0.2.0/24")) })
	if len(routes) != 1 || routes[0].Priority != 50 || routes[0].Flags != fib.Trap {
		t.Errorf("hardware holds %v, want only the metric 50 route, trapped", routes)
	}
	// A delete leaves flags alone: the remaining route is programmed anew.
	kerneltest.IP(t, ns, "route", "del", "192.0.2.0/24", "metric", "50")
	ch := r.waitEvent(t, "successor trapped", is(kernel.Changed, fib.TableMain, "192.0.2.0/24"))
	if ch.New.Priority != 100 || ch.New.Flags != fib.Trap {
		t.Errorf("after the delete: %s, want the metric 100 route trapped (28)", ch.New.String())
	}
}

func TestSpectrumClassifiesLikeMlxsw(t *testing.T) {
	ns := kerneltest.NewNS(t)
	kerneltest.AddLink(t, ns, "eth1")
	cfg := fast()
	cfg.Mode = ModeSpectrum
	r := startRig(t, ns, 1, cfg)
	kerneltest.IP(t, ns, "addr", "add", "10.0.0.1/24", "dev", "eth1")
	kerneltest.IP(t, ns, "addr", "add", "2001:db8:a::1/64", "dev", "eth1", "nodad")
	kerneltest.Batch(t, ns, []string{
		"route add 198.51.100.0/24 via 10.0.0.2",
		"route add 2001:db8:b::/64 via 2001:db8:a::2",
		"route add blackhole 203.0.113.0/24",
		"route add unreachable 203.0.113.128/25",
		"route add 192.0.2.0/24 tos 0x10 dev eth1",
	})
	for _, c := range []struct {
		table  uint32
		prefix string
		want   fib.HWFlags
	}{
		{fib.TableLocal, "10.0.0.1/32", fib.Trap},       // 61 local
		{fib.TableLocal, "10.0.0.255/32", fib.Trap},     // 61 broadcast
		{fib.TableMain, "10.0.0.0/24", fib.Offload},     // device route
		{fib.TableMain, "203.0.113.0/24", fib.Offload},  // 62 blackhole
		{fib.TableMain, "203.0.113.128/25", fib.Trap},   // 63 unreachable
		{fib.TableMain, "192.0.2.0/24", fib.Trap},       // 64 tos
		{fib.TableMain, "198.51.100.0/24", fib.Trap},    // 65 unresolved
		{fib.TableMain, "2001:db8:b::/64", fib.Trap},    // 65 unresolved
		{fib.TableLocal, "2001:db8:a::1/128", fib.Trap}, // 61 local
		{fib.TableMain, "2001:db8:a::/64", fib.Offload}, // device route
	} {
		r.waitFlags(t, c.table, c.prefix, c.want)
	}
	// Promotion: the neighbour resolves, the route forwards in hardware.
	kerneltest.IP(t, ns, "neigh", "add", "10.0.0.2", "lladdr", "02:00:00:00:00:02", "dev", "eth1", "nud", "permanent")
	r.waitEvent(t, "promotion trap -> offload (65)", changed(fib.TableMain, "198.51.100.0/24", fib.Trap, fib.Offload))
	waitFor(t, "nexthop offload", func() bool {
		var ok bool
		r.l.View(func(x *fib.FIB) {
			rt, _ := x.First(fib.TableMain, netip.MustParsePrefix("198.51.100.0/24"))
			ok = len(rt.Nexthops) == 1 && rt.Nexthops[0].HW == fib.Offload
		})
		return ok
	})
	kerneltest.IP(t, ns, "-6", "neigh", "add", "2001:db8:a::2", "lladdr", "02:00:00:00:00:03", "dev", "eth1", "nud", "permanent")
	r.waitFlags(t, fib.TableMain, "2001:db8:b::/64", fib.Offload)
	// The neighbour goes: back to trap.
	kerneltest.IP(t, ns, "neigh", "del", "10.0.0.2", "dev", "eth1")
	r.waitEvent(t, "demotion offload -> trap", changed(fib.TableMain, "198.51.100.0/24", fib.Offload, fib.Trap))
}

func TestStopRemovesRulesAndTable(t *testing.T) {
	ns := kerneltest.NewNS(t)
	kerneltest.AddLink(t, ns, "eth1")
	kerneltest.IP(t, ns, "addr", "add", "10.0.0.1/24", "dev", "eth1")
	before := runtime.NumGoroutine()
	cfg := fast()
	cfg.Mode = ModeSpectrum // the neighbour watcher must end too
	cfg.Ports = []string{"eth1"}
	r := startRig(t, ns, 1, cfg)
	kerneltest.IP(t, ns, "route", "add", "192.0.2.0/24", "via", "10.0.0.2")
	r.waitFlags(t, fib.TableMain, "192.0.2.0/24", fib.Trap)
	for _, fam := range []string{"-4", "-6"} {
		if out := kerneltest.IP(t, ns, fam, "rule", "show"); !strings.Contains(out, "1000:\tfrom all iif eth1 lookup 4242") {
			t.Errorf("ip %s rule while running:\n%s", fam, out)
		}
		if out := kerneltest.IP(t, ns, fam, "route", "show", "table", "4242"); !strings.Contains(out, "unreachable default") {
			t.Errorf("ip %s route show table 4242 while running:\n%s", fam, out)
		}
	}
	if out := kerneltest.IP(t, ns, "route", "show", "table", "4242"); !strings.Contains(out, "192.0.2.0/24 via 10.0.0.2 dev eth1") {
		t.Errorf("programmed route not mirrored:\n%s", out)
	}
	r.stop()
	for _, fam := range []string{"-4", "-6"} {
		if out := kerneltest.IP(t, ns, fam, "rule", "show"); strings.Contains(out, "4242") {
			t.Errorf("ip %s rule after stop:\n%s", fam, out)
		}
		if out := kerneltest.IP(t, ns, fam, "route", "show", "table", "4242"); strings.TrimSpace(out) != "" {
			t.Errorf("ip %s route show table 4242 after stop:\n%s", fam, out)
		}
	}
	if f, _ := r.flags(fib.TableMain, "192.0.2.0/24"); f != 0 {
		t.Errorf("after stop the route shows %s: the hardware is gone", f)
	}
	waitFor(t, "goroutines of the sim and listener to end", func() bool { return runtime.NumGoroutine() <= before })
}

// TestRefuseModeRefusesTheInstallersWrites is capacity_mode refuse against
// a real kernel: the FIB installer, with the sim as its Vetoer, is refused
// the routes that do not fit exactly as netdevsim's veto would refuse them
// (EPERM with its message, no route in the kernel), and the room of a
// deleted route is there for the next write.
func TestRefuseModeRefusesTheInstallersWrites(t *testing.T) {
	ns := kerneltest.NewNS(t)
	kerneltest.AddLink(t, ns, "eth1")
	kerneltest.IP(t, ns, "addr", "add", "10.0.0.1/24", "dev", "eth1")
	cfg := fast()
	cfg.Tables = []uint32{fib.TableMain}
	cfg.Capacity.IPv4Prefix = 3 // the connected 10.0.0.0/24 takes one
	cfg.CapacityMode = CapacityRefuse
	r := startRig(t, ns, 1, cfg)
	inst, err := kernel.NewInstaller(kernel.InstallerConfig{NetNS: ns, Vetoer: r.sim}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	gw := []netip.Addr{netip.MustParseAddr("10.0.0.2")}
	routes := []kernel.InstallRoute{
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Nexthops: gw},
		{Prefix: netip.MustParsePrefix("10.2.0.0/16"), Nexthops: gw},
		{Prefix: netip.MustParsePrefix("10.3.0.0/16"), Nexthops: gw},
	}
	err = inst.Install(routes)
	refused := kernel.FailedPrefixes(err)
	if len(refused) != 1 || refused[0] != routes[2].Prefix || !strings.Contains(err.Error(), "operation not permitted: sim: Exceeded number of supported fib entries") {
		t.Fatalf("Install: %v (refused %v), want 10.3.0.0/16 refused with netdevsim's EPERM", err, refused)
	}
	r.waitFlags(t, fib.TableMain, "10.1.0.0/16", fib.Trap)
	r.waitFlags(t, fib.TableMain, "10.2.0.0/16", fib.Trap)
	if out := kerneltest.IP(t, ns, "route", "show", "10.3.0.0/16"); out != "" {
		t.Errorf("the refused route is in the kernel: %q", out)
	}
	if err := inst.Remove([]netip.Prefix{routes[0].Prefix}); err != nil {
		t.Fatal(err)
	}
	if err := inst.Install(routes[2:]); err != nil {
		t.Fatalf("after a delete: %v, want the room", err)
	}
	r.waitFlags(t, fib.TableMain, "10.3.0.0/16", fib.Trap)
	if st := r.sim.Stats(); st.Refused != 1 || st.Held.IPv4Prefix != 3 || st.Failed != 0 {
		t.Errorf("stats: refused %d, held %+v, failed %d; want 1, 3 prefixes, 0", st.Refused, st.Held, st.Failed)
	}
}

// A warm sim is hardware that outlives the daemon: stopped, it leaves its
// table and rules; the next one keeps forwarding with them, takes the
// routes the kernel still has as they are without the latency, keeps an
// old entry until its changed route is programmed over it (no gap), and
// drops what the kernel no longer has.
func TestWarmRestartKeepsForwardingAndTakesOverTheTable(t *testing.T) {
	ns := kerneltest.NewNS(t)
	kerneltest.AddLink(t, ns, "eth1")
	kerneltest.IP(t, ns, "addr", "add", "10.0.0.1/24", "dev", "eth1")
	cfg := fast()
	cfg.Ports = []string{"eth1"}
	cfg.Warm = true
	same, moved, gone := "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"
	for _, p := range []string{same, moved, gone} {
		kerneltest.IP(t, ns, "route", "add", p, "via", "10.0.0.2")
	}
	first := startRig(t, ns, 1, cfg)
	for _, p := range []string{same, moved, gone} {
		first.waitFlags(t, fib.TableMain, p, fib.Trap)
	}
	first.stop()
	mirror := func() string { return kerneltest.IP(t, ns, "route", "show", "table", "4242") }
	for _, p := range []string{same, moved, gone} {
		if out := mirror(); !strings.Contains(out, p+" via 10.0.0.2") {
			t.Fatalf("a warm sim that stopped must leave %s in its table:\n%s", p, out)
		}
	}
	if out := kerneltest.IP(t, ns, "rule", "show"); !strings.Contains(out, "iif eth1 lookup 4242") {
		t.Fatalf("a warm sim that stopped must leave its rules:\n%s", out)
	}
	// While no sim runs, one route moves and one goes.
	kerneltest.IP(t, ns, "route", "replace", moved, "via", "10.0.0.3")
	kerneltest.IP(t, ns, "route", "del", gone)

	cfg.Latency = 2 * time.Second
	second := startRig(t, ns, 1, cfg)
	second.waitFlags(t, fib.TableMain, same, fib.Trap)
	if f, _ := second.flags(fib.TableMain, moved); f != 0 {
		t.Errorf("%s shows %s as soon as %s does: the changed route was not waited for (latency %v)", moved, f, same, cfg.Latency)
	}
	if out := mirror(); !strings.Contains(out, moved+" via 10.0.0.2") {
		t.Errorf("until its new route is programmed the old entry of %s must forward:\n%s", moved, out)
	}
	waitFor(t, gone+" dropped from the mirror table", func() bool { return !strings.Contains(mirror(), gone) })
	second.waitFlags(t, fib.TableMain, moved, fib.Trap)
	if out := mirror(); !strings.Contains(out, moved+" via 10.0.0.3") || !strings.Contains(out, same+" via 10.0.0.2") {
		t.Errorf("after programming, the mirror table is:\n%s", out)
	}
	if st := second.sim.Stats(); st.Programmed < 2 {
		t.Errorf("the second sim counts %d routes programmed, want the two it holds", st.Programmed)
	}
}
