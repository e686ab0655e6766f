package gobgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// ErrNotRescopable: Rescope was given a Config that differs from the
// Speaker's in more than its scope.
var ErrNotRescopable = errors.New("only the scope can change at run time")

// Rescope changes what the gate holds back while GoBGP runs, without a
// session reset (issue 14): c is the Speaker's Config with another Scope
// or NoScope. It edits the gate's sets in place, under the names in use
// (also those of gobgpd's fallback policy), so GoBGP's export chain never
// changes:
//
//   - a prefix that enters the scope and is exported now (its best path
//     was learned and nothing held it) counts as released: it stays out,
//     and the gate takes it back if it is not confirmed (the tracker, told
//     of the new policy after Rescope, withdraws it);
//   - a prefix that leaves the scope while held gets its export re-run
//     after the sets changed, so neighbours receive it now (a HOLD path
//     added while it is still held, deleted once it is not);
//   - a released prefix that leaves the scope stays out, now ungated;
//   - everything else is left alone: nothing confirmed is withdrawn, and
//     nothing held is let out by the change.
//
// Sets are edited adds first, then deletes, so every intermediate state
// holds back at least what the old and the new scope both hold. A policy
// reload of gobgpd (fibgated's case) puts back the file's fallback, which
// holds the scope it was rendered for, until the guard restores the gate:
// render it again (fibgated --print-fallback) when the scope changes for
// good. On failure the Speaker keeps the new scope and is marked for
// Check to reconcile.
func (s *Speaker) Rescope(ctx context.Context, c Config) error {
	n, err := c.normalize()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	old := s.cfg
	cmp := n.Config
	cmp.Scope, cmp.NoScope = old.Scope, old.NoScope
	if fmt.Sprint(cmp) != fmt.Sprint(old.Config) {
		return fmt.Errorf("gobgp speaker: rescope: %w", ErrNotRescopable)
	}
	if n.hash == old.hash {
		return nil
	}
	start := time.Now()
	// Kept copies go first: a prefix leaving the scope must not stay out
	// on one (keep.go); those staying are released again once confirmed.
	// Releases by copy stay (copy.go); those leaving go below, once
	// their learned paths are ungated.
	if err := s.dropCopies(ctx, false); err != nil {
		s.dirty = true
		return fmt.Errorf("gobgp speaker: rescope: %w", err)
	}
	// Not-to sets in complement form encode the scope: back to the member
	// form first (Check weighs them again later; ntform.go).
	if err := s.toMemberForms(ctx); err != nil {
		return fmt.Errorf("gobgp speaker: rescope: %w", err)
	}
	// Keep the names in use: the sets and the policy are edited, not
	// replaced.
	n.policy, n.gatePrefx, n.stmtHold, n.stmtV4, n.stmtV6 = old.policy, old.gatePrefx, old.stmtHold, old.stmtV4, old.stmtV6
	n.holdSet, n.keepSet, n.stmtKeep, n.setV4, n.setV6 = old.holdSet, old.keepSet, old.stmtKeep, old.setV4, old.setV6
	// The sentinel names the scope (n's own): a Speaker that starts later
	// with another scope sees one not its own and scrubs (install.go).

	var enter, leave []netip.Prefix
	for _, fam := range []*api.Family{familyV4, familyV6} {
		var perr error
		err := s.b.listGlobal(ctx, fam, func(d *api.Destination) {
			p, ok, err := learnedBest(d, old.hold)
			if err != nil {
				perr = err
			}
			if !ok {
				return
			}
			was, will := old.scopeOf(p).contains(p), n.scopeOf(p).contains(p)
			switch {
			case !was && will:
				enter = append(enter, p)
			case was && !will && !s.wanted(p):
				leave = append(leave, p)
			}
		})
		if err := errors.Join(err, perr); err != nil {
			return fmt.Errorf("gobgp speaker: rescope: list global rib: %w", err)
		}
	}
	sets, err := s.readSets(ctx)
	if err != nil {
		return fmt.Errorf("gobgp speaker: rescope: %w", err)
	}

	// The record under the new scope: what is exported and enters counts
	// as released; a transit release that leaves is ungated now.
	for _, p := range enter {
		st := s.rec.get(p)
		st.transit = true
		s.rec.set(p, st)
	}
	// Entering prefixes are out on their current paths, as if released:
	// they join the not-to sets of those paths' ASes (notto.go), so a
	// later best-path change does not reach those ASes' neighbours in its
	// fence window.
	ntAdd, err := s.enteringNotTo(ctx, enter)
	if err != nil {
		return fmt.Errorf("gobgp speaker: rescope: %w", err)
	}
	var ungated []netip.Prefix // leave their not-to sets (notto.go)
	var uncopied []*api.Path   // copies of prefixes leaving the scope, deleted once ungated
	for p, st := range s.rec.all() {
		if st.transit && !n.scopeOf(p).contains(p) {
			ungated = append(ungated, p)
			if st.kept {
				c, err := s.pb.holdPath(p, true) // deletes our local path: the copy
				if err != nil {
					return fmt.Errorf("gobgp speaker: rescope: %w", err)
				}
				uncopied = append(uncopied, c)
				st.kept = false
			}
			st.transit = false
			s.rec.set(p, st)
		}
	}
	// What each held set must hold now, against what it holds.
	var adds, dels []setEntry
	for _, f := range []struct {
		name     string
		old, new *scope
	}{{old.setV4, old.v4, n.v4}, {old.setV6, old.v6, n.v6}} {
		cur := sets.held[f.name]
		nodes := make(map[netip.Prefix]bool, len(cur))
		for p := range cur {
			nodes[p] = true
		}
		for p := range f.new.nodes {
			nodes[p] = true
		}
		for p := range s.rec.all() {
			if (p.Addr().Is4() && f.new.bits == 32) || (p.Addr().Is6() && f.new.bits == 128) {
				nodes[p] = true
			}
		}
		for p := range nodes {
			st := s.rec.get(p)
			want := (st.transit && !st.kept || st.originated) && f.new.contains(p)
			a, d := diffEntries(p, cur[p], f.new.entries(p, want))
			adds, dels = append(adds, a...), append(dels, d...)
		}
	}
	slices.SortFunc(adds, compareEntries)
	slices.SortFunc(dels, compareEntries)

	var before, after []*api.Path
	for _, p := range leave {
		a, err1 := s.pb.holdBeside(p, false)
		b, err2 := s.pb.holdBeside(p, true)
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("gobgp speaker: rescope: %w", err)
		}
		before, after = append(before, a), append(after, b)
		st := s.rec.get(p)
		st.held = true
		s.rec.set(p, st)
	}
	s.cfg = n
	s.scoped.Store(n)
	fail := func(what string, err error) error {
		s.dirty = true
		return fmt.Errorf("gobgp speaker: rescope: %s: %w", what, err)
	}
	if err := s.b.sendPaths(ctx, before); err != nil {
		return fail("add hold paths", err)
	}
	if err := s.editNotTo(ctx, ntAdd, false); err != nil {
		return fail("join the not-to sets", err)
	}
	if err := s.editSets(ctx, adds, dels); err != nil {
		return fail("edit held sets", err)
	}
	if err := s.clearNotTo(ctx, ungated); err != nil {
		return fail("leave the not-to sets", err)
	}
	if err := s.b.sendPaths(ctx, after); err != nil {
		return fail("re-run export of prefixes leaving the scope", err)
	}
	// Their learned paths go out in the copies' place: an update.
	if err := s.b.sendPaths(ctx, uncopied); err != nil {
		return fail("delete the copies of prefixes leaving the scope", err)
	}
	for _, c := range uncopied {
		if p, ok := pathPrefix(c); ok {
			s.cp.del(p)
		}
	}
	for p, st := range s.rec.all() {
		st.released, st.held = s.inSet(p), false
		s.rec.set(p, st)
	}
	s.rescopedOnce = true
	if err := s.b.addDefinedSet(ctx, &api.DefinedSet{DefinedType: api.DefinedType_COMMUNITY, Name: n.sentinel, List: []string{n.HoldCommunity}}); err != nil {
		return fail("add sentinel set "+n.sentinel, err)
	}
	if sets.sentinel || !old.inFallback() {
		err := s.b.deleteDefinedSet(ctx, &api.DefinedSet{DefinedType: api.DefinedType_COMMUNITY, Name: old.sentinel}, true)
		if err != nil && old.inFallback() {
			return fail("delete sentinel set "+old.sentinel, err)
		}
	}
	s.opts.log.Info("gobgp gate rescoped", "scope", c.Scope, "no_scope", c.NoScope, "entering_exported", len(enter), "leaving_held", len(leave),
		"set_added", len(adds), "set_deleted", len(dels), "took", time.Since(start))
	return nil
}

// Config returns the Speaker's configuration as it is now (Rescope
// changes its scope), for what renders the fallback policy again.
func (s *Speaker) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.Config
}

// learnedBest returns the prefix of a destination whose best path was
// learned from a neighbour (not a HOLD path, not a local one): the paths
// GoBGP exports unless the gate holds them.
func learnedBest(d *api.Destination, hold uint32) (netip.Prefix, bool, error) {
	var best *api.Path
	for _, p := range d.Paths {
		if p.Best {
			best = p
			break
		}
	}
	if best == nil {
		return netip.Prefix{}, false, nil
	}
	if !learned(best) {
		return netip.Prefix{}, false, nil // local
	}
	_, comms, err := pathAttrs(best)
	if err != nil {
		return netip.Prefix{}, false, fmt.Errorf("destination %s: %w", d.Prefix, err)
	}
	if slices.Contains(comms, hold) {
		return netip.Prefix{}, false, nil
	}
	p, err := netip.ParsePrefix(d.Prefix)
	if err != nil {
		return netip.Prefix{}, false, fmt.Errorf("destination %q: %w", d.Prefix, err)
	}
	return p.Masked(), true, nil
}

// heldOutside finds the prefixes with a learned best path that the sets
// as read hold although they are outside the scope (sets of another
// scope), and returns the HOLD paths that re-run their export: to add
// while they are still held, and to delete once the sets are this scope's.
func (s *Speaker) heldOutside(ctx context.Context, sets *ourSets) (before, after []*api.Path, err error) {
	for _, fam := range []*api.Family{familyV4, familyV6} {
		var perr error
		err := s.b.listGlobal(ctx, fam, func(d *api.Destination) {
			p, ok, err := learnedBest(d, s.cfg.hold)
			if err != nil {
				perr = err
			}
			if !ok || s.cfg.scopeOf(p).contains(p) || !heldBy(sets.held[s.setName(p)], p) {
				return
			}
			a, err1 := s.pb.holdBeside(p, false)
			b, err2 := s.pb.holdBeside(p, true)
			if err := errors.Join(err1, err2); err != nil {
				perr = err
				return
			}
			before, after = append(before, a), append(after, b)
		})
		if err := errors.Join(err, perr); err != nil {
			return nil, nil, fmt.Errorf("list global rib: %w", err)
		}
	}
	return before, after, nil
}
