package trie

import (
	"encoding/binary"
	"net/netip"
)

// key is an address as two big-endian words. IPv4 addresses occupy the top 32
// bits of hi, so octet d of an IPv4 address is octet d of the key, exactly as
// for IPv6, and both families share one traversal.
type key struct {
	hi, lo uint64
}

// addrKey converts a to its key. 4in6 addresses stay IPv6 (is4 false).
func addrKey(a netip.Addr) (k key, is4 bool) {
	if a.Is4() {
		b := a.As4()
		return key{hi: uint64(binary.BigEndian.Uint32(b[:])) << 32}, true
	}
	b := a.As16()
	return key{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}, false
}

// prefixKey canonicalises pfx: it returns the masked key, the length and the
// family, or ok == false for an invalid prefix.
func prefixKey(pfx netip.Prefix) (k key, bits int, is4, ok bool) {
	if !pfx.IsValid() {
		return k, 0, false, false
	}
	bits = pfx.Bits()
	k, is4 = addrKey(pfx.Addr())
	return k.mask(bits), bits, is4, true
}

// octet returns byte d (0..15) of the key.
func (k key) octet(d int) uint8 {
	if d < 8 {
		return uint8(k.hi >> (56 - 8*uint(d)))
	}
	return uint8(k.lo >> (120 - 8*uint(d)))
}

// withOctet returns k with byte d replaced by o.
func (k key) withOctet(d int, o uint8) key {
	if d < 8 {
		s := 56 - 8*uint(d)
		k.hi = k.hi&^(0xff<<s) | uint64(o)<<s
		return k
	}
	s := 120 - 8*uint(d)
	k.lo = k.lo&^(0xff<<s) | uint64(o)<<s
	return k
}

// mask keeps the leading bits (0..128) of k and zeroes the rest.
func (k key) mask(bits int) key {
	if bits <= 64 {
		// a shift by 64 yields 0, so bits == 0 clears hi completely
		return key{hi: k.hi &^ (^uint64(0) >> uint(bits))}
	}
	return key{hi: k.hi, lo: k.lo &^ (^uint64(0) >> uint(bits-64))}
}

// addr converts k back to an address of the given family.
func (k key) addr(is4 bool) netip.Addr {
	if is4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(k.hi>>32))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	return netip.AddrFrom16(b)
}

// prefix returns the canonical prefix of the leading bits of k.
func (k key) prefix(bits int, is4 bool) netip.Prefix {
	return netip.PrefixFrom(k.mask(bits).addr(is4), bits)
}
