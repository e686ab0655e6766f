package gobgp

import (
	"net/netip"
	"slices"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// TestPathAttrsReadsAnyLikeTheNativeDecoder: the fast decoder of
// WatchBest's paths (only next hop, communities and the NLRI, from their
// Any form) agrees with GoBGP's full conversion on the same paths.
func TestPathAttrsReadsAnyLikeTheNativeDecoder(t *testing.T) {
	v6nlri := bgp.NewIPv6AddrPrefix(48, "2001:db8:1::")
	mp := bgp.NewPathAttributeMpReachNLRI("2001:db8::2", []bgp.AddrPrefixInterface{v6nlri})
	mpLL := bgp.NewPathAttributeMpReachNLRI("2001:db8::3", []bgp.AddrPrefixInterface{v6nlri})
	mpLL.LinkLocalNexthop = netip.MustParseAddr("fe80::3").AsSlice()
	origin := bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)
	for _, c := range []struct {
		name   string
		nlri   bgp.AddrPrefixInterface
		family *api.Family
		attrs  []bgp.PathAttributeInterface
		prefix string
		nh     string
		comms  []uint32
	}{
		{"ipv4", bgp.NewIPAddrPrefix(24, "198.51.100.0"), familyV4,
			[]bgp.PathAttributeInterface{origin, bgp.NewPathAttributeNextHop("10.0.0.2"), bgp.NewPathAttributeCommunities([]uint32{0xfffe1267, 65001<<16 | 100})},
			"198.51.100.0/24", "10.0.0.2", []uint32{0xfffe1267, 65001<<16 | 100}},
		{"ipv6", v6nlri, familyV6, []bgp.PathAttributeInterface{origin, mp}, "2001:db8:1::/48", "2001:db8::2", nil},
		{"ipv6 with link-local", v6nlri, familyV6, []bgp.PathAttributeInterface{origin, mpLL}, "2001:db8:1::/48", "2001:db8::3", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			nlri, err := apiutil.MarshalNLRI(c.nlri)
			if err != nil {
				t.Fatal(err)
			}
			anys, err := apiutil.MarshalPathAttributes(c.attrs)
			if err != nil {
				t.Fatal(err)
			}
			var bin [][]byte
			for _, a := range c.attrs {
				b, err := a.Serialize()
				if err != nil {
					t.Fatal(err)
				}
				bin = append(bin, b)
			}
			asAny := &api.Path{Family: c.family, Nlri: nlri, Pattrs: anys}
			asBin := &api.Path{Family: c.family, Nlri: nlri, PattrsBinary: bin}
			for _, p := range []*api.Path{asAny, asBin} {
				nh, comms, err := pathAttrs(p)
				if err != nil || nh != netip.MustParseAddr(c.nh) || !slices.Equal(comms, c.comms) {
					t.Errorf("pathAttrs (binary %v) = %v %v %v; want %s %v", len(p.PattrsBinary) > 0, nh, comms, err, c.nh, c.comms)
				}
			}
			if pfx, ok := pathPrefix(asAny); !ok || pfx != netip.MustParsePrefix(c.prefix) {
				t.Errorf("pathPrefix = %v %v, want %s", pfx, ok, c.prefix)
			}
		})
	}
}
