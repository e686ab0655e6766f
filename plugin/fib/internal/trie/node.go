package trie

import (
	"math/bits"
	"slices"
)

// node is one 8-bit stride of the trie. A node at depth d (the root is depth
// 0) owns every stored prefix of length 8d+1 .. 8d+8 that lies below its path
// (the root also owns the /0). Inside the node those prefixes are kept in two
// popcount-compressed sparse arrays that share the vals slice:
//
//   - fringeBits: prefixes that end exactly on the stride boundary (length
//     8d+8), keyed by their last octet; their values come first in vals.
//   - pfxBits: the shorter ones, keyed by ART index (see artIndex); their
//     values follow the fringe values.
//
// Anything longer than 8d+8 lives below one of the 256 child slots. A slot is
// either empty, a child node (kidBits/kids) or, when only a single prefix
// lives below the slot, a path-compressed leaf stored inline (leafBits/leaves)
// instead of a chain of nodes. The trie is kept canonical: a child node exists
// exactly when at least two prefixes live below its slot, so the shape depends
// only on the set of stored prefixes, never on the order of operations.
//
// The fields used while descending come first. The two bitsets consulted on
// every lookup step (kids while descending, fringes on the way back) carry a
// per-word prefix count (kidBase, fringeBase: set bits in the words before),
// so their rank is one popcount instead of four. The node is 208 bytes,
// exactly an allocator size class.
type node[V any] struct {
	kidBits    bitset256
	kids       []*node[V]
	kidBase    [4]uint8
	fringeBase [4]uint8
	fringeBits bitset256
	vals       []V
	leafBits   bitset256
	leaves     []leaf[V]
	pfxBits    bitset256
}

// rankIn returns the number of bits of b below i, using base, the cached
// count of set bits in the words before each word.
func rankIn(b *bitset256, base *[4]uint8, i uint8) int {
	return int(base[i>>6]) + bits.OnesCount64(b[i>>6]&(1<<(i&63)-1))
}

// bump adjusts base after bit i was set (delta 1) or cleared (delta 0xff,
// i.e. -1 in uint8 arithmetic). Counts before word 3 are at most 192.
func bump(base *[4]uint8, i uint8, delta uint8) {
	for w := i>>6 + 1; w < 4; w++ {
		base[w] += delta
	}
}

func (n *node[V]) kidRank(o uint8) int    { return rankIn(&n.kidBits, &n.kidBase, o) }
func (n *node[V]) fringeRank(o uint8) int { return rankIn(&n.fringeBits, &n.fringeBase, o) }

// fringeCount is the number of fringes, i.e. where the prefix values start.
func (n *node[V]) fringeCount() int {
	return int(n.fringeBase[3]) + bits.OnesCount64(n.fringeBits[3])
}

// leaf is a path-compressed prefix: the full key and length, because the
// levels between the slot and the prefix's own stride are not materialised.
type leaf[V any] struct {
	key  key
	bits uint8
	val  V
}

// covers reports whether the leaf's prefix contains k.
func (lf *leaf[V]) covers(k key) bool {
	return k.mask(int(lf.bits)) == lf.key
}

// entryIndex returns the position in vals of the in-stride prefix (o, l) and
// whether it is present. l == 8 selects the fringe at octet o.
func (n *node[V]) entryIndex(o uint8, l int) (int, bool) {
	if l == 8 {
		return n.fringeRank(o), n.fringeBits.test(o)
	}
	idx := artIndex(o, l)
	return n.fringeCount() + n.pfxBits.below(idx), n.pfxBits.test(idx)
}

// setEntry stores v for the in-stride prefix (o, l) and reports whether the
// prefix is new.
func (n *node[V]) setEntry(o uint8, l int, v V) bool {
	i, ok := n.entryIndex(o, l)
	if ok {
		n.vals[i] = v
		return false
	}
	if l == 8 {
		n.fringeBits.set(o)
		bump(&n.fringeBase, o, 1)
	} else {
		n.pfxBits.set(artIndex(o, l))
	}
	n.vals = insertAt(n.vals, i, v)
	return true
}

// deleteEntry removes the in-stride prefix (o, l), returning its value.
func (n *node[V]) deleteEntry(o uint8, l int) (v V, ok bool) {
	i, ok := n.entryIndex(o, l)
	if !ok {
		return v, false
	}
	if l == 8 {
		n.fringeBits.clear(o)
		bump(&n.fringeBase, o, 0xff)
	} else {
		n.pfxBits.clear(artIndex(o, l))
	}
	v = n.vals[i]
	n.vals = deleteAt(n.vals, i)
	return v, true
}

func (n *node[V]) kid(o uint8) *node[V] {
	return n.kids[n.kidRank(o)]
}

func (n *node[V]) addKid(o uint8, c *node[V]) {
	n.kids = insertAt(n.kids, n.kidRank(o), c)
	n.kidBits.set(o)
	bump(&n.kidBase, o, 1)
}

func (n *node[V]) removeKid(o uint8) {
	n.kids = deleteAt(n.kids, n.kidRank(o))
	n.kidBits.clear(o)
	bump(&n.kidBase, o, 0xff)
}

func (n *node[V]) addLeaf(o uint8, lf leaf[V]) {
	n.leaves = insertAt(n.leaves, n.leafBits.below(o), lf)
	n.leafBits.set(o)
}

func (n *node[V]) removeLeaf(o uint8) leaf[V] {
	i := n.leafBits.below(o)
	lf := n.leaves[i]
	n.leaves = deleteAt(n.leaves, i)
	n.leafBits.clear(o)
	return lf
}

// place stores a detached leaf into n (at depth d), either as one of n's own
// entries when its length falls into n's stride, or as a leaf in its slot,
// which the caller guarantees to be free.
func (n *node[V]) place(lf leaf[V], d int) {
	o := lf.key.octet(d)
	if l := int(lf.bits) - 8*d; l <= 8 {
		n.setEntry(o, l, lf.val)
		return
	}
	n.addLeaf(o, lf)
}

// sole returns the only prefix stored in and below n (at depth d, reached via
// path), as a leaf. The caller guarantees n holds exactly one prefix and no
// child nodes.
func (n *node[V]) sole(path key, d int) leaf[V] {
	if len(n.leaves) == 1 {
		return n.leaves[0]
	}
	base := path.mask(8 * d)
	if !n.fringeBits.isEmpty() {
		o := n.fringeBits.first()
		return leaf[V]{key: base.withOctet(d, o), bits: uint8(8*d + 8), val: n.vals[0]}
	}
	o, l := artPrefix(n.pfxBits.first())
	return leaf[V]{key: base.withOctet(d, o), bits: uint8(8*d + l), val: n.vals[0]}
}

// Growth policy for the sparse slices. Nodes hold at most 256 kids/leaves and
// 511 values. A full slice grows by half (rounded up to the allocator's size
// class by slices.Grow): doubling would waste a quarter of the values on
// average, while growing by 1/8 measured twice as slow for a shuffled full
// table build because of the garbage it leaves the GC. A slice that falls
// below half its capacity is reallocated so withdrawn routes really give
// their memory back.

func insertAt[T any](s []T, i int, v T) []T {
	if len(s) == cap(s) {
		n := len(s) + 1
		ns := slices.Grow([]T(nil), n+n>>1)[:n]
		copy(ns, s[:i])
		copy(ns[i+1:], s[i:])
		ns[i] = v
		return ns
	}
	s = s[:len(s)+1]
	copy(s[i+1:], s[i:])
	s[i] = v
	return s
}

func deleteAt[T any](s []T, i int) []T {
	n := len(s) - 1
	if n == 0 {
		return nil
	}
	if c := cap(s); c > 8 && n < c/2 {
		ns := slices.Grow([]T(nil), n+n>>1)[:n]
		copy(ns, s[:i])
		copy(ns[i:], s[i+1:])
		return ns
	}
	copy(s[i:], s[i+1:])
	var zero T
	s[n] = zero // drop the reference for the GC
	return s[:n]
}
