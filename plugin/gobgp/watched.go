package gobgp

import (
	"hash/maphash"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/fibgate/fibgate/plugin/gobgp/internal/bestwatch"
)

// watched is one path of a best-path event as WatchBest reads it, from
// either of GoBGP's forms: an api.Path (WatchEvent, over gRPC or in a
// process whose GoBGP is not the pinned one) or GoBGP's own path
// (bestwatch, in gobgpd-ext). What every path needs is read when the
// event arrives; the attributes, which bestOf reads for a few paths only,
// when asked.
type watched struct {
	prefix   netip.Prefix // invalid: not unicast IPv4/IPv6
	withdraw bool
	external bool // IsFromExternal
	sourceAS uint32
	// neighbor is the address of the neighbour it came from; invalid or
	// unspecified for a local path.
	neighbor netip.Addr
	api      *api.Path                    // the API form, or
	attrs    []bgp.PathAttributeInterface // GoBGP's own attributes
}

// learned says whether the path came from a neighbour (as the function
// learned does for an api.Path).
func (w *watched) learned() bool {
	return !w.withdraw && w.neighbor.IsValid() && !w.neighbor.IsUnspecified()
}

// decode reads the path's next hop and communities, and the bits of x's
// ASes in its AS_PATH (x nil: none), as pathAttrsAS does.
func (w *watched) decode(x *asIndex) (netip.Addr, []uint32, uint64, error) {
	if w.api != nil {
		return pathAttrsAS(w.api, x)
	}
	return nativeAttrs(w.attrs, x)
}

// key is exportKey of the path: for GoBGP's own attributes, what
// exportKey computes from their wire form, which is what lookup asks
// ListPath for when the watch is native (attrsBinary), so that the
// fingerprints of both compare.
func (w *watched) key() uint64 {
	if w.api != nil {
		return exportKey(w.api)
	}
	var h maphash.Hash
	h.SetSeed(exportSeed)
	for _, a := range w.attrs {
		if t := a.GetType(); t == bgp.BGP_ATTR_TYPE_NEXT_HOP || t == bgp.BGP_ATTR_TYPE_MP_REACH_NLRI {
			continue // left out by hashWireAttr: not worth serializing
		}
		if b, err := a.Serialize(); err == nil { // ListPath leaves a failure out of PattrsBinary too
			hashWireAttr(&h, b)
		}
	}
	return h.Sum64()
}

// watchedAPI reads paths in their API form.
func watchedAPI(ps []*api.Path) []watched {
	out := make([]watched, len(ps))
	for i, p := range ps {
		pfx, _ := pathPrefix(p)
		nb, _ := netip.ParseAddr(p.NeighborIp)
		out[i] = watched{prefix: pfx, withdraw: p.IsWithdraw, external: p.IsFromExternal, sourceAS: p.SourceAsn, neighbor: nb, api: p}
	}
	return out
}

// watchedNative reads paths as GoBGP holds them.
func watchedNative(ps []bestwatch.Path) []watched {
	out := make([]watched, len(ps))
	for i, p := range ps {
		w := watched{withdraw: p.Withdraw, external: p.External, sourceAS: p.SourceAS, attrs: p.Attrs}
		w.neighbor, _ = netip.AddrFromSlice(p.Neighbor)
		w.neighbor = w.neighbor.Unmap()
		switch n := p.Nlri.(type) {
		case *bgp.IPAddrPrefix:
			w.prefix = nlriPrefix(n.Prefix, n.Length)
		case *bgp.IPv6AddrPrefix:
			w.prefix = nlriPrefix(n.Prefix, n.Length)
		}
		out[i] = w
	}
	return out
}

// nlriPrefix is a unicast NLRI's prefix, as pathPrefix reads it from the
// API form (wireIPPrefix): the address unmapped, the prefix masked.
func nlriPrefix(ip []byte, bits uint8) netip.Prefix {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}
	}
	p, err := a.Unmap().Prefix(int(bits))
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// nativeAttrs is pathAttrsAS for GoBGP's own attributes, with the same
// rules as the API form's (wire.go): a NEXT_HOP or MP_REACH's first next
// hop that is not link-local, the later attribute winning.
func nativeAttrs(attrs []bgp.PathAttributeInterface, x *asIndex) (netip.Addr, []uint32, uint64, error) {
	var nh netip.Addr
	var comms []uint32
	var mask uint64
	for _, a := range attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeAsPath:
			if x != nil {
				for _, seg := range a.Value {
					mask |= x.maskOf(seg.GetAS())
				}
			}
		case *bgp.PathAttributeNextHop:
			if v, ok := netip.AddrFromSlice(a.Value); ok {
				nh = v.Unmap()
			}
		case *bgp.PathAttributeMpReachNLRI:
			if v, ok := netip.AddrFromSlice(a.Nexthop); ok && !v.Unmap().IsLinkLocalUnicast() {
				nh = v.Unmap()
			}
		case *bgp.PathAttributeCommunities:
			comms = a.Value
		}
	}
	return nh, comms, mask, nil
}
