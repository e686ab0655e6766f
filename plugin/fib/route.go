package fib

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// Family is an address family, numbered as AF_INET/AF_INET6 so that netlink
// values convert without a table.
type Family uint8

const (
	// IPv4 is AF_INET.
	IPv4 Family = 2
	// IPv6 is AF_INET6.
	IPv6 Family = 10
)

// String returns "ipv4" or "ipv6", the spelling used in fibgate's JSON and logs.
func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return "family(" + strconv.Itoa(int(f)) + ")"
}

// Index is the family's slot in a per-family array: 0 for IPv4, 1 for
// IPv6, so state kept per family needs no map.
func (f Family) Index() int {
	if f == IPv6 {
		return 1
	}
	return 0
}

// FamilyOf returns the family of a prefix.
func FamilyOf(p netip.Prefix) Family {
	if p.Addr().Is4() {
		return IPv4
	}
	return IPv6
}

// Well-known routing table ids (rtnetlink.h), used for defaults and output.
const (
	TableLocal   uint32 = 255
	TableMain    uint32 = 254
	TableDefault uint32 = 253
)

// RouteType is rtm_type. Only types that the FIB stores are named.
type RouteType uint8

// Route types (RTN_*). The gate cares about the difference between forwarding
// routes (unicast) and routes that hardware traps or drops.
const (
	TypeUnicast     RouteType = 1
	TypeLocal       RouteType = 2
	TypeBroadcast   RouteType = 3
	TypeAnycast     RouteType = 4
	TypeMulticast   RouteType = 5
	TypeBlackhole   RouteType = 6
	TypeUnreachable RouteType = 7
	TypeProhibit    RouteType = 8
	TypeThrow       RouteType = 9
	TypeNAT         RouteType = 10
)

var typeNames = map[RouteType]string{
	TypeUnicast: "unicast", TypeLocal: "local", TypeBroadcast: "broadcast",
	TypeAnycast: "anycast", TypeMulticast: "multicast", TypeBlackhole: "blackhole",
	TypeUnreachable: "unreachable", TypeProhibit: "prohibit", TypeThrow: "throw", TypeNAT: "nat",
}

// String returns the iproute2 name of the type.
func (t RouteType) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// Protocol is rtm_protocol: who installed the route. fibgate selects
// originated prefixes by it and installs its own routes as "bgp".
type Protocol uint8

// Protocols named in /etc/iproute2/rt_protos (the ones routing daemons use).
const (
	ProtoUnspec   Protocol = 0
	ProtoRedirect Protocol = 1
	ProtoKernel   Protocol = 2
	ProtoBoot     Protocol = 3
	ProtoStatic   Protocol = 4
	ProtoDHCP     Protocol = 16
	ProtoBIRD     Protocol = 12
	ProtoZebra    Protocol = 11
	ProtoBGP      Protocol = 186
	ProtoISIS     Protocol = 187
	ProtoOSPF     Protocol = 188
	ProtoRIP      Protocol = 189
	ProtoEIGRP    Protocol = 192
)

var protoNames = map[Protocol]string{
	ProtoUnspec: "unspec", ProtoRedirect: "redirect", ProtoKernel: "kernel", ProtoBoot: "boot",
	ProtoStatic: "static", ProtoDHCP: "dhcp", ProtoBIRD: "bird", ProtoZebra: "zebra",
	ProtoBGP: "bgp", ProtoISIS: "isis", ProtoOSPF: "ospf", ProtoRIP: "rip", ProtoEIGRP: "eigrp",
}

// String returns the iproute2 name of the protocol, or its number.
func (p Protocol) String() string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return strconv.Itoa(int(p))
}

// ParseProtocol accepts an iproute2 protocol name or a number 0-255, so
// configuration can say "bgp" or "186".
func ParseProtocol(s string) (Protocol, error) {
	for p, n := range protoNames {
		if n == s {
			return p, nil
		}
	}
	v, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("unknown route protocol %q (want a name like bgp, static, kernel or a number 0-255)", s)
	}
	return Protocol(v), nil
}

// Nexthop is one path of a route. For IPv6 multipath routes each nexthop is a
// separate fib6_info in the kernel with its own hardware flags, which is why HW
// lives here as well as on the route.
type Nexthop struct {
	// Gateway is the next router; invalid (zero) for device routes.
	Gateway netip.Addr
	// LinkIndex is the output interface index (RTA_OIF / rtnh_ifindex).
	LinkIndex int
	// Weight is the ECMP weight, 1-256 (rtnh_hops+1). Zero is read as 1.
	Weight int
	// Flags holds rtnh_flags other than the hardware bits (onlink, dead,
	// linkdown, ...). Only the bits outside RTNHCompareMask count for identity.
	Flags uint32
	// HW is the per-nexthop hardware state (RTNH_F_OFFLOAD/RTNH_F_TRAP for
	// IPv4; for IPv6 the flags of the sibling fib6_info, failed bit included).
	HW HWFlags
}

// weight returns the effective weight.
func (n Nexthop) weight() int {
	if n.Weight <= 0 {
		return 1
	}
	return n.Weight
}

// SameAs reports whether two nexthops are the same path by the kernel's rules:
// hardware flags and kernel-owned states are ignored.
func (n Nexthop) SameAs(o Nexthop) bool {
	return n.Gateway == o.Gateway && n.LinkIndex == o.LinkIndex && n.weight() == o.weight() &&
		n.Flags&^RTNHCompareMask == o.Flags&^RTNHCompareMask
}

// Route is one kernel route: in IPv4 terms a fib_alias with its fib_info, in
// IPv6 terms a fib6_info with its siblings folded into Nexthops. Several
// routes may share (Table, Prefix); the kernel orders them and only the first
// one forwards and carries hardware state.
//
// The fields are ordered so that the small ones share words: 104 bytes
// where the kernel's order took 120 (and a size class of 128), in every
// copy a FIB model, the sim's hardware table and an event keep.
type Route struct {
	Table    uint32
	Priority uint32
	// NHID is the nexthop object id when the route uses one (RTA_NH_ID).
	NHID     uint32
	Type     RouteType
	TOS      uint8 // IPv4 dscp/tos byte; 0 for IPv6
	Protocol Protocol
	Scope    uint8
	// Flags is the route's hardware state (rtm_flags).
	Flags HWFlags
	// Unmodelled says the kernel's route carries attributes this model does
	// not keep (metrics such as mtu, an lwtunnel encapsulation, realms, an
	// IPv6 router preference or expiry). They do not change what forwards
	// or its hardware state, but a copy of the route written back from the
	// model would lose them, so nothing rewrites such a route.
	Unmodelled bool
	Prefix     netip.Prefix
	PrefSrc    netip.Addr
	Nexthops   []Nexthop
}

// Family returns the route's address family.
func (r *Route) Family() Family { return FamilyOf(r.Prefix) }

// HasGateway says whether one of r's next hops has a gateway: a route
// without one is a device route, whose destinations the kernel reaches
// directly (connected, for next-hop resolution; offloaded at once, for
// an mlxsw-like driver).
func (r *Route) HasGateway() bool {
	for _, n := range r.Nexthops {
		if n.Gateway.IsValid() {
			return true
		}
	}
	return false
}

// SameAs reports whether r and o are the same route by the kernel's identity
// rules (everything but hardware state). It is how a flag notification or a
// delete is matched to a stored route.
func (r *Route) SameAs(o *Route) bool {
	return r.Table == o.Table && r.Prefix == o.Prefix && r.sameInfo(o) && r.Type == o.Type && r.TOS == o.TOS
}

// sameInfo compares what the kernel keeps in fib_info: the part of identity
// besides type and tos.
func (r *Route) sameInfo(o *Route) bool {
	return r.Priority == o.Priority && r.Protocol == o.Protocol && r.Scope == o.Scope &&
		r.PrefSrc == o.PrefSrc && r.NHID == o.NHID &&
		slices.EqualFunc(r.Nexthops, o.Nexthops, Nexthop.SameAs)
}

// Clone returns a deep copy, so stored routes are never aliased by callers.
func (r Route) Clone() Route {
	r.Nexthops = slices.Clone(r.Nexthops)
	return r
}

// String renders the route in one iproute2-like line for logs and test failures.
func (r *Route) String() string {
	s := fmt.Sprintf("%s table %d %s", r.Type, r.Table, r.Prefix)
	if r.TOS != 0 {
		s += fmt.Sprintf(" tos 0x%02x", r.TOS)
	}
	if r.Priority != 0 {
		s += fmt.Sprintf(" metric %d", r.Priority)
	}
	if r.NHID != 0 {
		s += fmt.Sprintf(" nhid %d", r.NHID)
	}
	for _, nh := range r.Nexthops {
		s += " nexthop"
		if nh.Gateway.IsValid() {
			s += " via " + nh.Gateway.String()
		}
		if nh.LinkIndex != 0 {
			s += " oif " + strconv.Itoa(nh.LinkIndex)
		}
		if nh.weight() != 1 {
			s += " weight " + strconv.Itoa(nh.weight())
		}
		if nh.HW != 0 {
			s += " [" + nh.HW.String() + "]"
		}
	}
	s += " proto " + r.Protocol.String()
	if r.Flags != 0 {
		s += " [" + r.Flags.String() + "]"
	}
	return s
}
