package trie

import (
	"iter"
	"math/bits"
	"net/netip"
)

// All returns every stored prefix with its value in a deterministic order:
// IPv4 before IPv6, then by address, and the shorter prefix first at equal
// address (the order of comparing netip.Prefix by Addr, then Bits). Dumps,
// diffs against the kernel and tests rely on that order. Breaking out of the
// loop early is safe. The table must not be modified during the iteration.
func (t *Table[V]) All() iter.Seq2[netip.Prefix, V] {
	return func(yield func(netip.Prefix, V) bool) {
		w := walker[V]{yield: yield, is4: true}
		if !w.node(&t.root4, key{}, 0, 0, 255, 0) {
			return
		}
		w.is4 = false
		w.node(&t.root6, key{}, 0, 0, 255, 0)
	}
}

// Subtree returns every stored prefix covered by pfx (pfx itself included),
// in the order of All: the routes a withdrawal of an aggregate or a flush of
// a range has to visit. An invalid pfx yields nothing. Breaking out early is
// safe; the table must not be modified during the iteration.
func (t *Table[V]) Subtree(pfx netip.Prefix) iter.Seq2[netip.Prefix, V] {
	return func(yield func(netip.Prefix, V) bool) {
		k, bits, is4, ok := prefixKey(pfx)
		if !ok {
			return
		}
		w := walker[V]{yield: yield, is4: is4}
		n := t.root(is4)
		for d := 0; ; d++ {
			o := k.octet(d)
			if l := bits - 8*d; l <= 8 {
				// pfx is an in-stride prefix of n: walk the octet range it
				// spans, restricted to entries at least as long as pfx
				// (k is masked, so o's bits past l are already zero)
				w.node(n, k.mask(8*d), d, o, o|0xff>>l, l)
				return
			}
			if n.kidBits.test(o) {
				n = n.kid(o)
				continue
			}
			if n.leafBits.test(o) {
				lf := &n.leaves[n.leafBits.below(o)]
				if int(lf.bits) >= bits && lf.key.mask(bits) == k {
					yield(lf.key.prefix(int(lf.bits), is4), lf.val)
				}
			}
			return
		}
	}
}

// walker carries the state of one ordered traversal.
type walker[V any] struct {
	yield func(netip.Prefix, V) bool
	is4   bool
}

// node yields, in order, the entries of n (at depth d, reached via path,
// whose bytes from d on are zero) whose first octet lies in [lo, hi] and
// whose in-stride length is at least minL, followed at each octet by the
// complete subtree of that octet's child slot. It returns false once yield
// asked to stop.
//
// Order: within one stride, a prefix precedes everything it covers, and
// everything starting at octet o precedes everything starting at o+1. So per
// octet o (ascending) we emit the in-stride prefixes starting at o (shorter
// first), then the fringe at o, then the child slot at o.
func (w *walker[V]) node(n *node[V], path key, d int, lo, hi uint8, minL int) bool {
	// octets at which anything starts
	var starts bitset256
	for wi, x := range n.pfxBits {
		for ; x != 0; x &= x - 1 {
			idx := uint8(wi<<6 + bits.TrailingZeros64(x))
			if o, l := artPrefix(idx); l >= minL {
				starts.set(o)
			}
		}
	}
	nf := n.fringeCount()
	for wi := int(lo >> 6); wi <= int(hi>>6); wi++ {
		x := starts[wi] | n.kidBits[wi] | n.leafBits[wi]
		if minL <= 8 {
			x |= n.fringeBits[wi]
		}
		// restrict the word to [lo, hi]
		base := wi << 6
		x &^= lowMask(int(lo) - base)
		x &= lowMask(int(hi) - base + 1)
		for ; x != 0; x &= x - 1 {
			o := uint8(base + bits.TrailingZeros64(x))
			at := path.withOctet(d, o)
			// in-stride prefixes starting at o: o's low 8-l bits must be
			// zero, i.e. l >= 8 - trailing zeros of o
			for l := max(minL, 8-bits.TrailingZeros8(o)); l < 8; l++ {
				if idx := artIndex(o, l); n.pfxBits.test(idx) {
					v := n.vals[nf+n.pfxBits.below(idx)]
					if !w.yield(netip.PrefixFrom(at.addr(w.is4), 8*d+l), v) {
						return false
					}
				}
			}
			if n.fringeBits.test(o) {
				v := n.vals[n.fringeRank(o)]
				if !w.yield(netip.PrefixFrom(at.addr(w.is4), 8*d+8), v) {
					return false
				}
			}
			if n.kidBits.test(o) {
				if !w.node(n.kid(o), at, d+1, 0, 255, 0) {
					return false
				}
			} else if n.leafBits.test(o) {
				lf := &n.leaves[n.leafBits.below(o)]
				if !w.yield(lf.key.prefix(int(lf.bits), w.is4), lf.val) {
					return false
				}
			}
		}
	}
	return true
}
