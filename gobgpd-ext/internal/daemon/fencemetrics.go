package daemon

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fibgate/fibgate/plugin/gobgp"
)

// fenceMetrics times the Speaker's fences: from a best-path change reaching
// it until the prefix is held in GoBGP. A path learned again for the
// prefix within that time is exported before its route is confirmed, so
// these histograms are the window of that leak, which operators can watch
// at their own table size and churn (docs/design-notes.md, "Safety under
// churn: fences").
type fenceMetrics struct {
	took, waited prometheus.Histogram
	prefixes     prometheus.Counter
}

// newFenceMetrics registers the histograms in reg; with a nil reg they
// count for nobody.
func newFenceMetrics(reg *prometheus.Registry) (*fenceMetrics, error) {
	buckets := prometheus.ExponentialBucketsRange(0.0001, 10, 16) // 100 µs to 10 s
	f := &fenceMetrics{
		took: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fibgate_gobgp_fence_seconds", Buckets: buckets,
			Help: "Fences: from a best-path change (withdrawn or replaced) reaching fibgate until its prefixes are held in GoBGP. A path learned again meanwhile goes out unconfirmed; keep it below the shortest withdraw-to-reannounce gap you expect."}),
		waited: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fibgate_gobgp_fence_wait_seconds", Buckets: buckets,
			Help: "The part of fibgate_gobgp_fence_seconds spent waiting for the Speaker's lock (a release step or the guard in progress)."}),
		prefixes: prometheus.NewCounter(prometheus.CounterOpts{Name: "fibgate_gobgp_fenced_prefixes_total",
			Help: "Prefixes taken back, or kept on a copy of their previous path, because their best path changed before the gate saw their route change."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{f.took, f.waited, f.prefixes} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return f, nil
}

// observe is the Speaker's fence hook (gobgp.WithFenceHook).
func (f *fenceMetrics) observe(e gobgp.FenceEvent) {
	f.took.Observe(e.Took.Seconds())
	f.waited.Observe(e.Waited.Seconds())
	f.prefixes.Add(float64(e.Prefixes))
}
