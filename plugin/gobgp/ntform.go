package gobgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/fibgate/fibgate/plugin/internal/pkey"
)

// The complement form of a not-to set.
//
// A not-to set in member form (notto.go) holds every out prefix whose path
// carries its AS X. On a fabric leaf, whose upstream spines share an AS,
// that is nearly every prefix: at a full table a million entries, each a
// critbit node, a parsed net.IPNet and a Prefix in GoBGP's heap (about 240
// MB), one more lookup in a million-entry trie for every export, and one
// more set edit for every release.
//
// The same set in complement form holds the scope, encoded as the held set
// encodes it (scope.entries: GoBGP looks up the longest stored prefix and
// reads only its ranges), with a carve-out for each out prefix whose path
// does *not* carry X. It matches a prefix in scope unless it is carved out,
// so the statement stays as it is (the set, X's neighbour set, reject). What
// it matches that the member form does not are prefixes in scope that are
// not out, which the held set rejects already. For a single upstream AS the
// set is the scope's few prefixes.
//
// The record's bits keep the member form's meaning in both forms; only what
// GoBGP holds differs. The invariant, for every out prefix p (released in
// the held set, or out on a copy) and every AS X in complement form: p is
// carved out of X's set exactly when its bit for X is clear. A prefix that
// is not out may keep a stale carve-out: the held set holds it anyway.
//
// When the edits happen mirrors the member form's, since GoBGP judges the
// previous best path by today's policy to decide whether a neighbour was
// sent it (and so needs a withdrawal): a prefix going out gets its carve-out
// before the held set lets it out (apply's phase A), a prefix staying out
// gets it when its bit changes, and a prefix taken back loses it only once
// its withdrawal went out (after phase C).
//
// Which form an AS's set is in is weighed in each Check, from counts the
// record keeps (record.lacking): an AS with at least minComplement members
// is switched to complement form when its carve-outs would be fewer than
// half its members, and back when its members fall below half its
// carve-outs. A switch adds the new form's entries in one go and then
// deletes the old form's that the new one lacks: a set holding both
// rejects at least what either does.
// Rescope and a re-install (installNotTo) bring every set back to the
// member form first; Check weighs them again afterwards.

// defaultMinComplement is the members an AS needs before its set may take
// the complement form: below it the member form is small anyway.
const defaultMinComplement = 4096

// out is prefixState.out for p, false without a record. s.mu is held.
func (s *Speaker) out(p netip.Prefix) bool {
	return s.rec.get(p).out()
}

// complementEntries is what AS as's set of a family holds in complement
// form: the scope's nodes and the carve-outs, as the held set encodes
// scope and releases.
func complementEntries(sc *scope, carved map[pkey.Key]struct{}, v4 bool) []setEntry {
	var out []setEntry
	for p := range sc.nodes {
		_, c := carved[pkey.Of(p)]
		for _, iv := range sc.entries(p, c) {
			out = append(out, setEntry{p, iv})
		}
	}
	for k := range carved {
		p := k.Prefix()
		if p.Addr().Is4() != v4 || sc.isNode(p) {
			continue
		}
		for _, iv := range sc.entries(p, true) {
			out = append(out, setEntry{p, iv})
		}
	}
	slices.SortFunc(out, compareEntries)
	return out
}

// carve brings the complement-form sets in line for prefixes ps, whose
// being out is as outOf says (the state an apply is heading for, or the
// record's), and whose bits are the record's. Carve-outs are added before
// they are deleted. s.mu is held.
func (s *Speaker) carve(ctx context.Context, ps []netip.Prefix, outOf func(netip.Prefix) bool) error {
	x := s.nt.idx.Load()
	if len(s.nt.comp) == 0 || len(ps) == 0 || x == nil {
		return nil
	}
	adds, dels := make(map[string][]setEntry), make(map[string][]setEntry)
	type change struct {
		carved map[pkey.Key]struct{}
		k      pkey.Key
		in     bool
	}
	var changes []change
	for as, carved := range s.nt.comp {
		b, ok := x.bit[as]
		if !ok {
			continue
		}
		for _, p := range ps {
			want := outOf(p) && s.rec.get(p).notTo&(1<<b) == 0
			k := pkey.Of(p)
			if _, have := carved[k]; have == want {
				continue
			}
			a, d := s.cfg.scopeOf(p).transition(p, want)
			name := s.cfg.ntSet(as, p.Addr().Is4())
			adds[name], dels[name] = append(adds[name], a...), append(dels[name], d...)
			changes = append(changes, change{carved, k, want})
		}
	}
	if len(changes) == 0 {
		return nil
	}
	if err := s.editNamedSets(ctx, adds, false); err != nil {
		return fmt.Errorf("not-to sets: carve out: %w", err)
	}
	if err := s.editNamedSets(ctx, dels, true); err != nil {
		return fmt.Errorf("not-to sets: carve out: %w", err)
	}
	for _, c := range changes {
		if c.in {
			c.carved[c.k] = struct{}{}
		} else {
			delete(c.carved, c.k)
		}
	}
	s.countEntries()
	return nil
}

// weighForms switches ASes' sets between the forms where the other is
// clearly smaller (Check's part), weighed by the record's counts; only a
// switch to the complement form walks the record, for its carve-outs.
// s.mu is held.
func (s *Speaker) weighForms(ctx context.Context) error {
	x := s.nt.idx.Load()
	if x == nil || s.cfg.NoNotTo {
		return nil
	}
	for b, as := range x.ases {
		members := s.nt.members[b]
		if carved := s.nt.comp[as]; carved != nil {
			if members*2 < int64(len(carved)) || members < s.nt.minComplement/2 {
				if err := s.toMemberForm(ctx, as, b); err != nil {
					return err
				}
			}
			continue
		}
		if !s.nt.stmts[as] || members < s.nt.minComplement || s.rec.lacking(b)*2 >= members {
			continue
		}
		// The carve-outs: out prefixes whose bit is clear.
		carved := make(map[pkey.Key]struct{}, s.rec.lacking(b))
		for p, st := range s.rec.all() {
			if st.out() && st.notTo&(1<<b) == 0 {
				carved[pkey.Of(p)] = struct{}{}
			}
		}
		if err := s.toComplementForm(ctx, as, b, carved); err != nil {
			return err
		}
	}
	return nil
}

// toComplementForm switches AS as's sets (bit b) to complement form with
// carve-outs carved. s.mu is held.
func (s *Speaker) toComplementForm(ctx context.Context, as uint32, b int, carved map[pkey.Key]struct{}) error {
	adds, dels := make(map[string][]setEntry), make(map[string][]setEntry)
	keep := make(map[setEntry]bool)
	for _, f := range s.families() {
		v4 := f.family == familyV4
		comp := complementEntries(f.scope, carved, v4)
		adds[s.cfg.ntSet(as, v4)] = comp
		for _, e := range comp {
			keep[e] = true
		}
	}
	for p, st := range s.rec.all() {
		if e := exactEntry(p); st.notTo&(1<<b) != 0 && !keep[e] {
			name := s.cfg.ntSet(as, p.Addr().Is4())
			dels[name] = append(dels[name], e)
		}
	}
	if err := s.switchForm(ctx, adds, dels); err != nil {
		return fmt.Errorf("not-to sets: AS %d to complement form: %w", as, err)
	}
	s.nt.comp[as] = carved
	s.countEntries()
	s.opts.log.Info("not-to set in complement form", "as", as, "members", s.nt.members[b], "carve_outs", len(carved))
	return nil
}

// toMemberForm switches AS as's sets (bit b) back to member form. s.mu is
// held.
func (s *Speaker) toMemberForm(ctx context.Context, as uint32, b int) error {
	carved := s.nt.comp[as]
	adds, dels := make(map[string][]setEntry), make(map[string][]setEntry)
	for p, st := range s.rec.all() {
		if st.notTo&(1<<b) != 0 {
			name := s.cfg.ntSet(as, p.Addr().Is4())
			adds[name] = append(adds[name], exactEntry(p))
		}
	}
	for _, f := range s.families() {
		v4 := f.family == familyV4
		name := s.cfg.ntSet(as, v4)
		for _, e := range complementEntries(f.scope, carved, v4) {
			if e.prefix == nullPrefix(f.scope.bits) || e == exactEntry(e.prefix) && s.rec.get(e.prefix).notTo&(1<<b) != 0 {
				continue // the seed, or a member now
			}
			dels[name] = append(dels[name], e)
		}
	}
	if err := s.switchForm(ctx, adds, dels); err != nil {
		return fmt.Errorf("not-to sets: AS %d to member form: %w", as, err)
	}
	delete(s.nt.comp, as)
	s.countEntries()
	s.opts.log.Info("not-to set in member form", "as", as, "members", s.nt.members[b], "carve_outs", len(carved))
	return nil
}

// toMemberForms brings every set back to the member form (before Rescope
// edits the scope the complement form encodes). s.mu is held.
func (s *Speaker) toMemberForms(ctx context.Context) error {
	x := s.nt.idx.Load()
	if x == nil {
		return nil
	}
	for b, as := range x.ases {
		if s.nt.comp[as] != nil {
			if err := s.toMemberForm(ctx, as, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// switchForm adds the new form's entries, then deletes the old form's. A
// failure leaves the sets holding both (or more of the old): Check's
// re-install (the Speaker is marked dirty) brings them to the member form.
func (s *Speaker) switchForm(ctx context.Context, adds, dels map[string][]setEntry) error {
	if err := s.editNamedSets(ctx, adds, false); err != nil {
		s.dirty = true
		return err
	}
	if err := s.editNamedSets(ctx, dels, true); err != nil {
		s.dirty = true
		return err
	}
	return nil
}
