package fib

import (
	"net/netip"
	"testing"
)

// Routes with the same next hops share one stored list (nhPool); a
// hardware state written for one of them must not show on the others.
func TestRoutesSharingNextHopsKeepTheirOwnHardwareState(t *testing.T) {
	f := New()
	gw4, gw6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	v4 := []Nexthop{{Gateway: gw4, LinkIndex: 2}, {Gateway: netip.MustParseAddr("192.0.2.2"), LinkIndex: 3}}
	v6 := []Nexthop{{Gateway: gw6, LinkIndex: 2}, {Gateway: netip.MustParseAddr("2001:db8::2"), LinkIndex: 3}}
	route := func(p string, nhs []Nexthop) Route {
		return Route{Table: TableMain, Prefix: netip.MustParsePrefix(p), Type: TypeUnicast, Protocol: ProtoBGP, Nexthops: nhs}
	}
	a4, b4 := route("198.51.100.0/24", v4), route("203.0.113.0/24", v4)
	a6, b6 := route("2001:db8:1::/48", v6), route("2001:db8:2::/48", v6)
	for _, r := range []Route{a4, b4, a6, b6} {
		if _, err := f.Add(r, NLMCreate|NLMExcl); err != nil {
			t.Fatal(err)
		}
	}
	shared := func(a, b Route) bool {
		ea, _ := f.recAt(TableMain, a.Prefix)
		eb, _ := f.recAt(TableMain, b.Prefix)
		return ea.first.nhs != 0 && ea.first.nhs == eb.first.nhs
	}
	if !shared(a4, b4) || !shared(a6, b6) {
		t.Fatal("routes with equal next hops do not share their stored list")
	}

	f.SetNexthopFlags(&a4, 1, Offload) // IPv4: one path's bit
	f.SetFlags(&a6, Offload)           // IPv6: every sibling
	f.SetNexthopFlags(&b6, 1, Trap)    // IPv6: one sibling
	f.RestoreFlags(&Route{Table: TableMain, Prefix: b4.Prefix, Type: TypeUnicast, Protocol: ProtoBGP, Flags: Trap,
		Nexthops: []Nexthop{{Gateway: gw4, LinkIndex: 2, HW: Trap}, {Gateway: netip.MustParseAddr("192.0.2.2"), LinkIndex: 3}}})
	for _, c := range []struct {
		r    Route
		want []HWFlags
	}{{a4, []HWFlags{0, Offload}}, {b4, []HWFlags{Trap, 0}}, {a6, []HWFlags{Offload, Offload}}, {b6, []HWFlags{0, Trap}}} {
		got, ok := f.Find(&c.r)
		if !ok {
			t.Fatalf("%s is gone", c.r.Prefix)
		}
		for i, nh := range got.Nexthops {
			if nh.HW != c.want[i] {
				t.Errorf("%s path %d: hardware %v, want %v", c.r.Prefix, i, nh.HW, c.want[i])
			}
		}
	}
	// Removing one sibling of b6 leaves a6's list whole.
	if _, err := f.Delete(Route{Table: TableMain, Prefix: b6.Prefix, Nexthops: v6[1:]}); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.Find(&a6); len(got.Nexthops) != 2 {
		t.Errorf("deleting a sibling of %s changed %s: %v", b6.Prefix, a6.Prefix, got)
	}
}

// A list no route uses any more leaves the pool when the operation that
// dropped it ends: a day of churn through distinct next hops must not pile
// them up, and a list one route drops while another stores it stays.
func TestNextHopPoolForgetsListsNoRouteHolds(t *testing.T) {
	f := New()
	add := func(i int) Route {
		gw := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		r := Route{Table: TableMain, Prefix: netip.PrefixFrom(gw, 32), Type: TypeUnicast, Protocol: ProtoBGP,
			Nexthops: []Nexthop{{Gateway: gw, LinkIndex: 2}}}
		if _, err := f.Add(r, NLMCreate|NLMExcl); err != nil {
			t.Fatal(err)
		}
		return r
	}
	for round := range 5 {
		var rs []Route
		for i := range 2000 {
			rs = append(rs, add(round*2000+i))
		}
		for _, r := range rs {
			if _, err := f.Delete(r); err != nil {
				t.Fatal(err)
			}
		}
		if n := f.nhs.held(); n != 0 {
			t.Fatalf("round %d: pool holds %d lists with no route left", round, n)
		}
	}
	// A route replaced by one with the same next hops keeps the list's id.
	r := add(1 << 20)
	before, _ := f.recAt(TableMain, r.Prefix)
	r.Nexthops = []Nexthop{{Gateway: r.Nexthops[0].Gateway, LinkIndex: 2}}
	if _, err := f.Add(r, NLMCreate|NLMReplace); err != nil {
		t.Fatal(err)
	}
	after, _ := f.recAt(TableMain, r.Prefix)
	if n := f.nhs.held(); n != 1 || after.first.nhs != before.first.nhs {
		t.Errorf("after a replace: %d lists, id %d then %d", n, before.first.nhs, after.first.nhs)
	}
	if got, ok := f.First(TableMain, r.Prefix); !ok || len(got.Nexthops) != 1 || got.Nexthops[0].Gateway != r.Nexthops[0].Gateway {
		t.Errorf("after a replace: %+v %v", got, ok)
	}
}
