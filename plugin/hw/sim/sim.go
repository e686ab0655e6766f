// Package sim is a simulated switch ASIC for labs, demos and tests: a
// driver outside the kernel that learns routes from a kernel.Listener the
// way a switchdev driver learns them from the kernel FIB, programs them into
// its own hardware table (a plugin/fib instance) with a modelled capacity,
// latency, rate and failures, and reports trap / offload / offload_failed
// back through the listener, so consumers cannot tell its flags from a real
// driver's. It also forwards for real: what it has programmed is mirrored
// into a kernel routing table that traffic arriving on the data ports uses,
// so a prefix that is not "in hardware" really drops packets.
//
// Wiring (the listener needs the driver when it is built, the sim needs the
// listener to report to when it runs):
//
//	asic, err := sim.New(cfg, sim.WithNetNS(ns))
//	l := kernel.NewListener(kernel.WithNetNS(ns), kernel.WithDriver(asic))
//	go l.Run(ctx)
//	go asic.Run(ctx, l)
package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/kernel"
)

// Sim is the simulated ASIC. Its methods are safe for concurrent use.
type Sim struct {
	cfg     Config // the parts that do not change while running
	ns      string
	log     *slog.Logger
	forward bool
	e       *engine
	started atomic.Bool
}

// Option configures a Sim.
type Option func(*Sim)

// WithNetNS runs the data plane and watches neighbours in the named network
// namespace (/run/netns/NAME), the one its listener follows, instead of the
// caller's.
func WithNetNS(name string) Option { return func(s *Sim) { s.ns = name } }

// WithLogger sets the logger; the default discards. Keys are stable:
// prefix=, table=, flags=.
func WithLogger(log *slog.Logger) Option { return func(s *Sim) { s.log = log } }

// WithoutForwarding makes the sim report flags only: no mirror table and no
// rules, for runs where the kernel's own forwarding must stay untouched.
// Spectrum mode still watches neighbours.
func WithoutForwarding() Option { return func(s *Sim) { s.forward = false } }

// New validates cfg and returns a sim. It touches nothing until Run; driver
// events that arrive before Run (the listener's replay) wait for it.
func New(cfg Config, opts ...Option) (*Sim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Tables = slices.Clone(cfg.Tables)
	cfg.Ports = slices.Clone(cfg.Ports)
	s := &Sim{cfg: cfg, log: slog.New(slog.DiscardHandler), forward: true}
	for _, o := range opts {
		o(s)
	}
	s.e = newEngine(cfg, s.log)
	return s, nil
}

// Event is the fib.Driver side: the listener calls it, under its lock, with
// the forwarding route of every prefix that changed. It only queues.
func (s *Sim) Event(ev fib.DriverEvent) error {
	s.e.event(ev)
	return nil
}

// Veto is the kernel.Vetoer side (give the sim to the FIB installer,
// kernel.InstallerConfig.Vetoer): with CapacityRefuse it refuses a route
// that does not fit, before the kernel has it, with the error netdevsim's
// veto gives (EPERM "sim: Exceeded number of supported fib entries", where
// netdevsim names itself), and counts
// the ones it lets through; with CapacityFlag it refuses nothing.
func (s *Sim) Veto(ops []kernel.RouteOp) []error {
	if s.e.adm == nil {
		return make([]error, len(ops))
	}
	return s.e.adm.veto(ops)
}

// Written is the kernel.Vetoer side: what the kernel did with the writes
// Veto let through, so room held for a refused one, or a deleted one, is
// given back at once.
func (s *Sim) Written(ops []kernel.RouteOp, errs []error) {
	if s.e.adm != nil {
		s.e.adm.written(ops, errs)
	}
}

var _ kernel.Vetoer = (*Sim)(nil)

// Run installs the data plane (mirror table and rules), programs routes and
// reports their flags to rep (the listener the sim is attached to) until
// ctx ends. Then it clears the flags of everything it had programmed (the
// hardware is gone), removes its rules and empties its table (unless
// Config.Warm), and returns once all its goroutines have ended. A Sim
// runs once.
func (s *Sim) Run(ctx context.Context, rep Reporter) error {
	if rep == nil {
		return errors.New("sim: Run needs a Reporter (the kernel.Listener the sim is attached to)")
	}
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("sim: Run called twice; a Sim runs once")
	}
	var k *plumbing
	if s.forward || s.cfg.Mode == ModeSpectrum {
		var err error
		k, err = openPlumbing(s.ns, s.cfg, s.forward, s.log, s.e.neighbourChanged)
		if err != nil {
			s.e.shutdown()
			return fmt.Errorf("start simulated ASIC in %s: %w", s.where(), err)
		}
		s.e.mu.Lock()
		if k.mirror != nil {
			s.e.dp = k.mirror
		}
		if k.neigh != nil {
			s.e.res = k.neigh
		}
		s.e.mu.Unlock()
	}
	var wg sync.WaitGroup
	if k != nil && k.neigh != nil {
		wg.Go(func() { k.neigh.run(ctx) })
	}
	if r, ok := rep.(interface{ Ready() <-chan struct{} }); ok && s.cfg.Warm && k != nil && k.mirror != nil {
		// The listener's first dump has claimed what it will of the
		// warm table once it is ready: the rest goes.
		wg.Go(func() {
			select {
			case <-r.Ready():
				s.e.requestSweep()
			case <-ctx.Done():
			}
		})
	}
	s.log.Info("simulated ASIC running", "mode", s.cfg.Mode, "netns", s.ns, "ports", s.cfg.Ports,
		"table", s.cfg.MirrorTable)
	s.e.run(ctx, rep)
	wg.Wait()
	var last []kernel.FlagReport
	deliver(rep, s.e.shutdown(), &last)
	if k != nil {
		if err := k.close(); err != nil {
			return fmt.Errorf("stop simulated ASIC in %s: %w", s.where(), err)
		}
	}
	s.log.Info("simulated ASIC stopped", "netns", s.ns)
	return nil
}

func (s *Sim) where() string {
	if s.ns == "" {
		return "the current netns"
	}
	return fmt.Sprintf("netns %q", s.ns)
}

// ProgrammedAt returns when the route now held for (table, prefix) entered
// hardware, and false when none is in hardware (not programmed yet, failed,
// or deleted). End-to-end tests compare it with when a BGP neighbour
// learned the prefix.
func (s *Sim) ProgrammedAt(table uint32, p netip.Prefix) (time.Time, bool) {
	e := s.e
	e.mu.Lock()
	defer e.mu.Unlock()
	sl, ok := e.slots[keyFor(table, p)]
	if !ok || sl.programmed == 0 {
		return time.Time{}, false
	}
	return e.epoch.Add(sl.programmed - 1), true
}

// View calls fn with the hardware table under the sim's lock: the routes it
// has programmed with the flags it reported (offload_failed ones included).
// fn must not keep the FIB or its routes.
func (s *Sim) View(fn func(*fib.FIB)) {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	fn(s.e.hw)
}

// Stats are the sim's counters, for the API, metrics and tests.
type Stats struct {
	// Programmed counts routes in hardware now: Trapped + Offloaded.
	Programmed int
	Trapped    int // in hardware, packets go to the CPU
	Offloaded  int // in hardware, forwarded there
	// Failed counts routes whose programming failed (table full,
	// injected, random or a refused write) and that are still present.
	Failed int
	// Queue counts driver events and re-programs not done yet.
	Queue int
	// Used is the occupancy per family and kind, to compare with Capacity.
	Used Capacity
	// Ops counts hardware writes (programs and deletes) since New.
	Ops uint64
	// OpsPerSecond is the programming rate over the last second or more.
	OpsPerSecond float64
	// WriteErrors counts routes the kernel refused to mirror.
	WriteErrors uint64
	// Refused counts writes refused because the table was full
	// (CapacityRefuse); Held is the room counted per class then, the
	// kernel's routes as the refusals see them.
	Refused uint64
	Held    Capacity
}

// Stats returns a snapshot of the counters.
func (s *Sim) Stats() Stats {
	e := s.e
	e.in.mu.Lock()
	inbox := e.in.events.len()
	e.in.mu.Unlock()
	var held Capacity
	var refused uint64
	if e.adm != nil {
		held, refused = e.adm.stats()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return Stats{
		Refused:      refused,
		Held:         held,
		Programmed:   e.count.trapped + e.count.offloaded,
		Trapped:      e.count.trapped,
		Offloaded:    e.count.offloaded,
		Failed:       e.count.failed,
		Queue:        e.q.live + inbox,
		Used:         capacityOf(e.used),
		Ops:          e.count.ops,
		OpsPerSecond: e.meter.perSecond(time.Now()),
		WriteErrors:  e.count.writeErrors,
	}
}

// Config returns the configuration with the current values of the settings
// changed through the API.
func (s *Sim) Config() Config {
	c := s.cfg
	c.Tables = slices.Clone(c.Tables)
	c.Ports = slices.Clone(c.Ports)
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	k := s.e.cfg
	c.Capacity, c.Latency, c.Jitter, c.Rate, c.Batch, c.FailProbability =
		k.capacity, k.latency, k.jitter, k.rate, k.batch, k.failProb
	return c
}

// SetCapacity changes the table size. Routes already programmed stay when
// it shrinks (hardware does not evict); when it grows, routes that failed
// for lack of room are programmed again. With CapacityRefuse writes are
// refused from now on while the kernel holds as many routes as the new
// size allows.
func (s *Sim) SetCapacity(c Capacity) error {
	if err := errors.Join(c.validate()...); err != nil {
		return err
	}
	s.e.mu.Lock()
	s.e.cfg.capacity = c
	if s.e.adm != nil {
		s.e.adm.setCapacity(c)
	}
	s.e.mu.Unlock()
	s.e.signal()
	return nil
}

// SetLatency changes the programming delay of events queued from now on.
func (s *Sim) SetLatency(fixed, jitter time.Duration) error {
	if err := validateLatency(fixed, jitter); err != nil {
		return err
	}
	s.e.mu.Lock()
	s.e.cfg.latency, s.e.cfg.jitter = fixed, jitter
	s.e.mu.Unlock()
	return nil
}

// SetRate changes the programming rate (routes/s, 0 = unlimited) and the
// batch size.
func (s *Sim) SetRate(perSecond, batch int) error {
	if err := validateRate(perSecond, batch); err != nil {
		return err
	}
	s.e.mu.Lock()
	s.e.cfg.rate, s.e.cfg.batch = perSecond, batch
	s.e.tokens = min(s.e.tokens, float64(batch))
	s.e.mu.Unlock()
	s.e.signal()
	return nil
}

// SetFailProbability makes every later programming fail with probability p.
func (s *Sim) SetFailProbability(p float64) error {
	if err := validateProbability(p); err != nil {
		return err
	}
	s.e.mu.Lock()
	s.e.cfg.failProb = p
	s.e.mu.Unlock()
	return nil
}

// InjectFailure makes programming fail for prefix p in every programmed
// table, like netdevsim's fail_route_offload for one prefix: a route of p
// in hardware is written again (after the latency) and gets offload_failed,
// and its traffic stops forwarding.
func (s *Sim) InjectFailure(p netip.Prefix) error {
	if !p.IsValid() {
		return errors.New("sim: inject failure: invalid prefix")
	}
	p = p.Masked()
	s.e.mu.Lock()
	s.e.injected[p] = true
	s.e.reprogram(p, false, time.Now())
	s.e.mu.Unlock()
	s.e.signal()
	return nil
}

// ClearFailure ends InjectFailure for p and writes its failed routes again
// (after the latency), so their flags recover.
func (s *Sim) ClearFailure(p netip.Prefix) error {
	if !p.IsValid() {
		return errors.New("sim: clear failure: invalid prefix")
	}
	p = p.Masked()
	s.e.mu.Lock()
	delete(s.e.injected, p)
	s.e.reprogram(p, true, time.Now())
	s.e.mu.Unlock()
	s.e.signal()
	return nil
}
