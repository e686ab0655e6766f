package gate

import (
	"net/netip"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// Refusal is a route the kernel refused to install: RTM_NEWROUTE failed,
// because a driver vetoed it (netdevsim's full FIB: EPERM), the table is
// full (ENOSPC), a gateway is unreachable, and so on. The FIB never holds
// such a route, so the gate cannot find it there: the writer (the daemon's
// FIB installer) reports it with Refused, and the prefix shows as Refused,
// held back, with the kernel's error, until the writer reports the route
// installed (Installed) or no longer wanted (Abandoned). The writer retries
// with back-off and reports each attempt.
type Refusal struct {
	Table  uint32
	Prefix netip.Prefix
	// Err is the kernel's error, as people read it.
	Err string
	// Attempts counts the writes refused so far; NextRetry is when the
	// writer tries again (zero: not planned).
	Attempts  int
	NextRetry time.Time
}

// awaitRoute is how long a prefix whose refused route the kernel finally
// took waits as Pending for the route to show in the FIB (the listener
// may lag the writer) before it counts as gone.
const awaitRoute = 10 * time.Second

// refusal is the tracker's record of a refused route.
type refusal struct {
	Refusal
	accepted time.Time // the kernel took the route at this time; zero: still refused
	dropped  bool      // no longer wanted
}

// refusals are the refused routes the writer reported, and the prefixes
// to judge again because of them. Guarded by the tracker's mu.
type refusals struct {
	recs  map[prefixKey]*refusal
	dirty map[prefixKey]struct{}
	kick  chan struct{} // Run judges dirty prefixes
	// writes counts refused writes reported, transitions prefixes that
	// became Refused.
	writes, transitions uint64
}

func (rf *refusals) mark(k prefixKey) {
	if rf.dirty == nil {
		rf.dirty = map[prefixKey]struct{}{}
	}
	rf.dirty[k] = struct{}{}
}

// Refused records refused routes (each one refused write, a retry's
// included); their prefixes show as Refused.
func (t *Tracker) Refused(rs []Refusal) {
	if len(rs) == 0 {
		return
	}
	t.mu.Lock()
	if t.ref.recs == nil {
		t.ref.recs = map[prefixKey]*refusal{}
	}
	for _, r := range rs {
		k := keyFor(r.Table, r.Prefix.Masked())
		r.Prefix = k.prefix()
		t.ref.recs[k] = &refusal{Refusal: r}
		t.ref.mark(k)
		t.ref.writes++
	}
	t.mu.Unlock()
	t.kickRun()
}

// Installed says the kernel took the routes of these prefixes after all:
// they are judged as usual once their routes show in the FIB.
func (t *Tracker) Installed(table uint32, ps []netip.Prefix) { t.endRefusals(table, ps, false) }

// Abandoned says the refused routes of these prefixes are not wanted any
// more (BGP has no path for them now): they show as withdrawn.
func (t *Tracker) Abandoned(table uint32, ps []netip.Prefix) { t.endRefusals(table, ps, true) }

func (t *Tracker) endRefusals(table uint32, ps []netip.Prefix, dropped bool) {
	now := time.Now()
	t.mu.Lock()
	n := 0
	for _, p := range ps {
		k := keyFor(table, p.Masked())
		rec := t.ref.recs[k]
		if rec == nil {
			continue
		}
		if dropped {
			rec.dropped = true
		} else {
			rec.accepted = now
		}
		t.ref.mark(k)
		n++
	}
	t.mu.Unlock()
	if n > 0 {
		t.kickRun()
	}
}

func (t *Tracker) kickRun() {
	select {
	case t.ref.kick <- struct{}{}:
	default:
	}
}

// takeDirty returns the prefixes to judge again because of refusals.
func (t *Tracker) takeDirty() map[prefixKey]struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.ref.dirty
	t.ref.dirty = nil
	return d
}

// evaluateRefused judges a prefix in scope with a refusal record: it
// reports handled=false when the normal judgement applies (the refusal is
// over and the route is in the FIB, or took too long to show). Called
// from evaluate with t.mu held, before evaluate has touched the entry
// (evaluate tracks an entry it found; this tracks one it makes).
func (t *Tracker) evaluateRefused(k prefixKey, e *entry, scope *Scope, r *fib.Route, now time.Time) (st RouteState, changed, handled bool) {
	rec := t.ref.recs[k]
	if rec == nil {
		return RouteState{}, false, false
	}
	if !rec.accepted.IsZero() && (r != nil || !now.Before(rec.accepted.Add(awaitRoute))) {
		delete(t.ref.recs, k)
		return RouteState{}, false, false
	}
	if e == nil {
		if rec.dropped {
			delete(t.ref.recs, k)
			return RouteState{}, false, true
		}
		e = t.entries.add(k)
		defer t.track(k, e, 0) // evaluate tracks the entries it found
	}
	before := e.st
	e.st.Scope = t.texts.of(scope.Name)
	e.st.Flags, e.st.NexthopFlags = 0, 0
	if r != nil {
		e.st.Flags = r.Flags // the route the refused one was to replace
	}
	e.deadline = 0
	switch {
	case rec.dropped:
		delete(t.ref.recs, k)
		e.st.State, e.st.Reason, e.st.WithdrawnAt = Withdrawn, t.texts.of("BGP no longer has a path for it; the refused route is not written any more"), t.ep.at(now)
		t.showRetries(k, 0, 0)
		e.deadline = t.ep.at(now.Add(t.retention))
		e.ver = 0
	case !rec.accepted.IsZero():
		e.st.State, e.st.Reason = Pending, t.texts.of("the kernel took the route after it was refused; waiting for it to show in the FIB")
		t.showRetries(k, int32(rec.Attempts), 0)
		e.deadline = t.ep.at(rec.accepted.Add(awaitRoute))
		e.pendingSince = t.ep.at(now)
	default:
		e.st.State = Refused
		e.st.Reason = t.texts.of("the kernel refused the route: " + rec.Err)
		t.showRetries(k, int32(rec.Attempts), t.ep.at(rec.NextRetry)) // not a change watchers hear of
	}
	if e.st.State != before.State {
		e.st.StateSince = t.ep.at(now)
		if e.st.State == Refused {
			t.ref.transitions++
		}
	}
	if stateEqual(before, e.st) {
		return RouteState{}, false, true
	}
	return t.public(k, e), true, true
}
