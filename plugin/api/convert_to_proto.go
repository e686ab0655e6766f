package api

// Conversions from fibgate's own types to the wire, in one place. The core
// packages never see protobuf types; the services call these at the edge.

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/hw/external"
	"github.com/fibgate/fibgate/plugin/kernel"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

func familyToProto(f fib.Family) pb.Family {
	switch f {
	case fib.IPv4:
		return pb.Family_FAMILY_IPV4
	case fib.IPv6:
		return pb.Family_FAMILY_IPV6
	}
	return pb.Family_FAMILY_UNSPECIFIED
}

func levelToProto(l gate.Level) pb.Level {
	switch l {
	case gate.LevelFIB:
		return pb.Level_LEVEL_FIB
	case gate.LevelOffload:
		return pb.Level_LEVEL_OFFLOAD
	}
	return pb.Level_LEVEL_HARDWARE
}

func ecmpToProto(e gate.ECMP) pb.EcmpMode {
	if e == gate.ECMPAny {
		return pb.EcmpMode_ECMP_MODE_ANY
	}
	return pb.EcmpMode_ECMP_MODE_ALL
}

func onFailureToProto(f gate.OnFailure) pb.OnFailure {
	if f == gate.FailureKeep {
		return pb.OnFailure_ON_FAILURE_KEEP
	}
	return pb.OnFailure_ON_FAILURE_WITHDRAW
}

func stateToProto(s gate.State) pb.State {
	switch s {
	case gate.Pending:
		return pb.State_STATE_PENDING
	case gate.Confirmed:
		return pb.State_STATE_CONFIRMED
	case gate.Released:
		return pb.State_STATE_RELEASED
	case gate.Failed:
		return pb.State_STATE_FAILED
	case gate.HeldDown:
		return pb.State_STATE_HELD_DOWN
	case gate.Withdrawn:
		return pb.State_STATE_WITHDRAWN
	case gate.Refused:
		return pb.State_STATE_REFUSED
	}
	return pb.State_STATE_UNSPECIFIED
}

// optDuration leaves a zero duration unset, which reads as "none".
func optDuration(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

// optTime leaves a zero time unset, which reads as "never".
func optTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// policyToProto spells out every default, so what a client reads back is
// exactly what is in force.
func policyToProto(p gate.Policy) *pb.Policy {
	out := &pb.Policy{Scopes: make([]*pb.Scope, 0, len(p.Scopes))}
	for _, s := range p.Scopes {
		ps := &pb.Scope{
			Name:           s.Name,
			Family:         familyToProto(s.Family),
			Tables:         append([]uint32(nil), s.Tables...),
			Level:          levelToProto(s.Level),
			Ecmp:           ecmpToProto(s.ECMP),
			OnFailure:      onFailureToProto(s.OnFailure),
			PendingTimeout: optDuration(s.PendingTimeout),
			FailOpen:       s.FailOpen,
			HoldDown: &pb.HoldDown{
				Initial:    durationpb.New(s.HoldDown.Initial),
				Max:        durationpb.New(s.HoldDown.Max),
				Multiplier: s.HoldDown.Multiplier,
			},
			Retry: &pb.Retry{Initial: durationpb.New(s.Retry.Initial), Max: durationpb.New(s.Retry.Max)},
		}
		for _, r := range s.Prefixes {
			ps.Prefixes = append(ps.Prefixes, &pb.PrefixRange{
				Prefix: r.Prefix.String(), MinLen: uint32(max(r.MinLen, 0)), MaxLen: uint32(max(r.MaxLen, 0)),
			})
		}
		out.Scopes = append(out.Scopes, ps)
	}
	return out
}

func flagsToProto(f fib.HWFlags) *pb.HardwareFlags {
	return &pb.HardwareFlags{
		Offload:       f&fib.Offload != 0,
		Trap:          f&fib.Trap != 0,
		OffloadFailed: f&fib.OffloadFailed != 0,
	}
}

func routeStateToProto(s gate.RouteState) *pb.Route {
	r := &pb.Route{
		Table:          s.Table,
		Prefix:         s.Prefix.String(),
		Family:         familyToProto(fib.FamilyOf(s.Prefix)),
		Scope:          s.Scope,
		State:          stateToProto(s.State),
		Reason:         s.Reason,
		Flags:          flagsToProto(s.Flags),
		SeenTime:       optTime(s.SeenAt),
		ConfirmedTime:  optTime(s.ConfirmedAt),
		AdvertisedTime: optTime(s.AdvertisedAt),
		WithdrawnTime:  optTime(s.WithdrawnAt),
		Flaps:          uint32(max(s.Flaps, 0)),
		HoldUntil:      optTime(s.HoldUntil),
		StateTime:      optTime(s.StateSince),
		Retries:        uint32(max(s.Retries, 0)),
		NextRetryTime:  optTime(s.NextRetry),
	}
	for _, f := range s.NexthopFlags {
		r.NexthopFlags = append(r.NexthopFlags, flagsToProto(f))
	}
	return r
}

func routeStatesToProto(states []gate.RouteState) []*pb.Route {
	out := make([]*pb.Route, 0, len(states))
	for _, s := range states {
		out = append(out, routeStateToProto(s))
	}
	return out
}

func latencyToProto(l gate.LatencySummary) *pb.LatencySummary {
	return &pb.LatencySummary{
		Count: uint64(max(l.Count, 0)),
		P50:   durationpb.New(l.P50),
		P90:   durationpb.New(l.P90),
		P99:   durationpb.New(l.P99),
		Max:   durationpb.New(l.Max),
	}
}

// statsToProto lists every state, zeros included, in the enum's order, so
// clients need not know which states exist.
func statsToProto(g gate.TrackerStats, l *kernel.Stats, x *external.Stats) *pb.GetStatsResponse {
	out := &pb.GetStatsResponse{
		Confirmations:  g.Confirmed,
		Failures:       g.Failed,
		Withdrawals:    g.Withdrawn,
		Advertisements: g.Advertised,
		TimeToHardware: latencyToProto(g.TimeToHardware),
		TimeHeldDown:   latencyToProto(g.TimeHeldDown),
	}
	for s := gate.Pending; s <= gate.Refused; s++ {
		out.RoutesByState = append(out.RoutesByState, &pb.StateCount{State: stateToProto(s), Routes: uint64(max(g.ByState[s], 0))})
	}
	if l != nil {
		out.Listener = &pb.ListenerStats{
			Notifications: l.Notifications, Overruns: l.Overruns, Resyncs: l.Resyncs,
			OutOfSync: l.OutOfSync, Routes: uint64(max(l.Routes, 0)),
		}
	}
	if x != nil {
		out.External = &pb.ExternalBackendStats{
			Agents: uint64(max(x.Agents, 0)), Routes: uint64(max(x.Routes, 0)),
			ReportsApplied: x.ReportsApplied, ReportsIgnored: x.ReportsIgnored,
		}
	}
	return out
}

func opToProto(o external.Op) pb.Operation {
	switch o {
	case external.Program:
		return pb.Operation_OPERATION_PROGRAM
	case external.Remove:
		return pb.Operation_OPERATION_REMOVE
	}
	return pb.Operation_OPERATION_UNSPECIFIED
}

// instructionToProto carries the kernel's own numbers; linkName (may be
// nil) adds interface names, which an agent maps to its ports.
func instructionToProto(in external.Instruction, linkName func(int) string) *pb.RouteInstruction {
	r := in.Route
	kr := &pb.KernelRoute{
		Table:    r.Table,
		Prefix:   r.Prefix.String(),
		Type:     uint32(r.Type),
		Tos:      uint32(r.TOS),
		Priority: r.Priority,
		Protocol: uint32(r.Protocol),
		Scope:    uint32(r.Scope),
		Nhid:     r.NHID,
	}
	if r.PrefSrc.IsValid() {
		kr.PrefSrc = r.PrefSrc.String()
	}
	for _, nh := range r.Nexthops {
		n := &pb.Nexthop{LinkIndex: uint32(max(nh.LinkIndex, 0)), Weight: uint32(max(nh.Weight, 1)), Flags: nh.Flags}
		if nh.Gateway.IsValid() {
			n.Gateway = nh.Gateway.String()
		}
		if linkName != nil && nh.LinkIndex != 0 {
			n.LinkName = linkName(nh.LinkIndex)
		}
		kr.Nexthops = append(kr.Nexthops, n)
	}
	return &pb.RouteInstruction{Operation: opToProto(in.Op), Route: kr, Generation: in.Generation}
}

func simCapacityToProto(c SimCapacity) *pb.SimCapacity {
	n := func(v int) uint64 { return uint64(max(v, 0)) }
	return &pb.SimCapacity{Ipv4Prefix: n(c.IPv4Prefix), Ipv4Host: n(c.IPv4Host), Ipv6Prefix: n(c.IPv6Prefix), Ipv6Host: n(c.IPv6Host)}
}

func simStatsToProto(s SimStats) *pb.GetSimStatsResponse {
	n := func(v int) uint64 { return uint64(max(v, 0)) }
	return &pb.GetSimStatsResponse{
		Programmed:      n(s.Programmed),
		Trapped:         n(s.Trapped),
		Offloaded:       n(s.Offloaded),
		Failed:          n(s.Failed),
		Queue:           n(s.Queue),
		Used:            simCapacityToProto(s.Used),
		Ops:             s.Ops,
		OpsPerSecond:    s.OpsPerSecond,
		WriteErrors:     s.WriteErrors,
		Capacity:        simCapacityToProto(s.Capacity),
		Latency:         durationpb.New(s.Latency),
		Jitter:          durationpb.New(s.Jitter),
		RoutesPerSecond: uint32(max(s.Rate, 0)),
		Batch:           uint32(max(s.Batch, 0)),
		FailProbability: s.FailProbability,
		CapacityMode:    s.CapacityMode,
		Refused:         s.Refused,
		Held:            simCapacityToProto(s.Held),
	}
}

// addRetryStats fills in the counters of refusals and retries.
func addRetryStats(out *pb.GetStatsResponse, r gate.RetryStats) {
	out.RefusedWrites, out.Refusals = r.RefusedWrites, r.Refusals
	out.Rewrites, out.RewriteErrors = r.Rewrites, r.RewriteErrors
}
