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
