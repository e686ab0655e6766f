package daemon

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fibgate/fibgate/plugin/gobgp"
)

// guardMetrics counts the guard's re-installs of the gate in GoBGP, and
// the unsafe ones among them: an unsafe re-install means GoBGP exported
// without the gate for a moment (its export chain was replaced), so
// unconfirmed prefixes may have reached neighbours. Alert on the second.
type guardMetrics struct {
	reinstalls, unsafe prometheus.Counter
}

// newGuardMetrics registers the counters in reg; with a nil reg they
// count for nobody.
func newGuardMetrics(reg *prometheus.Registry) (*guardMetrics, error) {
	g := &guardMetrics{
		reinstalls: prometheus.NewCounter(prometheus.CounterOpts{Name: "fibgate_gobgp_gate_reinstalls_total",
			Help: "Re-installs of the gate in GoBGP by the guard: after gobgpd restarted or reloaded its policies, or a call failed midway."}),
		unsafe: prometheus.NewCounter(prometheus.CounterOpts{Name: "fibgate_gobgp_unsafe_reloads_total",
			Help: "Re-installs after the gate was not first in GoBGP's export chain: GoBGP exported without it, and prefixes may have leaked. Reload gobgpd only with fibgate's fallback policy first in its config."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{g.reinstalls, g.unsafe} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return g, nil
}

// observe is the Speaker's guard hook (gobgp.WithGuardHook).
func (g *guardMetrics) observe(e gobgp.GuardEvent) {
	g.reinstalls.Inc()
	if e.Unsafe {
		g.unsafe.Inc()
	}
}
