package kernel

import (
	"errors"
	"syscall"

	"github.com/fibgate/fibgate/plugin/fib"
)

// RouteOp is one route to write: added or replaced in place (the kernel's
// NLM_F_CREATE|NLM_F_REPLACE), added only where the route's place is free
// (Exclusive: NLM_F_CREATE|NLM_F_EXCL), or deleted.
type RouteOp struct {
	Route  fib.Route
	Delete bool
	// Exclusive adds the route only if no route holds its place (the same
	// prefix, tos and metric): the kernel answers EEXIST otherwise.
	Exclusive bool
	// Exact deletes the route only if it is still as given: its type,
	// scope, protocol, preferred source and next hops must match (ESRCH
	// otherwise). A plain delete matches any of them, as `ip route del
	// PREFIX` does.
	Exact bool
}

// AckError is the kernel's refusal of one request with the message of its
// extended acknowledgement (what `ip route` prints after "Error:"), for
// example EPERM with netdevsim's "Exceeded number of supported fib
// entries" when its FIB is full. errors.Is matches the errno.
type AckError struct {
	Errno syscall.Errno
	Msg   string
}

func (e *AckError) Error() string { return e.Errno.Error() + ": " + e.Msg }

// Unwrap returns the errno.
func (e *AckError) Unwrap() error { return e.Errno }

// Vetoer is a hardware driver outside the kernel that refuses routes the way
// a switchdev driver refuses them from the kernel's FIB notifier chain:
// netdevsim vetoes a route beyond its FIB capacity, so the kernel answers
// the write with EPERM and never installs the route. A user-space driver
// learns of routes only after the kernel took them, so a RouteWriter asks
// it first (WithVetoer): a refused op is not sent, and its writer gets the
// error a kernel driver's veto would give. The simulated ASIC with
// capacity_mode refuse is one.
type Vetoer interface {
	// Veto returns one error per op, nil for those it lets through. It is
	// asked about deletes too (a driver never refuses one).
	Veto(ops []RouteOp) []error
	// Written tells the vetoer what the kernel did with the ops Veto let
	// through (errs[i] nil: done), so room held for a route the kernel
	// then refused is given back.
	Written(ops []RouteOp, errs []error)
}

// ErrNotAddedBack marks a rewrite whose route was deleted but could not be
// added back (a driver vetoed it meanwhile, say): the kernel holds no
// route for it now, and its writer should treat it as a refused write.
var ErrNotAddedBack = errors.New("deleted to be written again and not added back: the kernel has no route for it now")

// ErrUnmodelled refuses to rewrite a route whose attributes fibgate's model
// does not all keep (fib.Route.Unmodelled): written back, it would lose them.
var ErrUnmodelled = errors.New("the route carries attributes fibgate does not model (metrics such as mtu, an encapsulation, realms, a router preference or an expiry), which a rewrite would lose: re-add it by hand")

// ErrAddressRoute refuses to rewrite a local, broadcast, anycast or
// multicast route: the kernel owns those (it makes them for addresses).
var ErrAddressRoute = errors.New("a local, broadcast, anycast or multicast route belongs to the kernel and is not rewritten")

// writable returns the route as a request must carry it: no hardware flags
// (they are the driver's), no kernel-owned next-hop states (dead and
// linkdown are refused in requests; only onlink is the writer's), and a
// route with a nexthop object names only the object.
func writable(r fib.Route) fib.Route {
	r.Flags = 0
	r.Unmodelled = false
	if r.NHID != 0 {
		r.Nexthops = nil
		return r
	}
	r.Nexthops = append([]fib.Nexthop(nil), r.Nexthops...)
	for i := range r.Nexthops {
		r.Nexthops[i].HW = 0
		r.Nexthops[i].Flags &= fib.RTNHFOnlink
	}
	return r
}

// rewritable says why a route must not be rewritten, or nil.
func rewritable(r *fib.Route) error {
	switch {
	case r.Unmodelled:
		return ErrUnmodelled
	case r.Type == fib.TypeLocal || r.Type == fib.TypeBroadcast || r.Type == fib.TypeAnycast || r.Type == fib.TypeMulticast:
		return ErrAddressRoute
	}
	return nil
}
