package audit

import (
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
)

// benchWorld is a healthy world of n transit prefixes (FIBGATE_AUDIT_BENCH
// sets n; 100,000 by default): each installed, confirmed, released and in
// GoBGP's RIB, as after convergence of a table of that size.
func benchWorld(b *testing.B) (*fib.FIB, *Snapshot) {
	n := 100000
	if v := os.Getenv("FIBGATE_AUDIT_BENCH"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	f := fib.New()
	s := &Snapshot{BGP: BGP{At: t0.Add(time.Hour), Out: map[netip.Prefix][]netip.Addr{}, RIB: make(map[netip.Prefix][]Path, n),
		Holds: func(netip.Prefix) bool { return false }, InScope: func(netip.Prefix) bool { return true }}}
	for i := range n {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(20 + i>>16), byte(i >> 8), byte(i), 0}), 24)
		r := fib.Route{Table: 254, Prefix: p, Type: fib.TypeUnicast, Protocol: fib.ProtoBGP, Priority: 20,
			Nexthops: []fib.Nexthop{{Gateway: nhA, LinkIndex: 2}}, Flags: fib.Trap}
		if err := f.Append(r); err != nil {
			b.Fatal(err)
		}
		s.BGP.RIB[p] = []Path{{Nexthop: nhA, Learned: true, Best: true, ID: "x"}}
		s.Gate = append(s.Gate, gate.Brief{Table: 254, Prefix: p, State: gate.Advertised, AdvertisedAt: t0})
	}
	return f, s
}

// BenchmarkReadFIBAndCompare: what one audit pass costs fibgate itself on a
// converged table, besides reading GoBGP (plugin/gobgp TestAuditBGPCost).
func BenchmarkReadFIBAndCompare(b *testing.B) {
	f, s := benchWorld(b)
	pol := gate.DefaultPolicy()
	classify := gate.ByProtocol(fib.ProtoBGP)
	s.FIB = ReadFIB(f, pol, classify, inst)
	b.Run("ReadFIB", func(b *testing.B) {
		b.ReportAllocs()
		defer cpuPerOp(b)()
		for range b.N {
			s.FIB = ReadFIB(f, pol, classify, inst)
		}
		b.ReportMetric(float64(len(s.Gate)), "prefixes")
	})
	b.Run("known", func(b *testing.B) {
		b.ReportAllocs()
		defer cpuPerOp(b)()
		for range b.N {
			if k := known(s, nil, nil, Whole); len(k) != len(s.Gate) {
				b.Fatalf("%d known prefixes; want %d", len(k), len(s.Gate))
			}
		}
	})
	b.Run("NeedsAdjOut+Compare", func(b *testing.B) {
		b.ReportAllocs()
		defer cpuPerOp(b)()
		for range b.N {
			need := NeedsAdjOut(s)
			for p := range s.BGP.RIB {
				if need(p) {
					b.Fatalf("%v needs adj-out in a healthy world", p)
				}
			}
			if ms := Compare(s, DefaultGrace); len(ms) != 0 {
				b.Fatalf("%d mismatches in a healthy world: %v", len(ms), ms[0])
			}
		}
	})
}

// cpuPerOp reports the process's CPU time per op (cpu-ms/op) when the
// returned func runs: on a shared machine wall time says little.
func cpuPerOp(b *testing.B) func() {
	var r0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	return func() {
		var r1 syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
		cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
		b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
	}
}
