package gate

import (
	"context"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"
	"unsafe"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/internal/flat"
)

// countingSpeaker accepts everything and keeps nothing per prefix, so
// that a memory measurement counts the tracker alone.
type countingSpeaker struct{}

func (countingSpeaker) Advertise(context.Context, []Advertisement) error { return nil }
func (countingSpeaker) Withdraw(context.Context, []Advertisement) error  { return nil }

// gcTime is how long a full collection takes: with more of the heap to
// mark, longer.
func gcTime() time.Duration {
	start := time.Now()
	runtime.GC()
	return time.Since(start)
}

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemoryPerRoute measures what a gated route costs in memory
// (issue 10's target: 300 bytes per route for all of fibgate's own state):
// the FIB model holding N offloaded BGP routes with one gateway each,
// then a tracker that judged and released all of them. Run with
// -benchtime=1x (the table is 200k IPv4 /24s whatever -bench's N); it
// also reports what the tracker allocated on the way, garbage included;
// FIBGATE_MEM_PROFILE=file writes a heap profile with both in memory.
func BenchmarkMemoryPerRoute(b *testing.B) {
	const n = 200_000
	for range b.N {
		base := heapInUse()
		src := newModelSource()
		gw := netip.MustParseAddr("10.255.0.1")
		for i := range n {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(11 + i>>16), byte(i >> 8), byte(i), 0}), 24)
			r := fib.Route{Table: fib.TableMain, Prefix: p, Type: fib.TypeUnicast, Protocol: fib.ProtoBGP,
				Nexthops: []fib.Nexthop{{Gateway: gw, LinkIndex: 2}}}
			if _, err := src.f.Add(r, fib.NLMCreate|fib.NLMExcl); err != nil {
				b.Fatal(err)
			}
			src.f.SetFlags(&r, fib.Offload)
		}
		withFIB := heapInUse()
		gcWithFIB := gcTime()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		allocBefore := ms.TotalAlloc
		tr, err := NewTracker(src, DefaultPolicy(), WithSpeaker(countingSpeaker{}, ByProtocol(fib.ProtoBGP)))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tr.Run(ctx) }()
		deadline := time.Now().Add(5 * time.Minute)
		for tr.Stats().ByState[Released] < n {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d released after 5 min", tr.Stats().ByState[Released], n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		runtime.ReadMemStats(&ms)
		allocated := ms.TotalAlloc - allocBefore
		withTracker := heapInUse()
		gcWithTracker := gcTime()
		if f := os.Getenv("FIBGATE_MEM_PROFILE"); f != "" {
			w, err := os.Create(f)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.WriteHeapProfile(w); err != nil {
				b.Fatal(err)
			}
			w.Close()
		}
		b.ReportMetric(float64(withFIB-base)/n, "fib-B/route")
		b.ReportMetric(float64(withTracker-withFIB)/n, "tracker-B/route")
		// What the tracker's entries add to every collection's marking
		// (a full table has five times these routes).
		b.ReportMetric(float64(gcWithTracker-gcWithFIB)/n, "tracker-gc-ns/route")
		// What judging and releasing the table allocated, garbage
		// included: what the collector works through at convergence.
		b.ReportMetric(float64(allocated)/n, "tracker-alloc-B/route")
		// What one listing holds while its reader works through it: the
		// API's List, and the audit's Briefs.
		for _, l := range []struct {
			unit string
			list func() int
		}{{"list-B/route", func() int { return len(tr.List()) }}, {"briefs-B/route", func() int { return len(tr.Briefs()) }}} {
			runtime.ReadMemStats(&ms)
			before := ms.TotalAlloc
			if got := l.list(); got != n {
				b.Fatalf("%s: %d states, want %d", l.unit, got, n)
			}
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.TotalAlloc-before)/n, l.unit)
		}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		runtime.KeepAlive(src)
		runtime.KeepAlive(tr)
	}
}

// An entry is per gated prefix, a full table's worth, in pages the
// collector must never scan (table.go): it holds no pointer, and stays at
// 104 bytes (BenchmarkMemoryPerRoute).
func TestEntryIsSmallAndFlat(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are for 64-bit platforms")
	}
	if n := unsafe.Sizeof(entry{}); n > 104 {
		t.Errorf("entry is %d bytes, more than 104", n)
	}
	if n := unsafe.Sizeof(prefixKey{}); n > 24 {
		t.Errorf("prefixKey is %d bytes, want 24", n)
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[entry](), reflect.TypeFor[prefixKey]()} {
		if flat.HasPointers(typ) {
			t.Errorf("%v holds a pointer", typ)
		}
	}
}
