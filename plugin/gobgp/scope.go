package gobgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Range is a prefix-list entry: Prefix and every prefix below it whose
// length is within [MinLen, MaxLen], like "10.0.0.0/8 le 32". The gate's
// scope is a list of them; a prefix in scope is held back until confirmed.
type Range struct {
	Prefix netip.Prefix
	// MinLen is the shortest length in range; values below Prefix.Bits()
	// (the zero value included) mean Prefix.Bits().
	MinLen int
	// MaxLen is the longest length in range; 0 means Prefix.Bits() (the
	// prefix alone).
	MaxLen int
}

// ParseRange reads "P", "P le N", "P ge N", "P ge N le M" (as in FRR and
// Cisco prefix lists) or GoBGP's "P N..M", so scopes can live in a config
// file.
func ParseRange(s string) (Range, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return Range{}, fmt.Errorf("parse range %q: empty", s)
	}
	p, err := netip.ParsePrefix(f[0])
	if err != nil {
		return Range{}, fmt.Errorf("parse range %q: %w", s, err)
	}
	r := Range{Prefix: p, MinLen: p.Bits(), MaxLen: p.Bits()}
	num := func(v string) (int, error) {
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("parse range %q: length %q: %w", s, v, err)
		}
		return n, nil
	}
	rest := f[1:]
	if len(rest) == 1 {
		lo, hi, ok := strings.Cut(rest[0], "..")
		if !ok {
			return Range{}, fmt.Errorf("parse range %q: want \"P N..M\", \"P ge N\" or \"P le M\"", s)
		}
		if r.MinLen, err = num(lo); err != nil {
			return Range{}, err
		}
		if r.MaxLen, err = num(hi); err != nil {
			return Range{}, err
		}
		return r, r.validate()
	}
	seenLE := false
	for len(rest) > 0 {
		if len(rest) < 2 {
			return Range{}, fmt.Errorf("parse range %q: %q needs a length", s, rest[0])
		}
		n, err := num(rest[1])
		if err != nil {
			return Range{}, err
		}
		switch rest[0] {
		case "ge":
			r.MinLen = n
			if !seenLE {
				r.MaxLen = p.Addr().BitLen()
			}
		case "le":
			r.MaxLen, seenLE = n, true
		default:
			return Range{}, fmt.Errorf("parse range %q: unknown keyword %q (want ge or le)", s, rest[0])
		}
		rest = rest[2:]
	}
	return r, r.validate()
}

// String writes the range as ParseRange reads it.
func (r Range) String() string {
	lo, hi := r.lengths()
	return fmt.Sprintf("%s %d..%d", r.Prefix.Masked(), lo, hi)
}

// lengths returns the normalized [lo, hi] of the range.
func (r Range) lengths() (lo, hi int) {
	lo, hi = r.MinLen, r.MaxLen
	if lo < r.Prefix.Bits() {
		lo = r.Prefix.Bits()
	}
	if hi == 0 {
		hi = r.Prefix.Bits()
	}
	return lo, hi
}

func (r Range) validate() error {
	if !r.Prefix.IsValid() {
		return fmt.Errorf("range %v: invalid prefix", r.Prefix)
	}
	if r.Prefix.Addr().Is4In6() {
		return fmt.Errorf("range %v: IPv4-mapped IPv6 prefixes are not routed; use the IPv4 form", r.Prefix)
	}
	lo, hi := r.lengths()
	if lo > hi || hi > r.Prefix.Addr().BitLen() {
		return fmt.Errorf("range %v: lengths %d..%d outside %d..%d", r.Prefix, lo, hi, r.Prefix.Bits(), r.Prefix.Addr().BitLen())
	}
	return nil
}

// interval is a closed range of prefix lengths, one entry of a GoBGP
// prefix set at some prefix ("P lo..hi").
type interval struct{ lo, hi uint8 }

// tombstone is an entry that matches nothing below a prefix of length >= 1
// (length 0 is shorter than any of them). It marks a stored node whose
// lengths are all released, because GoBGP only looks at the longest stored
// prefix containing a route: without a node of its own, a released prefix
// would be judged by an ancestor's ranges and still be held.
var tombstone = interval{0, 0}

// lengths is a sorted list of disjoint, non-adjacent intervals.
type lengths []interval

func (l lengths) has(n int) bool {
	for _, iv := range l {
		if int(iv.lo) <= n && n <= int(iv.hi) {
			return true
		}
	}
	return false
}

// union merges two normalized lists.
func union(a, b lengths) lengths {
	all := append(append(lengths(nil), a...), b...)
	slices.SortFunc(all, func(x, y interval) int { return int(x.lo) - int(y.lo) })
	var out lengths
	for _, iv := range all {
		if n := len(out); n > 0 && int(iv.lo) <= int(out[n-1].hi)+1 {
			out[n-1].hi = max(out[n-1].hi, iv.hi)
			continue
		}
		out = append(out, iv)
	}
	return out
}

// clip keeps the lengths within [lo, hi].
func (l lengths) clip(lo, hi int) lengths {
	var out lengths
	for _, iv := range l {
		a, b := max(int(iv.lo), lo), min(int(iv.hi), hi)
		if a <= b {
			out = append(out, interval{uint8(a), uint8(b)})
		}
	}
	return out
}

// without removes the single length n.
func (l lengths) without(n int) lengths {
	var out lengths
	for _, iv := range l {
		if n < int(iv.lo) || n > int(iv.hi) {
			out = append(out, iv)
			continue
		}
		if int(iv.lo) < n {
			out = append(out, interval{iv.lo, uint8(n - 1)})
		}
		if n < int(iv.hi) {
			out = append(out, interval{uint8(n + 1), iv.hi})
		}
	}
	return out
}

// minus returns the entries of l that are not entries of m (compared as
// whole entries, the way GoBGP's DeleteDefinedSet compares them).
func (l lengths) minus(m lengths) lengths {
	var out lengths
	for _, iv := range l {
		if !slices.Contains(m, iv) {
			out = append(out, iv)
		}
	}
	return out
}

// scope is the gated scope of one address family, and the arithmetic that
// turns it, plus the released (confirmed) prefixes, into the entries of one
// GoBGP prefix set "held": a route matches it exactly when it is in scope
// and not released.
//
// Why one set and not the starting design's CONFIRMED-accept plus
// scope-reject (docs/design-notes.md, "The gate only rejects"): an
// accepting statement ends GoBGP's export chain, so every user export
// policy after it would be skipped for released prefixes (with the default
// scope: for all of them). A rejecting "held" set lets released routes fall
// through to the user's policies and the default action.
//
// How it matches: GoBGP's prefix condition looks up the longest stored
// prefix N that contains the route and checks only N's length ranges. So
// every stored node N carries the union of the scope ranges of the scope
// prefixes containing N (itself included), clipped to lengths >= len(N),
// without len(N) when N is released. A released prefix that is not itself
// a scope prefix becomes a node of its own; if nothing is left to list, a
// tombstone entry keeps the node.
type scope struct {
	bits  int                      // 32 or 128
	nodes map[netip.Prefix]lengths // own ranges of each scope prefix
}

func newScope(bits int, rs []Range) *scope {
	s := &scope{bits: bits, nodes: make(map[netip.Prefix]lengths)}
	for _, r := range rs {
		lo, hi := r.lengths()
		p := r.Prefix.Masked()
		s.nodes[p] = union(s.nodes[p], lengths{{uint8(lo), uint8(hi)}})
	}
	if len(s.nodes) == 0 {
		// A family gated nowhere still has its held set and statement,
		// holding only the unspecified host address (never a route), so
		// that the gate's policy has the same statements whatever the
		// scope: a scope can then change at run time (Rescope) by editing
		// sets, in gobgpd's fallback policy too.
		s.nodes[nullPrefix(bits)] = lengths{{uint8(bits), uint8(bits)}}
	}
	return s
}

// nullPrefix is the held set's only entry for a family gated nowhere:
// 0.0.0.0/32 or ::/128.
func nullPrefix(bits int) netip.Prefix {
	if bits == 32 {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 32)
	}
	return netip.PrefixFrom(netip.IPv6Unspecified(), 128)
}

// none says the family is gated nowhere (its held set holds only
// nullPrefix).
func (s *scope) none() bool {
	_, ok := s.nodes[nullPrefix(s.bits)]
	return ok && len(s.nodes) == 1
}

// covering returns the union of the ranges of scope prefixes containing p,
// clipped to the lengths a route below p can have.
func (s *scope) covering(p netip.Prefix) lengths {
	var l lengths
	for n, r := range s.nodes {
		if n.Bits() <= p.Bits() && n.Contains(p.Addr()) {
			l = union(l, r)
		}
	}
	return l.clip(p.Bits(), s.bits)
}

// contains says whether p is gated (held until released).
func (s *scope) contains(p netip.Prefix) bool { return s.covering(p).has(p.Bits()) }

// isNode says whether p is one of the scope's own prefixes.
func (s *scope) isNode(p netip.Prefix) bool {
	_, ok := s.nodes[p]
	return ok
}

// entries returns what the held set stores at p, given whether p is
// released; nil means p is not stored.
func (s *scope) entries(p netip.Prefix, released bool) lengths {
	if !s.isNode(p) && (!released || !s.contains(p)) {
		return nil
	}
	l := s.covering(p)
	if released {
		l = l.without(p.Bits())
	}
	if len(l) == 0 {
		if p.Bits() == 0 {
			return nil // no ancestor to shadow
		}
		return lengths{tombstone}
	}
	return l
}

// setEntry is one element of a GoBGP prefix set.
type setEntry struct {
	prefix netip.Prefix
	iv     interval
}

// transition returns what to add to and remove from the held set to move p
// between released and held. Adding first and removing second is
// fail-closed: in between, a node holds both the old and the new entries,
// which hold back at least as much as either.
func (s *scope) transition(p netip.Prefix, release bool) (add, del []setEntry) {
	old, nw := s.entries(p, !release), s.entries(p, release)
	for _, iv := range nw.minus(old) {
		add = append(add, setEntry{p, iv})
	}
	for _, iv := range old.minus(nw) {
		del = append(del, setEntry{p, iv})
	}
	return add, del
}

// skeleton is the held set with nothing released: one node per scope
// prefix.
func (s *scope) skeleton() []setEntry {
	var out []setEntry
	for p := range s.nodes {
		for _, iv := range s.entries(p, false) {
			out = append(out, setEntry{p, iv})
		}
	}
	slices.SortFunc(out, compareEntries)
	return out
}

func compareEntries(a, b setEntry) int {
	if c := a.prefix.Addr().Compare(b.prefix.Addr()); c != 0 {
		return c
	}
	if c := a.prefix.Bits() - b.prefix.Bits(); c != 0 {
		return c
	}
	return int(a.iv.lo) - int(b.iv.lo)
}

// releasedIn reads, from the entries stored at one node of a held set,
// whether p is released there: it is in scope, stored, and does not list
// its own length. This is how Bootstrap finds releases that an earlier
// instance (or an earlier configuration) left behind.
func (s *scope) releasedIn(p netip.Prefix, stored lengths) bool {
	return len(stored) > 0 && !stored.has(p.Bits()) && s.contains(p)
}
