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
//
// The fence starts only once WatchBest has read the change from GoBGP's
// best-path watch, so the watch's delay comes before it: WatchBest's
// heartbeat (gobgp.WithWatchHook) times it. The window is about the sum of
// the two.
type fenceMetrics struct {
	took, waited    prometheus.Histogram
	prefixes        prometheus.Counter
	watch, delivery prometheus.Histogram
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
		watch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fibgate_gobgp_watch_delay_seconds", Buckets: buckets,
			Help: "Heartbeats through GoBGP's best-path watch, once a second: from GoBGP processing a path until fibgate read its event and could fence it. Part of the window before fibgate_gobgp_fence_seconds; a path learned again within both goes out unconfirmed."}),
		delivery: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fibgate_gobgp_watch_delivery_seconds", Buckets: buckets,
			Help: "The part of fibgate_gobgp_watch_delay_seconds until GoBGP's watcher handed the event to fibgate (GoBGP's queue of best-path events); the rest is fibgate's own queue."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{f.took, f.waited, f.prefixes, f.watch, f.delivery} {
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

// beat is WatchBest's heartbeat hook (gobgp.WithWatchHook).
func (f *fenceMetrics) beat(b gobgp.WatchBeat) {
	f.watch.Observe(b.Read.Seconds())
	f.delivery.Observe(b.Delivered.Seconds())
}
