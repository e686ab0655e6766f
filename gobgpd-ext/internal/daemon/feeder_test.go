package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/gobgp"
	"github.com/fibgate/fibgate/plugin/hw/sim"
	"github.com/fibgate/fibgate/plugin/kernel"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
)

// sink records what the feeder tells the gate about refused writes.
type sink struct {
	mu        sync.Mutex
	refused   []gate.Refusal
	installed []netip.Prefix
	abandoned []netip.Prefix
}

func (s *sink) Refused(rs []gate.Refusal) {
	s.mu.Lock()
	s.refused = append(s.refused, rs...)
	s.mu.Unlock()
}

func (s *sink) Installed(_ uint32, ps []netip.Prefix) {
	s.mu.Lock()
	s.installed = append(s.installed, ps...)
	s.mu.Unlock()
}

func (s *sink) Abandoned(_ uint32, ps []netip.Prefix) {
	s.mu.Lock()
	s.abandoned = append(s.abandoned, ps...)
	s.mu.Unlock()
}

func (s *sink) snapshot() (refused []gate.Refusal, installed, abandoned []netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]gate.Refusal(nil), s.refused...), append([]netip.Prefix(nil), s.installed...), append([]netip.Prefix(nil), s.abandoned...)
}

// logLines counts the records a logger writes, by message.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logLines) WithGroup(string) slog.Handler            { return l }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	l.mu.Unlock()
	return nil
}

func (l *logLines) with(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, x := range l.lines {
		if strings.Contains(x, s) {
			out = append(out, x)
		}
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTheFeederReportsRefusedWritesAndRetriesThem: the FIB installer's
// writes to a sim with capacity_mode refuse (netdevsim's veto): the route
// that does not fit is reported refused with the kernel's error, logged
// once (not once a second), written again with back-off, and reported
// installed once room frees, without BGP saying anything again; a refused
// route BGP no longer wants is abandoned.
func TestTheFeederReportsRefusedWritesAndRetriesThem(t *testing.T) {
	ns := kerneltest.NewNS(t)
	kerneltest.AddLink(t, ns, "eth1")
	kerneltest.IP(t, ns, "addr", "add", "10.0.0.1/24", "dev", "eth1")
	for _, fam := range []fib.Family{fib.IPv4, fib.IPv6} {
		if err := kernel.SetNotifyMode(kernel.Options{NetNS: ns}, fam, 1); err != nil {
			t.Fatal(err)
		}
	}
	cfg := sim.DefaultConfig()
	cfg.Tables = []uint32{fib.TableMain}
	cfg.Capacity.IPv4Prefix = 3 // the connected 10.0.0.0/24 takes one
	cfg.CapacityMode = sim.CapacityRefuse
	asic, err := sim.New(cfg, sim.WithNetNS(ns), sim.WithoutForwarding())
	if err != nil {
		t.Fatal(err)
	}
	l := kernel.NewListener(kernel.WithNetNS(ns), kernel.WithDriver(asic))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = l.Run(ctx) })
	wg.Go(func() { _ = asic.Run(ctx, l) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	<-l.Ready()
	inst, err := kernel.NewInstaller(kernel.InstallerConfig{NetNS: ns, Vetoer: asic}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Close)
	var logs logLines
	g := &sink{}
	f := newFeeder(nil, inst, inst.Table(), g, slog.New(&logs))
	f.ctx = ctx
	wg.Go(func() { f.retry(ctx) })

	gw := []netip.Addr{netip.MustParseAddr("10.0.0.2")}
	p1, p2, p3, p4 := netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.2.0.0/16"),
		netip.MustParsePrefix("10.3.0.0/16"), netip.MustParsePrefix("10.4.0.0/16")
	f.apply(false, []gobgp.BestPath{{Prefix: p1, Nexthops: gw}, {Prefix: p2, Nexthops: gw}, {Prefix: p3, Nexthops: gw}, {Prefix: p4, Nexthops: gw}})
	refused, _, _ := g.snapshot()
	if len(refused) != 2 {
		t.Fatalf("refused %v, want two of the four (room for two)", refused)
	}
	var which []netip.Prefix
	for _, r := range refused {
		which = append(which, r.Prefix)
		if r.Err != "operation not permitted: sim: Exceeded number of supported fib entries" || r.Attempts != 1 ||
			r.NextRetry.Before(time.Now().Add(700*time.Millisecond)) || r.Table != fib.TableMain {
			t.Errorf("refusal %+v, want netdevsim's EPERM, attempt 1, the next in about 1 s", r)
		}
	}
	// Another attempt of each, about 1 s later.
	eventually(t, "the refused writes tried again", func() bool {
		r, _, _ := g.snapshot()
		return len(r) >= 4
	})
	if n := len(logs.with("kernel refused routes")); n < 1 || n > 3 {
		t.Errorf("%d log lines about refused routes in a few seconds, want one and summaries: %q", n, logs.with("kernel refused routes"))
	}
	if first := logs.with("kernel refused routes"); len(first) == 0 || !strings.Contains(first[0], "refused=2") || !strings.Contains(first[0], "Exceeded number of supported fib entries") {
		t.Errorf("first line %q, want the count and the kernel's error", first)
	}

	// BGP withdraws one refused prefix; room frees for the other.
	f.apply(false, []gobgp.BestPath{{Prefix: which[1]}})
	if _, _, ab := g.snapshot(); len(ab) != 1 || ab[0] != which[1] {
		t.Errorf("abandoned %v, want %s", ab, which[1])
	}
	if err := asic.SetCapacity(sim.Capacity{IPv4Prefix: 10}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the refused route installed once room freed", func() bool {
		_, in, _ := g.snapshot()
		return len(in) == 1 && in[0] == which[0]
	})
	if out := kerneltest.IP(t, ns, "route", "show", which[0].String()); !strings.Contains(out, "via 10.0.0.2") {
		t.Errorf("kernel route of the retried prefix: %q", out)
	}
	if out := kerneltest.IP(t, ns, "route", "show", which[1].String()); out != "" {
		t.Errorf("the abandoned prefix has a route: %q", out)
	}
	eventually(t, "the recovery logged", func() bool { return len(logs.with("refused routes written")) == 1 })
}

// TestANextHopOnlyReachableThroughARouteIsRefusedWithAHint: the kernel
// takes a route's gateway only on a connected network; one reachable
// through another route (iBGP without next-hop-self) is refused, and the
// refusal says why and what to do, for both families. A connected next
// hop is installed.
func TestANextHopOnlyReachableThroughARouteIsRefusedWithAHint(t *testing.T) {
	ns := kerneltest.NewNS(t)
	kerneltest.AddLink(t, ns, "eth1")
	kerneltest.IP(t, ns, "addr", "add", "10.0.0.1/24", "dev", "eth1")
	kerneltest.IP(t, ns, "-6", "addr", "add", "fd00::1/64", "dev", "eth1", "nodad")
	kerneltest.IP(t, ns, "route", "add", "192.0.2.0/24", "via", "10.0.0.2")
	kerneltest.IP(t, ns, "-6", "route", "add", "2001:db8:9::/48", "via", "fd00::2")
	inst, err := kernel.NewInstaller(kernel.InstallerConfig{NetNS: ns}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Close)
	g := &sink{}
	f := newFeeder(nil, inst, inst.Table(), g, slog.New(&logLines{}))
	f.ctx = context.Background()
	direct := netip.MustParsePrefix("10.8.0.0/16")
	far4, far6 := netip.MustParsePrefix("10.9.0.0/16"), netip.MustParsePrefix("2001:db8:a::/48")
	f.apply(false, []gobgp.BestPath{
		{Prefix: direct, Nexthops: []netip.Addr{netip.MustParseAddr("10.0.0.2")}},
		{Prefix: far4, Nexthops: []netip.Addr{netip.MustParseAddr("192.0.2.55")}},
		{Prefix: far6, Nexthops: []netip.Addr{netip.MustParseAddr("2001:db8:9::5")}},
	})
	refused, _, _ := g.snapshot()
	got := map[netip.Prefix]string{}
	for _, r := range refused {
		got[r.Prefix] = r.Err
	}
	for _, p := range []netip.Prefix{far4, far6} {
		if !strings.HasSuffix(got[p], unconnectedHint) {
			t.Errorf("%v: refusal %q, want the kernel's error and the hint", p, got[p])
		}
	}
	if len(got) != 2 {
		t.Errorf("refused %v, want only the two far ones", got)
	}
	if out := kerneltest.IP(t, ns, "route", "show", direct.String()); !strings.Contains(out, "via 10.0.0.2") {
		t.Errorf("the connected next hop's route: %q", out)
	}
}
