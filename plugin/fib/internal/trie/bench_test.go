package trie

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/gaissmai/bart"
)

// route stands in for the FIB's per-prefix struct; both tables store the
// same 8-byte pointer payload.
type route struct {
	_ []int // where the FIB keeps its route aliases
}

var sink *route // defeats dead-code elimination in the lookup loops

func buildFibgate(pfxs []netip.Prefix, r *route) *Table[*route] {
	tb := new(Table[*route])
	for _, p := range pfxs {
		tb.Insert(p, r)
	}
	return tb
}

func buildBart(pfxs []netip.Prefix, r *route) *bart.Table[*route] {
	tb := new(bart.Table[*route])
	for _, p := range pfxs {
		tb.Insert(p, r)
	}
	return tb
}

// cpuStart remembers the process CPU time when a measurement began.
type cpuStart struct {
	t  time.Duration
	ok bool
}

func startCPU() cpuStart {
	t, ok := cpuTime()
	return cpuStart{t, ok}
}

// report adds the CPU time per operation since start as a metric. On a
// shared machine wall time includes time spent descheduled; CPU time does
// not, so both are reported.
func (c cpuStart) report(b *testing.B, ops int, unit string) {
	if t, ok := cpuTime(); ok && c.ok && ops > 0 {
		b.ReportMetric(float64((t-c.t).Nanoseconds())/float64(ops), unit)
	}
}

// builders run the same build for both implementations.
var builders = []struct {
	name  string
	build func([]netip.Prefix, *route) any
}{
	{"fibgate", func(p []netip.Prefix, r *route) any { return buildFibgate(p, r) }},
	{"bart", func(p []netip.Prefix, r *route) any { return buildBart(p, r) }},
}

// BenchmarkInsert builds a whole table per iteration, from shuffled and from
// sorted input; one op is one full build.
func BenchmarkInsert(b *testing.B) {
	ds := benchData(b)
	r := &route{}
	for _, impl := range builders {
		b.Run(impl.name, func(b *testing.B) {
			for _, fam := range families {
				pfxs := ds.family(fam)
				orders := []struct {
					name string
					pfxs []netip.Prefix
				}{{"shuffled", shuffled(pfxs, 1)}, {"sorted", sorted(pfxs)}}
				for _, ord := range orders {
					b.Run(fam+"/"+ord.name, func(b *testing.B) {
						cpu := startCPU()
						for b.Loop() {
							impl.build(ord.pfxs, r)
						}
						n := b.N * len(pfxs)
						perPrefix := float64(b.Elapsed().Nanoseconds()) / float64(n)
						b.ReportMetric(perPrefix, "ns/prefix")
						b.ReportMetric(float64(time.Second)/perPrefix, "prefixes/s")
						cpu.report(b, n, "cpu-ns/prefix")
					})
				}
			}
		})
	}
}

// BenchmarkLookup measures longest-prefix match of routed addresses (each
// inside a random stored prefix of the family) against the full table. The
// 64k addresses spread over the whole table, so most steps miss the CPU
// caches, as forwarding lookups in a busy FIB do.
func BenchmarkLookup(b *testing.B) {
	benchLookup(b, 1<<16)
}

// BenchmarkLookupCached repeats BenchmarkLookup with only 256 addresses,
// whose paths stay in cache: it isolates the CPU cost per lookup.
func BenchmarkLookupCached(b *testing.B) {
	benchLookup(b, 1<<8)
}

func benchLookup(b *testing.B, count int) {
	ds := benchData(b)
	full := ds.family("full")
	r := &route{}
	mask := count - 1
	addrs := map[string][]netip.Addr{
		"ipv4": routedAddrs(ds.v4, count, 4),
		"ipv6": routedAddrs(ds.v6, count, 6),
	}
	b.Run("fibgate", func(b *testing.B) {
		tb := buildFibgate(full, r)
		for _, fam := range []string{"ipv4", "ipv6"} {
			as := addrs[fam]
			b.Run(fam, func(b *testing.B) {
				var v *route
				cpu := startCPU()
				for i := 0; b.Loop(); i++ {
					_, v, _ = tb.Lookup(as[i&mask])
				}
				sink = v
				cpu.report(b, b.N, "cpu-ns/op")
			})
		}
	})
	b.Run("bart", func(b *testing.B) {
		tb := buildBart(full, r)
		for _, fam := range []string{"ipv4", "ipv6"} {
			as := addrs[fam]
			b.Run(fam, func(b *testing.B) {
				var v *route
				cpu := startCPU()
				for i := 0; b.Loop(); i++ {
					v, _ = tb.Lookup(as[i&mask])
				}
				sink = v
				cpu.report(b, b.N, "cpu-ns/op")
			})
		}
	})
}

// BenchmarkGet measures exact-match retrieval of random stored prefixes.
func BenchmarkGet(b *testing.B) {
	ds := benchData(b)
	full := ds.family("full")
	keys := shuffled(full, 3)
	r := &route{}
	b.Run("fibgate", func(b *testing.B) {
		tb := buildFibgate(full, r)
		b.Run("full", func(b *testing.B) {
			var v *route
			cpu := startCPU()
			for i := 0; b.Loop(); i++ {
				v, _ = tb.Get(keys[i%len(keys)])
			}
			sink = v
			cpu.report(b, b.N, "cpu-ns/op")
		})
	})
	b.Run("bart", func(b *testing.B) {
		tb := buildBart(full, r)
		b.Run("full", func(b *testing.B) {
			var v *route
			cpu := startCPU()
			for i := 0; b.Loop(); i++ {
				v, _ = tb.Get(keys[i%len(keys)])
			}
			sink = v
			cpu.report(b, b.N, "cpu-ns/op")
		})
	})
}

// BenchmarkDelete measures withdrawing random stored prefixes until the
// table is empty, then rebuilding it off the clock.
func BenchmarkDelete(b *testing.B) {
	ds := benchData(b)
	full := ds.family("full")
	keys := shuffled(full, 5)
	r := &route{}
	b.Run("fibgate/full", func(b *testing.B) {
		b.StopTimer()
		tb := buildFibgate(full, r)
		b.StartTimer()
		for i := range b.N {
			j := i % len(keys)
			if j == 0 && i > 0 {
				b.StopTimer()
				tb = buildFibgate(full, r)
				b.StartTimer()
			}
			tb.Delete(keys[j])
		}
	})
	b.Run("bart/full", func(b *testing.B) {
		b.StopTimer()
		tb := buildBart(full, r)
		b.StartTimer()
		for i := range b.N {
			j := i % len(keys)
			if j == 0 && i > 0 {
				b.StopTimer()
				tb = buildBart(full, r)
				b.StartTimer()
			}
			tb.Delete(keys[j])
		}
	})
}

// BenchmarkMemory reports the live heap a table of each family needs
// (HeapAlloc delta around a build, after GC; the payload pointer is shared,
// so this is pure structure), as bytes/prefix, plus fibgate's own
// MemoryEstimate for comparison.
func BenchmarkMemory(b *testing.B) {
	ds := benchData(b)
	r := &route{}
	for _, impl := range builders {
		for _, fam := range families {
			pfxs := ds.family(fam)
			b.Run(impl.name+"/"+fam, func(b *testing.B) {
				var heap uint64
				var tb any
				for b.Loop() {
					tb = nil
					var before, after runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&before)
					tb = impl.build(pfxs, r)
					runtime.GC()
					runtime.ReadMemStats(&after)
					heap = after.HeapAlloc - before.HeapAlloc
				}
				b.ReportMetric(float64(heap)/float64(len(pfxs)), "bytes/prefix")
				if ft, ok := tb.(*Table[*route]); ok {
					b.ReportMetric(float64(ft.MemoryEstimate())/float64(len(pfxs)), "estimate-bytes/prefix")
				}
				runtime.KeepAlive(tb)
			})
		}
	}
}
