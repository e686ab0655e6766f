package fib

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/fib/fibtest"
)

// internetTable is the real Internet table of fibtest.
func internetTable(b *testing.B) []netip.Prefix {
	b.Helper()
	ps, err := fibtest.InternetTable()
	if err != nil {
		b.Fatal(err)
	}
	return ps
}

func bgpRoute(p netip.Prefix) Route {
	gw := netip.MustParseAddr("10.0.0.1")
	if p.Addr().Is6() {
		gw = netip.MustParseAddr("fe80::1")
	}
	return Route{Table: TableMain, Prefix: p, Type: TypeUnicast, Protocol: ProtoBGP, Priority: 20,
		Nexthops: []Nexthop{{Gateway: gw, LinkIndex: 2}}}
}

// BenchmarkLoadInternetTable loads the full table into a model as the
// listener does after a dump, and reports the cost per route in time and
// heap bytes (trie, route records and nexthops).
func BenchmarkLoadInternetTable(b *testing.B) {
	pfx := internetTable(b)
	routes := make([]Route, len(pfx))
	for i, p := range pfx {
		routes[i] = bgpRoute(p)
	}
	var f *FIB
	var ms0, ms1 runtime.MemStats
	b.ResetTimer()
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&ms0)
		f = New()
		for _, r := range routes {
			if err := f.Append(r); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&ms1)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(routes)), "ns/route")
	b.ReportMetric(float64(ms1.HeapAlloc-ms0.HeapAlloc)/float64(len(routes)), "heapB/route")
	runtime.KeepAlive(f)
}

// BenchmarkApplyFlagChange measures the listener's hot path once loaded: a
// hardware-flag notification for a random route of a full table.
func BenchmarkApplyFlagChange(b *testing.B) {
	pfx := internetTable(b)
	f := New()
	for _, p := range pfx {
		if err := f.Append(bgpRoute(p)); err != nil {
			b.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	msgs := make([]Message, 4096)
	for i := range msgs {
		r := bgpRoute(pfx[rng.IntN(len(pfx))])
		r.Flags = []HWFlags{Trap, Offload}[i%2]
		msgs[i] = Message{Type: NewRoute, Route: r}
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, err := f.Apply(msgs[i%len(msgs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkLookup is a data-plane lookup through the model (trie plus the
// forwarding route of the matched prefix).
func BenchmarkLookup(b *testing.B) {
	pfx := internetTable(b)
	f := New()
	for _, p := range pfx {
		if err := f.Append(bgpRoute(p)); err != nil {
			b.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	addrs := make([]netip.Addr, 1<<16)
	for i := range addrs {
		addrs[i] = pfx[rng.IntN(len(pfx))].Addr()
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, ok := f.Lookup(TableMain, addrs[i&(len(addrs)-1)]); !ok {
			b.Fatal("routed address not found")
		}
		i++
	}
}

// BenchmarkCollectWithTableLive is what a full table in the model costs
// every collection: the wall time of a forced collection with the loaded
// model live, less one with it dropped. The model's records hold no
// pointer, so it should cost little more than its trie nodes (issue 10:
// the collector was the largest CPU cost of a full-table leaf).
func BenchmarkCollectWithTableLive(b *testing.B) {
	pfx := internetTable(b)
	gc := func() time.Duration {
		start := time.Now()
		runtime.GC()
		return time.Since(start)
	}
	var live, empty time.Duration
	for b.Loop() {
		f := New()
		for _, p := range pfx {
			if err := f.Append(bgpRoute(p)); err != nil {
				b.Fatal(err)
			}
		}
		gc()
		live += gc()
		runtime.KeepAlive(f)
		gc()
		empty += gc()
	}
	b.ReportMetric(float64(live.Microseconds())/1000/float64(b.N), "gc-live-ms")
	b.ReportMetric(float64((live-empty).Microseconds())/1000/float64(b.N), "gc-model-ms")
}
