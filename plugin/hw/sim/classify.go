package sim

import (
	"net/netip"

	"github.com/fibgate/fibgate/plugin/fib"
)

// resolver answers whether the neighbour behind a gateway is resolved, as
// an ASIC needs its MAC address to forward to it.
type resolver interface {
	resolved(link int, gw netip.Addr) bool
}

// classify returns the flags a successfully programmed route shows, and for
// IPv4 gateway routes in spectrum mode the per-nexthop flags (nil when the
// driver sets none). It is a pure function of the route and the neighbour
// table, so the behaviours it implements are tested without a kernel.
func classify(mode Mode, r *fib.Route, res resolver) (fib.HWFlags, []fib.HWFlags) {
	if mode != ModeSpectrum {
		return fib.Trap, nil // netdevsim: behaviour 54
	}
	switch r.Type {
	case fib.TypeLocal, fib.TypeBroadcast, fib.TypeUnreachable, fib.TypeProhibit:
		return fib.Trap, nil // behaviours 61, 63
	case fib.TypeBlackhole:
		return fib.Offload, nil // behaviour 62
	case fib.TypeUnicast:
	default:
		return fib.Trap, nil // multicast, anycast, throw, nat: the CPU handles them
	}
	if r.TOS != 0 {
		return fib.Trap, nil // behaviour 64
	}
	if !r.HasGateway() {
		return fib.Offload, nil // a device route forwards in hardware
	}
	// Behaviour 65: the route forwards in hardware once one of its
	// nexthops has a resolved neighbour (mlxsw's valid adjacency index);
	// each resolved IPv4 nexthop shows offload (behaviour 69).
	flags := fib.Trap
	var nh []fib.HWFlags
	if r.Family() == fib.IPv4 {
		nh = make([]fib.HWFlags, len(r.Nexthops))
	}
	for i, n := range r.Nexthops {
		if !n.Gateway.IsValid() || res == nil || !res.resolved(n.LinkIndex, n.Gateway) {
			continue
		}
		flags = fib.Offload
		if nh != nil {
			nh[i] = fib.Offload
		}
	}
	return flags, nh
}

// mirrored reports whether a route type belongs in the mirror table. Local,
// broadcast, multicast and anycast routes are the kernel's own business:
// the local table, looked up first, already delivers them.
func mirrored(t fib.RouteType) bool {
	switch t {
	case fib.TypeUnicast, fib.TypeBlackhole, fib.TypeUnreachable, fib.TypeProhibit:
		return true
	}
	return false
}
