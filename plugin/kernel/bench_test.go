//go:build linux

package kernel

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// BenchmarkDecodeRoute decodes the recorded route messages round-robin.
func BenchmarkDecodeRoute(b *testing.B) {
	var all, v4single, v6multi [][]byte
	for _, msgs := range allFixtures(b) {
		for _, fm := range msgs {
			m, err := DecodeRoute(fm.msg)
			if err != nil {
				continue
			}
			all = append(all, fm.msg)
			switch {
			case m.Route.Family() == fib.IPv4 && len(m.Route.Nexthops) == 1 && m.Route.Nexthops[0].Gateway.IsValid():
				v4single = append(v4single, fm.msg)
			case m.Route.Family() == fib.IPv6 && len(m.Route.Nexthops) > 1:
				v6multi = append(v6multi, fm.msg)
			}
		}
	}
	for _, set := range []struct {
		name string
		msgs [][]byte
	}{{"recorded", all}, {"ipv4-gateway", v4single}, {"ipv6-multipath", v6multi}} {
		b.Run(set.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := DecodeRoute(set.msgs[i%len(set.msgs)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// benchRoutes is FIBGATE_BENCH_ROUTES, the number of routes the real-kernel
// benchmarks load (default 100k; 1M takes about 40 s to load on 2 cores).
func benchRoutes(b *testing.B) int {
	if s := os.Getenv("FIBGATE_BENCH_ROUTES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 || n > 1<<24 {
			b.Fatalf("FIBGATE_BENCH_ROUTES=%q: want 1..16777216", s)
		}
		return n
	}
	return 100_000
}

// routeLines returns `ip -batch` lines adding n IPv4 /24 routes from
// 16.0.0.0 on, via 192.0.2.2 (proto bgp, like fibgate's own routes).
func routeLines(n int, verb string) []string {
	lines := make([]string, n)
	for i := range n {
		a := 16<<24 + i<<8
		lines[i] = fmt.Sprintf("route %s %d.%d.%d.0/24 via 192.0.2.2 proto bgp", verb, a>>24&255, a>>16&255, a>>8&255)
	}
	return lines
}

// BenchmarkDumpRoutes loads FIBGATE_BENCH_ROUTES routes into a namespace
// with `ip -batch` and measures a full IPv4 dump with decoding.
func BenchmarkDumpRoutes(b *testing.B) {
	n := benchRoutes(b)
	ns := newTestNS(b)
	addTestLink(b, ns, "d0")
	ipn(b, ns, "addr", "add", "192.0.2.1/24", "dev", "d0")
	start := time.Now()
	ipBatch(b, ns, routeLines(n, "add"))
	b.Logf("loaded %d routes with ip -batch in %v (%.0f routes/s)", n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
	b.ReportAllocs()
	dumps := 0
	for b.Loop() {
		got, err := DumpRoutes(Options{NetNS: ns}, fib.IPv4)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) < n {
			b.Fatalf("dumped %d routes, want at least %d", len(got), n)
		}
		dumps++
	}
	perDump := b.Elapsed() / time.Duration(dumps)
	b.ReportMetric(float64(perDump.Nanoseconds())/float64(n), "ns/route")
	b.ReportMetric(float64(n)/perDump.Seconds(), "routes/s")
}

// BenchmarkReceive measures the notification path: the kernel queues
// 10k RTM_NEWROUTE, then Receive and DecodeRoute drain them. The copy
// variant copies every message, as a Receive that handed out copies would.
func BenchmarkReceive(b *testing.B) {
	const k = 10_000
	for _, copyMsgs := range []bool{false, true} {
		name := "slices"
		if copyMsgs {
			name = "copies"
		}
		b.Run(name, func(b *testing.B) {
			ns := newTestNS(b)
			addTestLink(b, ns, "d0")
			ipn(b, ns, "addr", "add", "192.0.2.1/24", "dev", "d0")
			s := testSubscribe(b, ns)
			dir := b.TempDir()
			add, del := dir+"/add", dir+"/del"
			writeLines(b, add, routeLines(k, "add"))
			writeLines(b, del, routeLines(k, "del"))
			b.ReportAllocs()
			b.ResetTimer()
			var kept [][]byte
			for range b.N {
				b.StopTimer()
				ipn(b, ns, "-batch", add)
				b.StartTimer()
				receiveN(b, s, k, copyMsgs, &kept)
				b.StopTimer()
				ipn(b, ns, "-batch", del)
				receiveN(b, s, k, false, &kept)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*k), "ns/msg")
		})
	}
}

func writeLines(b *testing.B, path string, lines []string) {
	var buf []byte
	for _, l := range lines {
		buf = append(append(buf, l...), '\n')
	}
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		b.Fatal(err)
	}
}

// receiveN receives and decodes until n route messages arrived.
func receiveN(b *testing.B, s *Subscription, n int, copyMsgs bool, kept *[][]byte) {
	s.SetReadDeadline(time.Now().Add(30 * time.Second))
	for got := 0; got < n; {
		msgs, err := s.Receive()
		if err != nil {
			b.Fatal(err)
		}
		*kept = (*kept)[:0]
		for _, m := range msgs {
			if copyMsgs {
				m = append([]byte(nil), m...)
				*kept = append(*kept, m)
			}
			if _, err := DecodeRoute(m); err == nil {
				got++
			} else if !errors.Is(err, ErrSkip) && !errors.Is(err, ErrMalformed) {
				b.Fatal(err)
			}
		}
	}
}
