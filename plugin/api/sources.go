package api

import (
	"context"
	"net/netip"
	"time"

	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/hw/external"
	"github.com/fibgate/fibgate/plugin/kernel"
)

// The server consumes these small interfaces rather than concrete types, so
// a daemon wires in only what it has (a sidecar without a simulated ASIC, a
// lab without external agents) and each service can be tested alone. Any of
// them may be left out: the RPCs that need a missing one answer
// FAILED_PRECONDITION saying what the daemon lacks.

// PolicyStore holds the gating policy (a *gate.Tracker).
type PolicyStore interface {
	Policy() gate.Policy
	// SetPolicy validates and applies; errors match gate.ErrInvalidPolicy
	// and *gate.FieldError.
	SetPolicy(p gate.Policy) error
}

// RouteStore holds the state of every gated prefix (a *gate.Tracker).
type RouteStore interface {
	// List returns every state sorted by table, address and prefix length.
	List() []gate.RouteState
	Get(table uint32, p netip.Prefix) (gate.RouteState, bool)
	// Find returns p's states in every table that has it, by table: the
	// lookup of a request whose table is 0 ("every table").
	Find(p netip.Prefix) []gate.RouteState
	// Watch streams changed states, after a snapshot if asked, until ctx
	// ends, or until the consumer falls behind a gate.WatchLimit.
	Watch(ctx context.Context, snapshot bool, opts ...gate.WatchOption) <-chan []gate.RouteState
}

// Pager is a RouteStore that serves a page of ListRoutes without listing
// every state (a *gate.Tracker is one): at a full table, List builds a
// million states for every page. Page returns up to n states that match,
// in List's order, after (table, after) (from the start when after is not
// valid), and whether more match beyond them.
type Pager interface {
	Page(table uint32, after netip.Prefix, n int, match func(gate.Brief) bool) ([]gate.RouteState, bool)
}

// GateStats gives the gate's counters (a *gate.Tracker).
type GateStats interface {
	Stats() gate.TrackerStats
}

// HardwareSeen says whether any gated route has shown a hardware flag
// since start (a *gate.Tracker does): a GateStats that says so gets
// fibgate_hardware_flags_seen into the metrics, for an alert on a machine
// whose driver never flags a route while prefixes wait for it.
type HardwareSeen interface {
	HardwareSeen() bool
}

// RetryStats gives the counters of refused writes and retries (a
// *gate.Tracker has them); a GateStats that has them too gets them into
// GetStats and the metrics.
type RetryStats interface {
	RetryStats() gate.RetryStats
}

// Retrier has the hardware try again now (HardwareService.RetryRoutes,
// `fibgate hw retry`): the daemon writes failed routes again (the gate's
// RetryNow) and makes refused writes again (its FIB installer). table 0
// means every table; an invalid prefix means every failed or refused one.
type Retrier interface {
	RetryNow(ctx context.Context, table uint32, prefix netip.Prefix) (RetryResult, error)
}

// RetryResult is what a Retrier did: failed routes written again, refused
// routes written again, and one error per route it could not write.
type RetryResult struct {
	Rewritten, RefusedWritten int
	Errors                    []error
}

// Gate is everything the server needs from the gate; a *gate.Tracker is
// one, and WithGate wires all three services from it.
type Gate interface {
	PolicyStore
	RouteStore
	GateStats
}

// ListenerStats gives the route listener's counters (a *kernel.Listener).
type ListenerStats interface {
	Stats() kernel.Stats
}

// Agents is the external hardware backend (an *external.Backend): each
// HardwareService.ReportRoutes stream is one agent attached to it.
type Agents interface {
	Attach(ctx context.Context, agent string) ([]external.Instruction, <-chan []external.Instruction, error)
	Report(r external.Report) error
	Stats() external.Stats
}

// SimControl steers the simulated ASIC for labs and tests. It speaks the
// API's own terms so the server does not depend on the simulator's
// package; plugin/api/simctl adapts a *sim.Sim to it.
type SimControl interface {
	SetCapacity(c SimCapacity) error
	SetLatency(fixed, jitter time.Duration) error
	// SetRate sets routes per second (0: unlimited) and the hardware batch
	// size (0: keep the current one).
	SetRate(routesPerSecond, batch int) error
	InjectFailure(p netip.Prefix) error
	ClearFailure(p netip.Prefix) error
	SetFailProbability(p float64) error
	SimStats() SimStats
}

// SimCapacity counts route slots (or routes) per family and kind; for
// capacities 0 means unlimited.
type SimCapacity struct {
	IPv4Prefix, IPv4Host, IPv6Prefix, IPv6Host int
}

// SimStats is the simulated ASIC's occupancy, counters and settings, as
// GetSimStats reports them.
type SimStats struct {
	Programmed, Trapped, Offloaded, Failed, Queue int
	Used                                          SimCapacity
	Ops                                           uint64
	OpsPerSecond                                  float64
	WriteErrors                                   uint64
	Capacity                                      SimCapacity
	Latency, Jitter                               time.Duration
	Rate, Batch                                   int
	FailProbability                               float64
	// CapacityMode is flag or refuse; Refused and Held count refusals and
	// the room counted with refuse.
	CapacityMode string
	Refused      uint64
	Held         SimCapacity
}
