package gobgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/fibgate/fibgate/plugin/gobgp/internal/reexport"
)

// Bootstrap installs the gate in GoBGP and brings it in line with the
// Speaker's record:
//
//  1. the held sets (one per gated family; a GoBGP prefix set holds one
//     family) with every scope prefix held, and the HOLD community set;
//  2. the policy: statement 0 rejects HOLD paths, then one statement per
//     family rejects the held set. Nothing is accepted, so released
//     prefixes fall through to the user's export policies;
//  3. the global export chain: the policy first, the user's policies kept
//     after it (and the default action untouched). With
//     Config.FallbackPolicy the policy and the sets are the fallback's of
//     gobgpd's file (already first there), used as they are;
//  4. the releases of the record, and a withdraw for every release found
//     in GoBGP that the record does not have (left by an earlier
//     instance);
//  5. when the gate was not first in the chain (first install, a policy
//     reload without the fallback, a new configuration): a scrub, which sends a withdraw for
//     every prefix in scope that is not released and whose best path was
//     learned, since GoBGP may have exported it without the gate;
//  6. policies and sets of older configurations of this gate are deleted;
//  7. with Config.FallbackPolicy, where the gate is the fallback policy of
//     gobgpd's file, a sentinel set: a reload of gobgpd's policies deletes
//     it, and Check sees that the file's fallback (everything held) came
//     back.
//
// It refuses, before any of that, a GoBGP that sends ADD-PATH to a
// neighbour in a gated family (ErrAddPathSend), and one that another
// fibgate gates now (ErrAnotherGate: its heartbeat is replaced while
// Bootstrap watches it for a few seconds, which it does only when it finds
// one).
//
// Running it again is harmless: what is in place is left alone.
func (s *Speaker) Bootstrap(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.refuseAddPathSend(ctx); err != nil {
		return fmt.Errorf("gobgp speaker: %w", err)
	}
	if err := s.refuseOtherGate(ctx); err != nil {
		return err
	}
	if err := s.install(ctx, "bootstrap"); err != nil {
		return err
	}
	s.bootstrapped = true
	return nil
}

// ourSets is what Bootstrap reads of the defined sets.
type ourSets struct {
	held     map[string]map[netip.Prefix]lengths // current held sets by name
	others   []*api.DefinedSet                   // sets of older configurations
	hold     bool                                // the current HOLD community set exists
	holdList []string                            // its communities
	sentinel bool                                // the sentinel set exists
	keep     bool                                // the kept copies' community set exists
	nt       map[uint32]map[netip.Prefix]lengths // not-to sets' entries by AS (notto.go), their seed left out
	// rescoped: a sentinel of another scope exists: a Speaker rescoped
	// the sets at run time (Rescope) and this one starts with another
	// scope, so what GoBGP exported follows neither.
	rescoped bool
}

func (s *Speaker) readSets(ctx context.Context) (*ourSets, error) {
	o := &ourSets{held: make(map[string]map[netip.Prefix]lengths), nt: make(map[uint32]map[netip.Prefix]lengths)}
	var perr error
	// take files one prefix set's entries; each calls its argument for
	// every entry, with the entry's error if its text did not parse.
	take := func(name string, n int, each func(func(p netip.Prefix, iv interval, err error))) {
		if as, ok := s.cfg.ntAS(name, s.cfg.Name); ok {
			m := o.nt[as]
			if m == nil {
				m = make(map[netip.Prefix]lengths)
				o.nt[as] = m
			}
			each(func(p netip.Prefix, iv interval, err error) {
				if err == nil && p != nullPrefix(p.Addr().BitLen()) {
					m[p] = append(m[p], iv)
				}
			})
			return
		}
		switch {
		case name == s.cfg.setV4 || name == s.cfg.setV6:
			m := make(map[netip.Prefix]lengths, n)
			each(func(p netip.Prefix, iv interval, err error) {
				if err != nil {
					perr = fmt.Errorf("set %s: %w", name, err)
					return
				}
				m[p] = append(m[p], iv)
			})
			o.held[name] = m
		case strings.HasPrefix(name, s.cfg.Name+"-held-"):
			o.others = append(o.others, &api.DefinedSet{DefinedType: api.DefinedType_PREFIX, Name: name})
		}
	}
	// In process, GoBGP's sets are read as they are (setReader); through
	// the API, as text.
	read := false
	var err error
	if r, ok := s.b.(setReader); ok {
		read = r.readPrefixSets(func(name string, es []reexport.Entry) {
			take(name, len(es), func(f func(netip.Prefix, interval, error)) {
				for _, e := range es {
					f(e.Prefix, interval{e.MinLen, e.MaxLen}, nil)
				}
			})
		})
	}
	if !read {
		err = s.b.listDefinedSets(ctx, api.DefinedType_PREFIX, "", func(d *api.DefinedSet) {
			take(d.Name, len(d.Prefixes), func(f func(netip.Prefix, interval, error)) {
				for _, e := range d.Prefixes {
					p, err := netip.ParsePrefix(e.IpPrefix)
					if err != nil {
						err = fmt.Errorf("entry %q: %w", e.IpPrefix, err)
					}
					f(p, interval{uint8(e.MaskLengthMin), uint8(e.MaskLengthMax)}, err)
				}
			})
		})
	}
	if err != nil {
		return nil, fmt.Errorf("list prefix sets: %w", err)
	}
	if perr != nil {
		return nil, perr
	}
	err = s.b.listDefinedSets(ctx, api.DefinedType_COMMUNITY, "", func(d *api.DefinedSet) {
		switch {
		case d.Name == s.cfg.holdSet:
			o.hold = true
			for _, c := range d.List {
				o.holdList = append(o.holdList, communityOf(c))
			}
		case d.Name == s.cfg.keepSet:
			o.keep = true
		case d.Name == s.cfg.sentinel:
			o.sentinel = true
		case strings.HasPrefix(d.Name, s.cfg.Name+"-installed-"):
			o.others = append(o.others, &api.DefinedSet{DefinedType: api.DefinedType_COMMUNITY, Name: d.Name})
			o.rescoped = true
		case strings.HasPrefix(d.Name, s.cfg.Name+"-hold-"), strings.HasPrefix(d.Name, s.cfg.Name+"-keep-"):
			o.others = append(o.others, &api.DefinedSet{DefinedType: api.DefinedType_COMMUNITY, Name: d.Name})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list community sets: %w", err)
	}
	return o, nil
}

func (n *normalized) policyDef() *api.Policy {
	stmt := func(name string, c *api.Conditions) *api.Statement {
		return &api.Statement{Name: name, Conditions: c, Actions: &api.Actions{RouteAction: api.RouteAction_REJECT}}
	}
	notKept := &api.MatchSet{Type: api.MatchSet_INVERT, Name: n.keepSet}
	p := &api.Policy{Name: n.policy, Statements: []*api.Statement{
		stmt(n.stmtHold, &api.Conditions{CommunitySet: &api.MatchSet{Type: api.MatchSet_ANY, Name: n.holdSet}}),
	}}
	// Both families always, a family gated nowhere holding nullPrefix:
	// the statements stay the same whatever the scope (Rescope). A kept
	// copy (keep.go) passes the held sets, and leaves without its mark.
	// Each holds its unicast family only: GoBGP's prefix sets match by AFI
	// alone, so a VPN or labeled-unicast path inside the scope would be
	// held too, and for good (the gate releases unicast only).
	p.Statements = append(p.Statements,
		stmt(n.stmtV4, &api.Conditions{PrefixSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: n.setV4}, CommunitySet: notKept,
			AfiSafiIn: []*api.Family{familyV4}}),
		stmt(n.stmtV6, &api.Conditions{PrefixSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: n.setV6}, CommunitySet: notKept,
			AfiSafiIn: []*api.Family{familyV6}}),
		&api.Statement{Name: n.stmtKeep,
			Conditions: &api.Conditions{CommunitySet: &api.MatchSet{Type: api.MatchSet_ANY, Name: n.keepSet}},
			Actions: &api.Actions{
				RouteAction: api.RouteAction_NONE,
				Community:   &api.CommunityAction{Type: api.CommunityAction_REMOVE, Communities: []string{n.keepComm}},
			}})
	return p
}

// families lists both families with their held sets and scopes; a family
// gated nowhere holds nullPrefix.
func (s *Speaker) families() []struct {
	name   string
	scope  *scope
	family *api.Family
} {
	type fam = struct {
		name   string
		scope  *scope
		family *api.Family
	}
	return []fam{{s.cfg.setV4, s.cfg.v4, familyV4}, {s.cfg.setV6, s.cfg.v6, familyV6}}
}

func (s *Speaker) setName(p netip.Prefix) string {
	if p.Addr().Is4() {
		return s.cfg.setV4
	}
	return s.cfg.setV6
}

// prefixSet is the API form of an edit of the prefix set name: es.
func prefixSet(name string, es []setEntry) *api.DefinedSet {
	return &api.DefinedSet{DefinedType: api.DefinedType_PREFIX, Name: name, Prefixes: toAPIPrefixes(es)}
}

func toAPIPrefixes(es []setEntry) []*api.Prefix {
	out := make([]*api.Prefix, len(es))
	for i, e := range es {
		out[i] = &api.Prefix{IpPrefix: e.prefix.String(), MaskLengthMin: uint32(e.iv.lo), MaskLengthMax: uint32(e.iv.hi)}
	}
	return out
}

// entriesPerRequest bounds one AddDefinedSet/DeleteDefinedSet request
// (~25 bytes an entry).
const entriesPerRequest = 32768

// editSets adds entries to the held sets, then deletes entries: in this
// order every intermediate state holds back at least what both ends do.
func (s *Speaker) editSets(ctx context.Context, adds, dels []setEntry) error {
	if err := s.editNamedSets(ctx, s.byName(adds), false); err != nil {
		return fmt.Errorf("add to held set: %w", err)
	}
	if err := s.editNamedSets(ctx, s.byName(dels), true); err != nil {
		return fmt.Errorf("delete from held set: %w", err)
	}
	return nil
}

// byName groups set entries by the held set they belong in.
func (s *Speaker) byName(es []setEntry) map[string][]setEntry {
	m := make(map[string][]setEntry)
	for _, e := range es {
		m[s.setName(e.prefix)] = append(m[s.setName(e.prefix)], e)
	}
	return m
}

// editNamedSets adds (or deletes) entries to (from) prefix sets by name,
// in requests of at most entriesPerRequest entries.
func (s *Speaker) editNamedSets(ctx context.Context, byName map[string][]setEntry, del bool) error {
	for name, list := range byName {
		for len(list) > 0 {
			n := min(len(list), entriesPerRequest)
			d := prefixSet(name, list[:n])
			var err error
			if del {
				err = s.b.deleteDefinedSet(ctx, d, false)
			} else {
				err = s.b.addDefinedSet(ctx, d)
			}
			if err != nil {
				return fmt.Errorf("set %s: %d entries (first %v %d..%d): %w", name, n, list[0].prefix, list[0].iv.lo, list[0].iv.hi, err)
			}
			list = list[n:]
		}
	}
	return nil
}

// setReleased releases (or holds again) prefixes in the held sets.
func (s *Speaker) setReleased(ctx context.Context, ps []netip.Prefix, release bool) error {
	adds, dels := s.releaseEntries(ps, release)
	return s.editSets(ctx, adds, dels)
}

// releaseEntries are the held-set entries to add and delete to release
// (or hold again) ps.
func (s *Speaker) releaseEntries(ps []netip.Prefix, release bool) (adds, dels []setEntry) {
	for _, p := range ps {
		a, d := s.cfg.scopeOf(p).transition(p, release)
		adds, dels = append(adds, a...), append(dels, d...)
	}
	return adds, dels
}

// releaseEdits are setReleased's edits to release ps, for a backend that
// makes them and the re-export in one GoBGP operation (reExporter): the
// additions, then the deletions, one edit a set.
func (s *Speaker) releaseEdits(ps []netip.Prefix) []reexport.Edit {
	adds, dels := s.releaseEntries(ps, true)
	out := make([]reexport.Edit, 0, 4)
	for _, l := range []struct {
		es  []setEntry
		del bool
	}{{adds, false}, {dels, true}} {
		for name, list := range s.byName(l.es) {
			e := reexport.Edit{Name: name, Entries: make([]reexport.Entry, len(list)), Delete: l.del}
			for i, x := range list {
				e.Entries[i] = reexport.Entry{Prefix: x.prefix, MinLen: x.iv.lo, MaxLen: x.iv.hi}
			}
			out = append(out, e)
		}
	}
	return out
}

// diffEntries returns the entries to add and delete to turn from into to
// at p.
func diffEntries(p netip.Prefix, from, to lengths) (adds, dels []setEntry) {
	for _, iv := range to.minus(from) {
		adds = append(adds, setEntry{p, iv})
	}
	for _, iv := range from.minus(to) {
		dels = append(dels, setEntry{p, iv})
	}
	return adds, dels
}

// wanted says whether the record wants p released, in the held set or
// on a copy (copy.go).
func (s *Speaker) wanted(p netip.Prefix) bool {
	st := s.rec.get(p)
	return (st.transit || st.originated) && s.cfg.scopeOf(p).contains(p)
}

// inSet says whether the record wants p released in the held set: wanted,
// and not out on a copy of its learned path, whose learned paths stay held.
func (s *Speaker) inSet(p netip.Prefix) bool {
	st := s.rec.get(p)
	return s.wanted(p) && !st.onCopy()
}

// install is Bootstrap's body, also run by Check; s.mu is held.
func (s *Speaker) install(ctx context.Context, reason string) error {
	start := time.Now()
	a, err := s.b.exportAssignment(ctx)
	if err != nil {
		return fmt.Errorf("install gate: read global export assignment: %w", err)
	}
	var chain []string
	for _, p := range a.Policies {
		chain = append(chain, p.Name)
	}
	// chainOK: the gate's policy is first in the chain. inPlace: and,
	// when the gate lives in the fallback of gobgpd's file, its sets are
	// still the Speaker's (the sentinel survived: no reload since).
	chainOK := len(chain) > 0 && chain[0] == s.cfg.policy
	sets, err := s.readSets(ctx)
	if err != nil {
		return fmt.Errorf("install gate: %w", err)
	}
	inPlace := chainOK && (sets.sentinel || !s.cfg.inFallback()) && !sets.rescoped
	// Sets of another scope: what they hold outside this one has its
	// export re-run once they no longer hold it (HOLD path in now, while
	// still held; out after the sets changed).
	var rerun []*api.Path
	if sets.rescoped {
		before, after, err := s.heldOutside(ctx, sets)
		if err != nil {
			return fmt.Errorf("install gate: %w", err)
		}
		if err := s.b.sendPaths(ctx, before); err != nil {
			return fmt.Errorf("install gate: add hold paths: %w", err)
		}
		rerun = after
	}

	// 1. Sets. A missing held set starts as the skeleton (everything in
	// scope held); if the gate is not in place, an existing one is first
	// topped up with the skeleton so that assigning the policy can only
	// hold back more, never less.
	for _, f := range s.families() {
		cur, ok := sets.held[f.name]
		sk := f.scope.skeleton()
		if !ok {
			cur = make(map[netip.Prefix]lengths)
		} else if inPlace {
			continue
		} else {
			sk = slices.DeleteFunc(sk, func(e setEntry) bool { return slices.Contains(cur[e.prefix], e.iv) })
		}
		if len(sk) > 0 || !ok {
			if err := s.editSets(ctx, sk, nil); err != nil {
				return fmt.Errorf("install gate: %w", err)
			}
		}
		for _, e := range sk {
			cur[e.prefix] = append(cur[e.prefix], e.iv)
		}
		sets.held[f.name] = cur
	}
	if !sets.hold || !slices.Contains(sets.holdList, s.cfg.HoldCommunity) {
		if sets.hold {
			s.opts.log.Error("gobgp gate: gobgpd's fallback rejects other HOLD communities than the gate's; adding it until gobgpd reloads: render the fallback again (fibgated --print-fallback) into gobgpd's config",
				"set", s.cfg.holdSet, "has", sets.holdList, "want", s.cfg.HoldCommunity)
		}
		d := &api.DefinedSet{DefinedType: api.DefinedType_COMMUNITY, Name: s.cfg.holdSet, List: []string{s.cfg.HoldCommunity}}
		if err := s.b.addDefinedSet(ctx, d); err != nil {
			return fmt.Errorf("install gate: add community set %s: %w", s.cfg.holdSet, err)
		}
	}

	// 2. Policy, 3. assignment.
	var have *api.Policy
	var stale []string
	err = s.b.listPolicies(ctx, func(p *api.Policy) {
		switch {
		case p.Name == s.cfg.policy:
			have = p
		case strings.HasPrefix(p.Name, s.cfg.gatePrefx):
			stale = append(stale, p.Name)
		}
	})
	if err != nil {
		return fmt.Errorf("install gate: list policies: %w", err)
	}
	// The kept copies' set is the gate's to add, unless gobgpd's file
	// holds the gate and defines it there (a fallback from before kept
	// copies defines none, and wants none).
	if !sets.keep && (!s.cfg.inFallback() || have == nil) {
		d := &api.DefinedSet{DefinedType: api.DefinedType_COMMUNITY, Name: s.cfg.keepSet, List: []string{s.cfg.keepComm}}
		if err := s.b.addDefinedSet(ctx, d); err != nil {
			return fmt.Errorf("install gate: add community set %s: %w", s.cfg.keepSet, err)
		}
		sets.keep = true
	}
	switch {
	case have == nil:
		if s.cfg.inFallback() {
			s.opts.log.Error("gobgp gate: the fallback policy is not in gobgpd's config; the gate adds it over the API, so every policy reload of gobgpd drops it and may leak prefixes until the guard puts it back: add the output of fibgated --print-fallback to gobgpd's config, first in the global export-policy-list",
				"policy", s.cfg.policy)
		}
		if err := s.b.addPolicy(ctx, s.cfg.policyDef()); err != nil {
			return fmt.Errorf("install gate: add policy %s: %w", s.cfg.policy, err)
		}
		s.keeps = true
	case s.cfg.inFallback():
		keeps, err := s.cfg.sameAsFallback(have)
		if err != nil {
			return fmt.Errorf("install gate: %w", err)
		}
		s.setKeeps(keeps && sets.keep)
	default:
		keeps, err := s.cfg.sameAsFallback(have)
		s.setKeeps(err == nil && keeps && sets.keep)
	}
	if have != nil && !s.cfg.holdsUnicastOnly(have) {
		s.opts.log.Warn("gobgpd holds the gate's policy as an older fibgate made it: its held sets also hold VPN and labeled-unicast paths inside the gated scope, which the gate never releases; render the fallback again with fibgated --print-fallback into gobgpd's config (or restart gobgpd, if its config has none) and reload gobgpd",
			"policy", s.cfg.policy)
	}
	if !chainOK {
		// The chain was read before the sets and the policy were put
		// right (milliseconds). A change in progress (SetPolicies, then
		// the user's assignment: gobgpd's own reload is two steps) may
		// have assigned the user's chain since; read it again, so the gate
		// goes in front of the chain that is there now, not of the one
		// that was (TestGuardReinstallsGateAfterPolicyReloadBeforeAnythingLeaks
		// lost the user's policy so under load).
		if a, err = s.b.exportAssignment(ctx); err != nil {
			return fmt.Errorf("install gate: read global export assignment: %w", err)
		}
		chain = chain[:0]
		for _, p := range a.Policies {
			chain = append(chain, p.Name)
		}
	}
	user := s.userPart(chain)
	def := api.RouteAction_NONE // leave it
	if !chainOK {
		var defined []string
		if err := s.b.listPolicies(ctx, func(p *api.Policy) { defined = append(defined, p.Name) }); err != nil {
			return fmt.Errorf("install gate: list policies: %w", err)
		}
		if u, d, ok := s.restoreUser(user, a.DefaultAction, defined); ok {
			s.opts.log.Warn("gobgp gate restores the user's export chain dropped by a policy reload",
				"chain", u, "default", d)
			user, def = u, d
		}
	}
	want := append([]string{s.cfg.policy}, user...)
	if !slices.Equal(chain, want) || def != api.RouteAction_NONE {
		if err := s.b.setExportAssignment(ctx, want, def); err != nil {
			return fmt.Errorf("install gate: set global export chain %v: %w", want, err)
		}
	}
	s.userChain = user
	if def != api.RouteAction_NONE {
		s.userDefault = def
	} else {
		s.userDefault = a.DefaultAction
	}
	gated := time.Since(start)

	// Not-to sets, before anything is released (notto.go), with the
	// memberships of what the first Bootstrap adopts.
	adopted := s.adoptReleases(sets)
	if err := s.installNotTo(ctx, have, sets); err != nil {
		return fmt.Errorf("install gate: %w", err)
	}

	// 4. Releases.
	if err := s.reconcile(ctx, sets, !inPlace, adopted); err != nil {
		return fmt.Errorf("install gate: %w", err)
	}
	if err := s.b.sendPaths(ctx, rerun); err != nil {
		return fmt.Errorf("install gate: re-run export of %d prefixes out of scope: %w", len(rerun), err)
	}
	// 5. Scrub: only when the chain was wrong, or the sets were of another
	// scope (prefixes outside it went out ungated). A reload that brought
	// the file's fallback back held the whole scope, so nothing leaked.
	scrubbed := 0
	if !chainOK || sets.rescoped {
		if scrubbed, err = s.scrub(ctx); err != nil {
			return fmt.Errorf("install gate: scrub: %w", err)
		}
	}
	// 6. Older configurations.
	for _, name := range stale {
		if err := s.b.deletePolicy(ctx, name); err != nil {
			return fmt.Errorf("install gate: delete old policy %s: %w", name, err)
		}
	}
	for _, d := range sets.others {
		if err := s.b.deleteDefinedSet(ctx, d, true); err != nil {
			return fmt.Errorf("install gate: delete old set %s: %w", d.Name, err)
		}
	}
	// 7. The sentinel, last: while it is there, the sets are ours. A
	// rescoped gate has one in either mode: it names the scope.
	if (s.cfg.inFallback() || s.rescopedOnce) && !sets.sentinel {
		d := &api.DefinedSet{DefinedType: api.DefinedType_COMMUNITY, Name: s.cfg.sentinel, List: []string{s.cfg.HoldCommunity}}
		if err := s.b.addDefinedSet(ctx, d); err != nil {
			return fmt.Errorf("install gate: add sentinel set %s: %w", s.cfg.sentinel, err)
		}
	}
	s.dirty = false
	release := "toggle"
	if _, ok := s.b.(reExporter); ok {
		release = "reexport" // of the learned paths released by toggle otherwise
	}
	if s.cfg.ReleaseByCopy {
		release = "copy"
	}
	s.opts.log.Info("gobgp gate installed", "reason", reason, "was_in_place", inPlace,
		"chain", want, "gated_after", gated, "scrubbed", scrubbed, "release", release, "took", time.Since(start))
	return nil
}

// userPart returns the chain without the gate's policies (of any
// configuration) and the fallback policy.
func (s *Speaker) userPart(chain []string) []string {
	var user []string
	for _, n := range chain {
		if !strings.HasPrefix(n, s.cfg.gatePrefx) && n != s.cfg.FallbackPolicy {
			user = append(user, n)
		}
	}
	return user
}

// restoreUser undoes what SetPolicies does to the user's export chain
// because the gate is in it. SetPolicies keeps the global export chain only
// if every policy in it is still defined after the reload; the gate's
// policy never is, so the whole chain is dropped and the default action
// reset to accept: without fibgate the user's policies and default would
// have survived. When the chain is now empty and accepting, and the last
// one seen with the gate in place was not, the user's part of that one
// (policies still defined) and its default are put back. A reload that
// changes the file's own global apply-policy assigns it after SetPolicies,
// and then the chain is not empty-and-accepting, or was meant to be.
func (s *Speaker) restoreUser(user []string, def api.RouteAction, defined []string) ([]string, api.RouteAction, bool) {
	if len(user) > 0 || def != api.RouteAction_ACCEPT || s.userChain == nil && s.userDefault != api.RouteAction_REJECT {
		return nil, 0, false
	}
	var keep []string
	for _, n := range s.userChain {
		if slices.Contains(defined, n) {
			keep = append(keep, n)
		}
	}
	if len(keep) == 0 && s.userDefault != api.RouteAction_REJECT {
		return nil, 0, false
	}
	return keep, s.userDefault, true
}

// sameAsFallback checks that the policy found in GoBGP under the fallback's
// name is the gate's: its statements reject the HOLD community set and the
// held sets by the names FallbackTOML writes. A fallback rendered by an
// older fibgate (without the HOLD statement) or for another scope would
// let HOLD paths out or hold the wrong prefixes, so the gate refuses it
// and gobgpd stays closed (the fallback holds the scope) until the file is
// rendered again. keeps reports whether it lets kept copies out (keep.go):
// a fallback rendered before they existed holds as well, and the gate then
// takes back a prefix whose attributes change instead of keeping it.
func (n *normalized) sameAsFallback(have *api.Policy) (keeps bool, err error) {
	want := n.policyDef()
	// The not-to statements (notto.go) are the Speaker's, appended over
	// the API: not the file's.
	have = &api.Policy{Name: have.Name, Statements: slices.DeleteFunc(slices.Clone(have.Statements), func(st *api.Statement) bool {
		_, nt := n.ntAS(st.Name, n.policy)
		return nt
	})}
	msg := fmt.Errorf("gobgpd's policy %s is not the fallback these settings render (an older fibgate's, or another scope's): render it again with fibgated --print-fallback into gobgpd's config and reload gobgpd; until then gobgpd holds every gated prefix", n.policy)
	keeps = len(have.Statements) == len(want.Statements)
	if !keeps {
		want.Statements = want.Statements[:len(want.Statements)-1] // before kept copies
	}
	if len(have.Statements) != len(want.Statements) {
		return false, msg
	}
	for i, w := range want.Statements {
		h := have.Statements[i]
		type conds struct {
			prefix, comm string
			commType     api.MatchSet_Type
		}
		set := func(c *api.Conditions) conds {
			if c == nil {
				return conds{}
			}
			return conds{c.GetPrefixSet().GetName(), c.GetCommunitySet().GetName(), c.GetCommunitySet().GetType()}
		}
		hc, wc := set(h.Conditions), set(w.Conditions)
		if !keeps && (w.Name == n.stmtV4 || w.Name == n.stmtV6) {
			wc.comm, wc.commType = "", 0
		}
		if h.Name != w.Name || hc != wc || h.GetActions().GetRouteAction() != w.GetActions().GetRouteAction() {
			return false, msg
		}
		if w.Name == n.stmtKeep {
			c := h.GetActions().GetCommunity()
			if c.GetType() != api.CommunityAction_REMOVE || len(c.GetCommunities()) != 1 || communityOf(c.GetCommunities()[0]) != n.keepComm {
				return false, msg
			}
		}
	}
	return keeps, nil
}

// holdsUnicastOnly says whether the held sets' statements of a fallback
// found in GoBGP name their unicast family (policyDef): GoBGP's prefix
// sets match by AFI alone, so one rendered before they did (fibgate before
// 2026-12-06) also holds VPN and labeled-unicast paths in the scope. It
// holds what it must either way, so sameAsFallback accepts it.
func (n *normalized) holdsUnicastOnly(have *api.Policy) bool {
	for _, st := range have.GetStatements() {
		if st.GetName() != n.stmtV4 && st.GetName() != n.stmtV6 {
			continue
		}
		if fs := st.GetConditions().GetAfiSafiIn(); len(fs) != 1 || fs[0].GetSafi() != api.Family_SAFI_UNICAST {
			return false
		}
	}
	return true
}

// communityOf reads a community back from how GoBGP lists it, as the
// regular expression it matches with: "^65534:4711$".
func communityOf(expr string) string {
	return strings.TrimSuffix(strings.TrimPrefix(expr, "^"), "$")
}
