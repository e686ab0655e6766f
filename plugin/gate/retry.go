package gate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/fibgate/fibgate/plugin/backoff"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/logdamp"
)

// Retry makes the gate write the route of a failed prefix (offload_failed)
// again so that its driver tries again: the kernel never asks a driver to
// program a route again by itself, and drivers do not retry on their own,
// so without it a failed route stays failed until someone rewrites it.
// Rewrites back off from Initial, doubling with every one that fails
// again, up to Max, with jitter; Initial 0 turns retries off.
//
// A prefix kept advertised on failure (OnFailure keep) is not rewritten
// by itself: a rewrite makes a new route, which would be withdrawn until it
// is programmed. `fibgate hw retry` rewrites it on request.
type Retry struct {
	Initial time.Duration
	Max     time.Duration
}

// DefaultRetry is the retry of DefaultScope: on, from 1 s to 5 min.
var DefaultRetry = Retry{Initial: time.Second, Max: 5 * time.Minute}

func (r Retry) backoff() backoff.Policy { return backoff.Policy{Initial: r.Initial, Max: r.Max} }

func (r Retry) validate(field string) error {
	if r.Initial < 0 || r.Max < r.Initial || r.Initial > 0 && r.Max == 0 {
		return fieldErr(field, "want 0 <= initial (%s) <= max (%s); initial 0 turns retries off", r.Initial, r.Max)
	}
	return nil
}

// Rewriter writes routes into the kernel again, as they are, so that the
// hardware programs them afresh (kernel.RouteWriter.Rewrite does, and the
// daemon sends its FIB installer's own routes through the installer). It
// returns one error per route; a route changed since it was read is left
// alone (and its error says so). It must be safe for concurrent use.
type Rewriter interface {
	Rewrite(ctx context.Context, routes []fib.Route) []error
}

// WithRewriter lets the tracker retry failed routes (Scope.Retry, and
// RetryNow) through rw. Without it failed routes wait for someone else to
// rewrite them.
func WithRewriter(rw Rewriter) TrackerOption { return func(t *Tracker) { t.rtr.rw = rw } }

// ErrNoRewriter answers RetryNow in a tracker without a Rewriter.
var ErrNoRewriter = errors.New("this gate cannot write routes again (no rewriter)")

// retryState is a prefix's progress through retries of its failure
// (Tracker.retries).
type retryState struct {
	attempts int       // rewrites since the failure began
	next     time.Time // when the next rewrite is due
	inFlight bool      // a rewrite was issued; its route not judged yet
	since    time.Time // when it was issued
	ver      uint64    // the version of the route it rewrote
	err      string    // why the last rewrite could not be done
	// shown is the state's Retries and NextRetry: a failed prefix's
	// retries, or a refused one's refused writes (which have no progress
	// here otherwise).
	shown retriesShown
}

// retriesShown is RouteState's Retries and NextRetry as an entry keeps them.
type retriesShown struct {
	n    int32
	next stamp
}

// showRetries sets the Retries and NextRetry of k's state; the retry
// record is made only when they are not zero. Called with t.mu held.
func (t *Tracker) showRetries(k prefixKey, n int32, next stamp) {
	if n == 0 && next == 0 && t.retries[k] == nil {
		return
	}
	t.retryOf(k).shown = retriesShown{n, next}
}

// retryOf returns k's retry progress, made on first use: most prefixes
// never fail or are refused. Called with t.mu held.
func (t *Tracker) retryOf(k prefixKey) *retryState {
	rs := t.retries[k]
	if rs == nil {
		rs = &retryState{}
		t.retries[k] = rs
	}
	return rs
}

// retrier is the tracker's rewriting side: routes queued by judgements
// (with t.mu held) and written by one goroutine outside the lock.
type retrier struct {
	rw    Rewriter
	queue map[prefixKey]fib.Route
	wake  chan struct{}
	// rewrites counts routes written again, errors rewrites that failed.
	rewrites, errors uint64
}

// RetryStats counts what the gate did about routes the hardware does not
// hold: refused writes reported by the FIB installer, prefixes that became
// refused, and rewrites of failed routes (automatic and requested).
type RetryStats struct {
	RefusedWrites, Refusals uint64
	Rewrites, RewriteErrors uint64
}

// RetryStats returns the counters of refusals and retries.
func (t *Tracker) RetryStats() RetryStats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return RetryStats{RefusedWrites: t.ref.writes, Refusals: t.ref.transitions,
		Rewrites: t.rtr.rewrites, RewriteErrors: t.rtr.errors}
}

// retryFailed plans the retry of a prefix evaluate has just judged failed:
// a new failure (or a rewrite's route that failed again) schedules the
// next rewrite; a due one is queued. Called with t.mu held.
func (t *Tracker) retryFailed(k prefixKey, e *entry, s *Scope, r *fib.Route, before rstate, now time.Time) {
	if t.rtr.rw == nil || s.Retry.Initial <= 0 {
		// No retries: the record goes, unless the state still shows some.
		if rs := t.retries[k]; rs != nil {
			delete(t.retries, k)
			t.showRetries(k, rs.shown.n, rs.shown.next)
		}
		return
	}
	rs := t.retryOf(k)
	switch {
	case rs.inFlight && e.ver == rs.ver && now.Before(rs.next):
		// The rewrite's route has not shown yet: this is the old one.
	case before.State != Failed || rs.inFlight:
		if before.State != Failed && (before.ConfirmedAt == 0 || now.Sub(t.ep.time(before.ConfirmedAt)) >= s.Retry.Max) {
			rs.attempts = 0 // a new failure, not a flapping one
		}
		rs.inFlight = false
		rs.next = now.Add(s.Retry.backoff().Delay(rs.attempts))
	case !now.Before(rs.next):
		t.queueRewrite(k, e, s, r, now)
	}
	e.deadline = t.ep.at(rs.next)
	// Retries and NextRetry say how it goes; the reason changes only when
	// a rewrite could not be done, so watchers see one line per failure,
	// not one per retry.
	t.showRetries(k, int32(rs.attempts), t.ep.at(rs.next))
	if rs.err != "" {
		e.st.Reason = t.texts.of(t.texts.get(e.st.Reason) + "; the last retry could not write the route: " + rs.err)
	}
}

// retrying keeps a failed prefix failed, as it was shown, while the route
// its retry wrote is being programmed (judged pending), and writes it
// again when the next retry falls due before the driver answers. Called
// with t.mu held.
func (t *Tracker) retrying(k prefixKey, e *entry, s *Scope, r *fib.Route, before rstate, now time.Time) bool {
	rs := t.retries[k]
	if before.State != Failed || rs == nil || !rs.inFlight || t.rtr.rw == nil || s.Retry.Initial <= 0 {
		return false
	}
	if !now.Before(rs.next) {
		t.queueRewrite(k, e, s, r, now)
	}
	e.st.State, e.st.Reason = Failed, before.Reason
	e.st.Flags, e.st.NexthopFlags = before.Flags, before.NexthopFlags // until the driver answers
	t.showRetries(k, int32(rs.attempts), t.ep.at(rs.next))
	e.deadline = t.ep.at(rs.next)
	return true
}

// rewriteGap keeps a failed prefix failed while its route is briefly gone
// from the FIB because a retry deleted it to add it back (the listener may
// report the two apart). Called with t.mu held, before evaluate touches
// the entry; the caller tracks e.
func (t *Tracker) rewriteGap(k prefixKey, e *entry, r *fib.Route, now time.Time) (RouteState, bool, bool) {
	if r != nil || e == nil || e.st.State != Failed {
		return RouteState{}, false, false
	}
	rs := t.retries[k]
	if rs == nil || !rs.inFlight || !now.Before(rs.since.Add(awaitRoute)) {
		return RouteState{}, false, false
	}
	e.deadline = t.ep.at(rs.since.Add(awaitRoute)) // shown as it was meanwhile
	return RouteState{}, false, true
}

func (t *Tracker) queueRewrite(k prefixKey, e *entry, s *Scope, r *fib.Route, now time.Time) {
	if t.rtr.queue == nil {
		t.rtr.queue = map[prefixKey]fib.Route{}
	}
	t.rtr.queue[k] = r.Clone()
	rs := t.retryOf(k)
	rs.attempts++
	rs.inFlight, rs.since, rs.ver, rs.err = true, now, e.ver, ""
	rs.next = now.Add(s.Retry.backoff().Delay(rs.attempts))
}

// startRetrier runs the goroutine that writes queued routes again, until
// the returned stop is called (Run does, as it returns).
func (t *Tracker) startRetrier(ctx context.Context) (stop func()) {
	if t.rtr.rw == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	failed := logdamp.New(t.log, slog.LevelWarn, "writing failed routes again for a retry failed")
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.rtr.wake:
			}
			t.mu.Lock()
			q := t.rtr.queue
			t.rtr.queue = nil
			t.mu.Unlock()
			if len(q) == 0 {
				continue
			}
			keys := make([]prefixKey, 0, len(q))
			routes := make([]fib.Route, 0, len(q))
			for k, r := range q {
				keys, routes = append(keys, k), append(routes, r)
			}
			errs := t.rtr.rw.Rewrite(ctx, routes)
			if err := t.rewritten(keys, errs, time.Now()); err != nil {
				failed.Fail(err, "routes", len(routes))
			} else {
				failed.OK()
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// signalRewrites wakes the retrier when routes are queued.
func (t *Tracker) signalRewrites() {
	t.mu.RLock()
	n := len(t.rtr.queue)
	t.mu.RUnlock()
	if n > 0 {
		select {
		case t.rtr.wake <- struct{}{}:
		default:
		}
	}
}

// rewritten records what the rewrites did and has the prefixes judged
// again; it returns the first error that is not a route changed
// meanwhile (that one the route's own events settle).
func (t *Tracker) rewritten(keys []prefixKey, errs []error, now time.Time) error {
	var first error
	t.mu.Lock()
	for i, k := range keys {
		err := errs[i]
		if err == nil {
			t.rtr.rewrites++
			continue
		}
		t.rtr.errors++
		rs := t.retries[k]
		if t.entries.get(k) == nil || rs == nil {
			continue
		}
		rs.inFlight = false
		if errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.EEXIST) {
			continue // someone changed the route meanwhile
		}
		rs.err = err.Error()
		if first == nil {
			first = fmt.Errorf("%s: %w", k.prefix(), err)
		}
		t.ref.mark(k)
	}
	t.mu.Unlock()
	t.kickRun()
	return first
}

// RetryNow writes the routes of failed prefixes again at once, whatever
// their back-off, so their drivers try again: every failed prefix, or those
// of table (0: any table) and, when valid, prefix. Prefixes kept advertised
// on failure (OnFailure keep) are rewritten too: they are withdrawn until
// the new route is programmed. It returns how many routes were written.
func (t *Tracker) RetryNow(ctx context.Context, table uint32, prefix netip.Prefix) (int, error) {
	if t.rtr.rw == nil {
		return 0, ErrNoRewriter
	}
	prefix = prefix.Masked()
	t.mu.RLock()
	var keys []prefixKey
	for k, e := range t.entries.all() {
		if table != 0 && k.table != table || prefix.IsValid() && k.prefix() != prefix {
			continue
		}
		if e.st.State == Failed || up(e.st.State) && e.st.Flags&fib.OffloadFailed != 0 {
			keys = append(keys, k)
		}
	}
	t.mu.RUnlock()
	if len(keys) == 0 {
		return 0, nil
	}
	var routes []fib.Route
	var have []prefixKey
	var vers []uint64
	t.src.View(func(f *fib.FIB) {
		for _, k := range keys {
			if r, v, ok := f.FirstVersion(k.table, k.prefix()); ok {
				routes, have, vers = append(routes, r), append(have, k), append(vers, v)
			}
		}
	})
	errs := t.rtr.rw.Rewrite(ctx, routes)
	now := time.Now()
	t.mu.Lock()
	n := 0
	var failed []error
	for i, k := range have {
		e := t.entries.get(k)
		if errs[i] != nil {
			t.rtr.errors++
			failed = append(failed, fmt.Errorf("%s: %w", k.prefix(), errs[i]))
			continue
		}
		t.rtr.rewrites++
		n++
		if e == nil {
			continue
		}
		rs := t.retryOf(k)
		rs.attempts++
		rs.inFlight, rs.since, rs.ver, rs.err = true, now, vers[i], ""
		if s, ok := t.policy.Match(k.table, k.prefix()); ok && s.Retry.Initial > 0 {
			rs.next = now.Add(s.Retry.backoff().Delay(rs.attempts))
		} else {
			rs.next = now.Add(awaitRoute)
		}
		t.ref.mark(k)
	}
	t.mu.Unlock()
	t.kickRun()
	return n, errors.Join(failed...)
}
