package gate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/internal/fanout"
	"github.com/fibgate/fibgate/plugin/internal/pkey"
)

// Source is where the gate learns routes and their hardware state: the
// kernel listener, or a listener with a hardware backend attached.
type Source interface {
	// Ready is closed once the source holds the whole table.
	Ready() <-chan struct{}
	// Events streams changes, with a snapshot of all routes first if
	// asked, and closes the stream when ctx ends (Run waits for that).
	Events(ctx context.Context, snapshot bool) <-chan []fib.Event
	// View gives read access to the current model.
	View(fn func(*fib.FIB))
}

// prefixKey is a gated prefix's identity, the key of the tracker's maps:
// 24 bytes where a table and a netip.Prefix take 40 (the map's slot is
// part of every route's cost; issue 10's 300 bytes a route).
type prefixKey struct {
	k     pkey.Key
	table uint32
}

func keyFor(table uint32, p netip.Prefix) prefixKey { return prefixKey{pkey.Of(p), table} }

func (k prefixKey) prefix() netip.Prefix { return k.k.Prefix() }

// fam is the index of k's family in the tracker's per-family counts
// (fib.Family.Index), read off the key without rebuilding its prefix.
func (k prefixKey) fam() int {
	if k.k.Is6() {
		return fib.IPv6.Index()
	}
	return fib.IPv4.Index()
}

func keyOf(r *fib.Route) prefixKey { return keyFor(r.Table, r.Prefix) }

// compare is the keys' order in List (compareKeys).
func (k prefixKey) compare(o prefixKey) int {
	return compareKeys(k.table, k.prefix(), o.table, o.prefix())
}

// entry is the gate's memory of one prefix (compact.go says why its
// times are stamps).
type entry struct {
	st           rstate
	pendingSince stamp
	deadline     stamp // next time the state may change by itself; zero if none
	// heapAt is the deadline the entry is queued under in the tracker's
	// deadline heap (zero: not queued).
	heapAt stamp
	// ver is the FIB version of the forwarding route the state refers to
	// (fib.FIB.Version): a new version is a new route, which the speaker
	// may have fenced, so it is released again rather than assumed out.
	ver uint64
}

// Tracker keeps a RouteState per gated prefix from route events and the
// policy: it decides when a prefix is confirmed, failed or held down. It
// owns its state in one goroutine (Run); readers take a short lock.
type Tracker struct {
	src       Source
	ep        epoch // turns entries' stamps into times
	log       *slog.Logger
	observer  Observer
	retention time.Duration
	// in: the events read and not judged yet (inbox); set by Run.
	in atomic.Pointer[inbox]

	mu      sync.RWMutex
	policy  Policy
	entries entryTable
	// texts and hops are the texts and next hops entries name (table.go);
	// retries the progress of retries of a failure (retry.go), for the
	// few prefixes that have one.
	texts   table[string]
	hops    table[netip.Addr]
	retries map[prefixKey]*retryState
	byState [2][numStates]int // entries per family (fam) and State, kept as states change
	dl      deadlines
	hub     fanout.Hub[RouteState]
	ttHW    latencies // programming: pending to hardware confirmation
	held    latencies // hold-downs served: held down to released
	// wholeTable is set while judgeAll judges (at start and after a policy
	// change): only then, and for a prefix the tracker meets for the first
	// time, can BGP have out a prefix the tracker did not release.
	wholeTable bool

	repolicy chan struct{}
	ready    chan struct{}
	counters struct {
		confirmed, failed, withdrawn, advertised, speakerErrors atomic.Uint64
	}
	// flagged: some route of a gated table and of the family (fam) has
	// shown a hardware flag since start (HardwareSeen); marked: some has
	// shown next-hop marks without one (NexthopMarksSeenIn).
	flagged, marked [2]atomic.Bool
	adv             advertiser
	ref             refusals // routes the kernel refused (refuse.go)
	rtr             retrier  // rewrites of failed routes (retry.go)
}

// TrackerOption configures a Tracker.
type TrackerOption func(*Tracker)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) TrackerOption { return func(t *Tracker) { t.log = l } }

// Observer receives the gate's latencies as they happen, for histograms
// (plugin/api's Prometheus metrics); the tracker's own summaries cover a
// recent window only.
type Observer interface {
	// TimeToHardware is how long the hardware took to program a route:
	// from the route entering the FIB (or being replaced, or losing
	// confirmation, or leaving failed) to the hardware holding it. A
	// hold-down that follows is not part of it (HeldDown is).
	TimeToHardware(d time.Duration)
	// HeldDown is how long a flapping prefix was held down before it was
	// confirmed again.
	HeldDown(d time.Duration)
	// ConfirmToAdvertise is from confirmation to BGP accepting the prefix:
	// the tracker's wait for its turn and the speaker's call, which in a
	// sidecar waits for gobgpd's main loop over gRPC.
	ConfirmToAdvertise(d time.Duration)
}

// CallObserver is an Observer that also times the tracker's calls to its
// Speaker. In a sidecar most of confirm-to-advertise is gobgpd taking the
// call (gRPC round trips to its main loop, which fences share); this tells
// the BGP speaker's share apart from fibgate's own wait. call is
// "advertise" or "withdraw"; a failed call is timed too.
type CallObserver interface {
	SpeakerCall(call string, prefixes int, d time.Duration)
}

// WithObserver reports latencies to o (and speaker calls, when o is a
// CallObserver).
func WithObserver(o Observer) TrackerOption { return func(t *Tracker) { t.observer = o } }

// WithRetention sets how long a withdrawn prefix stays visible in the API
// after its route left the FIB (default 10 minutes).
func WithRetention(d time.Duration) TrackerOption { return func(t *Tracker) { t.retention = d } }

// NewTracker validates the policy and returns a tracker; Run starts it.
func NewTracker(src Source, p Policy, opts ...TrackerOption) (*Tracker, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	t := &Tracker{
		src:       src,
		ep:        newEpoch(time.Now()),
		log:       slog.New(slog.DiscardHandler),
		retention: 10 * time.Minute,
		policy:    p,
		retries:   map[prefixKey]*retryState{},
		repolicy:  make(chan struct{}, 1),
		ref:       refusals{kick: make(chan struct{}, 1)},
		rtr:       retrier{wake: make(chan struct{}, 1)},
		ready:     make(chan struct{}),
		ttHW:      latencies{buf: make([]time.Duration, 0, latencyWindow)},
		held:      latencies{buf: make([]time.Duration, 0, latencyWindow)},
	}
	for _, o := range opts {
		o(t)
	}
	return t, nil
}

// Ready is closed once the tracker has judged the whole table.
func (t *Tracker) Ready() <-chan struct{} { return t.ready }

// Policy returns the policy in force.
func (t *Tracker) Policy() Policy {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.policy
}

// SetPolicy validates p and puts it in force; every route is judged again.
func (t *Tracker) SetPolicy(p Policy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	t.mu.Lock()
	t.policy = p
	t.mu.Unlock()
	select {
	case t.repolicy <- struct{}{}:
	default:
	}
	return nil
}

// List returns every tracked prefix, sorted by table, family and prefix.
// It sorts after letting go of the lock: the tracker's loop waits for a
// reader, and a sort of a full table takes it a second (the periodic
// audit lists every pass).
func (t *Tracker) List() []RouteState {
	t.mu.RLock()
	out := t.unsortedLocked()
	t.mu.RUnlock()
	slices.SortFunc(out, compareStates)
	return out
}

func (t *Tracker) unsortedLocked() []RouteState {
	out := make([]RouteState, 0, t.entries.len())
	for k, e := range t.entries.all() {
		out = append(out, t.public(k, e))
	}
	return out
}

// Brief is the part of a RouteState that the consistency audit compares:
// 64 bytes where a RouteState, with its eleven times and strings, is
// about 300. The audit lists every state a pass, so at a full table the
// difference is a quarter of a gigabyte of live heap while it runs.
type Brief struct {
	Table        uint32
	State        State
	Prefix       netip.Prefix
	AdvertisedAt time.Time
}

// Briefs returns every tracked prefix as a Brief, sorted as List sorts.
func (t *Tracker) Briefs() []Brief {
	t.mu.RLock()
	out := make([]Brief, 0, t.entries.len())
	for k, e := range t.entries.all() {
		out = append(out, Brief{Table: k.table, State: e.st.State, Prefix: k.prefix(), AdvertisedAt: t.ep.time(e.st.AdvertisedAt)})
	}
	t.mu.RUnlock()
	slices.SortFunc(out, CompareBriefs)
	return out
}

// CompareBriefs orders Briefs as List orders states: by table, then
// address (IPv4 first), then length.
func CompareBriefs(a, b Brief) int { return compareKeys(a.Table, a.Prefix, b.Table, b.Prefix) }

func compareStates(a, b RouteState) int { return compareKeys(a.Table, a.Prefix, b.Table, b.Prefix) }

// compareKeys is the order of List and Briefs: by table, then address
// (IPv4 first), then length.
func compareKeys(at uint32, ap netip.Prefix, bt uint32, bp netip.Prefix) int {
	return cmp.Or(cmp.Compare(at, bt), ap.Addr().Compare(bp.Addr()), cmp.Compare(ap.Bits(), bp.Bits()))
}

// Unsettled returns how many prefixes are on their way through the gate
// (named by route events not judged yet, pending their hardware, or
// confirmed and not yet handed to BGP) and how many it tracks in all, read
// without a walk: the periodic audit waits while a large share of the
// table is on its way, since a pass over a table in flux costs a snapshot
// of it and finds only what is moving.
func (t *Tracker) Unsettled() (moving, all int) {
	if in := t.in.Load(); in != nil {
		in.mu.Lock()
		moving = len(in.keys)
		in.mu.Unlock()
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, n := range t.byState {
		moving += n[Pending] + n[Confirmed]
	}
	return moving, t.entries.len()
}

// Get returns the state of one prefix.
func (t *Tracker) Get(table uint32, p netip.Prefix) (RouteState, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	k := keyFor(table, p.Masked())
	e := t.entries.get(k)
	if e == nil {
		return RouteState{}, false
	}
	return t.public(k, e), true
}

// Watch streams changed states until ctx ends or the tracker stops, after a
// snapshot of every state if asked (atomically with the registration).
// With WatchLimit a consumer that falls too far behind is dropped; without
// it the states queue until read. A watch whose ctx ends is unsubscribed and
// its queue released at once.
func (t *Tracker) Watch(ctx context.Context, snapshot bool, opts ...WatchOption) <-chan []RouteState {
	var c watchConfig
	for _, o := range opts {
		o(&c)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var first []RouteState
	if snapshot {
		first = t.unsortedLocked()
		slices.SortFunc(first, compareStates)
	}
	return t.hub.Subscribe(ctx, first, c.fanout...)
}

// Watchers returns how many Watch streams are subscribed now; a slow
// watcher that was dropped (WatchLimit) no longer counts, so it shows
// whether a drop has happened without depending on the transport's
// buffering (the API's and the CLI's tests wait on it).
func (t *Tracker) Watchers() int {
	n, _ := t.hub.Backlog()
	return n
}

// Run judges routes as they change until ctx ends. It returns nil when ctx
// ends and an error when the source stops first.
//
// Each turn takes every prefix the source's events named since the last
// one (read as they come by inbox's goroutine, so a backlog costs one
// judgement per prefix, however many events it holds), judges those
// prefixes against the FIB as it is now, and hands BGP the withdrawals
// before anything else. Advertisements go out in slices of maxAdvertise, with
// new events judged in between, so losses never wait behind a long release.
func (t *Tracker) Run(ctx context.Context) error {
	defer t.hub.Close()
	select {
	case <-t.src.Ready():
	case <-ctx.Done():
		return nil
	}
	// Subscribe first, then judge the whole table as it is: every change
	// after the subscription arrives as an event, and judging is idempotent.
	in := t.readEvents(t.src.Events(ctx, false))
	defer in.wait()
	t.in.Store(in)
	stopRetrier := t.startRetrier(ctx)
	defer stopRetrier()
	t.judgeAll(time.Now())
	close(t.ready)
	more := t.flush(ctx, time.Now())
	timer := time.NewTimer(t.nextDeadline(time.Now(), more))
	defer timer.Stop()
	for {
		select {
		case <-in.kick:
			keys, lost, stopped := in.take()
			t.judgeBatch(keys, lost, time.Now())
			if stopped {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("route source stopped")
			}
		case <-timer.C:
			t.judge(t.due(time.Now()), time.Now())
		case <-t.repolicy:
			t.judgeAll(time.Now())
		case <-t.ref.kick:
			t.judge(t.takeDirty(), time.Now())
		case <-ctx.Done():
			return nil
		}
		more = t.flush(ctx, time.Now())
		t.signalRewrites()
		timer.Reset(t.nextDeadline(time.Now(), more))
	}
}

// losses returns the prefixes that lost confirmation within a batch: a
// Changed event from confirmed to not. Such a flap counts even when the
// batch also brings confirmation back and the current state looks steady.
//
// A route replaced by another one (new next hops, say) is not a flap: the
// gate judges the new route as a new one.
func (t *Tracker) losses(batch []fib.Event, lost map[prefixKey]bool) map[prefixKey]bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, ev := range batch {
		if ev.Kind != fib.Changed || !ev.Old.SameAs(ev.New) {
			continue
		}
		k := keyOf(ev.New)
		s, ok := t.policy.Match(k.table, k.prefix())
		if !ok {
			continue
		}
		vo, _ := s.Judge(ev.Old)
		vn, _ := s.Judge(ev.New)
		if vo == VerdictConfirmed && vn != VerdictConfirmed {
			if lost == nil {
				lost = map[prefixKey]bool{}
			}
			lost[k] = true
		}
	}
	return lost
}

// judge re-evaluates the given prefixes against the source's current
// forwarding routes and publishes what changed.
func (t *Tracker) judge(keys map[prefixKey]struct{}, now time.Time) { t.judgeBatch(keys, nil, now) }

// judgeBatch is judge with the prefixes that lost confirmation meanwhile.
func (t *Tracker) judgeBatch(keys map[prefixKey]struct{}, lost map[prefixKey]bool, now time.Time) {
	if len(keys) == 0 {
		return
	}
	type seen struct {
		r   fib.Route
		ver uint64
	}
	routes := make(map[prefixKey]*seen, len(keys))
	var clock uint64
	t.src.View(func(f *fib.FIB) {
		clock = f.Clock()
		for k := range keys {
			if r, ver, ok := f.FirstVersion(k.table, k.prefix()); ok {
				routes[k] = &seen{r, ver}
			}
		}
	})
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweepTables()
	// Watch subscribes under t.mu too: a watcher either is counted here
	// or gets these states in its snapshot.
	publish := t.hub.Consumers() > 0
	var changed []RouteState
	for k := range keys {
		var r *fib.Route
		var ver uint64
		if sn := routes[k]; sn != nil {
			r, ver = &sn.r, sn.ver
		}
		if st, ok := t.evaluate(k, r, ver, lost[k], now); ok && publish {
			changed = append(changed, st)
		}
		t.plan(k, clock)
	}
	slices.SortFunc(changed, compareStates)
	t.hub.Publish(changed)
}

// judgeAll re-evaluates every route of the source and every tracked prefix,
// after the policy changed.
func (t *Tracker) judgeAll(now time.Time) {
	keys := map[prefixKey]struct{}{}
	t.src.View(func(f *fib.FIB) {
		for r := range f.All() {
			keys[keyOf(r)] = struct{}{}
		}
	})
	t.mu.Lock()
	for k := range t.entries.all() {
		keys[k] = struct{}{}
	}
	t.wholeTable = true
	t.mu.Unlock()
	t.judge(keys, now)
	t.mu.Lock()
	t.wholeTable = false
	t.mu.Unlock()
}

// evaluate applies the state machine to one prefix whose forwarding route
// is r (nil when the prefix has none) at FIB version ver; lost says it lost
// confirmation since the last evaluation. It reports the new state when it
// changed. Called with t.mu held.
func (t *Tracker) evaluate(k prefixKey, r *fib.Route, ver uint64, lost bool, now time.Time) (RouteState, bool) {
	e := t.entries.get(k)
	met := e == nil // the tracker meets the prefix for the first time
	if e != nil {
		defer t.track(k, e, e.st.State)
	}
	scope, inScope := t.policy.Match(k.table, k.prefix())
	if r != nil && !t.flagged[k.fam()].Load() {
		switch flagged, marked := hwFlagsOf(r); {
		case flagged:
			t.flagged[k.fam()].Store(true)
		case marked && !t.marked[k.fam()].Load():
			t.marked[k.fam()].Store(true)
		}
	}
	if inScope {
		// Refused routes, and routes a retry is writing again.
		if st, changed, handled := t.evaluateRefused(k, e, scope, r, now); handled {
			return st, changed
		}
		if st, changed, handled := t.rewriteGap(k, e, r, now); handled {
			return st, changed
		}
	}
	if e != nil {
		t.showRetries(k, 0, 0) // set again while failed
	}
	at := t.ep.at(now)
	if !inScope || r == nil {
		if e == nil {
			return RouteState{}, false
		}
		if e.st.State == Withdrawn {
			// Forget it once BGP has it back and, unless it left the
			// scope, the retention time has passed.
			if !e.st.out && (!inScope || !now.Before(t.ep.time(e.deadline))) {
				t.forget(k, e)
			}
			return RouteState{}, false
		}
		reason := "route left the FIB"
		if !inScope {
			reason = "no longer in a gated scope"
		}
		e.st.State, e.st.Reason, e.st.WithdrawnAt, e.st.StateSince = Withdrawn, t.texts.of(reason), at, at
		e.st.Flags, e.st.NexthopFlags = 0, 0
		e.deadline = t.ep.at(now.Add(t.retention))
		e.ver, e.st.keep = 0, false
		if !inScope && !e.st.out {
			t.forget(k, e)
		}
		return t.public(k, e), true
	}
	if e == nil {
		e = t.entries.add(k)
		defer t.track(k, e, 0)
	}
	if e.st.State == 0 || e.st.State == Withdrawn {
		e.st.SeenAt, e.pendingSince = at, at
		e.st.State = 0
	}
	before := e.st
	replaced := e.ver != 0 && ver != e.ver
	e.ver = ver
	e.st.origin, e.st.nextHop = 0, 0
	if t.adv.speaker != nil {
		if o, ok := t.adv.classify(r); ok {
			e.st.origin = o
			if len(r.Nexthops) > 0 {
				e.st.nextHop = t.hops.of(r.Nexthops[0].Gateway)
			}
			// BGP has out only what the tracker released, except what a
			// Speaker adopted at start or a rescope let in: prefixes the
			// tracker meets then. One it knew, and saw go, is not asked
			// about: asking waits for the Speaker's lock, which its calls
			// to BGP hold (in a sidecar, round trips to gobgpd), and under
			// churn most prefixes seen anew are such.
			if before.State == 0 && !e.st.out && t.adv.alreadyOut != nil && (met || t.wholeTable) && t.adv.alreadyOut(k.prefix()) {
				e.st.out = true // adopted by the Speaker at start: withdrawn if not confirmed
			}
		}
	}
	e.st.Scope = t.texts.of(scope.Name)
	e.st.Flags = r.Flags
	if e.st.NexthopFlags == 0 || !sameNexthopFlags(t.texts.get(e.st.NexthopFlags), r.Nexthops) {
		e.st.NexthopFlags = t.pathFlags(r.Nexthops)
	}
	e.deadline = 0
	wasUp := up(before.State)
	if replaced {
		// A new route (BGP chose other next hops, or someone rewrote it):
		// judged afresh, not as a flap; plan releases it again. If the
		// prefix is out on the old route, which the hardware forwards
		// with until it has the new one, and the speaker did not fence
		// it, it stays out meanwhile (make-before-break).
		// A replacement of a replacement keeps the first one's start, so
		// churn cannot keep the old route out for ever.
		wasKeeping := e.st.keep
		e.st.keep = wasUp && e.st.out && t.stillOut(k.prefix())
		wasUp = false
		if !wasKeeping || !e.st.keep {
			e.pendingSince = at
		}
	}
	keeping := e.st.keep
	e.st.keep = false
	if keeping {
		wasUp = false // out on the old route; the new one is judged afresh
	}
	if wasUp && scope.HoldDown.Max > 0 && now.Sub(t.ep.time(before.ConfirmedAt)) >= scope.HoldDown.Max {
		e.st.Flaps = 0 // stable long enough: forgive old flaps
	}
	verdict, reason := scope.Judge(r)
	if wasUp && lost && verdict == VerdictConfirmed {
		// Lost and regained between two looks: a flap all the same.
		e.st.flap()
		wasUp = false
	}
	switch verdict {
	case VerdictConfirmed:
		if wasUp {
			break
		}
		if keeping {
			// The replacement of a route that never went down: no
			// hold-down.
			t.programmed(now.Sub(t.ep.time(e.pendingSince)))
			t.confirm(e, now, "")
			break
		}
		if before.State == 0 || before.State == Pending || replaced {
			// The hardware has just programmed it. Not after failed (the
			// sample would be the failure's length) nor after a hold-down
			// (it was programmed before the hold began).
			t.programmed(now.Sub(t.ep.time(e.pendingSince)))
		}
		if e.st.Flaps > 0 && scope.HoldDown.Initial > 0 {
			if before.State != HeldDown {
				hold := holdTime(scope.HoldDown, int(e.st.Flaps))
				e.st.HoldUntil = t.ep.at(now.Add(hold))
				e.st.Reason = t.texts.of(holdReason(int(e.st.Flaps), hold, t.ep.time(e.st.HoldUntil)))
			}
			if now.Before(t.ep.time(e.st.HoldUntil)) {
				e.st.State = HeldDown
				e.deadline = e.st.HoldUntil
				break
			}
		}
		if before.State == HeldDown {
			// StateSince is still when the hold-down began: it changes
			// below, after the state.
			held := now.Sub(t.ep.time(e.st.StateSince))
			t.held.add(held)
			if t.observer != nil {
				t.observer.HeldDown(held)
			}
		}
		t.confirm(e, now, "")
	case VerdictPending, VerdictFailed:
		if wasUp {
			e.st.flap()
			e.pendingSince = at
		} else if before.State == HeldDown || before.State == Failed && verdict == VerdictPending {
			e.pendingSince = at
		}
		pendingSince := t.ep.time(e.pendingSince)
		if verdict == VerdictPending && keeping {
			if limit := keepLimit(scope); now.Before(pendingSince.Add(limit)) {
				e.st.keep = true
				e.st.State = before.State
				e.st.Reason = t.texts.of(fmt.Sprintf("new route %s; the previous one stays advertised until it is programmed, for at most %s (make-before-break)", reason, limit))
				e.deadline = t.ep.at(pendingSince.Add(limit))
				break
			}
		}
		if verdict == VerdictFailed {
			if (wasUp || keeping) && scope.OnFailure == FailureKeep {
				e.st.Reason = t.texts.of(reason + "; kept advertised by policy (on_failure: keep)")
				break
			}
			if before.State != Failed {
				t.counters.failed.Add(1)
			}
			e.st.State, e.st.Reason = Failed, t.texts.of(reason)
			t.retryFailed(k, e, scope, r, before, now)
			break
		}
		if t.retrying(k, e, scope, r, before, now) {
			break // still failed while a retry's route is programmed
		}
		e.st.State, e.st.Reason = Pending, t.texts.of(reason)
		if scope.PendingTimeout > 0 {
			expiry := pendingSince.Add(scope.PendingTimeout)
			switch {
			case now.Before(expiry):
				e.deadline = t.ep.at(expiry)
			case scope.FailOpen:
				t.confirm(e, now, fmt.Sprintf("fail-open: no confirmation within %s", scope.PendingTimeout))
			default:
				e.st.Reason = t.texts.of(fmt.Sprintf("%s; no confirmation within %s, holding (fail-closed)", reason, scope.PendingTimeout))
			}
		}
	}
	if e.st.State != before.State {
		e.st.StateSince = at
	}
	if stateEqual(before, e.st) {
		return RouteState{}, false
	}
	return t.public(k, e), true
}

// stillOut reports whether the speaker still has p out; without a way to
// ask (WithAlreadyOut) the tracker's own record is trusted. Called with
// t.mu held.
func (t *Tracker) stillOut(p netip.Prefix) bool {
	return t.adv.alreadyOut == nil || t.adv.alreadyOut(p)
}

// DefaultKeepLimit bounds make-before-break for a scope that waits for
// confirmation forever (PendingTimeout 0): a replaced route that the
// hardware neither programs nor fails within it no longer keeps its
// prefix out on the old one.
const DefaultKeepLimit = 10 * time.Second

// keepLimit is how long a replaced route may keep its prefix out on the
// previous one: the scope's pending timeout, or DefaultKeepLimit.
func keepLimit(s *Scope) time.Duration {
	if s.PendingTimeout > 0 {
		return s.PendingTimeout
	}
	return DefaultKeepLimit
}

// sameNexthopFlags says whether s (a pathFlags text) are the paths'
// flags, without making a text of them.
func sameNexthopFlags(s string, nhs []fib.Nexthop) bool {
	if len(s) != len(nhs) {
		return false
	}
	for i := range nhs {
		if fib.HWFlags(s[i]) != nhs[i].HW {
			return false
		}
	}
	return true
}

func (t *Tracker) confirm(e *entry, now time.Time, reason string) {
	e.st.State, e.st.Reason, e.st.ConfirmedAt = Confirmed, t.texts.of(reason), t.ep.at(now)
	e.st.HoldUntil = 0
	t.counters.confirmed.Add(1)
}

// programmed records how long the hardware took to program a route.
func (t *Tracker) programmed(d time.Duration) {
	t.ttHW.add(d)
	if t.observer != nil {
		t.observer.TimeToHardware(d)
	}
}

// holdReason says why a prefix is held down, and for how long: the hold
// grows with every flap, which is why a failure repeated in a lab is held
// for 1 s, then 2 s, then 4 s.
func holdReason(flaps int, hold time.Duration, until time.Time) string {
	times := "once"
	if flaps > 1 {
		times = fmt.Sprintf("%d times", flaps)
	}
	return fmt.Sprintf("flapped %s: held down for %s, until %s", times, hold.Round(time.Millisecond),
		until.UTC().Format("15:04:05.000Z"))
}

func up(s State) bool { return s == Confirmed || s == Advertised }

// holdTime is Initial × Multiplier^(flaps-1), capped at Max.
func holdTime(h HoldDown, flaps int) time.Duration {
	d := float64(h.Initial) * math.Pow(max(h.Multiplier, 1), float64(flaps-1))
	if d > float64(h.Max) {
		return h.Max
	}
	return time.Duration(d)
}

// due returns the prefixes whose deadline has passed.
func (t *Tracker) due(now time.Time) map[prefixKey]struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := map[prefixKey]struct{}{}
	nowAt := t.ep.at(now)
	for {
		k, at, ok := t.dl.peek()
		if !ok || nowAt < at {
			return keys
		}
		t.dl.pop()
		if e := t.entries.get(k); e != nil && e.heapAt == at {
			e.heapAt = 0
			keys[k] = struct{}{}
		}
	}
}

// nextDeadline returns how long until the earliest deadline (an hour when
// there is none); zero when more is set (flush left work for the next turn).
func (t *Tracker) nextDeadline(now time.Time, more bool) time.Duration {
	if more {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	next := time.Hour
	if t.adv.pending() {
		next = max(t.adv.retryAt.Sub(now), 0)
	}
	for {
		k, at, ok := t.dl.peek()
		if !ok {
			return next
		}
		if e := t.entries.get(k); e == nil || e.heapAt != at {
			t.dl.pop() // stale: the entry's deadline moved or it is gone
			continue
		}
		return min(next, max(t.ep.time(at).Sub(now), 0))
	}
}

// track keeps the per-state counts and the deadline heap in step with an
// entry after evaluate changed it (prev: its state before; 0 for a new one).
// Called with t.mu held.
func (t *Tracker) track(k prefixKey, e *entry, prev State) {
	if t.entries.get(k) != e {
		return // forgotten meanwhile
	}
	if prev != e.st.State {
		if prev != 0 {
			t.byState[k.fam()][prev]--
		}
		t.byState[k.fam()][e.st.State]++
	}
	if e.deadline != 0 && e.deadline != e.heapAt {
		t.dl.push(k, e.deadline)
		e.heapAt = e.deadline
	}
}

// forget drops an entry. Called with t.mu held.
func (t *Tracker) forget(k prefixKey, e *entry) {
	if e.st.State != 0 {
		t.byState[k.fam()][e.st.State]--
	}
	t.entries.drop(k)
	delete(t.retries, k)
}

// HardwareSeen says whether any route of a gated table has shown a
// hardware flag (offload, trap or offload_failed: the route's own, or an
// IPv6 sibling's) since the tracker started. While it has not, a driver
// that offloads routes is missing or silent, and every prefix waiting for
// the hardware waits for good: the daemon warns about it (a new machine
// without a switchdev driver, or a driver that does not offload routes).
func (t *Tracker) HardwareSeen() bool { return t.flagged[0].Load() || t.flagged[1].Load() }

// HardwareSeenIn is HardwareSeen for the routes of one family: a driver
// may offload one family only (Marvell's prestera offloads IPv4 routes
// and never flags an IPv6 one), and then the other family's prefixes
// wait for good while flags show up for the first.
func (t *Tracker) HardwareSeenIn(f fib.Family) bool { return t.flagged[f.Index()].Load() }

// NexthopMarksSeenIn says whether, while no route of the family had a flag
// of its own, one showed RTNH_F_OFFLOAD or RTNH_F_TRAP on its next hops:
// `ip route` prints "offload" beside them. A driver that marks next hops
// and never flags routes (rocker) looks offloaded there and confirms
// nothing (Scope.Judge), and the warning says so instead of asking for a
// driver that is there.
func (t *Tracker) NexthopMarksSeenIn(f fib.Family) bool { return t.marked[f.Index()].Load() }

// PendingIn is how many prefixes of a family wait for their route to be
// confirmed: what HardwareSeenIn's warning counts.
func (t *Tracker) PendingIn(f fib.Family) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.byState[f.Index()][Pending]
}

// hwFlagsOf says whether r shows a hardware flag that can confirm a route
// (its own, or an IPv6 sibling's: Scope.Judge), and whether it shows only
// next-hop marks (an IPv4 route's RTNH_F_OFFLOAD/TRAP, a nexthop object's).
func hwFlagsOf(r *fib.Route) (flagged, marked bool) {
	if r.Flags != 0 { // offload, trap or offload_failed: HWFlags has no other bit
		return true, false
	}
	for _, nh := range r.Nexthops {
		if nh.HW != 0 {
			marked = true
		}
	}
	if marked && pathsHaveOwnFlags(r) {
		return true, false
	}
	return false, marked
}

// TrackerStats are the gate's counters and latencies, for the API and metrics.
type TrackerStats struct {
	ByState   map[State]int
	Confirmed uint64 // confirmations (including fail-open ones)
	Failed    uint64 // transitions to failed
	// Advertised counts prefixes handed to BGP, Withdrawn prefixes BGP
	// took back (failed, lost or gone from the FIB); both stay 0 without
	// a Speaker. SpeakerErrors counts failed Advertise or Withdraw calls
	// (retried with backoff).
	Advertised, Withdrawn, SpeakerErrors uint64
	// TimeToHardware is how long the hardware took to program routes (see
	// Observer), TimeHeldDown how long flapping prefixes were held down
	// after that, over the recent window of each.
	TimeToHardware, TimeHeldDown LatencySummary
}

// Stats returns a snapshot of the counters.
func (t *Tracker) Stats() TrackerStats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := TrackerStats{
		ByState:        map[State]int{},
		Confirmed:      t.counters.confirmed.Load(),
		Failed:         t.counters.failed.Load(),
		Withdrawn:      t.counters.withdrawn.Load(),
		Advertised:     t.counters.advertised.Load(),
		SpeakerErrors:  t.counters.speakerErrors.Load(),
		TimeToHardware: t.ttHW.summary(),
		TimeHeldDown:   t.held.summary(),
	}
	for st := range numStates {
		if n := t.byState[0][st] + t.byState[1][st]; st != 0 && n != 0 {
			s.ByState[State(st)] = n
		}
	}
	return s
}
