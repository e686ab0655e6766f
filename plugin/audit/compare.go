package audit

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fibgate/fibgate/plugin/gate"
)

// DefaultGrace is how long the gate must have had a prefix out before
// GoBGP holding it back counts as a stuck release: a release that is
// being undone (a fence for a new best path, then the tracker seeing the
// new route) takes milliseconds.
const DefaultGrace = 5 * time.Second

// Compare finds every disagreement in one snapshot, ordered by kind, then
// prefix, then table. It is pure: the same snapshot gives the same result.
// grace is how old a release must be before GoBGP holding the prefix back
// is reported (ConfirmedUnadvertised).
func Compare(s *Snapshot, grace time.Duration) []Mismatch {
	var out []Mismatch
	states := stateIndex(s.Gate)
	holds, inScope := s.BGP.Holds, s.BGP.InScope
	if holds == nil {
		holds = func(netip.Prefix) bool { return false }
	}
	if inScope == nil {
		inScope = func(netip.Prefix) bool { return false }
	}

	// 1. Advertised, not confirmed: adj-out says so, or GoBGP's gate lets
	// it out and adj-out was not read (the pass before had not seen it, or
	// reading it would have cost GoBGP its whole table: Ask.Large).
	for p, nbs := range s.BGP.Out {
		if !inScope(p) {
			continue
		}
		if m, bad := unconfirmed(p, s.FIB.Gated[p], states); bad {
			m.Neighbours = slices.SortedFunc(slices.Values(nbs), netip.Addr.Compare)
			out = append(out, m)
		}
	}
	for p, read := range s.BGP.LetOut {
		if _, listed := s.BGP.Out[p]; read || listed || !inScope(p) {
			continue
		}
		if m, bad := unconfirmed(p, s.FIB.Gated[p], states); bad {
			m.Detail = strings.Replace(m.Detail, "GoBGP advertises it", "GoBGP's gate lets it out (adj-out not read)", 1)
			out = append(out, m)
		}
	}

	// 2. Out in the gate, held back by GoBGP's gate (which means no
	// neighbour gets it: no adj-out is needed).
	for _, st := range s.Gate {
		if st.State != gate.Advertised || s.BGP.At.Sub(st.AdvertisedAt) < grace {
			continue
		}
		r, ok := gatedIn(s.FIB.Gated[st.Prefix], st.Table)
		if !ok || r.Origin == 0 {
			continue
		}
		var why string
		paths := s.BGP.RIB[st.Prefix]
		switch {
		case len(paths) > 0 && paths[0].Kept:
			continue // out on the copy of its previous path (make-before-break)
		case holds(st.Prefix):
			why = "GoBGP's held set holds it back"
		case len(paths) > 0 && paths[0].Hold:
			why = "a HOLD path is its best path in GoBGP"
		case len(paths) == 0 && r.Origin == gate.Originated:
			why = "GoBGP has no path for it"
		default:
			// GoBGP's gate lets it out. Whether a neighbour takes it is
			// the user's export policies' business (and the neighbour it
			// came from gets nothing back).
			continue
		}
		out = append(out, Mismatch{Kind: ConfirmedUnadvertised, Prefix: st.Prefix, Table: st.Table,
			Detail: fmt.Sprintf("the gate released it (%s) at %s, but %s", r.Origin, st.AdvertisedAt.Format(time.RFC3339), why),
			ident:  strconv.FormatInt(st.AdvertisedAt.UnixNano(), 10)})
	}

	// 3. and 5. The installer's routes against GoBGP's best paths.
	if in := s.FIB.Installer; in != nil {
		var scratch []netip.Addr
		for p, paths := range s.BGP.RIB {
			b := bestOf(paths, scratch[:0])
			scratch = b.nexthops
			if b.holdBest || len(b.nexthops) == 0 {
				continue
			}
			own, ok := ownRoute(s.FIB.Installed[p], in.Metric)
			switch {
			case !ok:
				out = append(out, Mismatch{Kind: NexthopsDiffer, Prefix: p, Table: in.Table,
					Detail: fmt.Sprintf("GoBGP's best path is via %s; the installer has no route for it (table %d, protocol %s, metric %d)", addrs(b.nexthops), in.Table, in.Protocol, in.Metric),
					ident:  "missing " + addrs(b.nexthops)})
			case !slices.Equal(own.Nexthops, b.nexthops) && (in.Resolve == nil || !slices.Equal(own.Nexthops, in.Resolve(b.nexthops))):
				out = append(out, Mismatch{Kind: NexthopsDiffer, Prefix: p, Table: in.Table,
					Detail: fmt.Sprintf("installed via %s, GoBGP's best path is via %s", addrs(own.Nexthops), addrs(b.nexthops)),
					ident:  itoa(own.Version) + " " + addrs(b.nexthops)})
			}
		}
		for p, rs := range s.FIB.Installed {
			b := bestOf(s.BGP.RIB[p], scratch[:0])
			if b.learned {
				continue
			}
			why := "GoBGP has no path for it"
			switch {
			case b.holdBest:
				why = "GoBGP has only HOLD and local paths for it"
			case len(s.BGP.RIB[p]) > 0 && !s.BGP.RIB[p][0].Learned:
				why = "GoBGP's best path for it is local"
			case len(s.BGP.RIB[p]) > 0:
				why = "GoBGP's best path for it has no usable next hop"
			}
			var desc, ident []string
			for _, r := range rs {
				desc = append(desc, fmt.Sprintf("via %s metric %d", addrs(r.Nexthops), r.Metric))
				ident = append(ident, itoa(r.Version))
			}
			out = append(out, Mismatch{Kind: RouteWithoutBest, Prefix: p, Table: in.Table,
				Detail: fmt.Sprintf("kernel route of protocol %s (%s), but %s", in.Protocol, strings.Join(desc, "; "), why),
				ident:  strings.Join(ident, ",")})
		}
	}

	// 4. HOLD paths and kept copies left behind. A HOLD path is in place
	// while the held set holds the prefix, except on a prefix out on a
	// copy, where the copy is.
	for p, paths := range s.BGP.RIB {
		copied := s.BGP.Copied != nil && s.BGP.Copied(p)
		i := slices.IndexFunc(paths, func(x Path) bool { return x.Hold || x.Kept && !copied })
		if i < 0 || holds(p) && !copied {
			continue
		}
		why := "a prefix the gate released"
		if !inScope(p) {
			why = "a prefix out of the gate's scope"
		}
		what := "a HOLD path"
		if paths[i].Kept {
			what = "a kept copy of a previous best path"
		}
		out = append(out, Mismatch{Kind: HoldLeft, Prefix: p,
			Detail: what + " is in GoBGP for " + why, ident: paths[i].ID})
	}

	sortMismatches(out)
	return out
}

// sortMismatches orders mismatches as Compare returns them: by kind, then
// prefix, then table.
func sortMismatches(ms []Mismatch) {
	slices.SortFunc(ms, func(a, b Mismatch) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), a.Prefix.Addr().Compare(b.Prefix.Addr()),
			cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()), cmp.Compare(a.Table, b.Table))
	})
}

// states finds the gate's state of a prefix in a table by binary search
// in the states sorted as gate.Tracker.List sorts them. It is asked only
// about routes that are not confirmed, so a map of a full table's million
// states (the first version: most of a pass's CPU) is not worth building.
type states []gate.Brief

func stateIndex(sts []gate.Brief) states {
	if !slices.IsSortedFunc(sts, gate.CompareBriefs) {
		sts = slices.Clone(sts)
		slices.SortFunc(sts, gate.CompareBriefs)
	}
	return sts
}

func (s states) of(table uint32, p netip.Prefix) gate.State {
	i, ok := slices.BinarySearchFunc(s, gate.Brief{Table: table, Prefix: p}, gate.CompareBriefs)
	if !ok {
		return 0
	}
	return s[i].State
}

// NeedsAdjOut returns what the BGP read must check against adj-out, given
// the gate and FIB parts of a snapshot: the prefixes whose route is not
// confirmed (the BGP side adds: and that are in the gate's scope). A
// confirmed prefix may be advertised or not, so reading the adj-out of
// the whole table, which costs GoBGP an export run over all of it per
// neighbour, is needed only for these; in a healthy steady state there
// are none.
func NeedsAdjOut(s *Snapshot) func(netip.Prefix) bool {
	states := stateIndex(s.Gate)
	gated := s.FIB.Gated
	return func(p netip.Prefix) bool {
		_, bad := unconfirmed(p, gated[p], states)
		return bad
	}
}

// unconfirmed decides whether an advertised prefix breaks the safety
// invariant: no gated route of it is confirmed, and none is let out
// unconfirmed by its scope (fail-open after the pending timeout,
// on_failure: keep), which the gate's state shows by being up.
func unconfirmed(p netip.Prefix, rs []GatedRoute, sts states) (Mismatch, bool) {
	for _, r := range rs {
		if r.Verdict == gate.VerdictConfirmed {
			return Mismatch{}, false
		}
		if !r.FailOpen && !r.KeepOnFailure {
			continue
		}
		st := sts.of(r.Table, p)
		up := st == gate.Confirmed || st == gate.Advertised
		if up && r.FailOpen && r.Verdict == gate.VerdictPending || up && r.KeepOnFailure && r.Verdict == gate.VerdictFailed {
			return Mismatch{}, false
		}
	}
	var parts, ident []string
	for _, r := range rs {
		st := sts.of(r.Table, p)
		state := "not tracked"
		if st != 0 {
			state = st.String()
		}
		parts = append(parts, fmt.Sprintf("table %d: %s (gate: %s)", r.Table, r.Reason, state))
		ident = append(ident, itoa(r.Version))
	}
	m := Mismatch{Kind: AdvertisedUnconfirmed, Prefix: p}
	if len(rs) == 0 {
		m.Detail = "GoBGP advertises it, but no gated table of the FIB has a route for it"
		return m, true
	}
	m.Table = rs[0].Table
	m.Detail = "GoBGP advertises it, but its route is not confirmed: " + strings.Join(parts, "; ")
	m.ident = strings.Join(ident, ",")
	return m, true
}

func gatedIn(rs []GatedRoute, table uint32) (GatedRoute, bool) {
	for _, r := range rs {
		if r.Table == table {
			return r, true
		}
	}
	return GatedRoute{}, false
}

func ownRoute(rs []InstalledRoute, metric uint32) (InstalledRoute, bool) {
	for _, r := range rs {
		if r.Metric == metric {
			return r, true
		}
	}
	return InstalledRoute{}, false
}

// best is what a destination's paths mean for the FIB installer.
type best struct {
	// holdBest: a HOLD path is best; the installer leaves the route under
	// it alone.
	holdBest bool
	// nexthops are where the installer forwards the prefix (the usable
	// next hops of the learned paths of the best multipath set); empty:
	// it removes its route.
	nexthops []netip.Addr
	// learned: the best path that is not a HOLD path was learned with a
	// usable next hop, so a route of the installer's protocol belongs.
	learned bool
}

// bestOf applies the installer's rules (plugin/gobgp WatchBest) to a
// destination's paths: HOLD paths and kept copies are skipped, local paths
// have nothing to forward to, unspecified and link-local next hops are
// dropped. The next hops are appended to buf.
func bestOf(paths []Path, buf []netip.Addr) best {
	b := best{nexthops: buf}
	if len(paths) == 0 {
		return b
	}
	// Under a kept copy the installer follows the learned paths GoBGP
	// would choose without it, marked Best by the reader.
	under := paths[0].Kept && slices.ContainsFunc(paths, func(x Path) bool { return x.Best && x.Learned })
	if (paths[0].Hold || paths[0].Kept) && !under {
		b.holdBest = true
		if i := slices.IndexFunc(paths, func(x Path) bool { return !x.Hold && !x.Kept }); i >= 0 {
			b.learned = paths[i].Learned && usable(paths[i].Nexthop)
		}
		return b
	}
	for _, x := range paths {
		if x.Best && x.Learned && usable(x.Nexthop) {
			b.nexthops = append(b.nexthops, x.Nexthop)
		}
	}
	slices.SortFunc(b.nexthops, netip.Addr.Compare)
	b.nexthops = slices.Compact(b.nexthops)
	b.learned = len(b.nexthops) > 0
	return b
}

func usable(a netip.Addr) bool { return a.IsValid() && !a.IsUnspecified() && !a.IsLinkLocalUnicast() }

func addrs(as []netip.Addr) string {
	if len(as) == 0 {
		return "nothing"
	}
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }
