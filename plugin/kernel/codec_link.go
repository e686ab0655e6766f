package kernel

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strconv"
)

// Link and address attributes and flags the codec reads.
const (
	iflaIfname    = 3
	iflaOperstate = 16

	ifaAddress = 1
	ifaLocal   = 2
	ifaFlags   = 8

	iffUp      = 0x1
	iffRunning = 0x40
)

// OperState is IFLA_OPERSTATE, the RFC 2863 operational state of a link.
type OperState uint8

// Operational states (IF_OPER_*). A link in any state but Up (or Unknown,
// which drivers without carrier reporting use) does not forward.
const (
	OperUnknown        OperState = 0
	OperNotPresent     OperState = 1
	OperDown           OperState = 2
	OperLowerLayerDown OperState = 3
	OperTesting        OperState = 4
	OperDormant        OperState = 5
	OperUp             OperState = 6
)

// String returns the name iproute2 prints, in lower case.
func (s OperState) String() string {
	switch s {
	case OperUnknown:
		return "unknown"
	case OperNotPresent:
		return "notpresent"
	case OperDown:
		return "down"
	case OperLowerLayerDown:
		return "lowerlayerdown"
	case OperTesting:
		return "testing"
	case OperDormant:
		return "dormant"
	case OperUp:
		return "up"
	}
	return "operstate(" + strconv.Itoa(int(s)) + ")"
}

// LinkMessage is one decoded RTM_NEWLINK or RTM_DELLINK. The kernel flushes
// the routes through a link that goes admin-down or is deleted without
// sending RTM_DELROUTE for them (IPv4), so a listener must watch links.
type LinkMessage struct {
	// Type is unix.RTM_NEWLINK (16) or unix.RTM_DELLINK (17).
	Type uint16
	// Index is ifi_index, the number routes use in RTA_OIF.
	Index int
	// Name is IFLA_IFNAME ("" if absent).
	Name string
	// Flags is the raw ifi_flags (IFF_UP, IFF_RUNNING, IFF_LOWER_UP, ...).
	Flags uint32
	// OperState is IFLA_OPERSTATE (OperUnknown when absent).
	OperState OperState
	// Deleted is set for RTM_DELLINK: the link is gone, and so are its routes.
	Deleted bool
	// AdminUp is IFF_UP: the administrator enabled the link. Taking it down
	// flushes IPv4 routes through it without RTM_DELROUTE.
	AdminUp bool
	// Up is IFF_UP and IFF_RUNNING: the link is enabled and operationally up
	// (carrier present), so it forwards. A link that is admin-up but not
	// running keeps its routes, marked RTNH_F_LINKDOWN without a notification.
	Up bool
}

// DecodeLink decodes an RTM_NEWLINK/RTM_DELLINK. Messages whose ifi_family
// is not AF_UNSPEC (bridge port state, AF_BRIDGE) return ErrFamily, because
// their RTM_DELLINK does not mean the link is gone.
func DecodeLink(msg []byte) (LinkMessage, error) {
	var l LinkMessage
	h, msg, err := parseHeader(msg)
	if err != nil {
		return l, err
	}
	l.Type = h.Type
	if h.Type != rtmNewLink && h.Type != rtmDelLink {
		return l, malformed(4, "nlmsg_type", "type %d is not RTM_NEWLINK or RTM_DELLINK", h.Type)
	}
	if len(msg) < nlmsgHdrLen+ifinfomsgLen {
		return l, malformed(nlmsgHdrLen, "ifinfomsg", "message is %d bytes, too short for the %d-byte ifinfomsg", len(msg), ifinfomsgLen)
	}
	ifi := msg[nlmsgHdrLen:]
	l.Index = int(int32(binary.NativeEndian.Uint32(ifi[4:])))
	l.Flags = binary.NativeEndian.Uint32(ifi[8:])
	l.Deleted = h.Type == rtmDelLink
	l.AdminUp = l.Flags&iffUp != 0
	l.Up = l.AdminUp && l.Flags&iffRunning != 0
	if ifi[0] != afUnspec {
		return l, ErrFamily
	}
	ar := newAttrReader(msg[nlmsgHdrLen+ifinfomsgLen:], nlmsgHdrLen+ifinfomsgLen)
	for ar.next() {
		switch ar.typ {
		case iflaIfname:
			name := ar.data
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			l.Name = string(name)
		case iflaOperstate:
			if len(ar.data) != 1 {
				return l, malformed(ar.off, "IFLA_OPERSTATE", "payload is %d bytes, want 1", len(ar.data))
			}
			l.OperState = OperState(ar.data[0])
		}
	}
	return l, ar.err
}

// AddrMessage is one decoded RTM_NEWADDR or RTM_DELADDR. Removing an
// address flushes the IPv4 routes that use it as preferred source or that
// it created (its prefix route and local /32) without RTM_DELROUTE for most
// of them, so a listener must watch addresses too.
type AddrMessage struct {
	// Type is unix.RTM_NEWADDR (20) or unix.RTM_DELADDR (21).
	Type uint16
	// Index is ifa_index, the link holding the address.
	Index int
	// Prefix is the local address with its prefix length as configured
	// (192.0.2.1/24, not masked): IFA_LOCAL, or IFA_ADDRESS without it.
	Prefix netip.Prefix
	// Scope is ifa_scope (0 universe, 253 link, 254 host).
	Scope uint8
	// Flags is IFA_FLAGS when present, else ifa_flags (IFA_F_SECONDARY,
	// IFA_F_TENTATIVE, IFA_F_NOPREFIXROUTE, ...).
	Flags uint32
	// Deleted is set for RTM_DELADDR.
	Deleted bool
}

// DecodeAddr decodes an RTM_NEWADDR/RTM_DELADDR of AF_INET or AF_INET6;
// other families return ErrFamily.
func DecodeAddr(msg []byte) (AddrMessage, error) {
	var a AddrMessage
	h, msg, err := parseHeader(msg)
	if err != nil {
		return a, err
	}
	a.Type = h.Type
	a.Deleted = h.Type == rtmDelAddr
	if h.Type != rtmNewAddr && h.Type != rtmDelAddr {
		return a, malformed(4, "nlmsg_type", "type %d is not RTM_NEWADDR or RTM_DELADDR", h.Type)
	}
	if len(msg) < nlmsgHdrLen+ifaddrmsgLen {
		return a, malformed(nlmsgHdrLen, "ifaddrmsg", "message is %d bytes, too short for the %d-byte ifaddrmsg", len(msg), ifaddrmsgLen)
	}
	ifa := msg[nlmsgHdrLen:]
	family, plen := ifa[0], int(ifa[1])
	a.Flags = uint32(ifa[2])
	a.Scope = ifa[3]
	a.Index = int(int32(binary.NativeEndian.Uint32(ifa[4:])))
	bits := 32
	switch family {
	case afInet:
	case afInet6:
		bits = 128
	default:
		return a, ErrFamily
	}
	if plen > bits {
		return a, malformed(nlmsgHdrLen+1, "ifa_prefixlen", "%d exceeds %d bits", plen, bits)
	}
	var local, address netip.Addr
	ar := newAttrReader(msg[nlmsgHdrLen+ifaddrmsgLen:], nlmsgHdrLen+ifaddrmsgLen)
	for ar.next() {
		switch ar.typ {
		case ifaAddress:
			address, err = ar.addr("IFA_ADDRESS", family)
		case ifaLocal:
			local, err = ar.addr("IFA_LOCAL", family)
		case ifaFlags:
			a.Flags, err = ar.u32("IFA_FLAGS")
		}
		if err != nil {
			return a, err
		}
	}
	if ar.err != nil {
		return a, ar.err
	}
	if local.IsValid() {
		address = local
	}
	if !address.IsValid() {
		return a, malformed(nlmsgHdrLen, "ifaddrmsg", "neither IFA_LOCAL nor IFA_ADDRESS present")
	}
	a.Prefix = netip.PrefixFrom(address, plen)
	return a, nil
}
