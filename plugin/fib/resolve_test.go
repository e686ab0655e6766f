package fib

import (
	"fmt"
	"net/netip"
	"testing"
)

// TestResolve: a next hop on a connected network stays as it is (whatever
// else covers it); one behind a static or IGP route takes that route's
// gateways, a link-local one with its interface as its zone; BGP's own
// routes, the default route and blackholes resolve nothing.
func TestResolve(t *testing.T) {
	f := New()
	add := func(prefix string, proto Protocol, typ RouteType, gws ...string) {
		t.Helper()
		r := Route{Table: TableMain, Prefix: netip.MustParsePrefix(prefix), Type: typ, Protocol: proto}
		if len(gws) == 0 && typ == TypeUnicast {
			r.Scope = 253 // link
			r.Nexthops = []Nexthop{{LinkIndex: 2}}
		}
		for _, g := range gws {
			r.Nexthops = append(r.Nexthops, Nexthop{Gateway: netip.MustParseAddr(g), LinkIndex: 2})
		}
		if err := f.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	add("10.0.1.0/30", ProtoKernel, TypeUnicast)                                 // connected
	add("10.0.0.0/8", ProtoKernel, TypeUnicast)                                  // connected, wide
	add("10.1.0.0/16", ProtoStatic, TypeUnicast, "10.0.1.2")                     // inside the wide one
	add("192.168.0.0/16", ProtoStatic, TypeUnicast, "10.0.1.2")                  // an IGP's aggregate
	add("192.168.7.7/32", ProtoOSPF, TypeUnicast, "10.0.1.2", "10.0.1.1")        // ECMP loopback
	add("172.16.0.0/12", ProtoBGP, TypeUnicast, "10.0.1.2")                      // BGP's own
	add("198.51.100.0/24", ProtoStatic, TypeBlackhole)                           // blackhole
	add("0.0.0.0/0", ProtoStatic, TypeUnicast, "10.0.1.2")                       // default
	add("2001:db8:1::/64", ProtoKernel, TypeUnicast)                             // connected
	add("2001:db8:ff::/48", ProtoStatic, TypeUnicast, "2001:db8:1::2")           // global gateway
	add("2001:db8:fe::/48", ProtoStatic, TypeUnicast, "fe80::1")                 // link-local gateway
	add("203.0.113.0/24", ProtoStatic, TypeUnicast, "10.0.1.2", "2001:db8:1::2") // never mind the family
	// An IGP over unnumbered interfaces: gateways on no connected network,
	// which the kernel takes only onlink on their interface.
	onlink := func(prefix, gw string, link int) {
		t.Helper()
		r := Route{Table: TableMain, Prefix: netip.MustParsePrefix(prefix), Type: TypeUnicast, Protocol: ProtoOSPF,
			Nexthops: []Nexthop{{Gateway: netip.MustParseAddr(gw), LinkIndex: link, Flags: RTNHFOnlink}}}
		if err := f.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	onlink("100.64.0.0/16", "10.255.0.1", 3)
	onlink("2001:db8:fd::/48", "2001:db8:ee::1", 3)
	onlink("100.65.0.0/16", "10.255.0.1", 0) // no interface: nothing to write it with
	// Routes over nexthop objects with net.ipv4.nexthop_compat_mode=0:
	// the kernel shows the object's id and no next hop, so it is not known
	// whether the route is a device route or leads through gateways.
	for _, p := range []string{"100.66.0.0/16", "2001:db8:fc::/48"} {
		if err := f.Append(Route{Table: TableMain, Prefix: netip.MustParsePrefix(p), Type: TypeUnicast, Protocol: ProtoOSPF, NHID: 10}); err != nil {
			t.Fatal(err)
		}
	}

	for _, c := range []struct {
		nh, want, via string
		connected     bool
	}{
		{"10.0.1.2", "[10.0.1.2]", "", true},                   // connected /30
		{"10.1.2.3", "[10.1.2.3]", "", true},                   // the /8 covers it: the kernel takes it as it is
		{"192.168.3.4", "[10.0.1.2]", "192.168.0.0/16", false}, // resolved
		{"192.168.7.7", "[10.0.1.1 10.0.1.2]", "192.168.7.7/32", false},
		{"172.16.1.1", "[172.16.1.1]", "", false},     // over BGP's own route: not resolved (default skipped too)
		{"198.51.100.9", "[198.51.100.9]", "", false}, // blackhole
		{"8.8.8.8", "[8.8.8.8]", "", false},           // only the default
		{"2001:db8:ff::9", "[2001:db8:1::2]", "2001:db8:ff::/48", false},
		{"2001:db8:fe::9", "[fe80::1%2]", "2001:db8:fe::/48", false}, // link-local gateway: its interface as the zone
		{"fe80::9", "[fe80::9]", "", false},
		{"100.64.1.1", "[::ffff:10.255.0.1%3]", "100.64.0.0/16", false}, // onlink: its interface as the zone
		{"2001:db8:fd::9", "[2001:db8:ee::1%3]", "2001:db8:fd::/48", false},
		{"100.65.1.1", "[100.65.1.1]", "", false},
		{"100.66.1.1", "[100.66.1.1]", "", false}, // a nexthop object's route: not known, so not connected
		{"2001:db8:fc::9", "[2001:db8:fc::9]", "", false},
	} {
		r := f.Resolve(TableMain, netip.MustParseAddr(c.nh), ProtoBGP)
		viaS := ""
		if r.Resolved() {
			viaS = r.Via.String()
		}
		if fmt.Sprint(r.Gateways) != c.want || viaS != c.via || r.Connected != c.connected {
			t.Errorf("Resolve(%s) = %v via %q connected %t, want %s via %q connected %t", c.nh, r.Gateways, viaS, r.Connected, c.want, c.via, c.connected)
		}
	}
	// An installer of its own protocol resolves over another daemon's BGP
	// routes (an FRR underlay): README, install.protocol.
	if r := f.Resolve(TableMain, netip.MustParseAddr("172.16.1.1"), Protocol(200)); fmt.Sprint(r.Gateways) != "[10.0.1.2]" || r.Via.String() != "172.16.0.0/12" {
		t.Errorf("over another protocol's BGP route: %+v, want 10.0.1.2 via 172.16.0.0/12", r)
	}
	if r := f.Resolve(TableMain, netip.MustParseAddr("100.66.1.1"), ProtoBGP); r.Connected || r.Resolved() {
		t.Errorf("over a route naming only an unknown nexthop object: %+v, want unresolved", r)
	}
	if r := f.Resolve(99, netip.MustParseAddr("192.168.3.4"), ProtoBGP); fmt.Sprint(r.Gateways) != "[192.168.3.4]" || r.Resolved() {
		t.Errorf("in a table that does not exist: %+v", r)
	}
}

// TestZonedHopRoundTrips: what ZonedHop writes of a next hop, HopOf reads
// back as the same gateway, interface and onlink flag; a gateway that
// needs no interface stays as it is (and its interface is not kept).
func TestZonedHopRoundTrips(t *testing.T) {
	for _, c := range []struct {
		n    Nexthop
		want string
		back Nexthop
	}{
		{Nexthop{Gateway: netip.MustParseAddr("10.0.0.2"), LinkIndex: 3}, "10.0.0.2", Nexthop{Gateway: netip.MustParseAddr("10.0.0.2")}},
		{Nexthop{Gateway: netip.MustParseAddr("10.0.0.2"), LinkIndex: 3, Flags: RTNHFOnlink}, "::ffff:10.0.0.2%3", Nexthop{}},
		{Nexthop{Gateway: netip.MustParseAddr("2001:db8::2"), LinkIndex: 4, Flags: RTNHFOnlink}, "2001:db8::2%4", Nexthop{}},
		{Nexthop{Gateway: netip.MustParseAddr("fe80::2"), LinkIndex: 5}, "fe80::2%5", Nexthop{}},
		{Nexthop{Gateway: netip.MustParseAddr("fe80::2"), LinkIndex: 5, Flags: RTNHFOnlink}, "fe80::2%5", Nexthop{Gateway: netip.MustParseAddr("fe80::2"), LinkIndex: 5}},
	} {
		a := ZonedHop(c.n)
		if a.String() != c.want {
			t.Errorf("ZonedHop(%+v) = %s, want %s", c.n, a, c.want)
			continue
		}
		want := c.n
		if c.back.Gateway.IsValid() {
			want = c.back
		}
		if got, ok := HopOf(a); !ok || got != want {
			t.Errorf("HopOf(%s) = %+v %t, want %+v", a, got, ok, want)
		}
	}
	if _, ok := HopOf(netip.MustParseAddr("fe80::1%eth0")); ok {
		t.Error("HopOf took an interface name for an index")
	}
}
