// Package external is the hardware backend for data planes driven by a
// process of their own: a SAI or vendor SDK agent, a P4 runtime client, a
// DPDK/VPP or XDP control plane. Such an agent cannot hook the kernel's FIB
// notifier chain the way a switchdev driver does, so this backend does it
// for them: attached to the route listener as a fib.Driver, it learns which
// route forwards for each prefix, fans that out to every connected agent,
// and writes the hardware state the agents report back into the listener's
// model with SetFlags, exactly where a kernel driver's flags would land.
// The gate cannot tell the difference.
//
// The package knows nothing of gRPC: plugin/api carries Instructions and
// Reports over the HardwareService.ReportRoutes stream, one stream per agent.
package external

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/internal/fanout"
)

// Op is what an agent must do with a route.
type Op uint8

const (
	// Program installs the route, replacing whatever the hardware holds for
	// its table and prefix.
	Program Op = iota + 1
	// Remove deletes whatever the hardware holds for the table and prefix.
	Remove
)

// String returns "program" or "remove", for logs.
func (o Op) String() string {
	switch o {
	case Program:
		return "program"
	case Remove:
		return "remove"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Instruction is one route an agent must program or remove. Generation
// increases with every instruction the backend issues; an agent echoes it
// in its Report so that a late report about a route that was replaced
// meanwhile is not applied to its successor.
type Instruction struct {
	Op         Op
	Route      fib.Route
	Generation uint64
}

// Report is the hardware state an agent reports for the route that forwards
// for (Table, Prefix).
type Report struct {
	Table  uint32
	Prefix netip.Prefix
	// Generation is the Instruction's; 0 applies the report to whatever
	// route forwards now.
	Generation uint64
	// Flags is the route's hardware state.
	Flags fib.HWFlags
	// NexthopFlags is the state per path, in the Instruction's nexthop
	// order; nil when the hardware has no per-path state. For an IPv6
	// multipath route each path is a kernel sibling and these win over
	// Flags (the route shows its first path's flags, as in the kernel).
	NexthopFlags []fib.HWFlags
}

// Reasons a report is ignored (and counted). They are normal races between
// a route changing and an agent reporting, not protocol errors.
var (
	// ErrUnknownRoute: no route forwards for the reported table and prefix.
	ErrUnknownRoute = errors.New("no forwarding route for the reported prefix")
	// ErrStaleReport: the route was replaced since the reported generation.
	ErrStaleReport = errors.New("report is for a route replaced since")
	// ErrNexthopCount: the report has per-path flags for a different number
	// of paths than the route has.
	ErrNexthopCount = errors.New("report has flags for a different number of nexthops than the route")
	// ErrNotBound: the backend has no listener to report to yet.
	ErrNotBound = errors.New("external backend is not bound to a route listener")
)

// Target is where reported hardware state goes: the route listener the
// backend is attached to as a driver (a *kernel.Listener). Ready tells
// when the listener has replayed its whole table to the driver, so an agent
// that connects gets a complete first table.
type Target interface {
	Ready() <-chan struct{}
	SetFlags(r *fib.Route, flags fib.HWFlags)
	SetNexthopFlags(r *fib.Route, nh int, flags fib.HWFlags)
}

// Stats are the backend's counters, for the API and metrics.
type Stats struct {
	Agents         int    // agents connected now
	Routes         int    // forwarding routes the agents must hold now
	ReportsApplied uint64 // reports handed to the listener
	ReportsIgnored uint64 // reports for unknown or stale routes, or malformed
}

type prefixKey struct {
	table  uint32
	prefix netip.Prefix
}

type programmed struct {
	route fib.Route
	gen   uint64
}

// Backend is the external hardware backend. Attach it to the listener with
// kernel.WithDriver(b), then Bind the listener; agents Attach and Report.
type Backend struct {
	log *slog.Logger

	mu     sync.Mutex // guards routes, gen and the hub's order
	routes map[prefixKey]programmed
	gen    uint64
	hub    fanout.Hub[Instruction]

	bindOnce sync.Once
	bound    chan struct{}
	target   atomic.Pointer[Target]

	agents           atomic.Int64
	applied, ignored atomic.Uint64
}

// A Backend is attached to the listener as its driver.
var _ fib.Driver = (*Backend)(nil)

// Option configures a Backend.
type Option func(*Backend)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(b *Backend) { b.log = l } }

// New returns a backend with no route and no agent.
func New(opts ...Option) *Backend {
	b := &Backend{
		log:    slog.New(slog.DiscardHandler),
		routes: map[prefixKey]programmed{},
		bound:  make(chan struct{}),
	}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Bind sets the listener that reports go to. The backend is created before
// the listener (which takes it as its driver), hence this second step. Only
// the first call counts.
func (b *Backend) Bind(t Target) {
	b.bindOnce.Do(func() {
		b.target.Store(&t)
		close(b.bound)
	})
}

// Event is the fib.Driver side: the listener calls it synchronously with
// its lock held, so it only records the route and queues the instruction
// for the agents. It never vetoes a route: an agent reports a failure as
// offload_failed.
func (b *Backend) Event(ev fib.DriverEvent) error {
	k := prefixKey{ev.Route.Table, ev.Route.Prefix.Masked()}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gen++
	in := Instruction{Op: Program, Generation: b.gen}
	switch ev.Kind {
	case fib.DriverReplace:
		in.Route = ev.Route.Clone()
		b.routes[k] = programmed{route: in.Route, gen: b.gen}
	case fib.DriverAppend:
		cur, ok := b.routes[k]
		if !ok {
			cur.route = ev.Route.Clone()
		} else {
			cur.route = cur.route.Clone()
			cur.route.Nexthops = append(cur.route.Nexthops, ev.Route.Nexthops...)
		}
		cur.gen = b.gen
		b.routes[k] = cur
		in.Route = cur.route
	case fib.DriverDel:
		delete(b.routes, k)
		in.Op, in.Route = Remove, ev.Route.Clone()
	default:
		b.gen--
		return nil
	}
	b.hub.Publish([]Instruction{in})
	return nil
}

// Attach registers an agent. It waits until the backend is bound and the
// listener has replayed its table, then returns every route to program
// (sorted by table and prefix) and a channel of the instructions that
// follow, taken atomically so the agent misses nothing and sees nothing
// twice. The channel closes when ctx ends; the agent is counted until then.
func (b *Backend) Attach(ctx context.Context, agent string) ([]Instruction, <-chan []Instruction, error) {
	select {
	case <-b.bound:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	select {
	case <-(*b.target.Load()).Ready():
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	b.mu.Lock()
	snap := make([]Instruction, 0, len(b.routes))
	for _, p := range b.routes {
		snap = append(snap, Instruction{Op: Program, Route: p.route, Generation: p.gen})
	}
	updates := b.hub.Subscribe(ctx, nil)
	b.mu.Unlock()
	slices.SortFunc(snap, func(x, y Instruction) int {
		if c := cmp.Compare(x.Route.Table, y.Route.Table); c != 0 {
			return c
		}
		return x.Route.Prefix.Compare(y.Route.Prefix)
	})
	b.agents.Add(1)
	context.AfterFunc(ctx, func() {
		b.agents.Add(-1)
		b.log.Info("hardware agent disconnected", "agent", agent)
	})
	b.log.Info("hardware agent connected", "agent", agent, "routes", len(snap))
	return snap, updates, nil
}

// Report applies an agent's report to the route that forwards for its
// prefix now. It returns why a report was ignored (ErrUnknownRoute,
// ErrStaleReport, ErrNexthopCount, ErrNotBound), and counts it.
func (b *Backend) Report(r Report) error {
	err := b.report(r)
	if err != nil {
		b.ignored.Add(1)
		b.log.Debug("hardware report ignored", "table", r.Table, "prefix", r.Prefix, "generation", r.Generation, "err", err)
		return err
	}
	b.applied.Add(1)
	return nil
}

func (b *Backend) report(r Report) error {
	tp := b.target.Load()
	if tp == nil {
		return ErrNotBound
	}
	b.mu.Lock()
	p, ok := b.routes[prefixKey{r.Table, r.Prefix.Masked()}]
	b.mu.Unlock()
	switch {
	case !ok:
		return ErrUnknownRoute
	case r.Generation != 0 && r.Generation != p.gen:
		return fmt.Errorf("%w (generation %d, route is at %d)", ErrStaleReport, r.Generation, p.gen)
	case r.NexthopFlags != nil && len(r.NexthopFlags) != len(p.route.Nexthops):
		return fmt.Errorf("%w (%d flags for %d nexthops)", ErrNexthopCount, len(r.NexthopFlags), len(p.route.Nexthops))
	}
	// The lock is not held here: the listener calls Event with its own
	// lock held, so calling into it under ours could deadlock. A route
	// replaced in between is not found by the listener and the report is
	// dropped there, as the kernel drops a driver's late flags.
	t := *tp
	rt := &p.route
	if rt.Family() == fib.IPv6 && len(rt.Nexthops) > 0 && r.NexthopFlags != nil {
		for i, f := range r.NexthopFlags {
			t.SetNexthopFlags(rt, i, f)
		}
		return nil
	}
	// IPv4 per-path bits are stored silently (the kernel never announces
	// them), so they go first and the route's flag change that follows
	// carries them to subscribers.
	for i, f := range r.NexthopFlags {
		t.SetNexthopFlags(rt, i, f)
	}
	t.SetFlags(rt, r.Flags)
	return nil
}

// Stats returns the counters.
func (b *Backend) Stats() Stats {
	b.mu.Lock()
	n := len(b.routes)
	b.mu.Unlock()
	return Stats{
		Agents:         int(b.agents.Load()),
		Routes:         n,
		ReportsApplied: b.applied.Load(),
		ReportsIgnored: b.ignored.Load(),
	}
}
