package trie

import "net/netip"

// Lookup returns the longest stored prefix that contains a, with its value:
// the forwarding decision for a destination address. It costs one descent
// along a's octets (a bit test and a popcount per stride) and then walks
// back up the visited nodes, where each node answers its own longest match
// with one bitset intersection, so it touches at most 4 (IPv4) or 16 (IPv6)
// nodes and never backtracks into siblings. An IPv4-mapped IPv6 address is
// looked up as IPv6 (it is not unmapped); an invalid address matches nothing.
func (t *Table[V]) Lookup(a netip.Addr) (netip.Prefix, V, bool) {
	if !a.IsValid() {
		var zero V
		return netip.Prefix{}, zero, false
	}
	k, is4 := addrKey(a)
	n := t.root(is4)

	var stack [maxDepth]*node[V]
	d := 0
	for ; ; d++ {
		d &= maxDepth - 1 // bounds-check elimination; d never exceeds 15
		stack[d] = n
		o := k.octet(d)
		if n.kidBits.test(o) {
			n = n.kids[n.kidRank(o)]
			continue
		}
		if n.leafBits.test(o) {
			lf := &n.leaves[n.leafBits.below(o)]
			if lf.covers(k) {
				return resultPrefix(a, int(lf.bits)), lf.val, true
			}
		}
		break
	}
	for ; d >= 0; d-- {
		n = stack[d&(maxDepth-1)]
		if len(n.vals) == 0 {
			continue // a pure routing node, nothing to match here
		}
		o := k.octet(d)
		if n.fringeBits.test(o) {
			return resultPrefix(a, 8*d+8), n.vals[n.fringeRank(o)], true
		}
		if idx, ok := n.pfxBits.topAnd(&ancestors[lastLevel(o)]); ok {
			_, l := artPrefix(idx)
			v := n.vals[n.fringeCount()+n.pfxBits.below(idx)]
			return resultPrefix(a, 8*d+l), v, true
		}
	}
	var zero V
	return netip.Prefix{}, zero, false
}

// resultPrefix is the prefix of length bits that contains a. Masking the
// queried address is cheaper than rebuilding an address from the key, and
// drops any IPv6 zone.
func resultPrefix(a netip.Addr, bits int) netip.Prefix {
	p, _ := a.Prefix(bits) // cannot fail: a is valid and bits <= a.BitLen()
	return p
}

// LookupPrefix returns the longest stored prefix that covers pfx (pfx itself
// included), with its value: the route that a packet to any address inside
// pfx would take if nothing more specific existed, which is what recursive
// next-hop resolution and "is this prefix already covered" checks need.
// An invalid pfx matches nothing.
func (t *Table[V]) LookupPrefix(pfx netip.Prefix) (netip.Prefix, V, bool) {
	var zero V
	k, bits, is4, ok := prefixKey(pfx)
	if !ok {
		return netip.Prefix{}, zero, false
	}
	a := pfx.Addr()
	n := t.root(is4)
	var stack [maxDepth]*node[V]
	d := 0
	for ; ; d++ {
		stack[d&(maxDepth-1)] = n
		if bits <= 8*d+8 {
			break
		}
		o := k.octet(d)
		if n.kidBits.test(o) {
			n = n.kid(o)
			continue
		}
		if n.leafBits.test(o) {
			lf := &n.leaves[n.leafBits.below(o)]
			if int(lf.bits) <= bits && lf.covers(k) {
				return resultPrefix(a, int(lf.bits)), lf.val, true
			}
		}
		break
	}
	for ; d >= 0; d-- {
		n = stack[d&(maxDepth-1)]
		o := k.octet(d)
		l := min(bits-8*d, 8) // longest in-stride length that still covers pfx
		if l == 8 {
			if n.fringeBits.test(o) {
				return resultPrefix(a, 8*d+8), n.vals[n.fringeRank(o)], true
			}
			l = 7
		}
		if idx, ok := n.pfxBits.topAnd(&ancestors[artIndex(o, l)]); ok {
			_, l := artPrefix(idx)
			v := n.vals[n.fringeCount()+n.pfxBits.below(idx)]
			return resultPrefix(a, 8*d+l), v, true
		}
	}
	return netip.Prefix{}, zero, false
}
