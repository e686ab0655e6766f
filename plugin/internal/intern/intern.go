// Package intern keeps a value that many records repeat once, behind an
// 8-byte handle.
//
// A full table's records carry the same few values by the hundred
// thousand: a scope name, a reason, per-path flags, a next hop, a
// preferred source. Held as a Value (unique.Make underneath) each costs a
// record 8 bytes instead of a string's 16 or a netip.Addr's 24, and is
// stored once; values no record holds any more are collected.
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
