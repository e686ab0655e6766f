// Package trie is the longest-prefix-match store under fibgate's kernel FIB
// model. It must hold a full Internet table (about 1M IPv4 and 250k IPv6
// prefixes) in little memory while answering lookups in a few cache misses.
//
// The structure is a multibit trie with 8-bit strides, in the spirit of the
// kernel's LC-trie and of gaissmai/bart: each node covers one octet of the
// address, keeps its prefixes and children in popcount-compressed sparse
// arrays over 256-bit bitsets, finds the longest match among its own prefixes
// with one AND against a precomputed ancestor bitset, and path-compresses
// subtrees that hold a single prefix into inline leaves. See node for the
// layout and README.md of plugin/fib for measurements.
package trie

import (
	"net/netip"
	"sync"
)

// maxDepth is the number of strides of an IPv6 address; IPv4 uses 4.
const maxDepth = 16

// Table is a longest-prefix-match table for IPv4 and IPv6 prefixes. Both
// families live in one table with separate roots, so callers need not
// dispatch on the family. Prefixes are canonicalised (masked) on the way in,
// so 10.1.2.3/8 and 10.0.0.0/8 are the same key. An IPv4-mapped IPv6 address
// or prefix (::ffff:a.b.c.d) is IPv6 here and never matches IPv4 routes,
// mirroring the kernel, which keeps the two FIBs apart.
//
// The zero value is an empty table ready to use. A Table must not be copied
// after first use. It is not safe for concurrent mutation; any number of
// concurrent readers (Get, Lookup, LookupPrefix, iterators, Len,
// MemoryEstimate) are safe as long as nobody mutates.
type Table[V any] struct {
	_            [0]sync.Mutex // lets go vet's copylocks check flag copies
	root4, root6 node[V]
	len4, len6   int
}

func (t *Table[V]) root(is4 bool) *node[V] {
	if is4 {
		return &t.root4
	}
	return &t.root6
}

func (t *Table[V]) grow(is4 bool, delta int) {
	if is4 {
		t.len4 += delta
	} else {
		t.len6 += delta
	}
}

// Insert stores v under pfx (masked to its length), replacing any value
// already stored for that prefix. It reports whether pfx was valid: an
// invalid prefix (the zero Prefix, a bad length) is ignored and false is
// returned, so callers fed from untrusted input cannot corrupt the table.
func (t *Table[V]) Insert(pfx netip.Prefix, v V) bool {
	k, bits, is4, ok := prefixKey(pfx)
	if !ok {
		return false
	}
	if t.root(is4).insert(k, bits, 0, v) {
		t.grow(is4, 1)
	}
	return true
}

// insert stores v for (k, bits) starting at n, which sits at depth d on k's
// path. It reports whether a new prefix was added (false: overwritten).
func (n *node[V]) insert(k key, bits, d int, v V) bool {
	for {
		o := k.octet(d)
		if l := bits - 8*d; l <= 8 {
			return n.setEntry(o, l, v)
		}
		if n.kidBits.test(o) {
			n = n.kid(o)
			d++
			continue
		}
		if !n.leafBits.test(o) {
			n.addLeaf(o, leaf[V]{key: k, bits: uint8(bits), val: v})
			return true
		}
		i := n.leafBits.below(o)
		if lf := &n.leaves[i]; int(lf.bits) == bits && lf.key == k {
			lf.val = v
			return false
		}
		// A second prefix below this slot: the leaf becomes a node holding
		// the old leaf, and the insertion continues inside it (splitting
		// again while both keep sharing octets).
		old := n.removeLeaf(o)
		c := new(node[V])
		n.addKid(o, c)
		c.place(old, d+1)
		n, d = c, d+1
	}
}

// trail records the nodes from the root down to where a search for a prefix
// stopped, so a deletion can compress the path bottom-up without parent
// pointers in the nodes.
type trail[V any] struct {
	nodes [maxDepth]*node[V]
	depth int // depth of the last node
}

// find descends from root towards (k, bits). It returns a pointer to the
// stored value (nil if the prefix is absent) and fills tr with the visited
// nodes; the last one is where the prefix is, or would be, stored.
func (root *node[V]) find(k key, bits int, tr *trail[V]) *V {
	n := root
	for d := 0; ; d++ {
		tr.nodes[d&(maxDepth-1)] = n
		tr.depth = d
		o := k.octet(d)
		if l := bits - 8*d; l <= 8 {
			if i, ok := n.entryIndex(o, l); ok {
				return &n.vals[i]
			}
			return nil
		}
		if n.kidBits.test(o) {
			n = n.kid(o)
			continue
		}
		if n.leafBits.test(o) {
			if lf := &n.leaves[n.leafBits.below(o)]; int(lf.bits) == bits && lf.key == k {
				return &lf.val
			}
		}
		return nil
	}
}

// Get returns the value stored for exactly pfx (after masking). Unlike
// Lookup it never falls back to a covering prefix, which is what route
// replacement and deletion by key need.
func (t *Table[V]) Get(pfx netip.Prefix) (V, bool) {
	var zero V
	k, bits, is4, ok := prefixKey(pfx)
	if !ok {
		return zero, false
	}
	n := t.root(is4)
	for d := 0; ; d++ {
		o := k.octet(d)
		if l := bits - 8*d; l <= 8 {
			if i, ok := n.entryIndex(o, l); ok {
				return n.vals[i], true
			}
			return zero, false
		}
		if n.kidBits.test(o) {
			n = n.kid(o)
			continue
		}
		if n.leafBits.test(o) {
			if lf := &n.leaves[n.leafBits.below(o)]; int(lf.bits) == bits && lf.key == k {
				return lf.val, true
			}
		}
		return zero, false
	}
}

// Delete removes pfx (after masking) and returns the value it held. Nodes
// that become empty are freed and nodes left with a single prefix are folded
// back into a path-compressed leaf, so the memory of withdrawn routes is
// returned and the trie keeps the same shape as if the prefix had never been
// inserted. Deleting an absent or invalid prefix is a no-op.
func (t *Table[V]) Delete(pfx netip.Prefix) (V, bool) {
	var zero V
	k, bits, is4, ok := prefixKey(pfx)
	if !ok {
		return zero, false
	}
	var tr trail[V]
	slot := t.root(is4).find(k, bits, &tr)
	if slot == nil {
		return zero, false
	}
	v := *slot
	t.remove(&tr, k, bits, is4)
	return v, true
}

// Update looks pfx up and stores what fn decides, in one traversal: fn gets
// the current value and whether the prefix is present, and returns the new
// value and whether to keep it. keep == false deletes a present prefix (and
// compresses the trie as Delete does) or leaves an absent one absent. It is
// the building block for FIB entries that aggregate several routes (aliases)
// under one prefix. fn must not modify the table. Invalid prefixes are
// ignored and fn is not called.
func (t *Table[V]) Update(pfx netip.Prefix, fn func(old V, ok bool) (V, bool)) {
	k, bits, is4, ok := prefixKey(pfx)
	if !ok {
		return
	}
	var tr trail[V]
	slot := t.root(is4).find(k, bits, &tr)
	var old V
	if slot != nil {
		old = *slot
	}
	v, keep := fn(old, slot != nil)
	switch {
	case keep && slot != nil:
		*slot = v
	case keep:
		// continue from where the search stopped
		tr.nodes[tr.depth].insert(k, bits, tr.depth, v)
		t.grow(is4, 1)
	case slot != nil:
		t.remove(&tr, k, bits, is4)
	}
}

// remove deletes the present prefix (k, bits) from the last node of tr and
// restores canonical form on the way up: an empty node is unlinked, a node
// left with a single prefix and no children becomes a leaf in its parent.
func (t *Table[V]) remove(tr *trail[V], k key, bits int, is4 bool) {
	d := tr.depth
	n := tr.nodes[d]
	o := k.octet(d)
	if l := bits - 8*d; l <= 8 {
		n.deleteEntry(o, l)
	} else {
		n.removeLeaf(o)
	}
	t.grow(is4, -1)

	for ; d > 0; d-- {
		n = tr.nodes[d]
		if len(n.kids) != 0 {
			return
		}
		held := len(n.vals) + len(n.leaves)
		if held > 1 {
			return
		}
		parent, po := tr.nodes[d-1], k.octet(d-1)
		parent.removeKid(po)
		if held == 1 {
			parent.addLeaf(po, n.sole(k, d))
		}
	}
}

// Len returns the number of stored prefixes of both families, kept as a
// counter so that reporting table size (e.g. in metrics) is O(1).
func (t *Table[V]) Len() int { return t.len4 + t.len6 }

// Len4 returns the number of stored IPv4 prefixes; see Len.
func (t *Table[V]) Len4() int { return t.len4 }

// Len6 returns the number of stored IPv6 prefixes (4in6 included); see Len.
func (t *Table[V]) Len6() int { return t.len6 }
