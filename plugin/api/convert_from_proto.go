package api

// Conversions from the wire to fibgate's own types, in one place. Every
// value a client sends is checked here or in the service that calls these:
// a bad value is an error naming its field, never a silent default.

import (
	"fmt"
	"net/netip"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/hw/external"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// policyErr is a policy field error, so statusOf maps it like the gate's
// own validation errors.
func policyErr(field, format string, args ...any) error {
	return &gate.FieldError{Field: field, Err: fmt.Errorf("%w: "+format, append([]any{gate.ErrInvalidPolicy}, args...)...)}
}

// parsePrefix reads a CIDR prefix and refuses host bits, which would make
// "10.1.2.3/8" silently mean 10.0.0.0/8.
func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a prefix in CIDR notation (like 192.0.2.0/24 or 2001:db8::/32)", s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set (did you mean %s?)", p, p.Masked())
	}
	return p, nil
}

// familyFromProto: unspecified is 0, which means both families.
func familyFromProto(f pb.Family) (fib.Family, error) {
	switch f {
	case pb.Family_FAMILY_UNSPECIFIED:
		return 0, nil
	case pb.Family_FAMILY_IPV4:
		return fib.IPv4, nil
	case pb.Family_FAMILY_IPV6:
		return fib.IPv6, nil
	}
	return 0, fmt.Errorf("unknown family %d (want FAMILY_IPV4 or FAMILY_IPV6)", f)
}

// stateFromProto: unspecified is 0, which filters nothing.
func stateFromProto(s pb.State) (gate.State, error) {
	switch s {
	case pb.State_STATE_UNSPECIFIED:
		return 0, nil
	case pb.State_STATE_PENDING:
		return gate.Pending, nil
	case pb.State_STATE_CONFIRMED:
		return gate.Confirmed, nil
	case pb.State_STATE_RELEASED:
		return gate.Released, nil
	case pb.State_STATE_FAILED:
		return gate.Failed, nil
	case pb.State_STATE_HELD_DOWN:
		return gate.HeldDown, nil
	case pb.State_STATE_WITHDRAWN:
		return gate.Withdrawn, nil
	case pb.State_STATE_REFUSED:
		return gate.Refused, nil
	}
	return 0, fmt.Errorf("unknown state %d", s)
}

func flagsFromProto(f *pb.HardwareFlags) fib.HWFlags {
	var out fib.HWFlags
	if f.GetOffload() {
		out |= fib.Offload
	}
	if f.GetTrap() {
		out |= fib.Trap
	}
	if f.GetOffloadFailed() {
		out |= fib.OffloadFailed
	}
	return out
}

// durationFromProto reads an optional duration; unset is zero.
func durationFromProto(d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, err
	}
	return d.AsDuration(), nil
}

// PolicyFromProto converts a policy (from the API or a policy file read by
// the CLI or the daemon), filling what is unspecified with the
// default scope's values. It checks what the conversion itself needs
// (prefix syntax, enum values, durations); gate's Validate checks the rest.
// Field names in errors are those of the proto (and of policy files).
func PolicyFromProto(p *pb.Policy) (gate.Policy, error) {
	if p == nil {
		return gate.Policy{}, &FieldError{Field: "policy", Err: fmt.Errorf("a policy is required")}
	}
	def := gate.DefaultScope()
	out := gate.Policy{Scopes: make([]gate.Scope, 0, len(p.GetScopes()))}
	for i, ps := range p.GetScopes() {
		f := fmt.Sprintf("scopes[%d]", i)
		s := gate.Scope{Name: ps.GetName(), FailOpen: ps.GetFailOpen(), HoldDown: def.HoldDown, Retry: def.Retry}
		var err error
		if s.Family, err = familyFromProto(ps.GetFamily()); err != nil {
			return gate.Policy{}, policyErr(f+".family", "%v", err)
		}
		if len(ps.GetTables()) > 0 {
			s.Tables = append([]uint32(nil), ps.GetTables()...)
		}
		switch ps.GetLevel() {
		case pb.Level_LEVEL_UNSPECIFIED:
			s.Level = def.Level
		case pb.Level_LEVEL_FIB:
			s.Level = gate.LevelFIB
		case pb.Level_LEVEL_HARDWARE:
			s.Level = gate.LevelHardware
		case pb.Level_LEVEL_OFFLOAD:
			s.Level = gate.LevelOffload
		default:
			return gate.Policy{}, policyErr(f+".level", "unknown confirmation level %d", ps.GetLevel())
		}
		switch ps.GetEcmp() {
		case pb.EcmpMode_ECMP_MODE_UNSPECIFIED:
			s.ECMP = def.ECMP
		case pb.EcmpMode_ECMP_MODE_ALL:
			s.ECMP = gate.ECMPAll
		case pb.EcmpMode_ECMP_MODE_ANY:
			s.ECMP = gate.ECMPAny
		default:
			return gate.Policy{}, policyErr(f+".ecmp", "unknown ecmp mode %d", ps.GetEcmp())
		}
		switch ps.GetOnFailure() {
		case pb.OnFailure_ON_FAILURE_UNSPECIFIED:
			s.OnFailure = def.OnFailure
		case pb.OnFailure_ON_FAILURE_WITHDRAW:
			s.OnFailure = gate.FailureWithdraw
		case pb.OnFailure_ON_FAILURE_KEEP:
			s.OnFailure = gate.FailureKeep
		default:
			return gate.Policy{}, policyErr(f+".on_failure", "unknown on-failure action %d", ps.GetOnFailure())
		}
		if s.PendingTimeout, err = durationFromProto(ps.GetPendingTimeout()); err != nil {
			return gate.Policy{}, policyErr(f+".pending_timeout", "%v", err)
		}
		if h := ps.GetHoldDown(); h != nil {
			if s.HoldDown.Initial, err = durationFromProto(h.GetInitial()); err != nil {
				return gate.Policy{}, policyErr(f+".hold_down.initial", "%v", err)
			}
			if s.HoldDown.Max, err = durationFromProto(h.GetMax()); err != nil {
				return gate.Policy{}, policyErr(f+".hold_down.max", "%v", err)
			}
			s.HoldDown.Multiplier = h.GetMultiplier()
		}
		if rt := ps.GetRetry(); rt != nil {
			if s.Retry.Initial, err = durationFromProto(rt.GetInitial()); err != nil {
				return gate.Policy{}, policyErr(f+".retry.initial", "%v", err)
			}
			if s.Retry.Max, err = durationFromProto(rt.GetMax()); err != nil {
				return gate.Policy{}, policyErr(f+".retry.max", "%v", err)
			}
		}
		for j, r := range ps.GetPrefixes() {
			pf := fmt.Sprintf("%s.prefixes[%d]", f, j)
			pr, err := netip.ParsePrefix(r.GetPrefix())
			if err != nil {
				// Host bits are the gate's to report (with a hint).
				return gate.Policy{}, policyErr(pf+".prefix", "%q is not a prefix in CIDR notation", r.GetPrefix())
			}
			s.Prefixes = append(s.Prefixes, gate.PrefixRange{Prefix: pr, MinLen: int(r.GetMinLen()), MaxLen: int(r.GetMaxLen())})
		}
		out.Scopes = append(out.Scopes, s)
	}
	return out, nil
}

// reportFromProto converts one agent report; field is its place in the
// request, for errors.
func reportFromProto(field string, r *pb.RouteReport) (external.Report, error) {
	p, err := parsePrefix(r.GetPrefix())
	if err != nil {
		return external.Report{}, &FieldError{Field: field + ".prefix", Err: err}
	}
	if r.GetTable() == 0 {
		return external.Report{}, badField(field+".table", "table 0 is not a routing table (main is 254)")
	}
	out := external.Report{Table: r.GetTable(), Prefix: p, Generation: r.GetGeneration(), Flags: flagsFromProto(r.GetFlags())}
	if n := r.GetNexthopFlags(); len(n) > 0 {
		out.NexthopFlags = make([]fib.HWFlags, len(n))
		for i, f := range n {
			out.NexthopFlags[i] = flagsFromProto(f)
		}
	}
	return out, nil
}
