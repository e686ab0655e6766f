// Package bgpmetrics is the Prometheus side of the daemons' BGP speaker
// (gobgpd-ext and fibgated): the guard's re-installs of the gate, the
// fences and the best-path watch's delay, whose sum is the window a
// re-announcement leaks through, and the copies and not-to entries the
// Speaker keeps in GoBGP. It lives outside the daemons' internal package
// so that deploy/grafana's test can check the dashboard against it.
package bgpmetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fibgate/fibgate/plugin/gobgp"
)

// Metrics are the Speaker's counters and histograms, fed by its hooks
// (Options).
type Metrics struct {
	reinstalls, unsafe prometheus.Counter
	took, waited       prometheus.Histogram
	prefixes           prometheus.Counter
	watch, delivery    prometheus.Histogram
}

// New registers the counters and histograms in reg; with a nil reg they
// count for nobody.
func New(reg prometheus.Registerer) (*Metrics, error) {
	hist := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help,
			Buckets: prometheus.ExponentialBucketsRange(0.0001, 10, 16)}) // 100 µs to 10 s
	}
	m := &Metrics{
		reinstalls: prometheus.NewCounter(prometheus.CounterOpts{Name: "fibgate_gobgp_gate_reinstalls_total",
			Help: "Re-installs of the gate in GoBGP by the guard: after gobgpd restarted or reloaded its policies, or a call failed midway."}),
		unsafe: prometheus.NewCounter(prometheus.CounterOpts{Name: "fibgate_gobgp_unsafe_reloads_total",
			Help: "Re-installs after the gate was not first in GoBGP's export chain: GoBGP exported without it, and prefixes may have leaked. Reload gobgpd only with fibgate's fallback policy first in its config."}),
		took: hist("fibgate_gobgp_fence_seconds",
			"Fences: from a best-path change (withdrawn or replaced) reaching fibgate until its prefixes are held in GoBGP. A path learned again meanwhile goes out unconfirmed; keep it below the shortest withdraw-to-reannounce gap you expect."),
		waited: hist("fibgate_gobgp_fence_wait_seconds",
			"The part of fibgate_gobgp_fence_seconds spent waiting for the Speaker's lock (a release step or the guard in progress)."),
		prefixes: prometheus.NewCounter(prometheus.CounterOpts{Name: "fibgate_gobgp_fenced_prefixes_total",
			Help: "Prefixes taken back, or kept on a copy of their previous path, because their best path changed before the gate saw their route change."}),
		watch: hist("fibgate_gobgp_watch_delay_seconds",
			"Heartbeats through GoBGP's best-path watch, once a second: from GoBGP processing a path until fibgate read its event and could fence it. Part of the window before fibgate_gobgp_fence_seconds; a path learned again within both goes out unconfirmed."),
		delivery: hist("fibgate_gobgp_watch_delivery_seconds",
			"The part of fibgate_gobgp_watch_delay_seconds until GoBGP's watcher handed the event to fibgate (GoBGP's queue of best-path events); the rest is fibgate's own queue."),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.reinstalls, m.unsafe, m.took, m.waited, m.prefixes, m.watch, m.delivery} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// Options are the Speaker's hooks that feed m.
func (m *Metrics) Options() []gobgp.Option {
	return []gobgp.Option{gobgp.WithGuardHook(m.guard), gobgp.WithFenceHook(m.fence), gobgp.WithWatchHook(m.beat)}
}

func (m *Metrics) guard(e gobgp.GuardEvent) {
	m.reinstalls.Inc()
	if e.Unsafe {
		m.unsafe.Inc()
	}
}

func (m *Metrics) fence(e gobgp.FenceEvent) {
	m.took.Observe(e.Took.Seconds())
	m.waited.Observe(e.Waited.Seconds())
	m.prefixes.Add(float64(e.Prefixes))
}

func (m *Metrics) beat(b gobgp.WatchBeat) {
	m.watch.Observe(b.Read.Seconds())
	m.delivery.Observe(b.Delivered.Seconds())
}

// Speaker is what the gauges read: gobgp.Speaker.
type Speaker interface {
	Kept() int
	NotToEntries() int
}

// RegisterGauges registers the gauges of what sp keeps in GoBGP, read at
// scrape time, in reg (nil: none).
func RegisterGauges(reg prometheus.Registerer, sp Speaker) error {
	if reg == nil {
		return nil
	}
	kept := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fibgate_gobgp_kept_copies",
		Help: "Prefixes out on a copy of a learned path: kept on their previous best path while the route of a new one with other attributes is programmed (make-before-break), and with bgp.release: copy every prefix released by copy."},
		func() float64 { return float64(sp.Kept()) })
	notTo := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fibgate_gobgp_not_to_entries",
		Help: "Entries of the not-to sets in GoBGP (bgp.not_to_sets), which keep a new path from the neighbours of the ASes in a prefix's released path until its route is programmed: per neighbour AS, the released prefixes whose paths carry it, or, for a set kept as its complement (an AS in most released paths), those whose paths lack it."},
		func() float64 { return float64(sp.NotToEntries()) })
	for _, c := range []prometheus.Collector{kept, notTo} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
