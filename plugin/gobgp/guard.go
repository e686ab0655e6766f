package gobgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/fibgate/fibgate/plugin/logdamp"
)

// pulseItem is a prefix to withdraw from peers whatever they received:
// the held-set edits that release it (open; empty if already released) and
// hold it again (shut).
type pulseItem struct {
	p                                  netip.Prefix
	openAdd, openDel, shutAdd, shutDel []setEntry
	// leftover: a failed call may have left a toggle's HOLD path
	// (holdBeside), which the pulse deletes too.
	leftover bool
}

// pulse sends a withdraw for each prefix: release it, add its HOLD path
// (GoBGP sees the old best path as sent and withdraws it; the HOLD path
// also replaces a local path of ours), hold it, delete the HOLD path and
// a toggle's leftover one. A peer that never had the prefix ignores the
// withdraw.
func (s *Speaker) pulse(ctx context.Context, items []pulseItem) error {
	for len(items) > 0 {
		n := min(len(items), s.opts.batch)
		var oa, od, sa, sd []setEntry
		var add, del []*api.Path
		for _, it := range items[:n] {
			oa, od = append(oa, it.openAdd...), append(od, it.openDel...)
			sa, sd = append(sa, it.shutAdd...), append(sd, it.shutDel...)
			a, err1 := s.pb.holdPath(it.p, false)
			d, err2 := s.pb.holdPath(it.p, true)
			if err := errors.Join(err1, err2); err != nil {
				return err
			}
			add, del = append(add, a), append(del, d)
			if it.leftover {
				l, err := s.pb.holdBeside(it.p, true)
				if err != nil {
					return err
				}
				del = append(del, l)
			}
		}
		if err := s.editSets(ctx, oa, od); err != nil {
			return fmt.Errorf("release: %w", err)
		}
		if err := s.b.sendPaths(ctx, add); err != nil {
			return fmt.Errorf("add hold paths: %w", err)
		}
		if err := s.editSets(ctx, sa, sd); err != nil {
			return fmt.Errorf("hold: %w", err)
		}
		if err := s.b.sendPaths(ctx, del); err != nil {
			return fmt.Errorf("delete hold paths: %w", err)
		}
		items = items[n:]
	}
	return nil
}

// adoptReleases is the first Bootstrap's adoption (WithAdopt): the
// releases an earlier instance left in the held sets whose routes adopt
// says are confirmed join the record as released transit, before the
// not-to sets are read (installNotTo keeps their memberships) and before
// reconcile (which then leaves them out). It returns how many.
func (s *Speaker) adoptReleases(sets *ourSets) int {
	if s.bootstrapped || s.opts.adopt == nil {
		return 0
	}
	adopted := 0
	for _, m := range sets.held {
		for p, stored := range m {
			sc := s.cfg.scopeOf(p)
			if !s.rec.has(p) && sc.contains(p) && sc.releasedIn(p, stored) && s.opts.adopt(p) {
				s.rec.set(p, prefixState{transit: true, released: true})
				adopted++
			}
		}
	}
	return adopted
}

// reconcile brings the held sets, HOLD paths, kept copies and local paths
// in line with the record, starting from the sets as read (plus what
// install added).
// fresh says the gate was not in place before install (a reload, a
// restart of gobgpd, a first install):
//   - entries differing from the record are added or deleted (adds first);
//   - a release in GoBGP that the record does not want is pulsed (a
//     withdraw is sent): an earlier instance, or a failed call, left it;
//   - a prefix a failed call touched (suspect) is driven to its state
//     again: pulsed if nothing is wanted, else its export is re-run;
//   - when fresh, every release the record restores has its export re-run
//     without a flap: its HOLD path is added while it is still held (so
//     nothing is sent), the release restored, the HOLD path deleted. After
//     a reload peers receive a duplicate of what they have; after a
//     restart of gobgpd, what it forgot. Originated paths are added again
//     (identical ones change nothing in GoBGP).
func (s *Speaker) reconcile(ctx context.Context, sets *ourSets, fresh bool, adopted int) error {
	nodes := make(map[netip.Prefix]bool)
	for _, m := range sets.held {
		for p := range m {
			nodes[p] = true
		}
	}
	for p := range s.rec.all() {
		nodes[p] = true
	}
	// The scope's own nodes too, held or not: sets left by another scope
	// (a Speaker rescoped at run time before this one started) may lack
	// them.
	for _, sc := range []*scope{s.cfg.v4, s.cfg.v6} {
		for p := range sc.nodes {
			nodes[p] = true
		}
	}
	var adds, dels []setEntry
	var pulses []pulseItem
	var before, after, rerun []*api.Path
	var recopy []netip.Prefix
	paths := func(l *[]*api.Path, mk ...func() (*api.Path, error)) error {
		for _, f := range mk {
			p, err := f()
			if err != nil {
				return err
			}
			*l = append(*l, p)
		}
		return nil
	}
	for p := range nodes {
		sc := s.cfg.scopeOf(p)
		cur := sets.held[s.setName(p)][p]
		st := s.rec.get(p)
		want := s.inSet(p)
		keep := st.transit || st.originated
		desired := sc.entries(p, want)
		curRel := sc.releasedIn(p, cur)
		suspect := st.suspect || st.held
		hold := func(w bool) func() (*api.Path, error) {
			return func() (*api.Path, error) { return s.pb.holdBeside(p, w) }
		}
		local := func(w bool) func() (*api.Path, error) {
			return func() (*api.Path, error) { return s.pb.originated(p, s.onh[p], w) }
		}
		var err error
		switch {
		case st.onCopy():
			// Released on a copy (copy.go): held in the set; a failed
			// call may have left it without its copy.
			a, d := diffEntries(p, cur, desired)
			adds, dels = append(adds, a...), append(dels, d...)
			if suspect {
				recopy = append(recopy, p)
			}
		case curRel && !want:
			it := pulseItem{p: p, leftover: st.held}
			it.shutAdd, it.shutDel = diffEntries(p, cur, desired)
			pulses = append(pulses, it)
		case suspect && !keep:
			it := pulseItem{p: p, leftover: st.held}
			if sc.contains(p) {
				open := sc.entries(p, true)
				it.openAdd, it.openDel = diffEntries(p, cur, open)
				it.shutAdd, it.shutDel = diffEntries(p, open, desired)
			}
			pulses = append(pulses, it)
		default:
			a, d := diffEntries(p, cur, desired)
			adds, dels = append(adds, a...), append(dels, d...)
			switch {
			case st.originated && suspect:
				err = paths(&after, local(true), local(false))
			case st.originated && fresh:
				err = paths(&after, local(false))
			case st.transit && !curRel && (fresh || suspect):
				err = errors.Join(paths(&before, hold(false)), paths(&after, hold(true)))
			case st.transit && suspect:
				err = paths(&rerun, hold(false), hold(true))
			}
		}
		if err != nil {
			return fmt.Errorf("reconcile %v: %w", p, err)
		}
	}
	if err := s.b.sendPaths(ctx, before); err != nil {
		return fmt.Errorf("reconcile: add hold paths: %w", err)
	}
	if err := s.editSets(ctx, adds, dels); err != nil {
		return fmt.Errorf("reconcile held sets: %w", err)
	}
	if err := s.b.sendPaths(ctx, after); err != nil {
		return fmt.Errorf("reconcile: re-run export: %w", err)
	}
	if err := s.pulse(ctx, pulses); err != nil {
		return fmt.Errorf("reconcile: withdraw %d stale releases: %w", len(pulses), err)
	}
	if err := s.b.sendPaths(ctx, rerun); err != nil {
		return fmt.Errorf("reconcile: re-run export of %d prefixes: %w", len(rerun)/2, err)
	}
	// Kept copies (keep.go) go, now that their prefixes are held: the
	// record does not keep what they carried, and a restarted gobgpd has
	// none anyway. The tracker releases the new routes once programmed.
	// Releases by copy (copy.go) stay: they are the record's releases.
	if err := s.dropCopies(ctx, false); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	// Copies a failed call may have lost are added again, of the learned
	// path as it is now.
	if err := s.recopyLocked(ctx, recopy); err != nil {
		return fmt.Errorf("reconcile: add %d copies again: %w", len(recopy), err)
	}
	for p, st := range s.rec.all() {
		st.released, st.held, st.suspect = s.inSet(p), false, false
		s.rec.set(p, st)
	}
	if len(pulses)+len(after)+len(rerun)+adopted > 0 {
		s.opts.log.Info("gobgp gate reconciled", "withdrawn", len(pulses), "rerun", len(after)+len(rerun)/2,
			"adopted", adopted, "set_added", len(adds), "set_deleted", len(dels))
	}
	return nil
}

// scrub sends a withdraw for every prefix in scope whose best path was
// learned and that is not released: while the gate was not in place GoBGP
// may have exported it. Prefixes whose best path is local are skipped (a
// HOLD path would replace the local path of whoever added it).
func (s *Speaker) scrub(ctx context.Context) (int, error) {
	var items []pulseItem
	for _, f := range s.families() {
		if f.scope.none() {
			continue // nothing of this family can have leaked
		}
		var perr error
		err := s.b.listGlobal(ctx, f.family, func(d *api.Destination) {
			if len(d.Paths) == 0 {
				return
			}
			best := d.Paths[0]
			for _, p := range d.Paths {
				if p.Best {
					best = p
					break
				}
			}
			if !learned(best) {
				return // local
			}
			p, err := netip.ParsePrefix(d.Prefix)
			if err != nil {
				perr = fmt.Errorf("destination %q: %w", d.Prefix, err)
				return
			}
			if !f.scope.contains(p) || s.wanted(p) {
				return
			}
			it := pulseItem{p: p}
			it.openAdd, it.openDel = f.scope.transition(p, true)
			it.shutAdd, it.shutDel = f.scope.transition(p, false)
			items = append(items, it)
		})
		if err := errors.Join(err, perr); err != nil {
			return 0, fmt.Errorf("list global rib %s: %w", f.name, err)
		}
	}
	return len(items), s.pulse(ctx, items)
}

// GuardEvent reports one re-install by Check, for logs and metrics.
type GuardEvent struct {
	// Reason says what was wrong.
	Reason string
	// Took is how long the re-install took.
	Took time.Duration
	// Err is why it failed, or nil.
	Err error
	// Unsafe says the gate was not first in GoBGP's export chain: GoBGP
	// exported without it for up to a guard interval, and prefixes whose
	// best path changed meanwhile may have reached neighbours before the
	// re-install withdrew them. A reload of a gobgpd whose config carries
	// the fallback policy first (Config.FallbackPolicy) is never unsafe.
	Unsafe bool
}

// WithGuardHook calls fn after every re-install Check makes (fn must not
// call the Speaker).
func WithGuardHook(fn func(GuardEvent)) Option { return func(o *options) { o.hook = fn } }

// Check verifies that the gate is first in GoBGP's global export chain
// and that no earlier call left GoBGP half-changed, and re-installs the
// gate at once when either is not so (see Bootstrap: fail-closed, the
// held sets start with everything held, releases are restored from the
// record, and whatever may have leaked meanwhile is withdrawn). It
// reports whether it re-installed.
//
// Why it is needed: SetPolicies, which gobgpd runs on SIGHUP when the
// policy part of its config file changed, rebuilds all policies from the
// file. The sets, the policy and the global export assignment that
// fibgate added over the API are gone, and GoBGP exports every prefix
// whose best path changes. Nothing in GoBGP's API announces it; Check
// finds it with one ListPolicyAssignment call.
//
// Check reads GoBGP first without the Speaker's lock. It runs every guard
// interval, and its reads are round trips through GoBGP's main loop: held
// under the lock, they made every fence and release step wait for them
// whenever that loop was busy (an audit's adj-out read, a table arriving).
// When the reads find the gate in place, the lock is taken only to record
// the user's chain and weigh the not-to sets; anything else is read again
// under the lock, since one of the Speaker's own operations may have been
// halfway through changing the gate.
func (s *Speaker) Check(ctx context.Context) (reinstalled bool, err error) {
	s.mu.Lock()
	cfg, err := s.cfg, s.usable()
	s.mu.Unlock()
	if err != nil {
		return false, err
	}
	s.maybeRefresh(ctx)
	g, err := s.readGate(ctx, cfg, true)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || !g.inPlace(cfg) || s.cfg != cfg {
		return s.checkLocked(ctx, nil)
	}
	return s.checkLocked(ctx, &g)
}

// gateRead is what Check reads of the gate in GoBGP.
type gateRead struct {
	chain    []string        // the global export chain
	def      api.RouteAction // its default action
	first    bool            // the gate's policy is first in it
	sentinel bool            // the sentinel set is there (read only when asked for, first, and with a fallback policy)
}

// inPlace says the gate is first and, with a fallback policy, its
// sentinel set is there.
func (g gateRead) inPlace(cfg *normalized) bool { return g.first && (g.sentinel || !cfg.inFallback()) }

// readGate reads GoBGP's global export chain and, when sentinel is set,
// the gate is first and cfg has a fallback policy, the sentinel set. It
// takes no lock.
func (s *Speaker) readGate(ctx context.Context, cfg *normalized, sentinel bool) (gateRead, error) {
	a, err := s.b.exportAssignment(ctx)
	if err != nil {
		return gateRead{}, fmt.Errorf("check gate: read global export assignment: %w", err)
	}
	g := gateRead{def: a.DefaultAction, first: len(a.Policies) > 0 && a.Policies[0].Name == cfg.policy}
	for _, p := range a.Policies {
		g.chain = append(g.chain, p.Name)
	}
	if g.first && sentinel && cfg.inFallback() {
		if err := s.b.listDefinedSets(ctx, api.DefinedType_COMMUNITY, cfg.sentinel, func(*api.DefinedSet) { g.sentinel = true }); err != nil {
			return gateRead{}, fmt.Errorf("check gate: read sentinel set %s: %w", cfg.sentinel, err)
		}
	}
	return g, nil
}

// checkLocked is Check under the Speaker's lock: it re-installs the gate
// if it is not in place. read is what Check read without the lock when
// that found the gate in place under the current settings; with nil, or
// after a failed call (dirty), GoBGP is read again. s.mu is held.
func (s *Speaker) checkLocked(ctx context.Context, read *gateRead) (reinstalled bool, err error) {
	if err := s.usable(); err != nil {
		return false, err
	}
	var g gateRead
	if read != nil && !s.dirty {
		g = *read
	} else if g, err = s.readGate(ctx, s.cfg, !s.dirty); err != nil {
		return false, err
	}
	var reason string
	unsafe := false
	switch {
	case !g.first:
		unsafe = true
		reason = fmt.Sprintf("gate %s not first in global export chain %v (policy reload?)", s.cfg.policy, g.chain)
	case s.dirty:
		reason = "an earlier call failed midway"
	case !g.inPlace(s.cfg):
		reason = fmt.Sprintf("gobgpd replaced its policies (restart or reload): the fallback %s of its config holds the whole scope; restoring the releases", s.cfg.policy)
	default:
		s.userChain, s.userDefault = s.userPart(g.chain), g.def
		s.checkNotTo(ctx)
		return false, nil
	}
	if unsafe {
		s.opts.log.Error("gobgp gate: UNSAFE gobgpd reload or change: the gate was not first in the global export chain, so GoBGP exported without it; prefixes whose best path changed meanwhile may have reached neighbours (the re-install withdraws them). Reload gobgpd only with the fallback policy first in its config's export-policy-list (fibgated --print-fallback), and change its policies through its config file",
			"reason", reason)
	} else {
		s.opts.log.Warn("gobgp gate re-installing", "reason", reason)
	}
	start := time.Now()
	err = s.install(ctx, reason)
	if s.opts.hook != nil {
		s.opts.hook(GuardEvent{Reason: reason, Took: time.Since(start), Err: err, Unsafe: unsafe})
	}
	if err != nil {
		s.dirty = true
		return true, fmt.Errorf("check gate: re-install: %w", err)
	}
	return true, nil
}

// Guard runs Check every guard interval (WithGuardInterval, default
// 100 ms) until ctx ends or the Speaker closes, so a policy reload in
// gobgpd leaves it ungated for at most about one interval. Run it in its
// own goroutine after Bootstrap, in the sidecar mode always; gobgpd-ext,
// which owns its reload path, can call Check after a reload instead.
// Failed checks are logged and retried on the next tick; identical
// failures in a row (gobgpd down) are logged once, then summarised at
// growing intervals (logdamp), and a recovery is logged. It returns
// ctx.Err() or ErrClosed.
func (s *Speaker) Guard(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.guards.Add(1)
	s.mu.Unlock()
	defer s.guards.Done()
	wctx, stop := context.WithCancel(ctx)
	following := make(chan struct{})
	go func() { defer close(following); s.followSessions(wctx) }()
	defer func() { stop(); <-following }()
	t := time.NewTicker(s.opts.interval)
	defer t.Stop()
	failed := logdamp.New(s.opts.log, slog.LevelError, "gobgp gate check failed")
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return ErrClosed
		case <-t.C:
		}
		_, err := s.Check(ctx)
		switch {
		case err == nil:
			if failed.OK() {
				s.opts.log.Info("gobgp gate check recovered")
			}
		case !errors.Is(err, ErrClosed) && !errors.Is(err, ErrNotBootstrapped) && ctx.Err() == nil:
			failed.Fail(err)
		}
	}
}
