package fib

import (
	"net/netip"
	"testing"
)

// TestVersionsFollowTheForwardingRouteOnly: the version of a prefix changes
// when its forwarding route is another route (added, replaced, removed and
// added again), never when only hardware flags change; a route written
// after a Clock reading has a higher version; a resynchronised model keeps
// the versions of unchanged routes and gives changed ones new versions.
func TestVersionsFollowTheForwardingRouteOnly(t *testing.T) {
	p := netip.MustParsePrefix("192.0.2.0/24")
	r := Route{Table: TableMain, Prefix: p, Type: TypeUnicast, Protocol: ProtoBGP, Nexthops: []Nexthop{{Gateway: netip.MustParseAddr("10.0.0.1"), LinkIndex: 2}}}
	other := r.Clone()
	other.Nexthops[0].Gateway = netip.MustParseAddr("10.0.0.2")
	f := New()
	apply := func(m Message) {
		t.Helper()
		if _, err := f.Apply(m); err != nil {
			t.Fatal(err)
		}
	}
	if v := f.Version(TableMain, p); v != 0 {
		t.Fatalf("version of an absent prefix: %d", v)
	}
	c0 := f.Clock()
	apply(Message{Type: NewRoute, NLFlags: NLMCreate | NLMExcl, Route: r})
	v1 := f.Version(TableMain, p)
	if v1 <= c0 {
		t.Fatalf("added route: version %d, not above the clock %d read before", v1, c0)
	}
	flagged := r.Clone()
	flagged.Flags = Offload
	apply(Message{Type: NewRoute, Route: flagged})
	if v := f.Version(TableMain, p); v != v1 {
		t.Fatalf("flags changed the version: %d -> %d", v1, v)
	}
	c1 := f.Clock()
	apply(Message{Type: NewRoute, NLFlags: NLMCreate | NLMReplace, Route: other})
	v2 := f.Version(TableMain, p)
	if v2 <= c1 {
		t.Fatalf("replaced route: version %d, not above %d", v2, c1)
	}
	apply(Message{Type: DelRoute, Route: other})
	if v := f.Version(TableMain, p); v != 0 {
		t.Fatalf("deleted: version %d", v)
	}
	apply(Message{Type: NewRoute, NLFlags: NLMCreate | NLMExcl, Route: other})
	v3 := f.Version(TableMain, p)
	if v3 <= v2 {
		t.Fatalf("the same route added again: version %d, not above %d", v3, v2)
	}

	q := netip.MustParsePrefix("198.51.100.0/24")
	rq := r.Clone()
	rq.Prefix = q
	apply(Message{Type: NewRoute, NLFlags: NLMCreate | NLMExcl, Route: rq})
	vq := f.Version(TableMain, q)
	// A dump: p unchanged, q replaced behind the model's back.
	fresh := New()
	if err := fresh.Append(other); err != nil {
		t.Fatal(err)
	}
	rq2 := other.Clone()
	rq2.Prefix = q
	if err := fresh.Append(rq2); err != nil {
		t.Fatal(err)
	}
	fresh.InheritVersions(f)
	if v := fresh.Version(TableMain, p); v != v3 {
		t.Errorf("resync: unchanged route's version %d -> %d", v3, v)
	}
	if v := fresh.Version(TableMain, q); v <= f.Clock() || v == vq {
		t.Errorf("resync: changed route's version %d (was %d, clock %d)", v, vq, f.Clock())
	}
}

// TestAReplacedIdenticalRouteIsANewRoute: the kernel answers an IPv6
// replace with a new fib6_info even when nothing differs (fib6_add_rt2node
// checks no duplicates on replace), announces it with NLM_F_REPLACE and
// flags 0, and hands it to its drivers as a REPLACE, which program it and
// flag it again. FRR's zebra does such a replace whenever its client sends
// a route again (GoBGP's, after every HOLD toggle). So the forwarding
// route gets a new version, like any route written anew, and the gate
// judges it as a replacement, not as a flap. A flag message of the same
// route keeps the version, for both families.
func TestAReplacedIdenticalRouteIsANewRoute(t *testing.T) {
	for _, r := range []Route{
		{Table: TableMain, Prefix: netip.MustParsePrefix("2001:db8:a::/64"), Type: TypeUnicast, Protocol: ProtoBGP, Priority: 20, NHID: 14,
			Nexthops: []Nexthop{{Gateway: netip.MustParseAddr("2001:db8:1::1"), LinkIndex: 2}}},
		{Table: TableMain, Prefix: netip.MustParsePrefix("2001:db8:b::/64"), Type: TypeUnicast, Protocol: ProtoBGP, Priority: 20,
			Nexthops: []Nexthop{{Gateway: netip.MustParseAddr("2001:db8:1::1"), LinkIndex: 2}}},
		{Table: TableMain, Prefix: netip.MustParsePrefix("192.0.2.0/24"), Type: TypeUnicast, Protocol: ProtoBGP,
			Nexthops: []Nexthop{{Gateway: netip.MustParseAddr("10.0.0.1"), LinkIndex: 2}}},
	} {
		f := New()
		apply := func(m Message) []Change {
			t.Helper()
			ch, err := f.Apply(m)
			if err != nil {
				t.Fatal(err)
			}
			return ch
		}
		apply(Message{Type: NewRoute, NLFlags: NLMCreate | NLMExcl, Route: r})
		flagged := r.Clone()
		flagged.Flags = Trap
		apply(Message{Type: NewRoute, Route: flagged})
		v1 := f.Version(TableMain, r.Prefix)
		apply(Message{Type: NewRoute, Route: flagged})
		if v := f.Version(TableMain, r.Prefix); v != v1 {
			t.Errorf("%s: the same flags again changed the version %d -> %d", r.String(), v1, v)
		}
		ch := apply(Message{Type: NewRoute, NLFlags: NLMReplace, Route: r})
		if len(ch) != 1 || ch[0].Old == nil || ch[0].Old.Flags != Trap || ch[0].New == nil || ch[0].New.Flags != 0 {
			t.Errorf("%s: replace reported %v, want the trapped route replaced by one without flags", r.String(), ch)
		}
		got, v2, _ := f.FirstVersion(TableMain, r.Prefix)
		if v2 == v1 || got.Flags != 0 || f.Len() != 1 {
			t.Errorf("%s: after an identical replace: version %d (was %d), flags %s, %d routes; want a new version, no flags, one route", r.String(), v2, v1, got.Flags, f.Len())
		}
	}
}
