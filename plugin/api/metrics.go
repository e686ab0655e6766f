package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fibgate/fibgate/plugin/gate"
)

// Metrics exports the gate and the listener as Prometheus metrics, all
// named fibgate_*. It is also the gate's Observer (gate.WithObserver), which
// feeds the latency histograms as confirmations and advertisements happen.
// Counters and gauges are read from the sources' Stats at scrape time, so
// they cost nothing between scrapes.
type Metrics struct {
	timeToHW, heldDown, confirmToAdv prometheus.Histogram
	speakerCall                      *prometheus.HistogramVec

	mu       sync.RWMutex
	gate     GateStats
	listener ListenerStats
}

var (
	descRoutes        = prometheus.NewDesc("fibgate_routes", "Gated prefixes by state.", []string{"state"}, nil)
	descConfirmations = prometheus.NewDesc("fibgate_confirmations_total", "Prefixes confirmed by the data plane (including fail-open).", nil, nil)
	descFailures      = prometheus.NewDesc("fibgate_failures_total", "Transitions to failed (offload_failed).", nil, nil)
	descWithdrawals   = prometheus.NewDesc("fibgate_withdrawals_total", "Prefixes BGP took back (failed, lost or gone from the FIB).", nil, nil)
	descAdvertised    = prometheus.NewDesc("fibgate_advertisements_total", "Prefixes handed to BGP.", nil, nil)
	descSpeakerErrors = prometheus.NewDesc("fibgate_speaker_errors_total", "Failed BGP advertise or withdraw calls (retried).", nil, nil)
	descFIBRoutes     = prometheus.NewDesc("fibgate_fib_routes", "Routes in fibgate's model of the kernel FIB.", nil, nil)
	descNotifications = prometheus.NewDesc("fibgate_listener_notifications_total", "Route notifications applied to the model.", nil, nil)
	descOverruns      = prometheus.NewDesc("fibgate_listener_overruns_total", "Notification socket overruns (ENOBUFS).", nil, nil)
	descResyncs       = prometheus.NewDesc("fibgate_listener_resyncs_total", "Dumps compared with the model after overruns or link and address loss.", nil, nil)
	descOutOfSync     = prometheus.NewDesc("fibgate_listener_out_of_sync_total", "Notifications that did not fit the model.", nil, nil)
	descRefusedWrites = prometheus.NewDesc("fibgate_refused_writes_total", "Route writes of the FIB installer that the kernel refused (every attempt counts).", nil, nil)
	descRefusals      = prometheus.NewDesc("fibgate_refusals_total", "Transitions to refused: prefixes whose route the kernel refused to install.", nil, nil)
	descRewrites      = prometheus.NewDesc("fibgate_rewrites_total", "Failed routes written again so that their driver tries again (policy retry and fibgate hw retry).", nil, nil)
	descRewriteErrors = prometheus.NewDesc("fibgate_rewrite_errors_total", "Rewrites of failed routes that could not be done.", nil, nil)
	descHWSeen        = prometheus.NewDesc("fibgate_hardware_flags_seen", "1 once any route of a gated table has shown a hardware flag of its own (offload, trap, offload_failed; an IPv4 next hop's offload mark does not count) since start; 0 while none has: no driver offloads routes, and prefixes waiting for the hardware wait for good.", nil, nil)
)

// NewMetrics registers fibgate's metrics with reg (no global registry).
// Sources are attached with Watch before the first scrape that should see
// them; until then only the histograms are exported.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	buckets := prometheus.ExponentialBucketsRange(0.001, 120, 16) // 1 ms to 2 min
	m := &Metrics{
		timeToHW: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fibgate_time_to_hardware_seconds", Buckets: buckets,
			Help: "How long the hardware took to program a route: from entering the FIB (or losing confirmation) to its hardware confirmation; hold-down not included.",
		}),
		heldDown: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fibgate_held_down_seconds", Buckets: buckets,
			Help: "How long flapping prefixes were held down before they were confirmed again.",
		}),
		confirmToAdv: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fibgate_confirm_to_advertise_seconds", Buckets: buckets,
			Help: "From hardware confirmation to BGP accepting the prefix.",
		}),
		speakerCall: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fibgate_speaker_call_seconds", Buckets: prometheus.ExponentialBucketsRange(0.0001, 60, 16), // 100 µs to 1 min
			Help: "How long the BGP speaker took to take a batch of releases (call=\"advertise\") or take-backs (call=\"withdraw\"): its share of confirm-to-advertise.",
		}, []string{"call"}),
	}
	// Both calls are exported from the start, so that rate() and alerts see
	// a series before the first call.
	m.speakerCall.WithLabelValues("advertise")
	m.speakerCall.WithLabelValues("withdraw")
	for _, c := range []prometheus.Collector{m.timeToHW, m.heldDown, m.confirmToAdv, m.speakerCall, m} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register fibgate metrics: %w", err)
		}
	}
	return m, nil
}

// NewBuildInfo returns the gauge fibgate_build_info{version,goversion,gobgp}
// = 1, to register next to NewMetrics' metrics: dashboards and alerts can
// then tell which build each daemon runs (a rollout shows as two series)
// and join it to the other fibgate_* series by instance. The labels are
// fibgate's version, the Go release and the GoBGP module version.
func NewBuildInfo(version, goVersion, gobgp string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "fibgate_build_info",
		Help:        "Always 1; the labels name the build: fibgate's version, the Go release and the GoBGP module.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": goVersion, "gobgp": gobgp},
	})
	g.Set(1)
	return g
}

// Watch attaches the sources whose counters the metrics export.
func (m *Metrics) Watch(g GateStats, l ListenerStats) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gate, m.listener = g, l
}

// TimeToHardware implements gate.Observer.
func (m *Metrics) TimeToHardware(d time.Duration) { m.timeToHW.Observe(d.Seconds()) }

// HeldDown implements gate.Observer.
func (m *Metrics) HeldDown(d time.Duration) { m.heldDown.Observe(d.Seconds()) }

// SpeakerCall implements gate.CallObserver.
func (m *Metrics) SpeakerCall(call string, _ int, d time.Duration) {
	m.speakerCall.WithLabelValues(call).Observe(d.Seconds())
}

// ConfirmToAdvertise implements gate.Observer.
func (m *Metrics) ConfirmToAdvertise(d time.Duration) { m.confirmToAdv.Observe(d.Seconds()) }

var _ gate.Observer = (*Metrics)(nil)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRoutes, descConfirmations, descFailures, descWithdrawals, descAdvertised,
		descSpeakerErrors, descFIBRoutes, descNotifications, descOverruns, descResyncs, descOutOfSync,
		descRefusedWrites, descRefusals, descRewrites, descRewriteErrors, descHWSeen} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.RLock()
	g, l := m.gate, m.listener
	m.mu.RUnlock()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	if g != nil {
		s := g.Stats()
		for st := gate.Pending; st <= gate.Refused; st++ {
			ch <- prometheus.MustNewConstMetric(descRoutes, prometheus.GaugeValue, float64(s.ByState[st]), st.String())
		}
		counter(descConfirmations, s.Confirmed)
		counter(descFailures, s.Failed)
		counter(descWithdrawals, s.Withdrawn)
		counter(descAdvertised, s.Advertised)
		counter(descSpeakerErrors, s.SpeakerErrors)
		if rs, ok := g.(RetryStats); ok {
			r := rs.RetryStats()
			counter(descRefusedWrites, r.RefusedWrites)
			counter(descRefusals, r.Refusals)
			counter(descRewrites, r.Rewrites)
			counter(descRewriteErrors, r.RewriteErrors)
		}
		if hs, ok := g.(HardwareSeen); ok {
			v := 0.0
			if hs.HardwareSeen() {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descHWSeen, prometheus.GaugeValue, v)
		}
	}
	if l != nil {
		s := l.Stats()
		ch <- prometheus.MustNewConstMetric(descFIBRoutes, prometheus.GaugeValue, float64(s.Routes))
		counter(descNotifications, s.Notifications)
		counter(descOverruns, s.Overruns)
		counter(descResyncs, s.Resyncs)
		counter(descOutOfSync, s.OutOfSync)
	}
}

// ServeMetrics serves /metrics from g on addr until ctx ends.
func ServeMetrics(ctx context.Context, addr string, g prometheus.Gatherer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics on %s: %w", addr, err)
	}
	return nil
}
