package gate

import (
	"net/netip"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// State is where a prefix stands in the gate.
type State uint8

const (
	// Pending: the route is in the FIB, confirmation has not come yet; the
	// prefix is held back.
	Pending State = iota + 1
	// Confirmed: the data plane holds the route; advertisement is due.
	Confirmed
	// Released: confirmed and handed to BGP, which exports it through
	// the user's export policies to neighbours that may still refuse it:
	// whether a neighbour accepted it is not known to the gate.
	Released
	// Failed: the hardware reported offload_failed; withdrawn (or kept,
	// per OnFailure) until the flags recover.
	Failed
	// HeldDown: confirmed again after flapping, waiting out its hold time.
	HeldDown
	// Withdrawn: the route left the FIB; the prefix is no longer advertised.
	Withdrawn
	// Refused: the kernel refused to install the route (a driver vetoed
	// it, the table is full, ...), so it is not in the FIB; the prefix is
	// held back while the write is tried again with back-off.
	Refused
)

// Advertised is Released's former name, kept so that code written
// against it builds: the state never said that a neighbour had the prefix.
const Advertised = Released

var stateNames = []string{"", "pending", "confirmed", "released", "failed", "held_down", "withdrawn", "refused"}

func (s State) String() string { return enumName(stateNames, int(s)) }

// ParseState reads a state name as String prints it; "advertised", the
// former name of released, is still read.
func ParseState(s string) (State, error) {
	if s == "advertised" {
		return Released, nil
	}
	i, err := parseEnum(stateNames[1:], s, "state")
	return State(i + 1), err
}

// RouteState is what fibgate knows of one gated prefix: its hardware state,
// its place in the gate and when it got there. The API lists these.
type RouteState struct {
	Table  uint32
	Prefix netip.Prefix
	Scope  string
	State  State
	// Reason says why the prefix is in its state, for people
	// ("waiting for hardware", "offload_failed on nexthop 2", ...).
	Reason string
	// Flags is the forwarding route's hardware state; NexthopFlags per path.
	Flags        fib.HWFlags
	NexthopFlags []fib.HWFlags
	// Timestamps of the last time each happened; zero when never.
	SeenAt       time.Time // entered the FIB
	ConfirmedAt  time.Time // hardware confirmed it
	AdvertisedAt time.Time // BGP accepted it
	// WithdrawnAt is when BGP took it back, or when its route left the FIB
	// (state Withdrawn). A completed withdrawal changes only this field, so
	// Watch carries it with the prefix's next change, not on its own.
	WithdrawnAt time.Time
	// Flaps counts losses of confirmation; HoldUntil ends a hold-down.
	Flaps     int
	HoldUntil time.Time
	// StateSince is when the prefix entered State: `fibgate routes` shows
	// how long it has been there.
	StateSince time.Time
	// Retries counts the attempts so far to get the hardware to take the
	// route of a failed or refused prefix (rewrites, or writes of a
	// refused route); NextRetry is when the next one is due (zero: none).
	Retries   int
	NextRetry time.Time
}

// Verdict is what a route's hardware state means under a scope.
type Verdict uint8

const (
	// VerdictPending: not (yet) in the data plane as the scope demands.
	VerdictPending Verdict = iota
	// VerdictConfirmed: the data plane holds the route as the scope demands.
	VerdictConfirmed
	// VerdictFailed: installation failed (offload_failed).
	VerdictFailed
)

// Judge applies the scope's level and ECMP rule to a forwarding route. It
// returns a reason for anything but confirmation. A route without per-path
// flags (netdevsim sets only the route's rt_trap) is judged by its route
// flags for every path; IPv6 siblings, each a kernel route with flags of
// its own, are judged path by path. A route over a nexthop object is one
// kernel entry whatever the object's members: its route flags are every
// path's.
//
// An IPv4 route's per-nexthop marks (RTNH_F_OFFLOAD, RTNH_F_TRAP) never
// confirm it. The kernel keeps them on the fib_info, which every route
// with the same next hops shares: mlxsw marks the next hops of an
// adjacency group it has written, so a new route through the same spines
// carries the marks when it is added, before the driver has written its
// own entry and set rt_offload; rocker marks next hops and never flags a
// route. So an IPv4 route is confirmed by its own flags, and under ECMP
// all its marks may then still hold it for a path not yet in hardware.
func (s *Scope) Judge(r *fib.Route) (Verdict, string) {
	if s.Level == LevelFIB {
		return VerdictConfirmed, ""
	}
	perPath := false
	for _, nh := range r.Nexthops {
		if nh.HW != 0 {
			perPath = r.NHID == 0
		}
	}
	siblings := pathsHaveOwnFlags(r)
	if !perPath || siblings && len(r.Nexthops) < 2 {
		return s.judgePaths(r.Flags, []fib.HWFlags{r.Flags})
	}
	if !siblings { // an IPv4 route's marks: its own flags first
		v, why := s.judgePaths(r.Flags, []fib.HWFlags{r.Flags})
		if v != VerdictConfirmed || len(r.Nexthops) < 2 {
			if why == reasonWaiting {
				why = reasonMarksOnly
			}
			return v, why
		}
	}
	var buf [8]fib.HWFlags
	paths := buf[:0]
	for _, nh := range r.Nexthops {
		paths = append(paths, nh.HW|r.Flags&fib.OffloadFailed)
	}
	return s.judgePaths(r.Flags, paths)
}

// pathsHaveOwnFlags says whether r's per-path hardware bits are flags of
// routes: an IPv6 multipath route is sibling fib6_infos, each flagged and
// announced on its own. An IPv4 route's are its next hops' marks, and a
// route over a nexthop object is one entry whatever its members'.
func pathsHaveOwnFlags(r *fib.Route) bool { return r.Family() == fib.IPv6 && r.NHID == 0 }

const (
	reasonWaiting = "waiting for hardware"
	// reasonMarksOnly: an IPv4 route whose next hops are marked in
	// hardware while the route itself has no flag (Judge).
	reasonMarksOnly = "waiting for hardware: its next hops are marked in hardware, the route itself is not flagged yet"
)

// judgePaths applies the level and the ECMP rule to the flags of each
// path; flags are the route's own.
func (s *Scope) judgePaths(flags fib.HWFlags, paths []fib.HWFlags) (Verdict, string) {
	ok, failed := 0, 0
	for _, f := range paths {
		switch {
		case f&fib.OffloadFailed != 0:
			failed++
		case s.Level == LevelOffload && f&fib.Offload != 0, s.Level == LevelHardware && f.InHardware():
			ok++
		}
	}
	switch {
	case s.ECMP == ECMPAny && ok > 0, ok == len(paths):
		return VerdictConfirmed, ""
	case failed > 0 && (s.ECMP == ECMPAll || ok+failed == len(paths)):
		return VerdictFailed, "hardware reported offload_failed"
	case flags&fib.Trap != 0 && s.Level == LevelOffload:
		return VerdictPending, "route traps to the CPU; scope demands offload"
	case ok > 0:
		return VerdictPending, "waiting for hardware on some nexthops"
	}
	return VerdictPending, reasonWaiting
}
