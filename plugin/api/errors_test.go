package api

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fibgate/fibgate/plugin/gate"
)

func TestStatusOfMapsEachErrorToItsCode(t *testing.T) {
	invalid := gate.Policy{Scopes: []gate.Scope{{Name: ""}}}
	policyErr := invalid.Validate()
	tests := []struct {
		name  string
		err   error
		code  codes.Code
		field string
	}{
		{"a policy field", policyErr, codes.InvalidArgument, "policy.scopes[0].name"},
		{"a wrapped policy field", fmt.Errorf("set: %w", policyErr), codes.InvalidArgument, "policy.scopes[0].name"},
		{"a bare invalid policy", gate.ErrInvalidPolicy, codes.InvalidArgument, ""},
		{"a request field", badField("prefix", "bad"), codes.InvalidArgument, "prefix"},
		{"joined request fields", errors.Join(badField("a", "x"), badField("b", "y")), codes.InvalidArgument, "b"},
		{"not found", fmt.Errorf("%w: 10.0.0.0/8", ErrNotFound), codes.NotFound, ""},
		{"no sim", ErrNoSim, codes.FailedPrecondition, ""},
		{"no agents", ErrNoAgents, codes.FailedPrecondition, ""},
		{"no gate", ErrNoGate, codes.FailedPrecondition, ""},
		{"no audit", ErrNoAudit, codes.FailedPrecondition, ""},
		{"shutting down", ErrShuttingDown, codes.Unavailable, ""},
		{"cancelled", context.Canceled, codes.Canceled, ""},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, ""},
		{"anything else", errors.New("boom"), codes.Internal, ""},
		{"a status already", status.Error(codes.Aborted, "x"), codes.Aborted, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := status.Convert(statusOf(tt.err))
			if st.Code() != tt.code {
				t.Fatalf("code %s, want %s (%v)", st.Code(), tt.code, st.Message())
			}
			if tt.field == "" {
				return
			}
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					for _, v := range br.GetFieldViolations() {
						if v.GetField() == tt.field {
							return
						}
					}
				}
			}
			t.Errorf("no field violation for %s in %v", tt.field, st.Details())
		})
	}
	if statusOf(nil) != nil {
		t.Error("statusOf(nil) is not nil")
	}
}
