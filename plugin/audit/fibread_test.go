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
