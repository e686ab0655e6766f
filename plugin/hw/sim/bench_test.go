package sim

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/fib/fibtest"
)

// benchTable returns the real Internet table of fibtest (1.06M prefixes).
func benchTable(b *testing.B) []netip.Prefix {
	b.Helper()
	ps, err := fibtest.InternetTable()
	if err != nil {
		b.Fatal(err)
	}
	return ps
}

func bgpRoute(p netip.Prefix) fib.Route {
	gw := netip.MustParseAddr("10.0.0.1")
	if p.Addr().Is6() {
		gw = netip.MustParseAddr("fe80::1")
	}
	return fib.Route{Table: fib.TableMain, Prefix: p, Type: fib.TypeUnicast, Protocol: fib.ProtoBGP, Priority: 20,
		Nexthops: []fib.Nexthop{{Gateway: gw, LinkIndex: 2}}}
}

// countingReporter signals when it has seen n route reports.
type countingReporter struct {
	n    int64
	seen atomic.Int64
	done chan struct{}
}

func (c *countingReporter) SetFlags(*fib.Route, fib.HWFlags) {
	if c.seen.Add(1) == c.n {
		close(c.done)
	}
}
func (c *countingReporter) SetNexthopFlags(*fib.Route, int, fib.HWFlags) {}

// BenchmarkProgramFullTable drives the programming engine (no kernel) with
// a full table at unlimited rate and no latency, as a listener's replay
// would: it reports the cost of Event (what the listener pays under its
// lock), the programming rate from the first event to the last report, and
// the heap the hardware table holds per route, and what the engine
// allocated per route on the way (the collector's work in a table's load).
func BenchmarkProgramFullTable(b *testing.B) {
	pfx := benchTable(b)
	evs := make([]fib.DriverEvent, len(pfx))
	for i, p := range pfx {
		evs[i] = fib.DriverEvent{Kind: fib.DriverReplace, Route: bgpRoute(p)}
	}
	for _, mode := range []Mode{ModeTrap, ModeSpectrum} {
		for _, batch := range []int{64, 4096} {
			b.Run(fmt.Sprintf("mode=%s/batch=%d", mode, batch), func(b *testing.B) {
				cfg := DefaultConfig()
				cfg.Mode, cfg.Latency, cfg.Batch = mode, 0, batch
				var enqueue, program time.Duration
				var heap, alloc uint64
				var ms0, ms1 runtime.MemStats
				for b.Loop() {
					runtime.GC()
					runtime.ReadMemStats(&ms0)
					e := newEngine(cfg, slog.New(slog.DiscardHandler))
					rep := &countingReporter{n: int64(len(evs)), done: make(chan struct{})}
					t0 := time.Now()
					for _, ev := range evs {
						e.event(ev)
					}
					enqueue += time.Since(t0)
					ctx, cancel := context.WithCancel(context.Background())
					stopped := make(chan struct{})
					go func() { e.run(ctx, rep); close(stopped) }()
					<-rep.done
					program += time.Since(t0)
					cancel()
					<-stopped
					runtime.GC()
					runtime.ReadMemStats(&ms1)
					heap = ms1.HeapAlloc - ms0.HeapAlloc
					alloc += ms1.TotalAlloc - ms0.TotalAlloc
					if e.count.trapped+e.count.offloaded != len(evs) {
						b.Fatalf("%d of %d routes in hardware", e.count.trapped+e.count.offloaded, len(evs))
					}
					runtime.KeepAlive(e)
				}
				n := float64(b.N) * float64(len(evs))
				b.ReportMetric(float64(enqueue.Nanoseconds())/n, "event-ns/route")
				b.ReportMetric(n/program.Seconds(), "routes/s")
				b.ReportMetric(float64(heap)/float64(len(evs)), "heapB/route")
				b.ReportMetric(float64(alloc)/n, "allocB/route")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
