// Package chunk hands out small slices carved from shared chunks, for
// snapshots that hold a slice of one or two elements per prefix: allocated
// apiece, a full table's were millions of objects for the collector.
package chunk

import "slices"

// Size is how many elements one chunk holds.
const Size = 4096

// Arena carves slices from chunks of Size. Each slice is capped at its
// length, so appending to one copies it out instead of writing over its
// neighbour. The zero Arena is ready to use; it is not safe for
// concurrent use.
type Arena[T any] struct{ buf []T }

// Of returns a slice holding vs, from the current chunk when they fit (a
// slice longer than a quarter of a chunk gets an allocation of its own).
func (a *Arena[T]) Of(vs ...T) []T {
	if len(vs) > Size/4 {
		return slices.Clone(vs)
	}
	if cap(a.buf)-len(a.buf) < len(vs) {
		a.buf = make([]T, 0, Size)
	}
	i := len(a.buf)
	a.buf = append(a.buf, vs...)
	return a.buf[i:len(a.buf):len(a.buf)]
}

// Add appends v to s, a slice of the arena's, or makes one when s is nil.
func (a *Arena[T]) Add(s []T, v T) []T {
	if s == nil {
		return a.Of(v)
	}
	return append(s, v)
}
