// Package intern keeps a value that many records repeat once, behind an
// 8-byte handle.
//
// A full table's records carry the same few values by the hundred
// thousand: the preferred source of the FIB model's routes. Held as a Value
// (unique.Make underneath) each costs a record 8 bytes instead of a
// netip.Addr's 24, and is stored once; values no record holds any more
// are collected. A Value is a pointer, so a record holding one is marked
// by every collection: the gate's tracker names its texts and next hops
// by 4-byte ids into tables of its own instead (plugin/gate table.go).
package intern

import "unique"

// Value is v held once. The zero Value is T's zero value, and making it
// stores nothing.
type Value[T comparable] struct{ h unique.Handle[T] }

// Of returns v's Value.
func Of[T comparable](v T) Value[T] {
	var zero T
	if v == zero {
		return Value[T]{}
	}
	return Value[T]{unique.Make(v)}
}

// Get returns the value held; T's zero value for the zero Value.
func (v Value[T]) Get() T {
	if v == (Value[T]{}) {
		var zero T
		return zero
	}
	return v.h.Value()
}
