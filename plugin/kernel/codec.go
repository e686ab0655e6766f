// Package kernel talks to the Linux kernel's routing stack over rtnetlink:
// it decodes route, link and address notifications (with the hardware flags
// a switchdev driver sets in rtm_flags), dumps the FIB, subscribes to changes
// and reads the fib_notify_on_flag_change sysctl, in the current network
// namespace or in a named one.
//
// The package is split the way mdlayher/netlink and jsimonetti/rtnetlink are:
// the codec (codec*.go) is made of pure functions over bytes, with no
// syscalls, so it can be fuzzed and tested with recorded messages anywhere;
// the socket (socket_linux.go) is a thin shell that only moves bytes.
package kernel

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Netlink and rtnetlink wire constants. They are spelled out here instead of
// imported from golang.org/x/sys/unix so that the codec builds and is fuzzed
// on any platform; the values are the Linux uAPI ones, identical to
// unix.RTM_NEWROUTE and friends.
const (
	nlmsgHdrLen  = 16 // struct nlmsghdr
	rtmsgLen     = 12 // struct rtmsg
	ifinfomsgLen = 16 // struct ifinfomsg
	ifaddrmsgLen = 8  // struct ifaddrmsg
	rtnhLen      = 8  // struct rtnexthop
	rtaHdrLen    = 4  // struct rtattr

	nlmsgNoop  = 1
	nlmsgError = 2
	nlmsgDone  = 3

	rtmNewLink  = 16
	rtmDelLink  = 17
	rtmNewAddr  = 20
	rtmDelAddr  = 21
	rtmNewRoute = 24
	rtmDelRoute = 25

	afUnspec = 0
	afInet   = 2
	afInet6  = 10

	// nlaTypeMask strips NLA_F_NESTED and NLA_F_NET_BYTEORDER from rta_type.
	nlaTypeMask = 0x3fff

	rtmFCloned    = 0x200 // RTM_F_CLONED: a route cache / exception entry
	rtTableCompat = 252   // RT_TABLE_COMPAT: rtm_table when the id needs RTA_TABLE
	// rtnhFlagBits are the rtm_flags bits that carry a single-path route's
	// rtnh_flags (RTNH_F_DEAD ... RTNH_F_TRAP live in the low byte).
	rtnhFlagBits = 0xff
)

// ErrSkip is matched (errors.Is) by every error that means "a well-formed
// message fibgate does not model", as opposed to a malformed one. A listener
// drops such messages silently and keeps going.
const ErrSkip = skipError("message skipped")

// ErrCloned is returned by DecodeRoute for RTM_F_CLONED entries: IPv4
// route-get answers and IPv6 exception (PMTU/redirect) routes. They are
// per-destination caches, not FIB routes, and never carry hardware flags.
// It matches ErrSkip.
const ErrCloned = skipError("cloned route cache entry (RTM_F_CLONED)")

// ErrFamily is returned for messages of an address family fibgate does not
// model: routes other than AF_INET/AF_INET6 (multicast RTNL_FAMILY_IPMR,
// MPLS, ...), addresses likewise, and link messages whose ifi_family is not
// AF_UNSPEC (AF_BRIDGE port messages, whose RTM_DELLINK means "left the
// bridge", not "deleted"). It matches ErrSkip.
const ErrFamily = skipError("address family not modelled")

// ErrUnsupportedType is returned by Decode for message types it does not
// decode (anything but routes, links and addresses). It matches ErrSkip.
const ErrUnsupportedType = skipError("message type not decoded")

// skipError is a constant error type so the sentinels above are immutable.
type skipError string

func (e skipError) Error() string { return string(e) }

// Is makes every skipError match ErrSkip.
func (e skipError) Is(target error) bool { return target == ErrSkip }

// ErrMalformed is matched (errors.Is) by every *DecodeError, so callers can
// count corrupt messages without inspecting them.
const ErrMalformed = constError("malformed netlink message")

// constError lets the package's sentinel errors be constants, so no caller
// can reassign them.
type constError string

func (e constError) Error() string { return string(e) }

// DecodeError says what was wrong with a message and where: the byte offset
// is from the start of the nlmsghdr, so it can be found in a hex dump.
type DecodeError struct {
	Offset int    // byte offset from the start of the message
	Field  string // the header or attribute being decoded, e.g. "RTA_GATEWAY"
	Reason string
}

// Error renders the error on one line.
func (e *DecodeError) Error() string {
	return fmt.Sprintf("malformed netlink message: %s at offset %d: %s", e.Field, e.Offset, e.Reason)
}

// Is makes a *DecodeError match ErrMalformed.
func (e *DecodeError) Is(target error) bool { return target == ErrMalformed }

func malformed(off int, field, format string, args ...any) error {
	return &DecodeError{Offset: off, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// header is the decoded nlmsghdr.
type header struct {
	Len   uint32
	Type  uint16
	Flags uint16
	Seq   uint32
	PID   uint32
}

// parseHeader decodes the nlmsghdr at the start of msg and returns it with
// the message cut to nlmsg_len. Bytes beyond nlmsg_len are ignored: a
// receive buffer may hold more messages after this one.
func parseHeader(msg []byte) (header, []byte, error) {
	if len(msg) < nlmsgHdrLen {
		return header{}, nil, malformed(0, "nlmsghdr", "message is %d bytes, shorter than the %d-byte header", len(msg), nlmsgHdrLen)
	}
	h := header{
		Len:   binary.NativeEndian.Uint32(msg[0:4]),
		Type:  binary.NativeEndian.Uint16(msg[4:6]),
		Flags: binary.NativeEndian.Uint16(msg[6:8]),
		Seq:   binary.NativeEndian.Uint32(msg[8:12]),
		PID:   binary.NativeEndian.Uint32(msg[12:16]),
	}
	if h.Len < nlmsgHdrLen || uint64(h.Len) > uint64(len(msg)) {
		return h, nil, malformed(0, "nlmsg_len", "length %d outside %d..%d", h.Len, nlmsgHdrLen, len(msg))
	}
	return h, msg[:h.Len], nil
}

// align4 rounds n up to the 4-byte alignment of netlink (NLMSG_ALIGN, RTA_ALIGN, RTNH_ALIGN).
func align4(n int) int { return (n + 3) &^ 3 }

// attrReader walks a run of rtattrs. base is the offset of b within the
// message, so errors report absolute offsets. A tail shorter than an rtattr
// header is tolerated as padding, like the kernel's nla_for_each_attr does.
type attrReader struct {
	b    []byte
	base int
	pos  int

	typ  uint16 // rta_type with the NLA_F_* bits stripped
	off  int    // absolute offset of the current attribute's header
	data []byte // payload of the current attribute
	err  error
}

func newAttrReader(b []byte, base int) attrReader { return attrReader{b: b, base: base} }

// next advances to the next attribute; it returns false at the end or on a
// malformed attribute (then r.err is set).
func (r *attrReader) next() bool {
	rest := len(r.b) - r.pos
	if rest < rtaHdrLen {
		return false
	}
	l := int(binary.NativeEndian.Uint16(r.b[r.pos:]))
	r.off = r.base + r.pos
	if l < rtaHdrLen || l > rest {
		r.err = malformed(r.off, "rtattr", "rta_len %d outside %d..%d", l, rtaHdrLen, rest)
		return false
	}
	r.typ = binary.NativeEndian.Uint16(r.b[r.pos+2:]) & nlaTypeMask
	r.data = r.b[r.pos+rtaHdrLen : r.pos+l]
	r.pos += align4(l)
	return true
}

// u32 reads the current attribute as a host-order u32.
func (r *attrReader) u32(name string) (uint32, error) {
	if len(r.data) != 4 {
		return 0, malformed(r.off, name, "payload is %d bytes, want 4", len(r.data))
	}
	return binary.NativeEndian.Uint32(r.data), nil
}

// addr reads the current attribute as an address of the given family.
func (r *attrReader) addr(name string, family uint8) (netip.Addr, error) {
	return addrFrom(r.data, family, r.off, name)
}

// addrFrom converts raw address bytes of a family, checking the length.
func addrFrom(b []byte, family uint8, off int, name string) (netip.Addr, error) {
	switch family {
	case afInet:
		if len(b) == 4 {
			return netip.AddrFrom4([4]byte(b)), nil
		}
		return netip.Addr{}, malformed(off, name, "IPv4 address is %d bytes, want 4", len(b))
	case afInet6:
		if len(b) == 16 {
			return netip.AddrFrom16([16]byte(b)), nil
		}
		return netip.Addr{}, malformed(off, name, "IPv6 address is %d bytes, want 16", len(b))
	}
	return netip.Addr{}, malformed(off, name, "unsupported address family %d", family)
}

// MessageType returns nlmsg_type of a raw message, or 0 when msg is too
// short to hold a header; it lets a caller route messages without decoding.
func MessageType(msg []byte) uint16 {
	if len(msg) < nlmsgHdrLen {
		return 0
	}
	return binary.NativeEndian.Uint16(msg[4:6])
}

// Decode decodes one route, link, address or nexthop object message and
// returns it as a RouteMessage, LinkMessage, AddrMessage or NexthopMessage
// value, so a listener can handle
// everything a Subscription delivers with one type switch. Messages it does
// not model return an error matching ErrSkip; corrupt ones an error matching
// ErrMalformed.
func Decode(msg []byte) (any, error) {
	if len(msg) < nlmsgHdrLen {
		_, _, err := parseHeader(msg)
		return nil, err
	}
	switch t := MessageType(msg); t {
	case rtmNewRoute, rtmDelRoute:
		m, err := DecodeRoute(msg)
		if err != nil {
			return nil, err
		}
		return m, nil
	case rtmNewLink, rtmDelLink:
		m, err := DecodeLink(msg)
		if err != nil {
			return nil, err
		}
		return m, nil
	case rtmNewAddr, rtmDelAddr:
		m, err := DecodeAddr(msg)
		if err != nil {
			return nil, err
		}
		return m, nil
	case rtmNewNexthop, rtmDelNexthop:
		m, err := DecodeNexthop(msg)
		if err != nil {
			return nil, err
		}
		return m, nil
	default:
		return nil, fmt.Errorf("netlink message type %d: %w", t, ErrUnsupportedType)
	}
}

// splitMessages cuts a datagram into its netlink messages. The slices alias
// b and have their capacity clipped, so appending to one cannot overwrite
// the next. The result is appended to dst.
func splitMessages(dst [][]byte, b []byte) ([][]byte, error) {
	for off := 0; len(b)-off >= nlmsgHdrLen; {
		l := int(binary.NativeEndian.Uint32(b[off:]))
		if l < nlmsgHdrLen || l > len(b)-off {
			return dst, malformed(off, "nlmsg_len", "length %d outside %d..%d in a %d-byte datagram", l, nlmsgHdrLen, len(b)-off, len(b))
		}
		dst = append(dst, b[off:off+l:off+l])
		off += align4(l)
	}
	return dst, nil
}

// Netlink acknowledgement flags and extended-ack attributes (linux/netlink.h).
const (
	nlmFCapped   = 0x100 // NLM_F_CAPPED: the request's payload was left out
	nlmFAckTLVs  = 0x200 // NLM_F_ACK_TLVS: extended-ack attributes follow
	nlmsgerrMsg  = 1     // NLMSGERR_ATTR_MSG: a NUL-terminated message
	nlmsgerrBody = 4     // int error, before the echoed request header
)

// ack is one NLMSG_ERROR answer to a request: the request's sequence
// number, its errno (0: done) and the extended acknowledgement message that
// came with a refusal, such as netdevsim's "Exceeded number of supported fib
// entries" (the text `ip route` prints after "Error:").
type ack struct {
	seq   uint32
	errno int32 // positive, or 0
	msg   string
}

// decodeAck reads an NLMSG_ERROR message starting at its nlmsghdr; ok is
// false for any other message or one too short to be an answer. The
// message attribute is read when the kernel says attributes follow
// (NLM_F_ACK_TLVS), after the echoed request: its header alone when the
// answer is capped (NETLINK_CAP_ACK), the whole request otherwise.
func decodeAck(b []byte) (a ack, ok bool) {
	if len(b) < nlmsgHdrLen+nlmsgerrBody {
		return ack{}, false
	}
	l := int(binary.NativeEndian.Uint32(b))
	if l < nlmsgHdrLen+nlmsgerrBody || l > len(b) || binary.NativeEndian.Uint16(b[4:]) != nlmsgError {
		return ack{}, false
	}
	b = b[:l]
	flags := binary.NativeEndian.Uint16(b[6:])
	a.seq = binary.NativeEndian.Uint32(b[8:])
	if code := int32(binary.NativeEndian.Uint32(b[nlmsgHdrLen:])); code < 0 {
		a.errno = -code
	}
	if flags&nlmFAckTLVs == 0 {
		return a, true
	}
	off := nlmsgHdrLen + nlmsgerrBody
	if len(b) < off+nlmsgHdrLen {
		return a, true
	}
	if flags&nlmFCapped != 0 {
		off += nlmsgHdrLen
	} else {
		off += align4(int(binary.NativeEndian.Uint32(b[off:])))
	}
	if off > len(b) {
		return a, true
	}
	ar := newAttrReader(b[off:], off)
	for ar.next() {
		if ar.typ == nlmsgerrMsg {
			m := ar.data
			for len(m) > 0 && m[len(m)-1] == 0 {
				m = m[:len(m)-1]
			}
			a.msg = string(m)
		}
	}
	return a, true
}
