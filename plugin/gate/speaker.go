package gate

import (
	"context"
	"fmt"
	"net/netip"
)

// Origin says how a prefix reaches BGP, which decides how it is released.
type Origin uint8

const (
	// Originated prefixes are kernel routes that fibgate announces itself
	// (redistribution): released by adding a path, withdrawn by deleting it.
	Originated Origin = iota + 1
	// Transit prefixes are learned from BGP peers and installed by fibgate:
	// held back by the export policy, released by listing them as
	// confirmed and re-running export for them.
	Transit
)

func (o Origin) String() string {
	switch o {
	case Originated:
		return "originated"
	case Transit:
		return "transit"
	}
	return "unknown"
}

// Advertisement names one prefix to release or take back.
type Advertisement struct {
	Prefix netip.Prefix
	Origin Origin
	// NextHop is the next hop to announce for an originated prefix when
	// the configuration gives none (the kernel route's gateway); unused
	// for transit prefixes, which keep their learned attributes.
	NextHop netip.Addr
	// Version ties the call to the FIB (fib.FIB.Version and Clock). In
	// Advertise it is the version of the confirmed route: a speaker that
	// fenced the prefix at a later clock (its best path changed and a new
	// route is on its way) refuses it with a StaleError, because the
	// confirmation is of a route that is no longer the one BGP exports.
	// In Withdraw of a prefix whose route left the FIB it is the FIB's
	// clock when the gate saw it gone: no older route can come back, so a
	// speaker may forget its fence. Zero: no claim.
	Version uint64
}

// StaleError lists the prefixes of an Advertise that a speaker refused
// because their confirmation is older than its fence. Those are not a
// failure to retry: the gate releases them once it judges the newer route.
// Err is what else went wrong in the same call (nil: nothing), to be
// retried as usual.
type StaleError struct {
	Prefixes []netip.Prefix
	Err      error
}

func (e *StaleError) Error() string {
	msg := fmt.Sprintf("%d prefixes confirmed on a route older than BGP's best path (first %v)", len(e.Prefixes), e.Prefixes[0])
	if e.Err != nil {
		msg += "; " + e.Err.Error()
	}
	return msg
}

func (e *StaleError) Unwrap() error { return e.Err }

// Speaker is what the gate needs from a BGP implementation. plugin/gobgp
// satisfies it twice: over GoBGP's gRPC API (a stock gobgpd) and in
// process. Calls are batched: one call may carry many thousands of
// prefixes, and an implementation should stream where its API allows.
// Both calls are idempotent: releasing a released prefix, or taking back
// one that is not out, succeeds and changes nothing.
type Speaker interface {
	Advertise(ctx context.Context, ads []Advertisement) error
	Withdraw(ctx context.Context, ads []Advertisement) error
}
