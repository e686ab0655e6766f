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
// Not for a route over a nexthop object: it is one fib6_info whatever the
// object's members, and its flags are the whole route's.
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
	m, h, err := decodeRouteHead(msg)
	if err != nil {
		return m, err
	}
	r := &m.Route
	var a routeAttrs
	if err := a.read(msg[nlmsgHdrLen+rtmsgLen:], h.family, r); err != nil {
		return m, err
	}
	if r.Prefix, err = makePrefix(a.dst, a.dstOff, h.dstLen, nlmsgHdrLen+1, h.family, "RTA_DST"); err != nil {
		return m, err
	}
	if h.srcLen > 0 {
		if m.Src, err = makePrefix(a.src, a.srcOff, h.srcLen, nlmsgHdrLen+2, h.family, "RTA_SRC"); err != nil {
			return m, err
		}
	}
	if m.Multipath, err = a.nexthops(r, m.RTMFlags, h.family); err != nil {
		return m, err
	}
	if h.family == afInet6 && len(r.Nexthops) > 0 && r.NHID == 0 {
		r.Nexthops[0].HW |= r.Flags
	}
	return m, nil
}

// rtmsgHead is what the rest of a route message is read with: its family
// and prefix lengths, checked against the family's address size.
type rtmsgHead struct {
	family         uint8
	dstLen, srcLen int
}

// decodeRouteHead decodes the netlink header and the rtmsg: the message
// fields, and the route's table, TOS, protocol, scope, type and hardware
// flags. Cloned routes and families other than IPv4 and IPv6 are errors
// (ErrCloned, ErrFamily).
func decodeRouteHead(msg []byte) (RouteMessage, rtmsgHead, error) {
	var m RouteMessage
	var h rtmsgHead
	nh, msg, err := parseHeader(msg)
	if err != nil {
		return m, h, err
	}
	m.Type, m.NLFlags, m.Seq, m.PID = nh.Type, nh.Flags, nh.Seq, nh.PID
	if nh.Type != rtmNewRoute && nh.Type != rtmDelRoute {
		return m, h, malformed(4, "nlmsg_type", "type %d is not RTM_NEWROUTE or RTM_DELROUTE", nh.Type)
	}
	if len(msg) < nlmsgHdrLen+rtmsgLen {
		return m, h, malformed(nlmsgHdrLen, "rtmsg", "message is %d bytes, too short for the %d-byte rtmsg", len(msg), rtmsgLen)
	}
	rtm := msg[nlmsgHdrLen : nlmsgHdrLen+rtmsgLen]
	h = rtmsgHead{family: rtm[0], dstLen: int(rtm[1]), srcLen: int(rtm[2])}
	m.RTMFlags = binary.NativeEndian.Uint32(rtm[8:])
	if m.RTMFlags&rtmFCloned != 0 {
		return m, h, ErrCloned
	}
	var bits int
	switch h.family {
	case afInet:
		bits = 32
	case afInet6:
		bits = 128
	default:
		return m, h, ErrFamily
	}
	if h.dstLen > bits {
		return m, h, malformed(nlmsgHdrLen+1, "rtm_dst_len", "%d exceeds %d bits", h.dstLen, bits)
	}
	if h.srcLen > bits {
		return m, h, malformed(nlmsgHdrLen+2, "rtm_src_len", "%d exceeds %d bits", h.srcLen, bits)
	}
	r := &m.Route
	r.Table = uint32(rtm[4])
	r.TOS = rtm[3]
	r.Protocol = fib.Protocol(rtm[5])
	r.Scope = rtm[6]
	r.Type = fib.RouteType(rtm[7])
	r.Flags = fib.FlagsFromRTM(m.RTMFlags)
	return m, h, nil
}

// routeAttrs are the attributes of a route message that are combined
// after all are read: the prefixes' addresses, the single next hop, the
// multipath list, each with its offset for error messages (-1: absent).
type routeAttrs struct {
	dst, src, gw    netip.Addr
	dstOff, srcOff  int
	oif             uint32
	haveOIF, haveGW bool
	gwOff           int
	mpData          []byte
	mpOff           int
}

// read reads the attributes in b (right after the rtmsg): those that go
// straight into r are set there, the others kept in a.
func (a *routeAttrs) read(b []byte, family uint8, r *fib.Route) error {
	a.dstOff, a.srcOff = -1, -1
	var err error
	ar := newAttrReader(b, nlmsgHdrLen+rtmsgLen)
	for ar.next() {
		switch ar.typ {
		case rtaDst:
			a.dst, err = ar.addr("RTA_DST", family)
			a.dstOff = ar.off
		case rtaSrc:
			a.src, err = ar.addr("RTA_SRC", family)
			a.srcOff = ar.off
		case rtaTable:
			r.Table, err = ar.u32("RTA_TABLE")
		case rtaPriority:
			r.Priority, err = ar.u32("RTA_PRIORITY")
		case rtaPrefSrc:
			r.PrefSrc, err = ar.addr("RTA_PREFSRC", family)
		case rtaNHID:
			r.NHID, err = ar.u32("RTA_NH_ID")
		case rtaOIF:
			a.oif, err = ar.u32("RTA_OIF")
			a.haveOIF = true
		case rtaGateway:
			a.gw, err = ar.addr("RTA_GATEWAY", family)
			a.haveGW, a.gwOff = true, ar.off
		case rtaVia:
			a.gw, err = decodeVia(ar.data, ar.off)
			a.haveGW, a.gwOff = true, ar.off
		case rtaMultipath:
			a.mpData, a.mpOff = ar.data, ar.off
		default:
			r.Unmodelled = r.Unmodelled || unmodelled(ar.typ, ar.data)
		}
		if err != nil {
			return err
		}
	}
	return ar.err
}

// nexthops sets r's next hops from RTA_MULTIPATH, or from a single RTA_OIF
// and RTA_GATEWAY/RTA_VIA (never both), and reports whether they came
// from RTA_MULTIPATH. A single next hop takes its RTNH flags and hardware
// flags from rtm_flags.
func (a *routeAttrs) nexthops(r *fib.Route, rtmFlags uint32, family uint8) (multipath bool, err error) {
	switch {
	case a.mpData != nil:
		if a.haveOIF || a.haveGW {
			off := a.mpOff
			if a.haveGW {
				off = a.gwOff
			}
			return false, malformed(off, "RTA_MULTIPATH", "route has both RTA_MULTIPATH and a single-path RTA_OIF/RTA_GATEWAY/RTA_VIA")
		}
		var extra bool
		if r.Nexthops, extra, err = decodeMultipath(a.mpData, a.mpOff, family); err != nil {
			return false, err
		}
		r.Unmodelled = r.Unmodelled || extra
		return true, nil
	case a.haveOIF || a.haveGW:
		r.Nexthops = []fib.Nexthop{{
			Gateway:   a.gw,
			LinkIndex: int(a.oif),
			Weight:    1,
			Flags:     rtmFlags & rtnhFlagBits &^ (fib.RTNHFOffload | fib.RTNHFTrap),
			HW:        fib.FlagsFromRTNH(rtmFlags),
		}}
	}
	return false, nil
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
	return appendRoute(make([]byte, 0, 128+32*len(m.Route.Nexthops)), m)
}

// appendRoute appends EncodeRoute's message to b: the RouteWriter builds
// a batch of requests in one buffer it keeps, without a message's own
// allocation (2% of all gobgpd-ext allocated while a table went in).
func appendRoute(b []byte, m RouteMessage) []byte {
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
		if v6 && r.NHID == 0 {
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

	base := len(b)
	b = append(b, make([]byte, nlmsgHdrLen+rtmsgLen)...)
	h := b[base:]
	binary.NativeEndian.PutUint16(h[4:], m.Type)
	binary.NativeEndian.PutUint16(h[6:], m.NLFlags)
	binary.NativeEndian.PutUint32(h[8:], m.Seq)
	binary.NativeEndian.PutUint32(h[12:], m.PID)
	rtm := h[nlmsgHdrLen:]
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
	binary.NativeEndian.PutUint32(b[base:], uint32(len(b)-base))
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
