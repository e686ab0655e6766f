package api

import (
	"context"

	"github.com/fibgate/fibgate/plugin/gate"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// policyService serves PolicyService from the PolicyStore.
type policyService struct {
	pb.UnimplementedPolicyServiceServer
	s *Server
}

func (p *policyService) store() (PolicyStore, error) {
	if p.s.cfg.policy == nil {
		return nil, ErrNoGate
	}
	return p.s.cfg.policy, nil
}

// GetPolicy returns the policy in force with its defaults spelled out.
func (p *policyService) GetPolicy(context.Context, *pb.GetPolicyRequest) (*pb.GetPolicyResponse, error) {
	st, err := p.store()
	if err != nil {
		return nil, statusOf(err)
	}
	return &pb.GetPolicyResponse{Policy: policyToProto(st.Policy())}, nil
}

// SetPolicy validates and applies a policy; nothing changes when it is
// invalid.
func (p *policyService) SetPolicy(_ context.Context, req *pb.SetPolicyRequest) (*pb.SetPolicyResponse, error) {
	st, err := p.store()
	if err != nil {
		return nil, statusOf(err)
	}
	pol, err := checkedPolicy(req.GetPolicy())
	if err != nil {
		return nil, statusOf(err)
	}
	if err := st.SetPolicy(pol); err != nil {
		return nil, statusOf(err)
	}
	p.s.cfg.log.Info("policy set", "scopes", len(pol.Scopes))
	return &pb.SetPolicyResponse{Policy: policyToProto(pol)}, nil
}

// ValidatePolicy checks a policy as SetPolicy would, without applying it.
// It needs no gate: validation is the gate package's, not the tracker's.
func (p *policyService) ValidatePolicy(_ context.Context, req *pb.ValidatePolicyRequest) (*pb.ValidatePolicyResponse, error) {
	pol, err := checkedPolicy(req.GetPolicy())
	if err != nil {
		return nil, statusOf(err)
	}
	return &pb.ValidatePolicyResponse{Policy: policyToProto(pol)}, nil
}

// checkedPolicy converts and validates, so SetPolicy and ValidatePolicy
// cannot disagree.
func checkedPolicy(in *pb.Policy) (gate.Policy, error) {
	pol, err := PolicyFromProto(in)
	if err != nil {
		return gate.Policy{}, err
	}
	if err := pol.Validate(); err != nil {
		return gate.Policy{}, err
	}
	return pol, nil
}
