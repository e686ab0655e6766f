package sim

import (
	"context"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/kernel"
)

// Reporter is where the sim reports the hardware state it decides. A
// *kernel.Listener is one: its SetFlags stores the flags in the listener's
// model and announces them per fib_notify_on_flag_change, exactly as the
// kernel does for a switchdev driver.
type Reporter interface {
	SetFlags(r *fib.Route, flags fib.HWFlags)
	SetNexthopFlags(r *fib.Route, nh int, flags fib.HWFlags)
}

// dataplane is where programmed routes forward for real (the mirror table).
type dataplane interface {
	install(r *fib.Route) error
	remove(r *fib.Route) error
	// flush carries out what install and remove queued and returns the
	// entries whose route it could not write.
	flush() []key
}

// warmPlane is a dataplane that outlived an earlier sim (Config.Warm).
type warmPlane interface {
	// claim takes over what the earlier sim left for r's key, if
	// anything, and reports whether it is r exactly: r is in hardware
	// already and is programmed without the latency.
	claim(r *fib.Route) bool
	// sweep queues the removal of what nothing claimed.
	sweep()
}

// failure says why a route is not in hardware.
type failure uint8

const (
	failNone     failure = iota
	failFull             // no room in its class: retried when room frees
	failInjected         // InjectFailure for its prefix
	failRandom           // FailProbability
	failWrite            // the data plane refused the route
)

// slot is what the engine remembers of a key beside the route and flags
// the hardware table holds. It exists while the key is in the hardware
// table or has a replace or delete queued; one map serves both, since a
// full table has a million of them.
type slot struct {
	programmed time.Duration // since the engine's epoch, +1; 0 when not in hardware
	pending    int           // logical queue index + 1 of the newest replace/delete; 0: none
	class      class
	occupies   bool
	failure    failure
}

// knobs are the settings the API may change while the sim runs.
type knobs struct {
	capacity        Capacity
	latency, jitter time.Duration
	rate, batch     int
	failProb        float64
}

// report is one flag change to hand to the Reporter.
type report struct {
	route fib.Route
	flags fib.HWFlags
	nh    []fib.HWFlags // per-nexthop flags, nil when the driver sets none
}

// counts are the running totals behind Stats.
type counts struct {
	trapped, offloaded, failed int
	ops, writeErrors           uint64
}

func (c *counts) add(f fib.HWFlags, d int) {
	switch {
	case f&fib.OffloadFailed != 0:
		c.failed += d
	case f&fib.Offload != 0:
		c.offloaded += d
	case f&fib.Trap != 0:
		c.trapped += d
	}
}

// inbox takes driver events under the listener's lock without waiting for
// the engine, which may be busy writing to the kernel.
type inbox struct {
	mu       sync.Mutex
	events   fifo[arrival]
	gateways []netip.Addr
	closed   bool
	// sweep asks for a warm data plane's leftovers to go, once the
	// listener's first dump (which claims the rest) is in the inbox.
	sweep bool
}

type arrival struct {
	ev fib.DriverEvent
	at time.Duration // since the engine's epoch
}

// engine is the simulated ASIC without its kernel plumbing: the FIFO, the
// latency, rate and batching, capacity, failures, the classifier and the
// hardware table. One goroutine (run) does the work; the API methods take
// mu briefly. Flag reports are made outside mu, in order, by run alone.
type engine struct {
	mode   Mode
	tables map[uint32]bool
	log    *slog.Logger
	debug  bool
	epoch  time.Time
	wake   chan struct{}
	in     inbox

	mu       sync.Mutex
	cfg      knobs
	rng      *rand.Rand
	hw       *fib.FIB
	slots    map[key]slot
	q        queue
	injected map[netip.Prefix]bool
	used     [numClasses]int
	waiting  [numClasses][]key
	byGW     map[netip.Addr]map[key]struct{}
	tokens   float64
	refilled time.Time
	// dpRoute passes a route to dp (program); empty between calls.
	dpRoute fib.Route
	// drained is the inbox's queue drain emptied last, handed back as the
	// next inbox with its chunk: a new queue for every drain grew from
	// nothing again, most of what the sim allocated while a table went in.
	drained fifo[arrival]
	count   counts
	meter   rateMeter
	out     []report // reused by step; run delivers it before the next step
	dp      dataplane
	res     resolver
	// adm counts routes as the kernel takes them (capacity_mode refuse);
	// nil in capacity_mode flag, where programming counts them.
	adm *admission
}

func newEngine(cfg Config, log *slog.Logger) *engine {
	e := &engine{
		mode:   cfg.Mode,
		tables: map[uint32]bool{},
		log:    log,
		debug:  log.Enabled(context.Background(), slog.LevelDebug),
		epoch:  time.Now(),
		wake:   make(chan struct{}, 1),
		cfg: knobs{capacity: cfg.Capacity, latency: cfg.Latency, jitter: cfg.Jitter,
			rate: cfg.Rate, batch: cfg.Batch, failProb: cfg.FailProbability},
		rng:      rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		hw:       fib.New(),
		slots:    map[key]slot{},
		injected: map[netip.Prefix]bool{},
		byGW:     map[netip.Addr]map[key]struct{}{},
		tokens:   float64(cfg.Batch),
	}
	for _, t := range cfg.Tables {
		e.tables[t] = true
	}
	if cfg.CapacityMode == CapacityRefuse {
		e.adm = newAdmission(e.tables, cfg.Capacity, e.signal)
	}
	return e
}

func (e *engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// event takes a driver event. It only appends to the inbox: it runs under
// the listener's lock and must neither block nor call back.
func (e *engine) event(ev fib.DriverEvent) {
	if !e.tables[ev.Route.Table] {
		return // another table, the mirror table among them
	}
	if e.adm != nil {
		e.adm.event(ev) // counted as the kernel takes it, like netdevsim
	}
	at := time.Since(e.epoch)
	// The route is queued as given: its next hops may be the listener's
	// model's list, which nobody writes (fib.Driver), and the engine never
	// writes a queued route's either (program copies before it clears
	// their flags). A copy a route was a third of what a table's backlog
	// in the queue held.
	e.in.mu.Lock()
	if e.in.closed {
		e.in.mu.Unlock()
		return
	}
	e.in.events.push(arrival{ev: ev, at: at})
	e.in.mu.Unlock()
	e.signal()
}

// requestSweep asks the next step to drop a warm data plane's leftovers.
func (e *engine) requestSweep() {
	e.in.mu.Lock()
	e.in.sweep = true
	e.in.mu.Unlock()
	e.signal()
}

// neighbourChanged asks for the routes via gw to be classified again.
func (e *engine) neighbourChanged(gw netip.Addr) {
	e.in.mu.Lock()
	if !e.in.closed {
		e.in.gateways = append(e.in.gateways, gw)
	}
	e.in.mu.Unlock()
	e.signal()
}

// run programs until ctx ends, reporting through rep.
func (e *engine) run(ctx context.Context, rep Reporter) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var reports []kernel.FlagReport // deliver's, reused
	for {
		out, wait := e.step(time.Now())
		deliver(rep, out, &reports)
		if ctx.Err() != nil {
			return
		}
		if wait == 0 {
			continue
		}
		var fire <-chan time.Time
		if wait > 0 {
			timer.Reset(wait)
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		case <-fire:
		}
		timer.Stop()
	}
}

// batchReporter is a Reporter that takes many reports at once
// (*kernel.Listener: one lock and one batch of events for them all).
type batchReporter interface {
	ReportFlags([]kernel.FlagReport)
}

// deliver hands out's reports to rep, a batch at once when rep takes one,
// building it in *scratch, which it leaves emptied for the next call.
func deliver(rep Reporter, out []report, scratch *[]kernel.FlagReport) {
	if b, ok := rep.(batchReporter); ok {
		if len(out) == 0 {
			return
		}
		// In scratch: a batch reporter keeps none of them.
		rs := (*scratch)[:0]
		for i := range out {
			rs = append(rs, kernel.FlagReport{Route: out[i].route, Flags: out[i].flags, Nexthop: out[i].nh})
		}
		b.ReportFlags(rs)
		clear(rs) // holds no route until the next batch
		*scratch = rs
		return
	}
	for i := range out {
		r := &out[i]
		rep.SetFlags(&r.route, r.flags)
		for j, f := range r.nh {
			rep.SetNexthopFlags(&r.route, j, f)
		}
	}
}

// step does one round of work at now: it takes in new events, programs one
// batch of due ops if the rate allows, and returns the reports to deliver
// and how long to wait for more work (0: at once, <0: until woken).
func (e *engine) step(now time.Time) ([]report, time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.out)
	out := e.out[:0]
	defer func() { e.out = out }()
	e.drain(now, &out)
	if n := e.takeable(now); n > 0 {
		for range n {
			o, idx, ok := e.q.pop()
			if !ok {
				break
			}
			e.apply(o, idx, now, &out)
		}
		e.meter.add(now, n)
	}
	e.retryWaiting(now, &out)
	if e.dp != nil {
		for _, k := range e.dp.flush() {
			e.writeFailed(k, &out)
		}
	}
	return out, e.nextWait(now)
}

// drain moves the inbox into the FIFO and reclassifies routes whose
// neighbours changed.
func (e *engine) drain(now time.Time, out *[]report) {
	e.in.mu.Lock()
	evs, gws, sweep := e.in.events, e.in.gateways, e.in.sweep
	e.in.events, e.in.gateways, e.in.sweep = e.drained, nil, false
	e.in.mu.Unlock()
	e.drained = fifo[arrival]{}        // the inbox's now
	defer func() { e.drained = evs }() // emptied below
	warm, _ := e.dp.(warmPlane)
	for {
		a, ok := evs.pop()
		if !ok {
			break
		}
		o := op{route: a.ev.Route}
		switch a.ev.Kind {
		case fib.DriverReplace:
			o.kind = opReplace
		case fib.DriverAppend:
			o.kind = opAppend
		case fib.DriverDel:
			o.kind = opDelete
		default:
			continue
		}
		if o.kind == opReplace && warm != nil && warm.claim(&o.route) {
			if k := o.key(); e.slots[k].pending == 0 {
				// In hardware already: no latency, no queue (the FIFO's
				// head may wait for its latency), no rate.
				e.program(k, e.slots[k], o.route, now, out)
				continue
			}
		}
		o.due = e.due(a.at)
		e.push(o)
	}
	if sweep && warm != nil {
		warm.sweep()
	}
	for _, gw := range gws {
		e.reclassify(gw, now, out)
	}
}

// push queues o; a replace or delete supersedes the key's queued one.
func (e *engine) push(o op) {
	idx := e.q.push(o)
	if !supersedes(o.kind) {
		return
	}
	k := o.key()
	s := e.slots[k]
	if s.pending != 0 {
		e.q.kill(s.pending - 1)
	}
	s.pending = idx + 1
	e.slots[k] = s
}

// due is when an op for an event at `at` may be programmed; both are
// durations since the epoch.
func (e *engine) due(at time.Duration) time.Duration {
	d := e.cfg.latency
	if e.cfg.jitter > 0 {
		d += time.Duration(e.rng.Int64N(int64(e.cfg.jitter) + 1))
	}
	return at + d
}

// takeable returns how many ops the next batch programs at now: the due
// ops at the head, at most a batch, and with a rate only once the token
// bucket holds enough for all of them, so batches go whole.
func (e *engine) takeable(now time.Time) int {
	n := e.q.due(now.Sub(e.epoch), e.cfg.batch)
	if n == 0 || e.cfg.rate == 0 {
		return n
	}
	e.refill(now)
	if e.tokens < float64(n) {
		return 0
	}
	e.tokens -= float64(n)
	return n
}

func (e *engine) refill(now time.Time) {
	if !e.refilled.IsZero() {
		e.tokens += now.Sub(e.refilled).Seconds() * float64(e.cfg.rate)
	}
	e.tokens = min(e.tokens, float64(e.cfg.batch))
	e.refilled = now
}

func (e *engine) nextWait(now time.Time) time.Duration {
	head, ok := e.q.front()
	if !ok {
		return -1
	}
	if d := head.due - now.Sub(e.epoch); d > 0 {
		return d
	}
	if e.cfg.rate == 0 {
		return 0
	}
	e.refill(now)
	missing := float64(e.q.due(now.Sub(e.epoch), e.cfg.batch)) - e.tokens
	if missing <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(missing / float64(e.cfg.rate) * float64(time.Second)))
}

// rateMeter measures programming operations per second over windows of
// at least a second.
type rateMeter struct {
	start time.Time
	n     int
	rate  float64
}

func (m *rateMeter) add(now time.Time, n int) {
	if m.start.IsZero() {
		m.start = now
	}
	if el := now.Sub(m.start); el >= time.Second {
		m.rate = float64(m.n) / el.Seconds()
		m.start, m.n = now, 0
	}
	m.n += n
}

func (m *rateMeter) perSecond(now time.Time) float64 {
	if m.start.IsZero() {
		return 0
	}
	if el := now.Sub(m.start); el >= time.Second {
		return float64(m.n) / el.Seconds()
	}
	return m.rate
}
