package fib

import (
	"net/netip"
	"slices"
	"strconv"
)

// Resolution is where a BGP next hop leads in a table (FIB.Resolve).
type Resolution struct {
	// Gateways are what a kernel route can use for the next hop, sorted:
	// the next hop itself when Connected or when nothing resolves it.
	Gateways []netip.Addr
	// Via is the prefix of the route that resolved the next hop; invalid
	// when the next hop is connected or unresolved.
	Via netip.Prefix
	// Connected says a device route covers the next hop: the kernel takes
	// it as it is.
	Connected bool
}

// Resolved says whether the next hop led to other gateways.
func (r Resolution) Resolved() bool { return r.Via.IsValid() }

// Resolve turns a BGP next hop into the gateways a kernel route can use,
// as zebra's next-hop tracking does for a next hop that is not directly
// connected (an iBGP neighbour's loopback, an eBGP multihop session, a
// route reflector's client): the kernel takes a gateway only on a
// connected network, so such a route would be refused.
//
// A next hop that a device route of the table covers (a unicast route
// without a gateway: the kernel accepts it as it is) comes back alone,
// whatever longer routes cover it too, so what the kernel takes today is
// written as it was. Otherwise the longest route of the table that covers
// it, not of protocol skip (the caller's own routes: BGP does not resolve
// over itself; a route of that protocol over a nexthop object is another
// daemon's, such as FRR's BGP underlay, and resolves) and not the default
// route (zebra's default: no resolution via 0/0), gives its gateways. A
// next hop nothing resolves, or only a route that does not forward
// (blackhole, unreachable), comes back alone: the kernel refuses it, and
// the refusal says why; so does one whose longest route names only a
// nexthop object that is not known. An IPv6 link-local gateway (what an
// IPv6 IGP's routes have) comes back with its interface's index as its
// zone ("fe80::1%3").
func (f *FIB) Resolve(table uint32, nh netip.Addr, skip Protocol) Resolution {
	alone := Resolution{Gateways: []netip.Addr{nh}}
	if !nh.IsValid() || nh.IsLinkLocalUnicast() || nh.IsUnspecified() || f.table(table, false) == nil {
		return alone
	}
	var via *Route // the longest route that covers nh, not skip's
	var viaPrefix netip.Prefix
	for bits := nh.BitLen(); bits > 0; bits-- {
		p := netip.PrefixFrom(nh, bits).Masked()
		rs := f.Routes(table, p)
		for i := range rs {
			r := &rs[i]
			if r.Protocol == skip && r.NHID == 0 || r.TOS != 0 {
				continue // the caller's own (never over an object), or a TOS route
			}
			if r.NHID != 0 && len(r.Nexthops) == 0 && r.Type == TypeUnicast {
				// Only an object's id, of an object not known (the
				// listener shows the others' next hops): neither a
				// device route nor gateways to be read.
				return alone
			}
			if r.Type == TypeUnicast && !r.HasGateway() {
				alone.Connected = true // the kernel takes nh
				return alone
			}
			if via == nil {
				via, viaPrefix = r, p
			}
			break // the first route of a prefix forwards
		}
	}
	if via == nil || via.Type != TypeUnicast {
		return alone // nothing, or a blackhole or unreachable route
	}
	var gws []netip.Addr
	for _, n := range via.Nexthops {
		switch {
		case !n.Gateway.IsValid():
			return alone // a device path beside gateways: not written here
		case (n.Gateway.IsLinkLocalUnicast() || n.Flags&RTNHFOnlink != 0) && n.LinkIndex <= 0:
			return alone
		default:
			gws = append(gws, ZonedHop(n))
		}
	}
	slices.SortFunc(gws, netip.Addr.Compare)
	return Resolution{Gateways: slices.Compact(gws), Via: viaPrefix}
}

// ZonedHop is a next hop's gateway with its interface when the gateway
// needs one, in the form the FIB installer writes and reads routes in
// (HopOf): a link-local gateway as Zoned makes it, and an onlink gateway
// (one the kernel takes on the interface without a connected network:
// what an IGP over unnumbered interfaces installs, such as FRR's OSPF on
// a point-to-point link that borrows its loopback's address) with its
// interface's index as its zone too, an IPv4 one in its IPv4-mapped form
// ("::ffff:10.0.0.2%3"), the only IPv4 form that holds a zone. Without
// its onlink flag and interface the kernel refuses such a gateway, so a
// BGP next hop behind such a route would never be written.
func ZonedHop(n Nexthop) netip.Addr {
	gw := n.Gateway
	switch {
	case n.LinkIndex <= 0 || !gw.IsValid():
		return gw
	case gw.IsLinkLocalUnicast():
		return Zoned(gw, n.LinkIndex)
	case n.Flags&RTNHFOnlink != 0:
		return netip.AddrFrom16(gw.As16()).WithZone(strconv.Itoa(n.LinkIndex))
	}
	return gw
}

// HopOf reads a gateway as ZonedHop writes it back into a next hop: the
// zone is the interface's index, and on an address that is not link-local
// it says onlink. ok is false for a zone that is no interface index.
func HopOf(a netip.Addr) (n Nexthop, ok bool) {
	z := a.Zone()
	if z == "" {
		return Nexthop{Gateway: a}, true
	}
	idx, err := strconv.Atoi(z)
	if err != nil || idx <= 0 {
		return Nexthop{}, false
	}
	n = Nexthop{Gateway: a.WithZone("").Unmap(), LinkIndex: idx}
	if !n.Gateway.IsLinkLocalUnicast() {
		n.Flags = RTNHFOnlink
	}
	return n, true
}

// Zoned is a gateway with its interface when it needs one: a link-local
// address gets its interface's index as its zone ("fe80::1%3"), the others
// come back as they are. Link-local addresses repeat on every link, so
// without the interface such a gateway is no address at all (an IPv6
// IGP's routes all have one); the FIB installer reads the zone back into
// the route's output interface (kernel.InstallRoute).
func Zoned(gw netip.Addr, linkIndex int) netip.Addr {
	if gw.IsLinkLocalUnicast() && linkIndex > 0 {
		return gw.WithZone(strconv.Itoa(linkIndex))
	}
	return gw
}
