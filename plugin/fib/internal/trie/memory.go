package trie

import "unsafe"

// MemoryEstimate returns the bytes held by the table's own structure, so the
// FIB model can report its footprint without a heap profile. It counts the
// Table itself, every node, and the backing arrays of the nodes' sparse
// slices by capacity (child pointers, inline leaves, values of type V). It
// does not count what V points to (the route structs), nor the allocator's
// rounding of each allocation up to its size class, nor GC metadata, so a
// heap measurement is typically a few percent higher. It walks the whole
// trie: O(number of nodes), not meant for hot paths.
func (t *Table[V]) MemoryEstimate() int {
	return int(unsafe.Sizeof(*t)) + t.root4.memory() + t.root6.memory()
}

// memory returns the bytes of n's slices and of its descendants (n's own
// struct is counted by whoever holds it).
func (n *node[V]) memory() int {
	var (
		v  V
		lf leaf[V]
		c  node[V]
	)
	b := cap(n.vals)*int(unsafe.Sizeof(v)) +
		cap(n.leaves)*int(unsafe.Sizeof(lf)) +
		cap(n.kids)*int(unsafe.Sizeof(&c))
	for _, k := range n.kids {
		b += int(unsafe.Sizeof(c)) + k.memory()
	}
	return b
}
