package gate

import (
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

func TestValidateNamesTheBadField(t *testing.T) {
	base := func(mod func(*Scope)) Policy {
		s := DefaultScope()
		mod(&s)
		return Policy{Scopes: []Scope{DefaultScope(), s}}
	}
	pfx := func(s string, lo, hi int) []PrefixRange {
		return []PrefixRange{{Prefix: netip.MustParsePrefix(s), MinLen: lo, MaxLen: hi}}
	}
	tests := []struct {
		name   string
		policy Policy
		field  string
	}{
		{"a duplicate scope name", base(func(s *Scope) {}), "scopes[1].name"},
		{"an empty scope name", base(func(s *Scope) { s.Name = "" }), "scopes[1].name"},
		{"host bits in a prefix", base(func(s *Scope) { s.Name = "x"; s.Prefixes = pfx("10.1.2.3/8", 0, 0) }), "scopes[1].prefixes[0].prefix"},
		{"a prefix of the wrong family", base(func(s *Scope) { s.Name = "x"; s.Family = fib.IPv6; s.Prefixes = pfx("10.0.0.0/8", 0, 0) }), "scopes[1].prefixes[0].prefix"},
		{"max_len beyond the address", base(func(s *Scope) { s.Name = "x"; s.Prefixes = pfx("10.0.0.0/8", 0, 33) }), "scopes[1].prefixes[0]"},
		{"min_len shorter than the prefix", base(func(s *Scope) { s.Name = "x"; s.Prefixes = pfx("10.0.0.0/8", 4, 24) }), "scopes[1].prefixes[0]"},
		{"fail-open without timeout", base(func(s *Scope) { s.Name = "x"; s.FailOpen = true }), "scopes[1].fail_open"},
		{"a negative timeout", base(func(s *Scope) { s.Name = "x"; s.PendingTimeout = -time.Second }), "scopes[1].pending_timeout"},
		{"hold-down max below initial", base(func(s *Scope) { s.Name = "x"; s.HoldDown.Max = time.Millisecond }), "scopes[1].hold_down"},
		{"a hold-down multiplier below 1", base(func(s *Scope) { s.Name = "x"; s.HoldDown.Multiplier = 0.5 }), "scopes[1].hold_down.multiplier"},
		{"a hold-down multiplier of NaN", base(func(s *Scope) { s.Name = "x"; s.HoldDown.Multiplier = math.NaN() }), "scopes[1].hold_down.multiplier"},
		{"an infinite hold-down multiplier", base(func(s *Scope) { s.Name = "x"; s.HoldDown.Multiplier = math.Inf(1) }), "scopes[1].hold_down.multiplier"},
		{"a NaN multiplier with hold-down off", base(func(s *Scope) { s.Name = "x"; s.HoldDown = HoldDown{Multiplier: math.NaN()} }), "scopes[1].hold_down.multiplier"},
		{"an unknown level", base(func(s *Scope) { s.Name = "x"; s.Level = 9 }), "scopes[1].level"},
		{"table 0", base(func(s *Scope) { s.Name = "x"; s.Tables = []uint32{0} }), "scopes[1].tables[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("Validate = %v, want a FieldError for %s", err, tt.field)
			}
		})
	}
	if p := DefaultPolicy(); p.Validate() != nil {
		t.Errorf("default policy invalid: %v", p.Validate())
	}
}

func TestMatchPicksTheFirstScopeThatCovers(t *testing.T) {
	p := Policy{Scopes: []Scope{
		{Name: "dc-v4", Family: fib.IPv4, Prefixes: []PrefixRange{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), MaxLen: 24}}},
		{Name: "vrf", Tables: []uint32{100}},
		{Name: "rest"},
	}}
	tests := []struct {
		table  uint32
		prefix string
		want   string
	}{
		{254, "10.1.0.0/16", "dc-v4"},
		{254, "10.1.2.128/25", "rest"}, // longer than le 24
		{254, "2001:db8::/32", "rest"},
		{100, "10.1.0.0/16", "vrf"}, // dc-v4 covers only main
		{200, "192.0.2.0/24", ""},
	}
	for _, tt := range tests {
		s, ok := p.Match(tt.table, netip.MustParsePrefix(tt.prefix))
		got := ""
		if ok {
			got = s.Name
		}
		if got != tt.want {
			t.Errorf("Match(%d, %s) = %q, want %q", tt.table, tt.prefix, got, tt.want)
		}
	}
}

func TestJudgeAppliesLevelAndECMP(t *testing.T) {
	route := func(flags fib.HWFlags, nh ...fib.HWFlags) *fib.Route {
		r := &fib.Route{Flags: flags}
		for _, f := range nh {
			r.Nexthops = append(r.Nexthops, fib.Nexthop{HW: f})
		}
		return r
	}
	// route4 is an IPv4 route: its per-path flags are the next hops'
	// RTNH_F_OFFLOAD/TRAP marks, which every route through them shares.
	route4 := func(flags fib.HWFlags, nh ...fib.HWFlags) *fib.Route {
		r := route(flags, nh...)
		r.Prefix = netip.MustParsePrefix("192.0.2.0/24")
		return r
	}
	scope := func(l Level, e ECMP) *Scope { return &Scope{Level: l, ECMP: e} }
	tests := []struct {
		name  string
		scope *Scope
		route *fib.Route
		want  Verdict
	}{
		{"fib level confirms a route without flags", scope(LevelFIB, ECMPAll), route(0, 0), VerdictConfirmed},
		{"hardware level waits without flags", scope(LevelHardware, ECMPAll), route(0, 0), VerdictPending},
		{"hardware level accepts trap", scope(LevelHardware, ECMPAll), route(fib.Trap, 0), VerdictConfirmed},
		{"offload level refuses trap", scope(LevelOffload, ECMPAll), route(fib.Trap, 0), VerdictPending},
		{"offload level accepts offload", scope(LevelOffload, ECMPAll), route(fib.Offload, 0), VerdictConfirmed},
		{"a failure is a failure", scope(LevelHardware, ECMPAll), route(fib.OffloadFailed, 0), VerdictFailed},
		{"route flags cover paths without their own", scope(LevelHardware, ECMPAll), route(fib.Trap, 0, 0), VerdictConfirmed},
		{"ecmp all waits for every path", scope(LevelHardware, ECMPAll), route(fib.Offload, fib.Offload, 0), VerdictPending},
		{"ecmp any takes one path", scope(LevelHardware, ECMPAny), route(fib.Offload, fib.Offload, 0), VerdictConfirmed},
		{"ecmp all with a failed sibling fails", scope(LevelHardware, ECMPAll), route(fib.Trap, fib.Trap, fib.OffloadFailed), VerdictFailed},
		{"ecmp any survives a failed sibling", scope(LevelHardware, ECMPAny), route(fib.Trap, fib.Trap, fib.OffloadFailed), VerdictConfirmed},
		// IPv4: next-hop marks without the route's own flag (mlxsw's shared
		// adjacency group, rocker) confirm nothing.
		{"ipv4 marks alone do not confirm under ecmp all", scope(LevelHardware, ECMPAll), route4(0, fib.Offload, fib.Offload), VerdictPending},
		{"ipv4 marks alone do not confirm under ecmp any", scope(LevelHardware, ECMPAny), route4(0, fib.Offload, fib.Offload), VerdictPending},
		{"ipv4 marks alone do not confirm one path", scope(LevelHardware, ECMPAll), route4(0, fib.Offload), VerdictPending},
		{"ipv4 offload with every path marked", scope(LevelOffload, ECMPAll), route4(fib.Offload, fib.Offload, fib.Offload), VerdictConfirmed},
		{"ipv4 ecmp all waits for an unmarked path", scope(LevelHardware, ECMPAll), route4(fib.Offload, fib.Offload, 0), VerdictPending},
		{"ipv4 ecmp any takes the route and one path", scope(LevelHardware, ECMPAny), route4(fib.Offload, fib.Offload, 0), VerdictConfirmed},
		{"ipv4 trap without marks covers every path", scope(LevelHardware, ECMPAll), route4(fib.Trap, 0, 0), VerdictConfirmed},
		{"ipv4 offload level refuses a trapped route with marked paths", scope(LevelOffload, ECMPAny), route4(fib.Trap, fib.Offload, fib.Offload), VerdictPending},
		{"ipv4 failure beside marks fails", scope(LevelHardware, ECMPAny), route4(fib.OffloadFailed, fib.Offload, fib.Offload), VerdictFailed},
		{"ipv4 one path: the route's flag is enough", scope(LevelHardware, ECMPAll), route4(fib.Trap, fib.Offload), VerdictConfirmed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := tt.scope.Judge(tt.route)
			if got != tt.want {
				t.Errorf("Judge = %d (%s), want %d", got, reason, tt.want)
			}
			if got != VerdictConfirmed && reason == "" {
				t.Errorf("no reason given for verdict %d", got)
			}
		})
	}
}

func TestEnumsRoundTrip(t *testing.T) {
	for _, s := range []string{"fib", "hardware", "offload"} {
		l, err := ParseLevel(s)
		if err != nil || l.String() != s {
			t.Errorf("level %q: %v %v", s, l, err)
		}
	}
	if _, err := ParseECMP("some"); err == nil || !strings.Contains(err.Error(), "all any") {
		t.Errorf("ParseECMP(some) = %v", err)
	}
	for _, s := range []string{"pending", "confirmed", "released", "failed", "held_down", "withdrawn"} {
		st, err := ParseState(s)
		if err != nil || st.String() != s {
			t.Errorf("state %q: %v %v", s, st, err)
		}
	}
}

// TestByProtocolsReleasesOnEveryTransitProtocol: routes of any transit
// protocol release their prefix (Transit), of an originate protocol are
// announced (Originated), anything else and any route that is not unicast
// is not BGP's business.
func TestByProtocolsReleasesOnEveryTransitProtocol(t *testing.T) {
	c := ByProtocols([]fib.Protocol{fib.ProtoBGP, fib.ProtoKernel}, fib.ProtoStatic)
	for _, tc := range []struct {
		proto fib.Protocol
		typ   fib.RouteType
		want  Origin
		ok    bool
	}{
		{fib.ProtoBGP, fib.TypeUnicast, Transit, true},
		{fib.ProtoKernel, fib.TypeUnicast, Transit, true}, // a connected subnet
		{fib.ProtoStatic, fib.TypeUnicast, Originated, true},
		{fib.ProtoBoot, fib.TypeUnicast, 0, false},
		{fib.ProtoKernel, fib.TypeLocal, 0, false},
		{fib.ProtoBGP, fib.TypeBlackhole, 0, false},
	} {
		r := fib.Route{Table: fib.TableMain, Prefix: netip.MustParsePrefix("192.0.2.0/24"), Type: tc.typ, Protocol: tc.proto}
		if got, ok := c(&r); got != tc.want || ok != tc.ok {
			t.Errorf("%s route of protocol %v: %v, %v; want %v, %v", tc.typ, tc.proto, got, ok, tc.want, tc.ok)
		}
	}
	if got, ok := ByProtocol(fib.ProtoBGP)(&fib.Route{Type: fib.TypeUnicast, Protocol: fib.ProtoKernel}); ok {
		t.Errorf("ByProtocol(bgp) takes a kernel route for %v", got)
	}
}
