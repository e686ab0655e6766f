package gobgp

import (
	"net/netip"
	"testing"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"google.golang.org/protobuf/proto"
)

// TestNLRIBytesMatchGoBGP: the hand-made NLRI encoding is GoBGP's own.
func TestNLRIBytesMatchGoBGP(t *testing.T) {
	for _, s := range []string{"0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/23", "10.1.2.3/32", "2001:db8::/32", "2001:db8:1:2::/64", "::/0", "2001:db8::1/128"} {
		p := netip.MustParsePrefix(s)
		var n bgp.AddrPrefixInterface = bgp.NewIPAddrPrefix(uint8(p.Bits()), p.Addr().String())
		if p.Addr().Is6() {
			n = bgp.NewIPv6AddrPrefix(uint8(p.Bits()), p.Addr().String())
		}
		want, err := n.Serialize()
		if err != nil {
			t.Fatal(err)
		}
		if got := nlriBytes(p); string(got) != string(want) {
			t.Errorf("%v: %x, GoBGP %x", p, got, want)
		}
	}
}

// TestMpReach6IsGoBGPs: the hand-made MP_REACH_NLRI of an IPv6 path is
// byte for byte what GoBGP's constructor serializes, and the path the
// builder makes of it is the one build makes through GoBGP's objects.
func TestMpReach6IsGoBGPs(t *testing.T) {
	b := &pathBuilder{hops: map[netip.Addr][]byte{}}
	for _, ps := range []string{"::/0", "2001:db8::/32", "2001:db8:1:2::/64", "2001:db8:1:2:3::/80", "2001:db8::1/128", "2001:db8::/33"} {
		for _, hs := range []string{"::", "2001:db8:ffff::1"} {
			p, nh := netip.MustParsePrefix(ps), netip.MustParseAddr(hs)
			want, err := bgp.NewPathAttributeMpReachNLRI(nh.String(), []bgp.AddrPrefixInterface{bgp.NewIPv6AddrPrefix(uint8(p.Bits()), p.Addr().String())}).Serialize()
			if err != nil {
				t.Fatal(err)
			}
			if got := mpReach6(p, nh); string(got) != string(want) {
				t.Errorf("%v via %v: %x, GoBGP %x", p, nh, got, want)
			}
			fast, err := b.build(p, nh, nil, false)
			if err != nil {
				t.Fatal(err)
			}
			slow, err := build(p, nh, nil, false)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(fast, slow) {
				t.Errorf("%v via %v: builder %v, build %v", p, nh, fast, slow)
			}
		}
	}
}

// TestOriginatedNextHopIsSelfUnlessConfigured: an originated prefix goes
// out with next hop self (unspecified: GoBGP puts its session address)
// whatever gateway its kernel route has, unless a next hop is configured
// or KeepGateway asks for the gateway (issue 12 #6).
func TestOriginatedNextHopIsSelfUnlessConfigured(t *testing.T) {
	p4, p6 := netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:5::/48")
	gw4, gw6, ll := netip.MustParseAddr("10.0.7.2"), netip.MustParseAddr("fd00:7::2"), netip.MustParseAddr("fe80::1")
	self4, self6 := netip.IPv4Unspecified(), netip.IPv6Unspecified()
	nh4, nh6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	for _, c := range []struct {
		name     string
		cfg      Config
		p        netip.Prefix
		gw, want netip.Addr
	}{
		{"IPv4 gateway, default: self", Config{}, p4, gw4, self4},
		{"IPv6 gateway, default: self", Config{}, p6, gw6, self6},
		{"no gateway: self", Config{KeepGateway: true}, p4, netip.Addr{}, self4},
		{"KeepGateway keeps the IPv4 gateway", Config{KeepGateway: true}, p4, gw4, gw4},
		{"KeepGateway keeps the IPv6 gateway", Config{KeepGateway: true}, p6, gw6, gw6},
		{"KeepGateway never sends a link-local next hop", Config{KeepGateway: true}, p6, ll, self6},
		{"configured IPv4 next hop wins", Config{NextHop4: nh4, KeepGateway: true}, p4, gw4, nh4},
		{"configured IPv6 next hop wins", Config{NextHop6: nh6}, p6, gw6, nh6},
	} {
		n, err := c.cfg.normalize()
		if err != nil {
			t.Fatal(err)
		}
		b, err := newPathBuilder(n)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.nextHop(c.p, c.gw); got != c.want {
			t.Errorf("%s: next hop %v, want %v", c.name, got, c.want)
		}
	}
}

// TestHoldPathThroughCachesEachASPathApart: a release's HOLD path carries
// the AS_PATH of its ASes, serialized once per distinct list and then
// reused: every list, asked in any order and again, gets exactly what
// GoBGP serializes for it, and the cache stays bounded.
func TestHoldPathThroughCachesEachASPathApart(t *testing.T) {
	b := &pathBuilder{hops: map[netip.Addr][]byte{}}
	lists := [][]uint32{{65010}, {65011}, {65010, 65011}, {65011, 65010}, {4200000000}, {1, 2, 3, 4, 5, 6, 7, 8, 9}}
	p := netip.MustParsePrefix("10.1.0.0/16")
	for round := range 2 {
		for _, ases := range lists {
			want, err := bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, ases)}).Serialize()
			if err != nil {
				t.Fatal(err)
			}
			path, err := b.holdPathThrough(p, ases)
			if err != nil {
				t.Fatal(err)
			}
			attrs := path.PattrsBinary
			if got := attrs[len(attrs)-2]; string(got) != string(want) {
				t.Errorf("round %d, %v: AS_PATH %x, GoBGP %x", round, ases, got, want)
			}
		}
	}
	if len(b.asPaths) != len(lists) {
		t.Errorf("%d AS_PATHs cached for %d lists", len(b.asPaths), len(lists))
	}
	for i := range maxASPaths + 10 {
		if _, err := b.holdPathThrough(p, []uint32{uint32(70000 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	if len(b.asPaths) > maxASPaths {
		t.Errorf("cache holds %d AS_PATHs, bound %d", len(b.asPaths), maxASPaths)
	}
}
