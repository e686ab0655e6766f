package gate

import (
	"context"
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
}

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
