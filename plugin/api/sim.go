package api

import (
	"context"
	"math"
	"net/netip"

	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// simService serves SimService: the simulated ASIC's controls, for labs
// and tests. Without a sim every RPC answers FAILED_PRECONDITION (ErrNoSim).
type simService struct {
	pb.UnimplementedSimServiceServer
	s *Server
}

func (h *simService) sim() (SimControl, error) {
	if h.s.cfg.sim == nil {
		return nil, ErrNoSim
	}
	return h.s.cfg.sim, nil
}

// SetSimCapacity sets the simulated table sizes.
func (h *simService) SetSimCapacity(_ context.Context, req *pb.SetSimCapacityRequest) (*pb.SetSimCapacityResponse, error) {
	s, err := h.sim()
	if err != nil {
		return nil, statusOf(err)
	}
	c := SimCapacity{
		IPv4Prefix: int(req.GetIpv4Prefix()), IPv4Host: int(req.GetIpv4Host()),
		IPv6Prefix: int(req.GetIpv6Prefix()), IPv6Host: int(req.GetIpv6Host()),
	}
	if err := s.SetCapacity(c); err != nil {
		return nil, statusOf(err)
	}
	return &pb.SetSimCapacityResponse{}, nil
}

// SetSimLatency sets the programming delay.
func (h *simService) SetSimLatency(_ context.Context, req *pb.SetSimLatencyRequest) (*pb.SetSimLatencyResponse, error) {
	s, err := h.sim()
	if err != nil {
		return nil, statusOf(err)
	}
	fixed, err := durationFromProto(req.GetFixed())
	if err != nil || fixed < 0 {
		return nil, statusOf(badField("fixed", "want a non-negative duration"))
	}
	jitter, err := durationFromProto(req.GetJitter())
	if err != nil || jitter < 0 {
		return nil, statusOf(badField("jitter", "want a non-negative duration"))
	}
	if err := s.SetLatency(fixed, jitter); err != nil {
		return nil, statusOf(err)
	}
	return &pb.SetSimLatencyResponse{}, nil
}

// SetSimRate sets the programming rate and, when given, the batch size.
func (h *simService) SetSimRate(_ context.Context, req *pb.SetSimRateRequest) (*pb.SetSimRateResponse, error) {
	s, err := h.sim()
	if err != nil {
		return nil, statusOf(err)
	}
	if err := s.SetRate(int(req.GetRoutesPerSecond()), int(req.GetBatch())); err != nil {
		return nil, statusOf(err)
	}
	return &pb.SetSimRateResponse{}, nil
}

// InjectFailure makes a prefix fail to program.
func (h *simService) InjectFailure(_ context.Context, req *pb.InjectFailureRequest) (*pb.InjectFailureResponse, error) {
	if err := h.withSimPrefix(req.GetPrefix(), SimControl.InjectFailure); err != nil {
		return nil, err
	}
	return &pb.InjectFailureResponse{}, nil
}

// ClearFailure undoes InjectFailure.
func (h *simService) ClearFailure(_ context.Context, req *pb.ClearFailureRequest) (*pb.ClearFailureResponse, error) {
	if err := h.withSimPrefix(req.GetPrefix(), SimControl.ClearFailure); err != nil {
		return nil, err
	}
	return &pb.ClearFailureResponse{}, nil
}

// SetFailProbability sets the random failure rate.
func (h *simService) SetFailProbability(_ context.Context, req *pb.SetFailProbabilityRequest) (*pb.SetFailProbabilityResponse, error) {
	s, err := h.sim()
	if err != nil {
		return nil, statusOf(err)
	}
	p := req.GetProbability()
	if math.IsNaN(p) || p < 0 || p > 1 {
		return nil, statusOf(badField("probability", "%g is not between 0 and 1", p))
	}
	if err := s.SetFailProbability(p); err != nil {
		return nil, statusOf(err)
	}
	return &pb.SetFailProbabilityResponse{}, nil
}

// GetSimStats returns the simulated ASIC's counters and settings.
func (h *simService) GetSimStats(context.Context, *pb.GetSimStatsRequest) (*pb.GetSimStatsResponse, error) {
	s, err := h.sim()
	if err != nil {
		return nil, statusOf(err)
	}
	return simStatsToProto(s.SimStats()), nil
}

// withSimPrefix runs fn on the sim for the request's prefix, answering
// FAILED_PRECONDITION without a sim and INVALID_ARGUMENT for a bad prefix.
func (h *simService) withSimPrefix(prefix string, fn func(SimControl, netip.Prefix) error) error {
	s, err := h.sim()
	if err != nil {
		return statusOf(err)
	}
	p, err := parsePrefix(prefix)
	if err != nil {
		return statusOf(&FieldError{Field: "prefix", Err: err})
	}
	if err := fn(s, p); err != nil {
		return statusOf(err)
	}
	return nil
}
