package audit

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
)

// TestReadFIBJudgesForwardingRoutesAndFindsTheInstallersRoutes reads a
// FIB model the way the daemon's listener holds it: the forwarding route
// of each gated prefix is judged and classified as the gate does, routes
// of the installer's protocol are listed whatever their metric, and
// tables no scope covers are left out.
func TestReadFIBJudgesForwardingRoutesAndFindsTheInstallersRoutes(t *testing.T) {
	f := fib.New()
	v6 := netip.MustParsePrefix("2001:db8:113::/48")
	open := netip.MustParsePrefix("198.18.1.0/24")
	gw := func(s ...string) []fib.Nexthop {
		var out []fib.Nexthop
		for _, a := range s {
			out = append(out, fib.Nexthop{Gateway: netip.MustParseAddr(a), LinkIndex: 2})
		}
		return out
	}
	for _, r := range []fib.Route{
		{Table: 254, Prefix: tran, Type: fib.TypeUnicast, Protocol: fib.ProtoBGP, Priority: 20, Nexthops: gw("10.1.1.2")},
		{Table: 254, Prefix: tran, Type: fib.TypeUnicast, Protocol: fib.ProtoStatic, Priority: 30, Nexthops: gw("10.0.1.2")},
		{Table: 254, Prefix: other, Type: fib.TypeUnicast, Protocol: fib.ProtoBGP, Priority: 0, Nexthops: gw("10.0.1.2")},
		{Table: 254, Prefix: orig, Type: fib.TypeUnicast, Protocol: fib.ProtoStatic, Nexthops: []fib.Nexthop{{LinkIndex: 3}}},
		{Table: 254, Prefix: open, Type: fib.TypeUnicast, Protocol: fib.ProtoStatic, Nexthops: []fib.Nexthop{{LinkIndex: 3}}},
		{Table: 254, Prefix: v6, Type: fib.TypeUnicast, Protocol: fib.ProtoBGP, Priority: 20, Nexthops: gw("fd00:1::2", "fd00:1::1")},
		{Table: 100, Prefix: tran, Type: fib.TypeUnicast, Protocol: fib.ProtoBGP, Priority: 20, Nexthops: gw("10.9.9.9")},
	} {
		if _, err := f.Add(r, fib.NLMCreate|fib.NLMAppend); err != nil {
			t.Fatalf("add %v: %v", r, err)
		}
	}
	first, _ := f.First(254, tran)
	f.SetFlags(&first, fib.Trap)
	failOpen := gate.DefaultScope()
	failOpen.Name, failOpen.Prefixes = "open", []gate.PrefixRange{{Prefix: netip.MustParsePrefix("198.18.0.0/15"), MaxLen: 32}}
	failOpen.PendingTimeout, failOpen.FailOpen = time.Second, true
	pol := gate.Policy{Scopes: []gate.Scope{failOpen, gate.DefaultScope()}}

	got := ReadFIB(f, pol, gate.ByProtocol(fib.ProtoBGP, fib.ProtoStatic), inst)

	judged := func(p netip.Prefix) GatedRoute {
		t.Helper()
		rs := got.Gated[p]
		if len(rs) != 1 || rs[0].Table != 254 {
			t.Fatalf("%v: gated routes %+v, want one in table 254", p, rs)
		}
		return rs[0]
	}
	if r := judged(tran); r.Verdict != gate.VerdictConfirmed || r.Origin != gate.Transit || r.Version == 0 || r.Version != f.Version(254, tran) {
		t.Errorf("%v: %+v, want confirmed transit at version %d", tran, r, f.Version(254, tran))
	}
	if r := judged(orig); r.Verdict != gate.VerdictPending || r.Reason != "waiting for hardware" || r.Origin != gate.Originated || r.FailOpen {
		t.Errorf("%v: %+v, want pending originated, fail-closed", orig, r)
	}
	if r := judged(open); !r.FailOpen || r.KeepOnFailure {
		t.Errorf("%v: %+v, want fail-open", open, r)
	}
	if r := judged(v6); r.Origin != gate.Transit {
		t.Errorf("%v: %+v, want transit", v6, r)
	}
	if len(got.Gated) != 5 {
		t.Errorf("gated prefixes %v, want 5 (table 100 is in no scope)", got.Gated)
	}

	want := map[netip.Prefix][]InstalledRoute{
		tran:  {{Metric: 20, Nexthops: []netip.Addr{nhA}, Version: f.Version(254, tran)}},
		other: {{Metric: 0, Nexthops: []netip.Addr{nhB}, Version: f.Version(254, other)}},
		v6:    {{Metric: 20, Nexthops: []netip.Addr{netip.MustParseAddr("fd00:1::1"), netip.MustParseAddr("fd00:1::2")}, Version: f.Version(254, v6)}},
	}
	if len(got.Installed) != len(want) {
		t.Fatalf("installed %+v, want %+v", got.Installed, want)
	}
	for p, w := range want {
		if !slices.EqualFunc(got.Installed[p], w, func(a, b InstalledRoute) bool {
			return a.Metric == b.Metric && a.Version == b.Version && slices.Equal(a.Nexthops, b.Nexthops)
		}) {
			t.Errorf("%v installed %+v, want %+v", p, got.Installed[p], w)
		}
	}

	if none := ReadFIB(f, pol, nil, nil); none.Installer != nil || len(none.Installed) != 0 || none.Gated[tran][0].Origin != 0 {
		t.Errorf("without installer and classifier: %+v", none)
	}
}

// TestReadFIBInPiecesReadsEveryRouteOnce reads, piece by piece, routes at
// the pieces' edges (shorter than a piece, a piece, longer; both families,
// the first and the last piece) and finds each route once, in the FIB's
// order, in one read of the model per piece.
func TestReadFIBInPiecesReadsEveryRouteOnce(t *testing.T) {
	f := fib.New()
	var all []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/0", "0.0.0.0/7", "254.0.0.0/7", "0.0.0.0/8", "10.0.0.0/8", "255.0.0.0/8", "10.0.0.0/9",
		"10.1.0.0/16", "192.0.2.1/32", "255.255.255.255/32",
		"::/0", "2000::/3", "2000::/11", "2000::/12", "2a00::/12", "fff0::/12", "2a00::/13", "2001:db8::/32",
		"2001:db8::1/128", "ffff:ffff::/32",
	} {
		p := netip.MustParsePrefix(s)
		all = append(all, p)
		nh := netip.MustParseAddr("10.1.1.2")
		if p.Addr().Is6() {
			nh = netip.MustParseAddr("fd00:1::2")
		}
		for _, metric := range []uint32{20, 30} {
			r := fib.Route{Table: 254, Prefix: p, Type: fib.TypeUnicast, Protocol: fib.ProtoBGP, Priority: metric,
				Nexthops: []fib.Nexthop{{Gateway: nh, LinkIndex: 2}}}
			if _, err := f.Add(r, fib.NLMCreate|fib.NLMAppend); err != nil {
				t.Fatalf("add %v: %v", r, err)
			}
		}
	}
	pol := gate.Policy{Scopes: []gate.Scope{gate.DefaultScope()}}
	calls := 0
	got := ReadFIBIn(func(fn func(*fib.FIB)) { calls++; fn(f) }, pol, gate.ByProtocol(fib.ProtoBGP), inst, Whole)

	// The same as one walk over each family's root.
	for _, p := range all {
		rs := got.Gated[p]
		if len(rs) != 1 || rs[0].Version != f.Version(254, p) {
			t.Errorf("%v: gated %+v, want one at version %d", p, rs, f.Version(254, p))
		}
		in := got.Installed[p]
		if len(in) != 2 || in[0].Metric != 20 || in[1].Metric != 30 {
			t.Errorf("%v: installed %+v, want metrics 20 and 30 in the FIB's order", p, in)
		}
	}
	if len(got.Gated) != len(all) || len(got.Installed) != len(all) {
		t.Errorf("read %d gated and %d installed prefixes, want %d", len(got.Gated), len(got.Installed), len(all))
	}
	// One read of the tables' sizes; then, for the one table, per family
	// a read of the short prefixes and one per piece (256 IPv4 /8s, 4,096
	// IPv6 /12s).
	if want := 1 + 1 + 256 + 1 + 4096; calls != want {
		t.Errorf("%d reads of the model, want %d", calls, want)
	}
}

// TestReadFIBInPartsReadsEachRouteInOnePart reads the same routes part by
// part: together the parts read what one read of the whole does, each
// route in the one part that has its address, whatever its length (a /0
// in the first part of its family), and a part reads only its own family's
// pieces.
func TestReadFIBInPartsReadsEachRouteInOnePart(t *testing.T) {
	f := fib.New()
	for _, s := range []string{
		"0.0.0.0/0", "0.0.0.0/3", "16.0.0.0/4", "15.255.255.0/24", "16.0.0.0/24", "192.0.2.0/24", "255.255.255.255/32",
		"::/0", "2000::/3", "2001:db8::/32", "3fff::/16", "fe80::/10",
	} {
		p := netip.MustParsePrefix(s)
		nh := netip.MustParseAddr("10.1.1.2")
		if p.Addr().Is6() {
			nh = netip.MustParseAddr("fd00:1::2")
		}
		r := fib.Route{Table: 254, Prefix: p, Type: fib.TypeUnicast, Protocol: fib.ProtoBGP, Priority: 20,
			Nexthops: []fib.Nexthop{{Gateway: nh, LinkIndex: 2}}}
		if _, err := f.Add(r, fib.NLMCreate); err != nil {
			t.Fatalf("add %v: %v", r, err)
		}
	}
	pol := gate.Policy{Scopes: []gate.Scope{gate.DefaultScope()}}
	whole := ReadFIB(f, pol, gate.ByProtocol(fib.ProtoBGP), inst)
	seen := map[netip.Prefix]Part{}
	ps := parts()
	if len(ps) != 32 {
		t.Fatalf("%d parts, want 16 a family", len(ps))
	}
	for _, pt := range ps {
		calls := 0
		got := ReadFIBIn(func(fn func(*fib.FIB)) { calls++; fn(f) }, pol, gate.ByProtocol(fib.ProtoBGP), inst, pt)
		for p, rs := range got.Gated {
			if was, dup := seen[p]; dup {
				t.Errorf("%v read in parts %v and %v", p, was, pt)
			}
			seen[p] = pt
			if !pt.Has(p) || !slices.Equal(rs, whole.Gated[p]) || !slices.EqualFunc(got.Installed[p], whole.Installed[p], func(a, b InstalledRoute) bool {
				return a.Metric == b.Metric && a.Version == b.Version && slices.Equal(a.Nexthops, b.Nexthops)
			}) {
				t.Errorf("part %v: %v gated %+v installed %+v; whole read %+v %+v", pt, p, rs, got.Installed[p], whole.Gated[p], whole.Installed[p])
			}
		}
		// The short prefixes of its family, and its own pieces: 16 /8s of
		// IPv4 or 256 /12s of IPv6.
		want := 1 + 16
		if pt.within.Addr().Is6() {
			want = 1 + 256
		}
		if calls != want {
			t.Errorf("part %v: %d reads of the model, want %d", pt, calls, want)
		}
	}
	if len(seen) != len(whole.Gated) {
		t.Errorf("the parts read %d prefixes, the whole read %d", len(seen), len(whole.Gated))
	}
	for _, c := range []struct{ p, part string }{{"0.0.0.0/0", "0.0.0.0/4"}, {"15.255.255.0/24", "0.0.0.0/4"},
		{"16.0.0.0/4", "16.0.0.0/4"}, {"::/0", "::/4"}, {"3fff::/16", "3000::/4"}, {"fe80::/10", "f000::/4"}} {
		if got := seen[netip.MustParsePrefix(c.p)].String(); got != c.part {
			t.Errorf("%s read in part %s, want %s", c.p, got, c.part)
		}
	}
}
