package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"sync"
	"time"

	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/internal/pkey"
	"github.com/fibgate/fibgate/plugin/logdamp"
)

// Sources are what an Auditor reads, in the order it reads them: the
// gate's states, then the FIB model, then GoBGP. The daemon wires them.
type Sources struct {
	// Gate lists the gate's states (gate.Tracker.Briefs).
	Gate func() []gate.Brief
	// FIB reads the routes of a part of the FIB model (ReadFIBIn over
	// kernel.Listener.View): Whole, or one Part of a pass in parts.
	FIB func(part Part) FIB
	// BGP reads GoBGP (plugin/gobgp Speaker.AuditBGP), with the adj-out
	// of the prefixes ask says. A pass in parts calls it once a part, with
	// the Carry of the part before in ask.Carry.
	BGP func(ctx context.Context, ask Ask) (*BGP, error)
	// Converging, when set, says the gate is busy with a large share of
	// the table (a full table arriving, a session's table withdrawn and
	// learned again). A periodic pass then waits for it to settle, at
	// most deferFactor intervals: a pass over a table in flux holds a
	// snapshot of all of it (a fifth of gobgpd-ext's live heap at the
	// full table) and GoBGP's main loop for its reads, and finds only
	// what is still moving, which a mismatch's second pass would not
	// confirm anyway. Audit, on demand, does not wait.
	Converging func() bool
}

// Defaults of an Auditor.
const (
	// DefaultInterval is how often the daemons audit: a full table costs
	// GoBGP one adj-out computation per neighbour a pass, so not often.
	DefaultInterval = time.Minute
	// DefaultRecheck is the pause between the two passes of an audit
	// run on demand.
	DefaultRecheck = time.Second
	// logPerPass bounds the mismatches logged one by one per pass; the
	// rest are summed up in one line.
	logPerPass = 10
	// dutyFactor spaces periodic passes at least this many times their own
	// duration apart, so that the audit takes at most a tenth of the time
	// (and of GoBGP's main loop) however large the table.
	dutyFactor = 10
	// fullEvery: one periodic pass in this many, the first among them,
	// reads GoBGP's whole RIB; the others read the prefixes the gate and
	// the FIB know (Ask.Known), and those the pass before found or
	// suspected, so a mismatch a whole read found is checked again in the
	// next pass. What only a whole read finds (a path in GoBGP of a prefix
	// with no kernel route and no gate state) is so reported within
	// fullEvery+1 passes.
	fullEvery = 10
	// deferFactor bounds how long a periodic pass waits for a converging
	// gate (Sources.Converging), in intervals: a gate that never settles
	// (a failing ASIC keeping much of the table pending) is still audited.
	deferFactor = 5
	// DefaultWholeRIBLimit is the largest table (in the gate's states)
	// whose whole RIB a periodic pass reads. GoBGP copies the table it
	// lists inside its main loop, during which it processes no UPDATE and
	// exports nothing: about half a second at 120k prefixes under churn,
	// seconds at the full Internet table (make bench-churn there, with a
	// pass under way: the observer's p99 3.8 s against 19 ms without the
	// audit). Above it, periodic passes read only the prefixes the gate
	// and the FIB know; `fibgate audit` still reads it whole.
	DefaultWholeRIBLimit = 250_000
)

// Result is what an audit found.
type Result struct {
	// At is when its last pass ended; zero when there is none yet.
	At time.Time
	// Mismatches are those two passes in a row found, as Compare orders
	// them.
	Mismatches []Mismatch
	// Counts and Took describe the last pass.
	Counts Counts
	Took   time.Duration
}

// Stats are an Auditor's numbers, for metrics.
type Stats struct {
	// Mismatches counts the last periodic result's mismatches by kind.
	Mismatches map[Kind]int
	// Passes and Failures count periodic passes that ended and failed.
	Passes, Failures uint64
	// Deferred counts periodic passes that waited for the gate to
	// converge (Sources.Converging).
	Deferred uint64
	// Took is how long the last periodic pass took.
	Took time.Duration
}

// Auditor runs audit passes: periodically (Run), and on demand (Audit).
// A mismatch is reported only when two consecutive passes found it with
// the same identity (Mismatch's route version, path or release time).
type Auditor struct {
	src      Sources
	interval time.Duration
	grace    time.Duration
	wholeMax int
	log      *slog.Logger

	pass sync.Mutex // one pass at a time, periodic or on demand

	mu     sync.Mutex
	passes uint64              // periodic passes begun, for fullEvery
	prev   map[string]Mismatch // the last periodic pass's findings, by key
	// letOut is what GoBGP's gate let out unconfirmed in the last periodic
	// pass (BGP.LetOut): the adj-out of only these is read in the next.
	letOut map[netip.Prefix]bool
	last   Result
	stats  Stats
	// tooBig: the last periodic whole read was skipped for the table's
	// size (logged once per crossing).
	tooBig bool
	// partedAbove: a pass over more gate states than this goes in parts
	// (partedAbove by default; tests lower it).
	partedAbove int
}

// Option configures an Auditor.
type Option func(*Auditor)

// WithInterval sets how often Run audits (default DefaultInterval); 0
// turns the periodic audit off (Audit still works).
func WithInterval(d time.Duration) Option { return func(a *Auditor) { a.interval = d } }

// WithGrace sets how old a release must be before GoBGP holding it back
// is a mismatch (default DefaultGrace).
func WithGrace(d time.Duration) Option { return func(a *Auditor) { a.grace = d } }

// WithWholeRIBLimit sets the largest table, in gate states, whose whole
// RIB periodic passes read (default DefaultWholeRIBLimit); 0: they never
// do. Audit, on demand, always does.
func WithWholeRIBLimit(n int) Option { return func(a *Auditor) { a.wholeMax = n } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(a *Auditor) { a.log = l } }

// New returns an Auditor over src; Run starts the periodic audit.
func New(src Sources, opts ...Option) (*Auditor, error) {
	if src.Gate == nil || src.FIB == nil || src.BGP == nil {
		return nil, errors.New("audit: every source (gate, FIB, BGP) is needed")
	}
	a := &Auditor{src: src, interval: DefaultInterval, grace: DefaultGrace, wholeMax: DefaultWholeRIBLimit, partedAbove: partedAbove,
		log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(a)
	}
	if a.interval < 0 || a.grace < 0 || a.wholeMax < 0 {
		return nil, fmt.Errorf("audit: interval %s, grace %s and whole-RIB limit %d must not be negative", a.interval, a.grace, a.wholeMax)
	}
	return a, nil
}

// Interval is the periodic audit's interval; 0: off.
func (a *Auditor) Interval() time.Duration { return a.interval }

// Run audits every interval until ctx ends, logging each new mismatch
// (at most logPerPass a pass, the rest summed up) and each resolution. A
// pass that takes long spaces the next ones out: they start at least
// dutyFactor times its duration after it began. It returns nil when ctx
// ends, at once when the interval is 0.
func (a *Auditor) Run(ctx context.Context) error {
	if a.interval == 0 {
		return nil
	}
	t := time.NewTimer(a.interval)
	defer t.Stop()
	failed := logdamp.New(a.log, slog.LevelWarn, "audit pass failed; trying again next interval")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if !a.settle(ctx) {
			return nil
		}
		start := time.Now()
		err := a.periodic(ctx)
		took := time.Since(start)
		t.Reset(max(a.interval, dutyFactor*took) - took)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failed.Fail(err, "interval", a.interval)
			continue
		}
		if failed.OK() {
			a.log.Info("audit pass succeeded again")
		}
	}
}

// settle waits while the gate converges (Sources.Converging), at most
// deferFactor intervals, checking once a second (once an interval when that
// is shorter). It returns false when ctx ends first.
func (a *Auditor) settle(ctx context.Context) bool {
	if a.src.Converging == nil || !a.src.Converging() {
		return true
	}
	a.mu.Lock()
	a.stats.Deferred++
	a.mu.Unlock()
	limit := deferFactor * a.interval
	a.log.Debug("audit pass waits for the gate to converge", "at_most", limit)
	start := time.Now()
	tick := time.NewTicker(min(time.Second, a.interval))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
		if !a.src.Converging() {
			a.log.Debug("audit pass runs: the gate converged", "waited", time.Since(start).Round(time.Millisecond))
			return true
		}
		if time.Since(start) >= limit {
			a.log.Info("audit pass runs while the gate is still converging", "waited", limit)
			return true
		}
	}
}

// Last returns the last periodic result (At zero when there is none).
func (a *Auditor) Last() Result {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// Stats returns the Auditor's numbers.
func (a *Auditor) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.stats
	s.Mismatches = make(map[Kind]int, numKinds)
	for _, k := range Kinds() {
		s.Mismatches[k] = 0
	}
	for _, m := range a.last.Mismatches {
		s.Mismatches[m.Kind]++
	}
	return s
}

// Audit runs two passes now, recheck apart, and returns what both found.
// It leaves the periodic audit's state alone.
func (a *Auditor) Audit(ctx context.Context, recheck time.Duration) (Result, error) {
	first, _, _, letOut, err := a.run(ctx, nil, true, false, nil)
	if err != nil {
		return Result{}, err
	}
	seen := time.Now()
	select {
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-time.After(recheck):
	}
	second, counts, took, _, err := a.run(ctx, letOut, true, false, nil)
	if err != nil {
		return Result{}, err
	}
	before := make(map[string]bool, len(first))
	for _, m := range first {
		before[m.key()] = true
	}
	res := Result{At: time.Now(), Counts: counts, Took: took}
	for _, m := range second {
		if before[m.key()] {
			m.FirstSeen = seen
			res.Mismatches = append(res.Mismatches, m)
		}
	}
	return res, nil
}

// run takes one snapshot, in the order Sources documents, and compares it.
// It reads the adj-out of the prefixes GoBGP's gate lets out unconfirmed
// now that it let out in the pass before too (before, from that pass's
// BGP.LetOut), and returns this pass's.
//
// Why not every pass, for every such prefix: GoBGP's API computes a
// neighbour's adj-out over the whole table in its main loop, whatever the
// prefixes asked about (8-9 s at 120k under churn; gobgpd-ext judges only
// the prefixes asked about, plugin/gobgp's adjOutReader, but fibgated
// asks the API), and under churn some prefix is always between a
// withdrawal and its fence. A pass that read it stalled
// every fence and release behind it for seconds, which is what let
// prefixes leak in the steady-churn benchmark (docs/design-notes.md).
// A mismatch needs two passes anyway; the first one's cheap judgement
// (RIB and held sets) names the prefixes, the second one's adj-out
// confirms them, so the report comes no later.
//
// A whole pass (full) reads all of GoBGP's RIB; another only the prefixes
// of the gate's states and the FIB's routes, and those of found and
// before (Ask.Known). With limit, a whole pass over more gate states than
// the Auditor's whole-RIB limit reads only those too, and any pass over
// that many asks the source to leave adj-out unread where reading it
// costs the whole table (Ask.Large).
//
// A pass over more than partedAbove gate states reads and compares one
// Part after another, each part's FIB and then the RIB of its known
// prefixes, so only a part's snapshot is live at a time; GoBGP's held sets
// are read once, by the first part (Ask.Carry). A whole pass then reads
// the rest of the RIB in one listing (Ask.Except: what the parts read),
// which holds only the prefixes no gate state and no FIB route knows. The
// gate's states are read once, first. The parts after the first thus read
// the FIB after the held sets: a prefix released or taken back between the
// two can look wrong in this pass, as a prefix that changed while the RIB
// was read can, and a mismatch needs the next pass to find it too.
func (a *Auditor) run(ctx context.Context, before map[netip.Prefix]bool, full, limit bool, found map[string]Mismatch) ([]Mismatch, Counts, time.Duration, map[netip.Prefix]bool, error) {
	a.pass.Lock()
	defer a.pass.Unlock()
	start := time.Now()
	states := a.src.Gate()
	large := limit && len(states) > a.wholeMax
	if full && limit {
		skip := len(states) > a.wholeMax
		a.mu.Lock()
		if skip && !a.tooBig {
			a.log.Info("audit: periodic passes read only the prefixes the gate and the FIB know: GoBGP would hold its main loop to list a table this large whole; fibgate audit still reads it", "gate_states", len(states), "whole_rib_limit", a.wholeMax)
		}
		a.tooBig = skip
		a.mu.Unlock()
		full = !skip
	}
	// A pass over a large table goes in parts (Part): one part's snapshot
	// is live at a time, not the table's. Each part reads the RIB of the
	// prefixes it knows; a whole pass then reads the rest of the RIB in
	// one listing, keeping only the prefixes no part read (sweep).
	ps := []Part{Whole}
	parted := len(states) > a.partedAbove
	if parted {
		ps = parts()
	}
	var ms []Mismatch
	var c Counts
	var letOut map[netip.Prefix]bool
	var carry any
	var read map[pkey.Key]struct{} // what the parts of a whole pass read
	if full && parted {
		read = make(map[pkey.Key]struct{}, len(states))
	}
	compare := func(s *Snapshot, ask Ask) error {
		ask.Unconfirmed = NeedsAdjOut(s)
		ask.Confirm = func(p netip.Prefix) bool { _, ok := before[p]; return ok }
		ask.Carry, ask.Large = carry, large
		b, err := a.src.BGP(ctx, ask)
		if err != nil {
			return fmt.Errorf("audit: read GoBGP: %w", err)
		}
		s.BGP = *b
		carry = b.Carry
		ms = append(ms, Compare(s, a.grace)...)
		c.add(CountsOf(s))
		if letOut == nil {
			letOut = b.LetOut
		} else {
			maps.Copy(letOut, b.LetOut)
		}
		return nil
	}
	var installer *Installer
	for _, pt := range ps {
		s := Snapshot{Gate: gateIn(states, pt), FIB: a.src.FIB(pt)}
		installer = s.FIB.Installer
		var ask Ask
		if !full || parted {
			ask.Known = known(&s, before, found, pt)
		}
		if read != nil {
			for _, p := range ask.Known {
				read[pkey.Of(p)] = struct{}{}
			}
		}
		if err := compare(&s, ask); err != nil {
			return nil, Counts{}, 0, nil, err
		}
	}
	if read != nil {
		// The sweep: a prefix no part knew has no gate state and no FIB
		// route (as the parts read them), so its snapshot is GoBGP's alone.
		s := Snapshot{FIB: FIB{At: time.Now(), Installer: installer, Gated: map[netip.Prefix][]GatedRoute{}, Installed: map[netip.Prefix][]InstalledRoute{}}}
		ask := Ask{Except: func(p netip.Prefix) bool { _, ok := read[pkey.Of(p)]; return ok }}
		if err := compare(&s, ask); err != nil {
			return nil, Counts{}, 0, nil, err
		}
	}
	if len(ps) > 1 {
		sortMismatches(ms)
	}
	c.WholeRIB = full
	return ms, c, time.Since(start), letOut, nil
}

// Ask is what an audit pass asks of GoBGP's adj-out (Sources.BGP).
type Ask struct {
	// Unconfirmed says which prefixes have no confirmed route
	// (NeedsAdjOut): only these can be advertised wrongly.
	Unconfirmed func(netip.Prefix) bool
	// Confirm says which of the unconfirmed prefixes that GoBGP's gate
	// lets out get their adj-out read; nil: all of them.
	Confirm func(netip.Prefix) bool
	// Known, when not nil, limits the read of GoBGP's RIB to these
	// prefixes, looked up a slice at a time: GoBGP copies a whole table
	// read in its main loop, holding every update and release meanwhile
	// (half a second at 120k prefixes), a few milliseconds per slice.
	// nil reads the whole RIB.
	Known []netip.Prefix
	// Carry is the BGP.Carry of this pass's part before, if any: what the
	// source read once for the pass (GoBGP's held sets, its policy) and
	// may use again instead of reading it once a part.
	Carry any
	// Except, when set and Known is nil, leaves out of a read of the whole
	// RIB the prefixes it names: those a whole pass in parts read already,
	// part by part.
	Except func(netip.Prefix) bool
	// Large says the pass is a periodic one over more gate states than the
	// whole-RIB limit (WithWholeRIBLimit). A source whose read of a
	// neighbour's adj-out costs GoBGP an export of the whole table in its
	// main loop (gobgpd's API: seconds a neighbour at a full table) leaves
	// adj-out unread then, and says so in BGP.LetOut; one that reads only
	// the prefixes asked about (gobgpd-ext) reads it all the same.
	Large bool
}

// periodic is one pass of Run: it reports what this pass and the one
// before found.
func (a *Auditor) periodic(ctx context.Context) error {
	a.mu.Lock()
	before, prev := a.letOut, a.prev
	full := a.passes%fullEvery == 0
	a.passes++
	a.mu.Unlock()
	found, counts, took, letOut, err := a.run(ctx, before, full, true, prev)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.stats.Failures++
		a.prev, a.letOut = nil, nil // the next pass cannot confirm anything
		return err
	}
	a.letOut = letOut
	a.log.Debug("audit pass", "took", took, "whole_rib", counts.WholeRIB, "destinations", counts.Destinations, "adj_out_read", counts.Checked, "found", len(found))
	now := time.Now()
	a.stats.Passes++
	a.stats.Took = took
	next := make(map[string]Mismatch, len(found))
	var confirmed []Mismatch
	for _, m := range found {
		k := m.key()
		if p, ok := a.prev[k]; ok {
			m.FirstSeen = p.FirstSeen
			confirmed = append(confirmed, m)
		} else {
			m.FirstSeen = now
		}
		next[k] = m
	}
	a.prev = next
	a.logChanges(a.last.Mismatches, confirmed)
	a.last = Result{At: now, Mismatches: confirmed, Counts: counts, Took: took}
	return nil
}

// logChanges logs the mismatches of now that were not reported before, one
// line each up to logPerPass and one line for the rest, and how many were
// resolved.
func (a *Auditor) logChanges(before, now []Mismatch) {
	was := make(map[string]bool, len(before))
	for _, m := range before {
		was[m.key()] = true
	}
	logged, more := 0, map[string]int{}
	for _, m := range now {
		k := m.key()
		if was[k] {
			delete(was, k)
			continue
		}
		if logged == logPerPass {
			more[m.Kind.String()]++
			continue
		}
		logged++
		args := []any{"kind", m.Kind.String(), "prefix", m.Prefix, "detail", m.Detail, "since", m.FirstSeen}
		if m.Table != 0 {
			args = append(args, "table", m.Table)
		}
		if len(m.Neighbours) > 0 {
			args = append(args, "neighbours", addrList(m.Neighbours))
		}
		a.log.Warn("audit: mismatch", args...)
	}
	if len(more) > 0 {
		n := 0
		args := []any{}
		for _, k := range Kinds() {
			if c := more[k.String()]; c > 0 {
				n += c
				args = append(args, k.String(), c)
			}
		}
		a.log.Warn("audit: more mismatches, not logged one by one (fibgate audit lists them)", append([]any{"count", n}, args...)...)
	}
	if len(was) > 0 {
		a.log.Info("audit: mismatches resolved", "count", len(was))
	}
}

func addrList(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, x := range as {
		out[i] = x.String()
	}
	return out
}

// known lists the prefixes a pass reads of GoBGP's RIB in part:
// those of the gate's states and of the FIB's gated and installed routes
// (s holds the part's), which every prefix with a best path learned from a
// neighbour has once the installer wrote it, and those of the part that
// the pass before let out (before) or found (found). Each once.
//
// The set that makes them unique is keyed by pkey: a netip.Prefix key
// (32 bytes with a pointer) made it the largest part of a pass's
// snapshot at a full table (263 MB of gobgpd-ext's live heap), and one
// the collector had to scan.
func known(s *Snapshot, before map[netip.Prefix]bool, found map[string]Mismatch, part Part) []netip.Prefix {
	n := max(len(s.Gate), len(s.FIB.Gated), len(s.FIB.Installed))
	seen := make(map[pkey.Key]struct{}, n)
	out := make([]netip.Prefix, 0, n)
	add := func(p netip.Prefix) {
		k := pkey.Of(p)
		if _, ok := seen[k]; !ok {
			seen[k] = struct{}{}
			out = append(out, p)
		}
	}
	for i := range s.Gate {
		add(s.Gate[i].Prefix)
	}
	for p := range s.FIB.Gated {
		add(p)
	}
	for p := range s.FIB.Installed {
		add(p)
	}
	for p := range before {
		if part.Has(p) {
			add(p)
		}
	}
	for _, m := range found {
		if part.Has(m.Prefix) {
			add(m.Prefix)
		}
	}
	return out
}
