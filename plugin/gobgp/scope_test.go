package gobgp

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// gobgpMatch models GoBGP v3's prefix condition (PrefixCondition.Evaluate
// over critbitgo's longest-prefix Match): only the longest stored prefix
// containing the route is looked at, and the route matches if one of that
// node's entries covers its length. oracle_test.go checks this model
// against a real in-process BgpServer.
func gobgpMatch(stored map[netip.Prefix]lengths, p netip.Prefix) bool {
	var best netip.Prefix
	found := false
	for n := range stored {
		if n.Bits() <= p.Bits() && n.Contains(p.Addr()) && (!found || n.Bits() > best.Bits()) {
			best, found = n, true
		}
	}
	return found && stored[best].has(p.Bits())
}

// naiveInScope is the definition of the scope: some range covers p.
func naiveInScope(rs []Range, p netip.Prefix) bool {
	for _, r := range rs {
		lo, hi := r.lengths()
		if r.Prefix.Masked().Contains(p.Addr()) && r.Prefix.Bits() <= p.Bits() && lo <= p.Bits() && p.Bits() <= hi {
			return true
		}
	}
	return false
}

// heldSet builds the stored nodes the way Speaker does: the skeleton plus
// the released prefixes.
func heldSet(s *scope, released map[netip.Prefix]bool) map[netip.Prefix]lengths {
	stored := make(map[netip.Prefix]lengths)
	for p := range s.nodes {
		if l := s.entries(p, released[p]); l != nil {
			stored[p] = l
		}
	}
	for p, ok := range released {
		if ok && !s.isNode(p) {
			if l := s.entries(p, true); l != nil {
				stored[p] = l
			}
		}
	}
	return stored
}

func randPrefix(r *rand.Rand) netip.Prefix {
	// A small corner of the address space, so ranges nest and collide.
	a := netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(4) * 64), 0})
	return netip.PrefixFrom(a, 8+r.IntN(19)).Masked()
}

func randScope(r *rand.Rand) []Range {
	rs := make([]Range, 1+r.IntN(4))
	for i := range rs {
		p := randPrefix(r)
		lo := p.Bits() + r.IntN(4)
		rs[i] = Range{Prefix: p, MinLen: lo, MaxLen: min(32, lo+r.IntN(10))}
	}
	return rs
}

// TestHeldSetMatchesInScopeAndNotReleased is the property the whole gate
// rests on: with GoBGP's longest-match semantics, the held set matches a
// route exactly when it is in scope and not released, and every
// transition, between its add and its delete, holds back at least what
// both its ends hold back.
func TestHeldSetMatchesInScopeAndNotReleased(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := range 400 {
		rs := randScope(r)
		s := newScope(32, rs)
		released := make(map[netip.Prefix]bool)
		for range r.IntN(12) {
			if p := randPrefix(r); s.contains(p) {
				released[p] = true
			}
		}
		stored := heldSet(s, released)
		for range 300 {
			p := randPrefix(r)
			want := naiveInScope(rs, p) && !released[p]
			if got := gobgpMatch(stored, p); got != want {
				t.Fatalf("iteration %d: scope %v released %v: %v held=%v, want %v (stored %v)", iter, rs, released, p, got, want, stored)
			}
			if s.contains(p) != naiveInScope(rs, p) {
				t.Fatalf("scope %v: contains(%v) = %v", rs, p, s.contains(p))
			}
		}

		// One transition, checked at its midpoint and its end.
		p := randPrefix(r)
		if !s.contains(p) {
			continue
		}
		release := !released[p]
		add, del := s.transition(p, release)
		mid := clone(stored)
		for _, e := range add {
			// GoBGP appends entries to a node's list; it does not merge.
			mid[e.prefix] = append(append(lengths(nil), mid[e.prefix]...), e.iv)
		}
		after := clone(released)
		after[p] = release
		end := heldSet(s, after)
		for range 300 {
			q := randPrefix(r)
			if q == p {
				continue
			}
			before, fin := gobgpMatch(stored, q), gobgpMatch(end, q)
			if (before || fin) && !gobgpMatch(mid, q) {
				t.Fatalf("transition of %v (release=%v) lets %v out midway", p, release, q)
			}
		}
		// The end state is what add+delete produce.
		got := clone(mid)
		for _, e := range del {
			got[e.prefix] = got[e.prefix].minus(lengths{e.iv})
			if len(got[e.prefix]) == 0 {
				delete(got, e.prefix)
			}
		}
		for n, l := range end {
			if !equalLengths(union(nil, got[n]), l) {
				t.Fatalf("transition of %v (release=%v, scope %v, add %v del %v, stored %v): node %v = %v, want %v", p, release, rs, add, del, stored[n], n, got[n], l)
			}
		}
	}
}

func clone[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func equalLengths(a, b lengths) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		err  bool
	}{
		{in: "10.0.0.0/8", want: "10.0.0.0/8 8..8"},
		{in: "10.0.0.0/8 le 32", want: "10.0.0.0/8 8..32"},
		{in: "10.0.0.0/8 ge 24", want: "10.0.0.0/8 24..32"},
		{in: "10.0.0.0/8 ge 16 le 24", want: "10.0.0.0/8 16..24"},
		{in: "2001:db8::/32 48..64", want: "2001:db8::/32 48..64"},
		{in: "0.0.0.0/0 0..32", want: "0.0.0.0/0 0..32"},
		{in: "10.0.0.0/8 le 33", err: true},
		{in: "10.0.0.0/8 ge 24 le 16", err: true},
		{in: "10.0.0.0/8 foo 3", err: true},
		{in: "::ffff:10.0.0.0/104", err: true},
		{in: "", err: true},
	} {
		r, err := ParseRange(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("ParseRange(%q) error = %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if err == nil && r.String() != tc.want {
			t.Errorf("ParseRange(%q) = %q, want %q", tc.in, r, tc.want)
		}
	}
}
