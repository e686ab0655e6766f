package kernel

import (
	"encoding/binary"
	"net/netip"
)

// Nexthop object messages (include/uapi/linux/nexthop.h).
const (
	rtmNewNexthop = 104
	rtmDelNexthop = 105

	nhmsgLen     = 8 // struct nhmsg
	nhGrpLen     = 8 // struct nexthop_grp
	nhaID        = 1
	nhaGroup     = 2
	nhaBlackhole = 4
	nhaOIF       = 5
	nhaGateway   = 6
	nhaEncap     = 8
	nhaFDB       = 11
)

// NexthopMessage is one decoded RTM_NEWNEXTHOP or RTM_DELNEXTHOP: a nexthop
// object (`ip nexthop`), which routes name by id (RTA_NH_ID; FRR's zebra
// installs its routes over them). The listener needs them for two kernel
// behaviours that announce no route change: with nexthop_compat_mode at 0
// a route shows only its object's id, so where it leads is the object's,
// and an object's deletion removes the IPv4 routes over it (and shrinks
// the groups holding it) without RTM_DELROUTE, in either mode.
type NexthopMessage struct {
	// Deleted is set for RTM_DELNEXTHOP.
	Deleted bool
	ID      uint32
	// Group lists a group object's members; nil for a single nexthop.
	Group []GroupMember
	// Gateway and LinkIndex are a single nexthop's (NHA_GATEWAY, NHA_OIF);
	// a device nexthop has no gateway.
	Gateway   netip.Addr
	LinkIndex int
	// Flags is nh_flags: RTNH_F_ONLINK, and the kernel's own bits.
	Flags uint32
	// Blackhole is a nexthop that drops (NHA_BLACKHOLE); FDB one for the
	// bridge's VXLAN entries only (NHA_FDB), which no route may use.
	Blackhole, FDB bool
	// Encap says the nexthop has a lightweight-tunnel encapsulation, which
	// the FIB model does not keep.
	Encap bool
}

// GroupMember is one member of a nexthop group and its ECMP weight (1-65536).
type GroupMember struct {
	ID     uint32
	Weight int
}

// DecodeNexthop decodes an RTM_NEWNEXTHOP/RTM_DELNEXTHOP.
func DecodeNexthop(msg []byte) (NexthopMessage, error) {
	var m NexthopMessage
	h, msg, err := parseHeader(msg)
	if err != nil {
		return m, err
	}
	if h.Type != rtmNewNexthop && h.Type != rtmDelNexthop {
		return m, malformed(4, "nlmsg_type", "type %d is not RTM_NEWNEXTHOP or RTM_DELNEXTHOP", h.Type)
	}
	m.Deleted = h.Type == rtmDelNexthop
	if len(msg) < nlmsgHdrLen+nhmsgLen {
		return m, malformed(nlmsgHdrLen, "nhmsg", "message is %d bytes, too short for the %d-byte nhmsg", len(msg), nhmsgLen)
	}
	family := msg[nlmsgHdrLen]
	m.Flags = binary.NativeEndian.Uint32(msg[nlmsgHdrLen+4:])
	ar := newAttrReader(msg[nlmsgHdrLen+nhmsgLen:], nlmsgHdrLen+nhmsgLen)
	for ar.next() {
		switch ar.typ {
		case nhaID:
			m.ID, err = ar.u32("NHA_ID")
		case nhaGroup:
			if len(ar.data)%nhGrpLen != 0 {
				return m, malformed(ar.off, "NHA_GROUP", "payload of %d bytes is no whole number of %d-byte entries", len(ar.data), nhGrpLen)
			}
			m.Group = make([]GroupMember, 0, len(ar.data)/nhGrpLen)
			for b := ar.data; len(b) >= nhGrpLen; b = b[nhGrpLen:] {
				// weight is one less than the member's weight; weight_high
				// (Linux 6.12) holds its upper byte.
				w := int(b[4]) | int(b[5])<<8
				m.Group = append(m.Group, GroupMember{ID: binary.NativeEndian.Uint32(b), Weight: w + 1})
			}
		case nhaBlackhole:
			m.Blackhole = true
		case nhaFDB:
			m.FDB = true
		case nhaEncap:
			m.Encap = true
		case nhaOIF:
			var oif uint32
			oif, err = ar.u32("NHA_OIF")
			m.LinkIndex = int(oif)
		case nhaGateway:
			m.Gateway, err = ar.addr("NHA_GATEWAY", family)
		}
		if err != nil {
			return m, err
		}
	}
	if ar.err != nil {
		return m, ar.err
	}
	if m.ID == 0 {
		return m, malformed(nlmsgHdrLen+nhmsgLen, "NHA_ID", "missing")
	}
	return m, nil
}
