package api

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/hw/external"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// fullPolicy sets every field of a scope to a value other than its zero
// or default, so a round trip that drops one shows.
func fullPolicy() gate.Policy {
	return gate.Policy{Scopes: []gate.Scope{
		{
			Name: "leaf", Family: fib.IPv6, Tables: []uint32{254, 1000},
			Prefixes: []gate.PrefixRange{
				{Prefix: netip.MustParsePrefix("2001:db8::/32"), MinLen: 40, MaxLen: 64},
				{Prefix: netip.MustParsePrefix("2001:db8:ff::/48")},
			},
			Level: gate.LevelOffload, ECMP: gate.ECMPAny, OnFailure: gate.FailureKeep,
			PendingTimeout: 1500 * time.Millisecond, FailOpen: true,
			HoldDown: gate.HoldDown{Initial: 250 * time.Millisecond, Max: 90 * time.Second, Multiplier: 1.5},
		},
		{Name: "fib", Family: fib.IPv4, Level: gate.LevelFIB},
		gate.DefaultScope(),
	}}
}

func TestPolicyRoundTripsThroughTheWire(t *testing.T) {
	in := fullPolicy()
	wire := policyToProto(in)
	b, err := proto.Marshal(wire)
	if err != nil {
		t.Fatal(err)
	}
	var back pb.Policy
	if err := proto.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	out, err := PolicyFromProto(&back)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip changed the policy:\n in %+v\nout %+v", in, out)
	}
	// And the other way: proto -> gate -> proto is the identity on a
	// policy whose defaults are spelled out.
	if again := policyToProto(out); !proto.Equal(again, wire) {
		t.Errorf("proto round trip:\n%v\n%v", wire, again)
	}
}

func TestUnspecifiedPolicyFieldsBecomeDefaults(t *testing.T) {
	got, err := PolicyFromProto(&pb.Policy{Scopes: []*pb.Scope{{Name: "default"}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := gate.DefaultPolicy(); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want DefaultPolicy %+v", got, want)
	}
}

func TestPolicyConversionErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name  string
		scope *pb.Scope
		field string
	}{
		{"unknown family", &pb.Scope{Name: "a", Family: 3}, "scopes[0].family"},
		{"unknown level", &pb.Scope{Name: "a", Level: 4}, "scopes[0].level"},
		{"unknown ecmp", &pb.Scope{Name: "a", Ecmp: 3}, "scopes[0].ecmp"},
		{"unknown on_failure", &pb.Scope{Name: "a", OnFailure: 3}, "scopes[0].on_failure"},
		{"bad prefix", &pb.Scope{Name: "a", Prefixes: []*pb.PrefixRange{{}, {Prefix: "x"}}}, "scopes[0].prefixes[0].prefix"},
		{"invalid duration", &pb.Scope{Name: "a", PendingTimeout: &durationpb.Duration{Seconds: 1, Nanos: -5}}, "scopes[0].pending_timeout"},
		{"invalid hold-down", &pb.Scope{Name: "a", HoldDown: &pb.HoldDown{Max: &durationpb.Duration{Nanos: 2e9}}}, "scopes[0].hold_down.max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := PolicyFromProto(&pb.Policy{Scopes: []*pb.Scope{tt.scope}})
			var fe *gate.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !errors.Is(err, gate.ErrInvalidPolicy) {
				t.Errorf("got %v, want a gate.FieldError for %s", err, tt.field)
			}
		})
	}
}

func TestFlagsFamiliesAndStatesRoundTrip(t *testing.T) {
	for f := fib.HWFlags(0); f <= fib.Offload|fib.Trap|fib.OffloadFailed; f++ {
		if got := flagsFromProto(flagsToProto(f)); got != f {
			t.Errorf("flags %s came back as %s", f, got)
		}
	}
	for _, f := range []fib.Family{0, fib.IPv4, fib.IPv6} {
		if got, err := familyFromProto(familyToProto(f)); err != nil || got != f {
			t.Errorf("family %s came back as %s, %v", f, got, err)
		}
	}
	for s := gate.State(0); s <= gate.Withdrawn; s++ {
		if got, err := stateFromProto(stateToProto(s)); err != nil || got != s {
			t.Errorf("state %s came back as %s, %v", s, got, err)
		}
	}
	if _, err := stateFromProto(pb.State(99)); err == nil {
		t.Error("state 99 accepted")
	}
}

func TestRouteStateToProtoKeepsEveryField(t *testing.T) {
	now := time.Now()
	s := gate.RouteState{
		Table: 254, Prefix: netip.MustParsePrefix("2001:db8::/64"), Scope: "v6", State: gate.HeldDown,
		Reason: "flapped", Flags: fib.Trap, NexthopFlags: []fib.HWFlags{fib.Trap, fib.OffloadFailed},
		SeenAt: now, ConfirmedAt: now.Add(time.Second), Flaps: 3, HoldUntil: now.Add(time.Minute),
	}
	r := routeStateToProto(s)
	if r.GetTable() != 254 || r.GetPrefix() != "2001:db8::/64" || r.GetFamily() != pb.Family_FAMILY_IPV6 ||
		r.GetScope() != "v6" || r.GetState() != pb.State_STATE_HELD_DOWN || r.GetReason() != "flapped" ||
		!r.GetFlags().GetTrap() || len(r.GetNexthopFlags()) != 2 || !r.GetNexthopFlags()[1].GetOffloadFailed() ||
		!r.GetSeenTime().AsTime().Equal(now) || !r.GetConfirmedTime().AsTime().Equal(now.Add(time.Second)) ||
		r.GetAdvertisedTime() != nil || r.GetWithdrawnTime() != nil || r.GetFlaps() != 3 ||
		!r.GetHoldUntil().AsTime().Equal(now.Add(time.Minute)) {
		t.Errorf("got %v", r)
	}
}

func TestInstructionsCarryTheKernelsNumbers(t *testing.T) {
	in := external.Instruction{Op: external.Program, Generation: 7, Route: fib.Route{
		Table: 254, Prefix: netip.MustParsePrefix("192.0.2.0/24"), Type: fib.TypeUnicast, TOS: 4,
		Priority: 20, Protocol: fib.ProtoBGP, Scope: 0, PrefSrc: netip.MustParseAddr("192.0.2.1"),
		Nexthops: []fib.Nexthop{
			{Gateway: netip.MustParseAddr("10.0.0.1"), LinkIndex: 3, Weight: 2, Flags: fib.RTNHFOnlink},
			{LinkIndex: 4},
		},
	}}
	got := instructionToProto(in, func(i int) string { return map[int]string{3: "swp1"}[i] })
	want := &pb.RouteInstruction{Operation: pb.Operation_OPERATION_PROGRAM, Generation: 7, Route: &pb.KernelRoute{
		Table: 254, Prefix: "192.0.2.0/24", Type: 1, Tos: 4, Priority: 20, Protocol: 186, PrefSrc: "192.0.2.1",
		Nexthops: []*pb.Nexthop{
			{Gateway: "10.0.0.1", LinkIndex: 3, LinkName: "swp1", Weight: 2, Flags: fib.RTNHFOnlink},
			{LinkIndex: 4, Weight: 1},
		},
	}}
	if !proto.Equal(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

func TestReportsAreCheckedField(t *testing.T) {
	r, err := reportFromProto("reports[0]", &pb.RouteReport{
		Table: 254, Prefix: "2001:db8::/32", Generation: 9, Flags: &pb.HardwareFlags{Offload: true},
		NexthopFlags: []*pb.HardwareFlags{{Trap: true}, {}},
	})
	want := external.Report{Table: 254, Prefix: netip.MustParsePrefix("2001:db8::/32"), Generation: 9, Flags: fib.Offload,
		NexthopFlags: []fib.HWFlags{fib.Trap, 0}}
	if err != nil || !reflect.DeepEqual(r, want) {
		t.Errorf("got %+v, %v", r, err)
	}
	for _, bad := range []*pb.RouteReport{{Table: 254, Prefix: "2001:db8::1/32"}, {Table: 254}, {Prefix: "10.0.0.0/8"}} {
		var fe *FieldError
		if _, err := reportFromProto("reports[3]", bad); !errors.As(err, &fe) || fe.Field[:10] != "reports[3]" {
			t.Errorf("%v: got %v, want a FieldError under reports[3]", bad, err)
		}
	}
}
