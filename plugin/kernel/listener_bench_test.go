package kernel

import (
	"context"
	"testing"
	"time"
)

// BenchmarkListenerStartup measures what a restart costs: subscribe, dump
// both families and load every route into the model, until Ready. The
// namespace holds FIBGATE_BENCH_ROUTES routes (default 100k; 1000000 for the
// full-table figure in the README).
func BenchmarkListenerStartup(b *testing.B) {
	n := benchRoutes(b)
	ns := newTestNS(b)
	addTestLink(b, ns, "d0")
	ipn(b, ns, "addr", "add", "192.0.2.1/24", "dev", "d0")
	ipBatch(b, ns, routeLines(n, "add"))
	starts := 0
	for b.Loop() {
		l := NewListener(WithNetNS(ns))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- l.Run(ctx) }()
		select {
		case <-l.Ready():
		case err := <-done:
			b.Fatal(err)
		case <-time.After(5 * time.Minute):
			b.Fatal("listener not ready after 5 minutes")
		}
		if got := l.Stats().Routes; got < n {
			b.Fatalf("model holds %d routes, want at least %d", got, n)
		}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		starts++
	}
	per := b.Elapsed() / time.Duration(starts)
	b.ReportMetric(per.Seconds(), "s/startup")
	b.ReportMetric(float64(n)/per.Seconds(), "routes/s")
}
