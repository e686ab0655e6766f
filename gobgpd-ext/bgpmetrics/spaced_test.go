package bgpmetrics

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// costly stands in for GoBGP's collector: each read takes cost on the
// test's clock, reports how many reads there were, and waits for gate
// when the test holds it.
type costly struct {
	clock *fakeClock
	cost  time.Duration
	gate  chan struct{} // nil: reads do not wait

	mu    sync.Mutex
	reads int
}

var costlyDesc = prometheus.NewDesc("bgp_reads", "reads of the costly collector", nil, nil)

func (c *costly) Describe(out chan<- *prometheus.Desc) { out <- costlyDesc }

func (c *costly) Collect(out chan<- prometheus.Metric) {
	c.mu.Lock()
	c.reads++
	n, gate := c.reads, c.gate
	c.mu.Unlock()
	if gate != nil {
		<-gate
	}
	c.clock.advance(c.cost)
	out <- prometheus.MustNewConstMetric(costlyDesc, prometheus.GaugeValue, float64(n))
}

func (c *costly) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// scrape gathers reg and returns the value of every gauge by name.
func scrape(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetType() == dto.MetricType_GAUGE && len(mf.GetMetric()) == 1 {
			out[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return out
}

func spacedLab(cost time.Duration) (*prometheus.Registry, *costly, *fakeClock) {
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	c := &costly{clock: clock, cost: cost}
	s := Spaced(c).(*spaced)
	s.now = clock.now
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s)
	return reg, c, clock
}

// TestSpacedReadsACheapCollectorInTheScrape: a read of a small table is
// done in the scrape that falls due, so its values are as fresh as
// without the wrapper, and no more often than every 100 times its cost.
func TestSpacedReadsACheapCollectorInTheScrape(t *testing.T) {
	reg, c, clock := spacedLab(time.Millisecond)
	if got := scrape(t, reg); got["bgp_reads"] != 1 || got["fibgate_gobgp_metrics_collect_seconds"] != 0.001 {
		t.Fatalf("first scrape: %v, want the first read and its cost", got)
	}
	clock.advance(50 * time.Millisecond)
	if got := scrape(t, reg); got["bgp_reads"] != 1 || c.count() != 1 {
		t.Fatalf("a scrape within 100 times the read's cost read again: %v", got)
	}
	clock.advance(50 * time.Millisecond)
	if got := scrape(t, reg); got["bgp_reads"] != 2 || got["fibgate_gobgp_metrics_age_seconds"] != 0.001 {
		t.Fatalf("a scrape 100 times the read's cost later: %v, want a new read served at once", got)
	}
}

// TestSpacedDoesNotLetScrapesWaitForACostlyCollector: a read that took
// seconds is redone no sooner than 100 times that, in the background,
// and scrapes meanwhile get the previous values at once, whatever the
// read in flight is waiting for (GoBGP's main loop).
func TestSpacedDoesNotLetScrapesWaitForACostlyCollector(t *testing.T) {
	reg, c, clock := spacedLab(2 * time.Second)
	if got := scrape(t, reg); got["bgp_reads"] != 1 || got["fibgate_gobgp_metrics_collect_seconds"] != 2 {
		t.Fatalf("first scrape: %v, want the first read, in the scrape", got)
	}
	clock.advance(100 * time.Second)
	if got := scrape(t, reg); got["bgp_reads"] != 1 || c.count() != 1 || got["fibgate_gobgp_metrics_age_seconds"] != 102 {
		t.Fatalf("a scrape 100 s after a 2 s read: %v (%d reads), want the first read's values, 102 s old", got, c.count())
	}
	gate := make(chan struct{})
	c.mu.Lock()
	c.gate = gate
	c.mu.Unlock()
	clock.advance(100 * time.Second)
	// Due now: the read starts in the background and waits for the gate,
	// and these scrapes must not wait for it.
	for range 3 {
		got := make(chan map[string]float64, 1)
		go func() { got <- scrape(t, reg) }()
		select {
		case g := <-got:
			if g["bgp_reads"] != 1 {
				t.Fatalf("a scrape while the read waits: %v, want the previous values", g)
			}
		case <-time.After(10 * time.Second):
			close(gate)
			t.Fatal("a scrape waited for the read in flight")
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.count() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d reads, want one in the background", c.count())
		}
		time.Sleep(time.Millisecond) // polling the background read's start
	}
	close(gate)
	deadline = time.Now().Add(10 * time.Second)
	for {
		got := scrape(t, reg)
		if got["bgp_reads"] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the background read's values never came: %v", got)
		}
		time.Sleep(time.Millisecond) // polling the background read's end
	}
	if n := c.count(); n != 2 {
		t.Fatalf("%d reads, want 2: one read in flight at a time", n)
	}
}

// TestSpacedDescribesItsSeries: a checked registry accepts the wrapper
// with the collector's series and its own two.
func TestSpacedDescribesItsSeries(t *testing.T) {
	reg, _, _ := spacedLab(time.Millisecond)
	got := scrape(t, reg)
	for _, name := range []string{"bgp_reads", "fibgate_gobgp_metrics_age_seconds", "fibgate_gobgp_metrics_collect_seconds"} {
		if _, ok := got[name]; !ok {
			t.Errorf("%s missing from %v", name, got)
		}
	}
	if len(got) != 3 {
		t.Errorf("got %v", fmt.Sprint(got))
	}
}
