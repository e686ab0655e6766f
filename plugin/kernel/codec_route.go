package kernel

import (
	"encoding/binary"
	"net/netip"

	"github.com/fibgate/fibgate/plugin/fib"
)

// Route attributes (enum rtattr_type_t) that the codec reads or writes.
// Everything else (RTA_CACHEINFO, RTA_METRICS, RTA_PREF, RTA_ENCAP,
// RTA_EXPIRES, RTA_UID, ...) is skipped: none of it is part of route
// identity or hardware state. The ones a route may carry as set by whoever
// wrote it (unmodelled) only mark the route as having them
// (fib.Route.Unmodelled), so that it is never written back without them.
const (
	rtaDst       = 1
	rtaSrc       = 2
	rtaOIF       = 4
	rtaGateway   = 5
	rtaPriority  = 6
	rtaPrefSrc   = 7
	rtaMetrics   = 8
	rtaMultipath = 9
	rtaFlow      = 11
	rtaCacheInfo = 12
	rtaTable     = 15
	rtaVia       = 18
	rtaNewDst    = 19
	rtaPref      = 20
	rtaEncapType = 21
	rtaEncap     = 22
	rtaExpires   = 23
	rtaNHID      = 30
)

// unmodelled reports whether an attribute of a route (or of one of its
// rtnexthops) is one the model does not keep but a rewrite would need:
// metrics (the kernel omits an empty RTA_METRICS), realms, an lwtunnel
// encapsulation, an MPLS destination, a router preference other than
// medium (0), or an expiry (RTA_EXPIRES, or rta_expires in RTA_CACHEINFO).
func unmodelled(typ uint16, data []byte) bool {
	switch typ {
	case rtaMetrics, rtaFlow, rtaNewDst, rtaEncapType, rtaEncap, rtaExpires:
		return true
	case rtaPref:
		return len(data) > 0 && data[0] != 0
	case rtaCacheInfo:
		// struct rta_cacheinfo: rta_clntref, rta_lastuse, rta_expires, ...
		return len(data) >= 12 && binary.NativeEndian.Uint32(data[8:]) != 0
	}
	return false
}

// RouteMessage is one decoded RTM_NEWROUTE or RTM_DELROUTE. It keeps the
// netlink framing next to the fib.Route because the meaning of a message
// depends on it: nlmsg flags tell add from append, prepend and replace, and
// a hardware-flag change is an RTM_NEWROUTE with nlmsg flags 0.
type RouteMessage struct {
	// Type is nlmsg_type: unix.RTM_NEWROUTE (24) or unix.RTM_DELROUTE (25).
	Type uint16
	// NLFlags is nlmsg_flags: NLM_F_REPLACE/EXCL/CREATE/APPEND on changes,
	// NLM_F_MULTI in dumps, 0 on a hardware-flag change.
	NLFlags uint16
	// Seq and PID are nlmsg_seq and nlmsg_pid: those of the request that
	// caused the change (0 for kernel-originated changes).
	Seq, PID uint32
	// RTMFlags is the raw rtm_flags, kept for debugging and JSON output;
	// its meaning is already decoded into Route.Flags and the nexthops.
	RTMFlags uint32
	// Route is the route itself. Route.Flags holds the RTM_F_OFFLOAD/TRAP/
	// OFFLOAD_FAILED bits; per-nexthop state is in Route.Nexthops[i].HW.
	Route fib.Route
	// Src is the source prefix of a source-specific (IPv6 subtree) route,
	// from RTA_SRC and rtm_src_len; invalid (zero) for ordinary routes.
	// fib.Route has no field for it, so a listener must check it: such a
	// route is a different route from the one without Src, and drivers
	// never offload it.
	Src netip.Prefix
	// Multipath records that the nexthops came in RTA_MULTIPATH (a nexthop
	// group of one member is still encoded that way), so EncodeRoute can
	// reproduce the message. Decoders of the route's meaning can ignore it.
	Multipath bool
}

// DecodeRoute decodes one RTM_NEWROUTE/RTM_DELROUTE starting at its nlmsghdr.
//
// The table comes from RTA_TABLE, falling back to rtm_table; the prefix from
// RTA_DST and rtm_dst_len (the default route when RTA_DST is absent) and must
// be canonical. Single-path nexthops come from RTA_GATEWAY/RTA_VIA and
// RTA_OIF, with their rtnh flags taken from the low byte of rtm_flags (HW for
// offload/trap, Flags for the rest); multipath nexthops from RTA_MULTIPATH
// with Weight = rtnh_hops+1. Route.Flags = fib.FlagsFromRTM(rtm_flags).
//
// IPv6 keeps hardware state per fib6_info, and the kernel reports a
// multipath route with the first sibling's rtm_flags and that sibling listed
// first; so for IPv6 the route flags are also ORed into Nexthops[0].HW.
// A route that only names a nexthop object (RTA_NH_ID with
// nexthop_compat_mode=0) has no Nexthops.
//
// RTM_F_CLONED entries return ErrCloned and families other than
// AF_INET/AF_INET6 return ErrFamily; both match ErrSkip and come with the
// header fields (Type, NLFlags, Seq, PID, RTMFlags) filled in. A malformed
// message returns a *DecodeError (matching ErrMalformed) naming the field and
// offset. DecodeRoute never panics, and allocates only the Nexthops slice,
// sized from the message.
func DecodeRoute(msg []byte) (RouteMessage, error) {
	var m RouteMessage
	h, msg, err := parseHeader(msg)
	if err != nil {
		return m, err
	}
	m.Type, m.NLFlags, m.Seq, m.PID = h.Type, h.Flags, h.Seq, h.PID
	if h.Type != rtmNewRoute && h.Type != rtmDelRoute {
		return m, malformed(4, "nlmsg_type", "type %d is not RTM_NEWROUTE or RTM_DELROUTE", h.Type)
	}
	if len(msg) < nlmsgHdrLen+rtmsgLen {
		return m, malformed(nlmsgHdrLen, "rtmsg", "message is %d bytes, too short for the %d-byte rtmsg", len(msg), rtmsgLen)
	}
	rtm := msg[nlmsgHdrLen : nlmsgHdrLen+rtmsgLen]
	family, dstLen, srcLen := rtm[0], int(rtm[1]), int(rtm[2])
	rtmFlags := binary.NativeEndian.Uint32(rtm[8:])
	m.RTMFlags = rtmFlags
	if rtmFlags&rtmFCloned != 0 {
		return m, ErrCloned
	}
	var bits int
	switch family {
	case afInet:
		bits = 32
	case afInet6:
		bits = 128
	default:
		return m, ErrFamily
	}
	if dstLen > bits {
		return m, malformed(nlmsgHdrLen+1, "rtm_dst_len", "%d exceeds %d bits", dstLen, bits)
	}
	if srcLen > bits {
		return m, malformed(nlmsgHdrLen+2, "rtm_src_len", "%d exceeds %d bits", srcLen, bits)
	}

	r := &m.Route
	r.Table = uint32(rtm[4])
	r.TOS = rtm[3]
	r.Protocol = fib.Protocol(rtm[5])
	r.Scope = rtm[6]
	r.Type = fib.RouteType(rtm[7])
	r.Flags = fib.FlagsFromRTM(rtmFlags)

	var (
		dst, src, gw    netip.Addr
		dstOff, srcOff  = -1, -1
		oif             uint32
		haveOIF, haveGW bool
		gwOff           int
		mpData          []byte
		mpOff           int
	)
	ar := newAttrReader(msg[nlmsgHdrLen+rtmsgLen:], nlmsgHdrLen+rtmsgLen)
	for ar.next() {
		switch ar.typ {
		case rtaDst:
			if dst, err = ar.addr("RTA_DST", family); err != nil {
				return m, err
			}
			dstOff = ar.off
		case rtaSrc:
			if src, err = ar.addr("RTA_SRC", family); err != nil {
				return m, err
			}
			srcOff = ar.off
		case rtaTable:
			if r.Table, err = ar.u32("RTA_TABLE"); err != nil {
				return m, err
			}
		case rtaPriority:
			if r.Priority, err = ar.u32("RTA_PRIORITY"); err != nil {
				return m, err
			}
		case rtaPrefSrc:
			if r.PrefSrc, err = ar.addr("RTA_PREFSRC", family); err != nil {
				return m, err
			}
		case rtaNHID:
			if r.NHID, err = ar.u32("RTA_NH_ID"); err != nil {
				return m, err
			}
		case rtaOIF:
			if oif, err = ar.u32("RTA_OIF"); err != nil {
				return m, err
			}
			haveOIF = true
		case rtaGateway:
			if gw, err = ar.addr("RTA_GATEWAY", family); err != nil {
				return m, err
			}
			haveGW, gwOff = true, ar.off
		case rtaVia:
			if gw, err = decodeVia(ar.data, ar.off); err != nil {
				return m, err
			}
			haveGW, gwOff = true, ar.off
		case rtaMultipath:
			mpData, mpOff = ar.data, ar.off
		default:
			r.Unmodelled = r.Unmodelled || unmodelled(ar.typ, ar.data)
		}
	}
	if ar.err != nil {
		return m, ar.err
	}

	if r.Prefix, err = makePrefix(dst, dstOff, dstLen, nlmsgHdrLen+1, family, "RTA_DST"); err != nil {
		return m, err
	}
	if srcLen > 0 {
		if m.Src, err = makePrefix(src, srcOff, srcLen, nlmsgHdrLen+2, family, "RTA_SRC"); err != nil {
			return m, err
		}
	}

	switch {
	case mpData != nil:
		if haveOIF || haveGW {
			off := mpOff
			if haveGW {
				off = gwOff
			}
			return m, malformed(off, "RTA_MULTIPATH", "route has both RTA_MULTIPATH and a single-path RTA_OIF/RTA_GATEWAY/RTA_VIA")
		}
		var extra bool
		if r.Nexthops, extra, err = decodeMultipath(mpData, mpOff, family); err != nil {
			return m, err
		}
		r.Unmodelled = r.Unmodelled || extra
		m.Multipath = true
	case haveOIF || haveGW:
		r.Nexthops = []fib.Nexthop{{
			Gateway:   gw,
			LinkIndex: int(oif),
			Weight:    1,
			Flags:     rtmFlags & rtnhFlagBits &^ (fib.RTNHFOffload | fib.RTNHFTrap),
			HW:        fib.FlagsFromRTNH(rtmFlags),
		}}
	}
	if family == afInet6 && len(r.Nexthops) > 0 {
		r.Nexthops[0].HW |= r.Flags
	}
	return m, nil
}

// makePrefix builds a canonical prefix from an address attribute at off
// (-1 when absent) and a length byte at lenOff. A missing address is the
// zero address of the family, which is only valid for length 0.
func makePrefix(a netip.Addr, off, bits, lenOff int, family uint8, name string) (netip.Prefix, error) {
	if off < 0 {
		if bits != 0 {
			return netip.Prefix{}, malformed(lenOff, name, "prefix length %d given but the attribute is missing", bits)
		}
		if family == afInet {
			return netip.PrefixFrom(netip.IPv4Unspecified(), 0), nil
		}
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0), nil
	}
	p := netip.PrefixFrom(a, bits)
	if p.Masked() != p {
		return netip.Prefix{}, malformed(off, name, "%s has bits set beyond the prefix length (not canonical)", p)
	}
	return p, nil
}

// decodeVia decodes struct rtvia: a u16 address family then the address.
func decodeVia(b []byte, off int) (netip.Addr, error) {
	if len(b) < 2 {
		return netip.Addr{}, malformed(off, "RTA_VIA", "payload is %d bytes, too short for rtvia_family", len(b))
	}
	fam := binary.NativeEndian.Uint16(b)
	if fam != afInet && fam != afInet6 {
		return netip.Addr{}, malformed(off, "RTA_VIA", "unsupported via family %d", fam)
	}
	return addrFrom(b[2:], uint8(fam), off, "RTA_VIA")
}

// decodeMultipath decodes the rtnexthop list of RTA_MULTIPATH. It counts
// the entries first so the slice is allocated once and exactly. extra
// reports an unmodelled attribute in some rtnexthop.
func decodeMultipath(b []byte, base int, family uint8) (nhs []fib.Nexthop, extra bool, err error) {
	n := 0
	for pos := 0; pos < len(b); n++ {
		rest := len(b) - pos
		if rest < rtnhLen {
			return nil, false, malformed(base+rtaHdrLen+pos, "rtnexthop", "%d bytes left, too short for a %d-byte rtnexthop", rest, rtnhLen)
		}
		l := int(binary.NativeEndian.Uint16(b[pos:]))
		if l < rtnhLen || l > rest {
			return nil, false, malformed(base+rtaHdrLen+pos, "rtnexthop", "rtnh_len %d outside %d..%d", l, rtnhLen, rest)
		}
		pos += align4(l)
	}
	if n == 0 {
		return nil, false, malformed(base, "RTA_MULTIPATH", "no nexthops")
	}
	nhs = make([]fib.Nexthop, 0, n)
	for pos := 0; pos < len(b); {
		l := int(binary.NativeEndian.Uint16(b[pos:]))
		flags := uint32(b[pos+2])
		nh := fib.Nexthop{
			LinkIndex: int(int32(binary.NativeEndian.Uint32(b[pos+4:]))),
			Weight:    int(b[pos+3]) + 1,
			Flags:     flags &^ (fib.RTNHFOffload | fib.RTNHFTrap),
			HW:        fib.FlagsFromRTNH(flags),
		}
		ar := newAttrReader(b[pos+rtnhLen:pos+l], base+rtaHdrLen+pos+rtnhLen)
		for ar.next() {
			switch ar.typ {
			case rtaGateway:
				nh.Gateway, err = ar.addr("RTA_GATEWAY in rtnexthop", family)
			case rtaVia:
				nh.Gateway, err = decodeVia(ar.data, ar.off)
			default:
				extra = extra || unmodelled(ar.typ, ar.data)
			}
			if err != nil {
				return nil, false, err
			}
		}
		if ar.err != nil {
			return nil, false, ar.err
		}
		nhs = append(nhs, nh)
		pos += align4(l)
	}
	return nhs, extra, nil
}

// EncodeRoute is the inverse of DecodeRoute: it builds the RTM_NEWROUTE or
// RTM_DELROUTE the kernel would send for m. It exists for tests, fuzz round
// trips and fixtures (for example messages with hardware flags, which no
// driver sets on a test machine), not for talking to the kernel: it does not
// validate m, so a route whose addresses mix families encodes into a message
// that DecodeRoute rejects.
//
// The family follows Route.Prefix (an invalid prefix encodes as IPv4).
// rtm_flags is RTMFlags ORed with the bits that Route.Flags and, for a
// single-path route, Nexthops[0].Flags/HW stand for, so a hand-built message
// needs only the decoded fields. Nexthops go into RTA_MULTIPATH when there is
// more than one or Multipath is set, otherwise into RTA_OIF (always written)
// and RTA_GATEWAY, or RTA_VIA when the gateway's family differs from the
// route's. Route.Unmodelled is written as an empty RTA_METRICS, which
// DecodeRoute reads back as Unmodelled (the kernel never sends one empty).
// For every m returned by DecodeRoute, DecodeRoute(EncodeRoute(m)) returns
// m again.
func EncodeRoute(m RouteMessage) []byte {
	r := &m.Route
	family, v6 := uint8(afInet), false
	if r.Prefix.IsValid() && r.Prefix.Addr().Is6() {
		family, v6 = afInet6, true
	}
	multipath := len(r.Nexthops) > 1 || (m.Multipath && len(r.Nexthops) > 0)

	rtmFlags := m.RTMFlags | r.Flags.RTM()
	if len(r.Nexthops) == 1 && !multipath {
		nh := r.Nexthops[0]
		hw := nh.HW
		if v6 {
			hw &^= r.Flags // DecodeRoute ORs the route flags in again
		}
		rtmFlags |= nh.Flags&rtnhFlagBits | hw.RTNH()
	}
	srcLen := 0
	if m.Src.IsValid() {
		srcLen = m.Src.Bits()
	}
	table := uint8(rtTableCompat)
	if r.Table < 256 {
		table = uint8(r.Table)
	}

	b := make([]byte, nlmsgHdrLen+rtmsgLen, 128+32*len(r.Nexthops))
	binary.NativeEndian.PutUint16(b[4:], m.Type)
	binary.NativeEndian.PutUint16(b[6:], m.NLFlags)
	binary.NativeEndian.PutUint32(b[8:], m.Seq)
	binary.NativeEndian.PutUint32(b[12:], m.PID)
	rtm := b[nlmsgHdrLen:]
	rtm[0] = family
	rtm[1] = uint8(max(r.Prefix.Bits(), 0))
	rtm[2] = uint8(srcLen)
	rtm[3] = r.TOS
	rtm[4] = table
	rtm[5] = uint8(r.Protocol)
	rtm[6] = r.Scope
	rtm[7] = uint8(r.Type)
	binary.NativeEndian.PutUint32(rtm[8:], rtmFlags)

	b = appendU32Attr(b, rtaTable, r.Table)
	if r.Prefix.Bits() > 0 {
		b = appendAddrAttr(b, rtaDst, r.Prefix.Addr())
	}
	if srcLen > 0 {
		b = appendAddrAttr(b, rtaSrc, m.Src.Addr())
	}
	if r.Priority != 0 {
		b = appendU32Attr(b, rtaPriority, r.Priority)
	}
	if r.PrefSrc.IsValid() {
		b = appendAddrAttr(b, rtaPrefSrc, r.PrefSrc)
	}
	if r.NHID != 0 {
		b = appendU32Attr(b, rtaNHID, r.NHID)
	}
	if r.Unmodelled {
		b = appendAttrHeader(b, rtaMetrics, 0) // an empty nest: see EncodeRoute
	}
	switch {
	case multipath:
		start := len(b)
		b = appendAttrHeader(b, rtaMultipath, 0)
		for _, nh := range r.Nexthops {
			hop := len(b)
			hops := min(max(nh.Weight, 1), 256) - 1
			b = append(b, 0, 0, uint8(nh.Flags&rtnhFlagBits|nh.HW.RTNH()), uint8(hops))
			b = binary.NativeEndian.AppendUint32(b, uint32(int32(nh.LinkIndex)))
			b = appendGateway(b, nh.Gateway, v6)
			binary.NativeEndian.PutUint16(b[hop:], uint16(len(b)-hop))
		}
		binary.NativeEndian.PutUint16(b[start:], uint16(len(b)-start))
	case len(r.Nexthops) == 1:
		nh := r.Nexthops[0]
		b = appendU32Attr(b, rtaOIF, uint32(nh.LinkIndex))
		b = appendGateway(b, nh.Gateway, v6)
	}
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	return b
}

func appendAttrHeader(b []byte, typ uint16, payload int) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(rtaHdrLen+payload))
	return binary.NativeEndian.AppendUint16(b, typ)
}

func appendU32Attr(b []byte, typ uint16, v uint32) []byte {
	b = appendAttrHeader(b, typ, 4)
	return binary.NativeEndian.AppendUint32(b, v)
}

// appendAddrAttr appends an address attribute in the address's own length;
// all address payloads are 4 or 16 bytes, so no padding is needed.
func appendAddrAttr(b []byte, typ uint16, a netip.Addr) []byte {
	if a.Is4() {
		b = appendAttrHeader(b, typ, 4)
		v := a.As4()
		return append(b, v[:]...)
	}
	b = appendAttrHeader(b, typ, 16)
	v := a.As16()
	return append(b, v[:]...)
}

// appendGateway writes RTA_GATEWAY when the gateway has the route's family
// and RTA_VIA (IPv4 route via an IPv6 router) when it does not.
func appendGateway(b []byte, gw netip.Addr, v6 bool) []byte {
	if !gw.IsValid() {
		return b
	}
	if gw.Is4() != v6 {
		return appendAddrAttr(b, rtaGateway, gw)
	}
	if gw.Is4() {
		v := gw.As4()
		b = appendAttrHeader(b, rtaVia, 2+4)
		b = binary.NativeEndian.AppendUint16(b, afInet)
		b = append(b, v[:]...)
		return append(b, 0, 0) // RTA_ALIGN padding
	}
	v := gw.As16()
	b = appendAttrHeader(b, rtaVia, 2+16)
	b = binary.NativeEndian.AppendUint16(b, afInet6)
	b = append(b, v[:]...)
	return append(b, 0, 0)
}
