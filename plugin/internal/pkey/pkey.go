// Package pkey is a prefix as a map key that holds no pointers.
//
// A netip.Prefix carries a pointer (the address's zone handle), so a map
// keyed by it is scanned by the garbage collector on every cycle, slot by
// slot, and its slots take 32 bytes of key. The gate keeps several maps
// with a key per route of a full table (1.06M); keyed by Key (18 bytes,
// no pointers) a map whose values hold no pointers either is never
// scanned at all, and each slot is smaller.
package pkey

import "net/netip"

// Key is a prefix: its address's 16 bytes (an IPv4 address mapped), its
// length and its family. Keys of equal prefixes are equal; a zone is not
// kept (routes have none).
type Key struct {
	addr [16]byte
	bits uint8
	v6   bool
}

// Of returns p's key.
func Of(p netip.Prefix) Key {
	a := p.Addr()
	return Key{addr: a.As16(), bits: uint8(p.Bits()), v6: a.Is6()}
}

// Prefix returns the prefix k was made of (without a zone).
func (k Key) Prefix() netip.Prefix {
	a := netip.AddrFrom16(k.addr)
	if !k.v6 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, int(k.bits))
}

// Is6 says whether k is an IPv6 prefix: per-family counts need no
// Prefix() rebuilt.
func (k Key) Is6() bool { return k.v6 }
