// Package gate decides, per prefix, when a route may be advertised: only
// once the data plane confirmed it, withdrawn when installation fails. It
// sees route events and calls small interfaces; it knows neither netlink nor
// GoBGP.
package gate

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// Level is how much confirmation a prefix needs before it is advertised.
type Level uint8

const (
	// LevelHardware (the default) needs offload or trap without
	// offload_failed: the ASIC holds the route.
	LevelHardware Level = iota
	// LevelFIB is satisfied by the route being in the kernel FIB, for
	// software routers with no offload.
	LevelFIB
	// LevelOffload needs offload: trapping to the CPU is not good enough.
	LevelOffload
)

var levelNames = []string{"hardware", "fib", "offload"}

func (l Level) String() string { return enumName(levelNames, int(l)) }

// ParseLevel reads "fib", "hardware" or "offload".
func ParseLevel(s string) (Level, error) {
	i, err := parseEnum(levelNames, s, "confirmation level")
	return Level(i), err
}

// ECMP says what confirmation means for a multipath route.
type ECMP uint8

const (
	// ECMPAll (the default) needs every nexthop confirmed, so no share of
	// the traffic lands on a path the hardware lacks.
	ECMPAll ECMP = iota
	// ECMPAny is satisfied by one confirmed nexthop.
	ECMPAny
)

var ecmpNames = []string{"all", "any"}

func (e ECMP) String() string { return enumName(ecmpNames, int(e)) }

// ParseECMP reads "all" or "any".
func ParseECMP(s string) (ECMP, error) {
	i, err := parseEnum(ecmpNames, s, "ecmp mode")
	return ECMP(i), err
}

// OnFailure is what happens to an advertised prefix whose hardware
// installation fails (offload_failed).
type OnFailure uint8

const (
	// FailureWithdraw (the default) withdraws it and keeps watching; it is
	// advertised again once the flags recover.
	FailureWithdraw OnFailure = iota
	// FailureKeep leaves it advertised: the CPU forwards it, slowly.
	FailureKeep
)

var failureNames = []string{"withdraw", "keep"}

func (f OnFailure) String() string { return enumName(failureNames, int(f)) }

// ParseOnFailure reads "withdraw" or "keep".
func ParseOnFailure(s string) (OnFailure, error) {
	i, err := parseEnum(failureNames, s, "on-failure action")
	return OnFailure(i), err
}

// PrefixRange selects prefixes inside Prefix whose length is between MinLen
// and MaxLen (both inclusive; zero values mean Prefix's own length and the
// family's maximum), like a BGP prefix-list entry "le/ge".
type PrefixRange struct {
	Prefix netip.Prefix
	MinLen int
	MaxLen int
}

// Contains reports whether p falls in the range.
func (r PrefixRange) Contains(p netip.Prefix) bool {
	if r.Prefix.Addr().Is4() != p.Addr().Is4() || p.Bits() < r.Prefix.Bits() || !r.Prefix.Contains(p.Addr()) {
		return false
	}
	lo, hi := r.Bounds()
	return p.Bits() >= lo && p.Bits() <= hi
}

// Bounds are the shortest and longest lengths in range, with the zero
// values resolved, so other prefix-list dialects (GoBGP's) can say the
// same thing.
func (r PrefixRange) Bounds() (lo, hi int) {
	lo, hi = r.MinLen, r.MaxLen
	if lo == 0 {
		lo = r.Prefix.Bits()
	}
	if hi == 0 {
		hi = r.Prefix.Addr().BitLen()
	}
	return lo, hi
}

// HoldDown dampens flapping hardware state: after a confirmed prefix loses
// confirmation, it must stay confirmed for the current hold time before it
// is advertised again; each flap multiplies the hold time up to Max, and it
// decays back to Initial after Max of stability.
type HoldDown struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
}

// Scope is a set of prefixes gated the same way.
type Scope struct {
	// Name identifies the scope in the API, logs and metrics.
	Name string
	// Family limits the scope to IPv4 or IPv6; 0 means both.
	Family fib.Family
	// Tables are the routing tables whose routes count; empty means main (254).
	Tables []uint32
	// Prefixes select prefixes; empty means every prefix of the family.
	Prefixes []PrefixRange
	Level    Level
	ECMP     ECMP
	// OnFailure says what offload_failed does to an advertised prefix.
	OnFailure OnFailure
	// PendingTimeout bounds how long a prefix may wait for confirmation; 0
	// waits forever. What happens then is FailOpen's choice.
	PendingTimeout time.Duration
	// FailOpen advertises a prefix whose confirmation did not come within
	// PendingTimeout. The default (false) keeps holding it: fail-closed.
	FailOpen bool
	HoldDown HoldDown
	// Retry writes the route of a failed prefix again so its driver tries
	// again (see Retry).
	Retry Retry
}

// Policy is the gating policy. Scopes are tried in order; the first that
// matches a route's table and prefix gates it. Prefixes no scope matches are
// not gated.
type Policy struct {
	Scopes []Scope
}

// DefaultScope is the scope used when a policy names none: every prefix of
// the main table, hardware confirmation, all ECMP paths, withdraw on
// failure, hold forever (fail-closed), hold-down from 1 s to 60 s, and
// failed routes written again from 1 s to 5 min apart (DefaultRetry).
func DefaultScope() Scope {
	return Scope{
		Name:     "default",
		Level:    LevelHardware,
		ECMP:     ECMPAll,
		HoldDown: HoldDown{Initial: time.Second, Max: time.Minute, Multiplier: 2},
		Retry:    DefaultRetry,
	}
}

// DefaultPolicy gates everything in the main table with DefaultScope.
func DefaultPolicy() Policy { return Policy{Scopes: []Scope{DefaultScope()}} }

// FieldError says which field of a policy is wrong, so the API can answer
// INVALID_ARGUMENT naming it.
type FieldError struct {
	Field string // e.g. "scopes[1].prefixes[0].max_len"
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// ErrInvalidPolicy is matched (errors.Is) by every validation error.
var ErrInvalidPolicy = errors.New("invalid policy")

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf("%w: "+format, append([]any{ErrInvalidPolicy}, args...)...)}
}

// Validate checks a policy before it is used and returns the first problem
// as a *FieldError.
func (p *Policy) Validate() error {
	names := map[string]bool{}
	for i, s := range p.Scopes {
		f := fmt.Sprintf("scopes[%d]", i)
		switch {
		case s.Name == "":
			return fieldErr(f+".name", "a scope needs a name")
		case names[s.Name]:
			return fieldErr(f+".name", "scope name %q is used twice", s.Name)
		case s.Family != 0 && s.Family != fib.IPv4 && s.Family != fib.IPv6:
			return fieldErr(f+".family", "family %d is neither IPv4 nor IPv6", s.Family)
		case s.Level > LevelOffload:
			return fieldErr(f+".level", "unknown confirmation level %d", s.Level)
		case s.ECMP > ECMPAny:
			return fieldErr(f+".ecmp", "unknown ecmp mode %d", s.ECMP)
		case s.OnFailure > FailureKeep:
			return fieldErr(f+".on_failure", "unknown on-failure action %d", s.OnFailure)
		case s.PendingTimeout < 0:
			return fieldErr(f+".pending_timeout", "negative duration %s", s.PendingTimeout)
		case s.FailOpen && s.PendingTimeout == 0:
			return fieldErr(f+".fail_open", "fail-open needs a pending_timeout after which to advertise")
		case s.HoldDown.Initial < 0 || s.HoldDown.Max < s.HoldDown.Initial:
			return fieldErr(f+".hold_down", "want 0 <= initial (%s) <= max (%s)", s.HoldDown.Initial, s.HoldDown.Max)
		case math.IsNaN(s.HoldDown.Multiplier) || math.IsInf(s.HoldDown.Multiplier, 0):
			// NaN compares false with everything: it passed the check
			// below and turned damping off (issue 12).
			return fieldErr(f+".hold_down.multiplier", "multiplier %g is not a finite number", s.HoldDown.Multiplier)
		case s.HoldDown.Initial > 0 && s.HoldDown.Multiplier < 1:
			return fieldErr(f+".hold_down.multiplier", "multiplier %g must be at least 1", s.HoldDown.Multiplier)
		}
		if err := s.Retry.validate(f + ".retry"); err != nil {
			return err
		}
		names[s.Name] = true
		for j, t := range s.Tables {
			if t == 0 {
				return fieldErr(fmt.Sprintf("%s.tables[%d]", f, j), "table 0 (unspec) is not a routing table")
			}
		}
		for j, r := range s.Prefixes {
			pf := fmt.Sprintf("%s.prefixes[%d]", f, j)
			if !r.Prefix.IsValid() {
				return fieldErr(pf+".prefix", "not a valid prefix")
			}
			if r.Prefix != r.Prefix.Masked() {
				return fieldErr(pf+".prefix", "%s has host bits set (did you mean %s?)", r.Prefix, r.Prefix.Masked())
			}
			if s.Family != 0 && fib.FamilyOf(r.Prefix) != s.Family {
				return fieldErr(pf+".prefix", "%s is not %s, the scope's family", r.Prefix, s.Family)
			}
			lo, hi := r.Bounds()
			if r.MinLen != 0 && r.MinLen < r.Prefix.Bits() || hi > r.Prefix.Addr().BitLen() || lo > hi {
				return fieldErr(pf, "want %d <= min_len (%d) <= max_len (%d) <= %d", r.Prefix.Bits(), lo, hi, r.Prefix.Addr().BitLen())
			}
		}
	}
	return nil
}

// Match returns the scope that gates (table, prefix), if any.
func (p *Policy) Match(table uint32, prefix netip.Prefix) (*Scope, bool) {
	for i := range p.Scopes {
		s := &p.Scopes[i]
		if s.Family != 0 && s.Family != fib.FamilyOf(prefix) {
			continue
		}
		if len(s.Tables) == 0 && table != fib.TableMain || len(s.Tables) > 0 && !slices.Contains(s.Tables, table) {
			continue
		}
		if len(s.Prefixes) > 0 && !slices.ContainsFunc(s.Prefixes, func(r PrefixRange) bool { return r.Contains(prefix) }) {
			continue
		}
		return s, true
	}
	return nil, false
}

func enumName(names []string, i int) string {
	if i >= 0 && i < len(names) {
		return names[i]
	}
	return fmt.Sprintf("unknown(%d)", i)
}

func parseEnum(names []string, s, what string) (int, error) {
	if i := slices.Index(names, s); i >= 0 {
		return i, nil
	}
	return 0, fmt.Errorf("%w: unknown %s %q (want one of %v)", ErrInvalidPolicy, what, s, names)
}

// Tables lists the routing tables some scope covers (main for a scope that
// names none), in the order the scopes name them: the tables whose routes
// the gate follows and the audit reads.
func (p Policy) Tables() []uint32 {
	var out []uint32
	for _, s := range p.Scopes {
		ts := s.Tables
		if len(ts) == 0 {
			ts = []uint32{fib.TableMain}
		}
		for _, t := range ts {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}
