//go:build linux

package api_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fibgate/fibgate/plugin/api/apitest"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

func TestPolicyCanBeReadReplacedAndValidated(t *testing.T) {
	d := apitest.Start(t, apitest.Options{})
	c := pb.NewPolicyServiceClient(d.Conn)
	ctx := ctxT(t)

	got, err := c.GetPolicy(ctx, &pb.GetPolicyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	def := got.GetPolicy().GetScopes()
	if len(def) != 1 || def[0].GetName() != "default" || def[0].GetLevel() != pb.Level_LEVEL_HARDWARE ||
		def[0].GetHoldDown().GetMax().AsDuration().String() != "1m0s" {
		t.Fatalf("initial policy %v, want the default scope with its defaults spelled out", got.GetPolicy())
	}

	want := &pb.Policy{Scopes: []*pb.Scope{{
		Name:           "leaf",
		Family:         pb.Family_FAMILY_IPV4,
		Tables:         []uint32{254, 100},
		Prefixes:       []*pb.PrefixRange{{Prefix: "10.0.0.0/8", MinLen: 16, MaxLen: 24}},
		Level:          pb.Level_LEVEL_OFFLOAD,
		Ecmp:           pb.EcmpMode_ECMP_MODE_ANY,
		OnFailure:      pb.OnFailure_ON_FAILURE_KEEP,
		PendingTimeout: durationpb.New(3e9),
		FailOpen:       true,
		HoldDown:       &pb.HoldDown{Initial: durationpb.New(2e9), Max: durationpb.New(30e9), Multiplier: 1.5},
		Retry:          &pb.Retry{Initial: durationpb.New(5e8), Max: durationpb.New(60e9)},
	}}}
	valid, err := c.ValidatePolicy(ctx, &pb.ValidatePolicyRequest{Policy: want})
	if err != nil || !proto.Equal(valid.GetPolicy(), want) {
		t.Fatalf("ValidatePolicy = %v, %v; want the policy back", valid.GetPolicy(), err)
	}
	if _, err := c.SetPolicy(ctx, &pb.SetPolicyRequest{Policy: want}); err != nil {
		t.Fatal(err)
	}
	got, err = c.GetPolicy(ctx, &pb.GetPolicyRequest{})
	if err != nil || !proto.Equal(got.GetPolicy(), want) {
		t.Fatalf("after SetPolicy GetPolicy = %v, %v; want %v", got.GetPolicy(), err, want)
	}
	if d.Tracker.Policy().Scopes[0].Name != "leaf" {
		t.Errorf("the tracker does not have the new policy")
	}
}

func TestUnspecifiedPolicyFieldsTakeTheDefaultScopesValues(t *testing.T) {
	d := apitest.Start(t, apitest.Options{})
	c := pb.NewPolicyServiceClient(d.Conn)
	got, err := c.SetPolicy(ctxT(t), &pb.SetPolicyRequest{Policy: &pb.Policy{Scopes: []*pb.Scope{{Name: "bare"}}}})
	if err != nil {
		t.Fatal(err)
	}
	s := got.GetPolicy().GetScopes()[0]
	if s.GetLevel() != pb.Level_LEVEL_HARDWARE || s.GetEcmp() != pb.EcmpMode_ECMP_MODE_ALL ||
		s.GetOnFailure() != pb.OnFailure_ON_FAILURE_WITHDRAW || s.GetHoldDown().GetInitial().AsDuration() != 1e9 ||
		s.GetHoldDown().GetMultiplier() != 2 || s.GetPendingTimeout() != nil || s.GetFamily() != pb.Family_FAMILY_UNSPECIFIED {
		t.Errorf("scope with only a name came back as %v", s)
	}
}

func TestAnInvalidPolicyIsRefusedNamingTheFieldAndChangesNothing(t *testing.T) {
	d := apitest.Start(t, apitest.Options{})
	c := pb.NewPolicyServiceClient(d.Conn)
	ctx := ctxT(t)
	ok := &pb.Scope{Name: "a"}
	tests := []struct {
		name  string
		pol   *pb.Policy
		field string
	}{
		{"max_len beyond the family", &pb.Policy{Scopes: []*pb.Scope{ok, {Name: "b", Prefixes: []*pb.PrefixRange{{Prefix: "10.0.0.0/8", MaxLen: 40}}}}}, "scopes[1].prefixes[0]"},
		{"a malformed prefix", &pb.Policy{Scopes: []*pb.Scope{{Name: "a", Prefixes: []*pb.PrefixRange{{Prefix: "10.0.0/8"}}}}}, "scopes[0].prefixes[0].prefix"},
		{"host bits", &pb.Policy{Scopes: []*pb.Scope{{Name: "a", Prefixes: []*pb.PrefixRange{{Prefix: "10.1.0.0/8"}}}}}, "scopes[0].prefixes[0].prefix"},
		{"an unknown level", &pb.Policy{Scopes: []*pb.Scope{{Name: "a", Level: 9}}}, "scopes[0].level"},
		{"an unknown ecmp mode", &pb.Policy{Scopes: []*pb.Scope{{Name: "a", Ecmp: 7}}}, "scopes[0].ecmp"},
		{"an unknown family", &pb.Policy{Scopes: []*pb.Scope{{Name: "a", Family: 5}}}, "scopes[0].family"},
		{"a duplicate name", &pb.Policy{Scopes: []*pb.Scope{ok, ok}}, "scopes[1].name"},
		{"fail-open without timeout", &pb.Policy{Scopes: []*pb.Scope{{Name: "a", FailOpen: true}}}, "scopes[0].fail_open"},
		{"a negative timeout", &pb.Policy{Scopes: []*pb.Scope{{Name: "a", PendingTimeout: durationpb.New(-1)}}}, "scopes[0].pending_timeout"},
		{"no policy at all", nil, "policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.ValidatePolicy(ctx, &pb.ValidatePolicyRequest{Policy: tt.pol})
			wantStatus(t, err, codes.InvalidArgument, tt.field)
			_, err = c.SetPolicy(ctx, &pb.SetPolicyRequest{Policy: tt.pol})
			wantStatus(t, err, codes.InvalidArgument, tt.field)
		})
	}
	if got := d.Tracker.Policy(); len(got.Scopes) != 1 || got.Scopes[0].Name != "default" {
		t.Errorf("a refused policy changed the policy in force: %+v", got)
	}
	mustStillServe(t, d)
}
