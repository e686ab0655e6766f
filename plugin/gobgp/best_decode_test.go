package gobgp

import (
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/fibgate/fibgate/internal/syncbuf"
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

// TestLinkLocalNextHopsAreLoggedOnce: a neighbour over IPv6 link-local
// (BGP unnumbered) sends paths whose only next hop is link-local; none can
// be installed, and the log says so once for a table of them, not once a
// path (logdamp), naming the first.
func TestLinkLocalNextHopsAreLoggedOnce(t *testing.T) {
	logs := &syncbuf.Buffer{}
	sp, err := newSpeaker(nopBackend{}, Config{}, []Option{WithLogger(slog.New(slog.NewTextHandler(logs, nil)))})
	if err != nil {
		t.Fatal(err)
	}
	origin, _ := bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP).Serialize()
	for i := range 1000 {
		p := netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 8), byte(i)}), 48)
		path, err := build(p, netip.MustParseAddr("fe80::2"), [][]byte{origin}, false)
		if err != nil {
			t.Fatal(err)
		}
		path.NeighborIp, path.SourceAsn = "fe80::2", 65002
		b, report := sp.bestOf(p, watchedAPI([]*api.Path{path}), nil)
		if !report || len(b.Nexthops) != 0 {
			t.Fatalf("%v: reported %v with next hops %v; want reported without any", p, report, b.Nexthops)
		}
	}
	l := logs.String()
	if n := strings.Count(l, "best path without a usable next hop"); n != 1 || !strings.Contains(l, "prefix=2001:db8::/48") || !strings.Contains(l, "unnumbered") {
		t.Errorf("%d log lines, want 1 naming the first prefix and why:\n%s", n, l)
	}
}
