package trie

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// ref is the naive model the trie is checked against: a map plus brute-force
// longest-prefix match over every possible length.
type ref struct {
	m map[netip.Prefix]int
}

func newRef() *ref { return &ref{m: map[netip.Prefix]int{}} }

func (r *ref) lookupPrefix(p netip.Prefix) (netip.Prefix, int, bool) {
	for l := p.Bits(); l >= 0; l-- {
		q := netip.PrefixFrom(p.Addr(), l).Masked()
		if v, ok := r.m[q]; ok {
			return q, v, true
		}
	}
	return netip.Prefix{}, 0, false
}

func (r *ref) lookup(a netip.Addr) (netip.Prefix, int, bool) {
	return r.lookupPrefix(netip.PrefixFrom(a, a.BitLen()))
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

type kv struct {
	p netip.Prefix
	v int
}

func (r *ref) subtree(p netip.Prefix) []kv {
	var out []kv
	for q, v := range r.m {
		if q.Addr().Is4() == p.Addr().Is4() && q.Bits() >= p.Bits() && p.Contains(q.Addr()) {
			out = append(out, kv{q, v})
		}
	}
	slices.SortFunc(out, func(a, b kv) int { return comparePrefix(a.p, b.p) })
	return out
}

func (r *ref) all() []kv {
	out := make([]kv, 0, len(r.m))
	for q, v := range r.m {
		out = append(out, kv{q, v})
	}
	slices.SortFunc(out, func(a, b kv) int { return comparePrefix(a.p, b.p) })
	return out
}

func collect(seq func(func(netip.Prefix, int) bool)) []kv {
	var out []kv
	for p, v := range seq {
		out = append(out, kv{p, v})
	}
	return out
}

// checkSame fails unless the table holds exactly what the model holds,
// in the same order.
func checkSame(t testing.TB, tb *Table[int], r *ref) {
	t.Helper()
	got, want := collect(tb.All()), r.all()
	if !slices.Equal(got, want) {
		t.Fatalf("All mismatch:\n got %v\nwant %v", head(got), head(want))
	}
	n4 := 0
	for p := range r.m {
		if p.Addr().Is4() {
			n4++
		}
	}
	if tb.Len() != len(r.m) || tb.Len4() != n4 || tb.Len6() != len(r.m)-n4 {
		t.Fatalf("Len %d/%d/%d, want %d/%d/%d", tb.Len(), tb.Len4(), tb.Len6(), len(r.m), n4, len(r.m)-n4)
	}
	checkInvariants(t, tb)
}

func head(s []kv) string {
	if len(s) > 20 {
		return fmt.Sprint(s[:20], "...")
	}
	return fmt.Sprint(s)
}

// checkInvariants verifies the structural contract of the trie: consistent
// sparse arrays, entries in the right stride, leaves on their own path, and
// canonical form (a child node exists iff at least two prefixes live below
// its slot), which is what makes Delete give memory back.
func checkInvariants(t testing.TB, tb *Table[int]) {
	t.Helper()
	n4 := countNode(t, &tb.root4, key{}, 0, 4, true)
	n6 := countNode(t, &tb.root6, key{}, 0, 16, true)
	if n4 != tb.len4 || n6 != tb.len6 {
		t.Fatalf("structure holds %d/%d prefixes, counters say %d/%d", n4, n6, tb.len4, tb.len6)
	}
}

func countNode(t testing.TB, n *node[int], path key, d, strides int, isRoot bool) int {
	t.Helper()
	if len(n.vals) != n.fringeBits.count()+n.pfxBits.count() ||
		len(n.kids) != n.kidBits.count() || len(n.leaves) != n.leafBits.count() {
		t.Fatalf("depth %d: slice lengths disagree with bitsets", d)
	}
	for o := range 256 {
		if n.kidRank(uint8(o)) != n.kidBits.below(uint8(o)) || n.fringeRank(uint8(o)) != n.fringeBits.below(uint8(o)) {
			t.Fatalf("depth %d: cached rank base out of date at %d", d, o)
		}
	}
	if n.fringeCount() != n.fringeBits.count() {
		t.Fatalf("depth %d: fringe count out of date", d)
	}
	if n.pfxBits.test(0) || (!isRoot && n.pfxBits.test(1)) {
		t.Fatalf("depth %d: bad ART index in use", d)
	}
	for i := range n.kidBits {
		if n.kidBits[i]&n.leafBits[i] != 0 {
			t.Fatalf("depth %d: slot is both child and leaf", d)
		}
	}
	if d == strides-1 && (len(n.kids) != 0 || len(n.leaves) != 0) {
		t.Fatalf("depth %d: last stride has children", d)
	}
	total := len(n.vals)
	for o := 0; o < 256; o++ {
		at := path.withOctet(d, uint8(o))
		if n.leafBits.test(uint8(o)) {
			lf := n.leaves[n.leafBits.below(uint8(o))]
			if int(lf.bits) <= 8*d+8 || lf.key.mask(8*d+8) != at || lf.key.mask(int(lf.bits)) != lf.key {
				t.Fatalf("depth %d octet %d: misplaced leaf %v/%d", d, o, lf.key, lf.bits)
			}
			total++
		}
		if n.kidBits.test(uint8(o)) {
			c := countNode(t, n.kid(uint8(o)), at, d+1, strides, false)
			if c < 2 {
				t.Fatalf("depth %d octet %d: child node holds %d prefixes, want >= 2", d, o, c)
			}
			total += c
		}
	}
	return total
}

// gen draws prefixes that stress the trie: lengths cluster around stride
// boundaries and addresses share long common prefixes (a few base addresses
// with randomised tails), so leaves split and collapse often.
type gen struct {
	rng   *rand.Rand
	bases []netip.Addr
}

func newGen(seed uint64) *gen {
	g := &gen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	for range 6 {
		var b4 [4]byte
		var b16 [16]byte
		for i := range b4 {
			b4[i] = byte(g.rng.Uint32())
		}
		for i := range b16 {
			b16[i] = byte(g.rng.Uint32())
		}
		g.bases = append(g.bases, netip.AddrFrom4(b4), netip.AddrFrom16(b16))
	}
	// a 4in6 base, which must stay IPv6
	g.bases = append(g.bases, netip.MustParseAddr("::ffff:10.1.2.3"))
	return g
}

// length returns a prefix length for an address of bitLen bits, near a
// stride boundary most of the time.
func (g *gen) length(bitLen int) int {
	if g.rng.IntN(5) == 0 {
		return g.rng.IntN(bitLen + 1)
	}
	b := 8 * g.rng.IntN(bitLen/8+1)
	return min(max(b+g.rng.IntN(3)-1, 0), bitLen)
}

func (g *gen) addr() netip.Addr {
	base := g.bases[g.rng.IntN(len(g.bases))]
	keep := g.length(base.BitLen()) // bits shared with the base
	b := base.As16()
	off := 0
	if base.Is4() {
		off = 96
	}
	for i := off + keep; i < 128; i++ {
		if g.rng.IntN(2) == 0 {
			b[i/8] ^= 1 << (7 - i%8)
		}
	}
	if base.Is4() {
		return netip.AddrFrom4([4]byte(b[12:]))
	}
	return netip.AddrFrom16(b)
}

func (g *gen) prefix() netip.Prefix {
	a := g.addr()
	return netip.PrefixFrom(a, g.length(a.BitLen()))
}

// pick returns a stored prefix most of the time, so deletes and gets hit.
func (g *gen) pick(r *ref) netip.Prefix {
	if len(r.m) > 0 && g.rng.IntN(4) != 0 {
		for p := range r.m { // map order is random enough
			return p
		}
	}
	return g.prefix()
}
