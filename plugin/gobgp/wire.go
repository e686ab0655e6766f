package gobgp

import (
	"errors"
	"net/netip"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// Reading GoBGP's API attributes from their wire bytes.
//
// Every best path WatchBest hears of comes as an api.Path whose
// attributes are protobuf Anys. Unmarshalling them (anypb's UnmarshalTo)
// builds a message, its segments and strings for each: at the full table
// the AS_PATH alone was 0.8 GB of the 29 GB gobgpd-ext allocated in its
// first 140 s. These readers take the few fields the gate needs straight
// from Any.Value, without allocating; TestWireReadersAgreeWithUnmarshal
// holds them to protobuf's own decoding. Field numbers are GoBGP v3's
// api/attribute.proto, which v3 keeps stable (they are its wire API).

var errWire = errors.New("malformed protobuf")

// eachField calls fn for each field of a message in b: its number, wire
// type, and either its bytes (BytesType) or its varint value.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errWire
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errWire
		}
		b = b[n:]
		if typ == protowire.BytesType || typ == protowire.VarintType {
			if err := fn(num, typ, v, x); err != nil {
				return err
			}
		}
	}
	return nil
}

// eachUint32 calls fn for each value of a repeated uint32 field, packed
// (BytesType) or not (one VarintType field per value).
func eachUint32(typ protowire.Type, v []byte, x uint64, fn func(uint32)) error {
	if typ == protowire.VarintType {
		fn(uint32(x))
		return nil
	}
	for len(v) > 0 {
		x, n := protowire.ConsumeVarint(v)
		if n < 0 {
			return errWire
		}
		fn(uint32(x))
		v = v[n:]
	}
	return nil
}

// wireASMask is x.maskOf over every AS of an AsPathAttribute
// (segments = 1; in each, numbers = 2).
func wireASMask(b []byte, x *asIndex) (uint64, error) {
	var mask uint64
	err := eachField(b, func(num protowire.Number, typ protowire.Type, seg []byte, _ uint64) error {
		if num != 1 || typ != protowire.BytesType {
			return nil
		}
		return eachField(seg, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
			if num != 2 {
				return nil
			}
			return eachUint32(typ, v, n, func(as uint32) {
				if b, ok := x.bit[as]; ok {
					mask |= 1 << b
				}
			})
		})
	})
	return mask, err
}

// wireAddr parses an address given as a string field's bytes, without
// copying them to a string first.
func wireAddr(v []byte) (netip.Addr, bool) {
	if len(v) == 0 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(unsafe.String(&v[0], len(v)))
	return a, err == nil
}

// wireNextHop reads a NextHopAttribute (next_hop = 1).
func wireNextHop(b []byte) (netip.Addr, error) {
	var nh netip.Addr
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num == 1 && typ == protowire.BytesType {
			if a, ok := wireAddr(v); ok {
				nh = a.Unmap()
			}
		}
		return nil
	})
	return nh, err
}

// wireMpNextHop reads the first next hop of an MpReachNLRIAttribute
// (next_hops = 2) that is not link-local.
func wireMpNextHop(b []byte) (netip.Addr, error) {
	var nh netip.Addr
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num == 2 && typ == protowire.BytesType && !nh.IsValid() {
			if a, ok := wireAddr(v); ok && !a.IsLinkLocalUnicast() {
				nh = a.Unmap()
			}
		}
		return nil
	})
	return nh, err
}

// wireCommunities appends the values of a CommunitiesAttribute
// (communities = 1) to to.
func wireCommunities(b []byte, to []uint32) ([]uint32, error) {
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		if num != 1 {
			return nil
		}
		return eachUint32(typ, v, x, func(c uint32) { to = append(to, c) })
	})
	return to, err
}

// wireIPPrefix reads an IPAddressPrefix (prefix_len = 1, prefix = 2).
func wireIPPrefix(b []byte) (netip.Prefix, bool) {
	var addr netip.Addr
	var bits uint64
	ok := true
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			bits = x
		case num == 2 && typ == protowire.BytesType:
			addr, ok = wireAddr(v)
		}
		return nil
	})
	if err != nil || !ok || !addr.IsValid() || bits > 128 {
		return netip.Prefix{}, false
	}
	p, err := addr.Unmap().Prefix(int(bits))
	return p, err == nil
}
