package gate

import (
	"net/netip"
	"time"
	"unique"

	"github.com/fibgate/fibgate/plugin/fib"
)

// Memory: a tracker holds one entry per gated prefix, a full table's worth
// (issue 10: 300 bytes per route for all of fibgate's own state). A
// time.Time takes 24 bytes and an entry had twelve, so an entry keeps its
// times as stamps and its state as rstate, which leaves out what the
// map's key already says; RouteState is built only when someone reads it.

// stamp is a time in 8 bytes: nanoseconds since the tracker's epoch, a
// time.Time read at its start that carries the monotonic clock, so
// deadlines do not move when the wall clock is stepped. 0 is "never".
type stamp int64

// epoch turns times into stamps and back.
type epoch struct{ base time.Time }

// newEpoch returns the epoch of a tracker made at now: a second earlier,
// so that no time the tracker stores is the epoch itself (stamp 0).
func newEpoch(now time.Time) epoch { return epoch{now.Add(-time.Second)} }

func (c epoch) at(t time.Time) stamp {
	if t.IsZero() {
		return 0
	}
	if s := stamp(t.Sub(c.base)); s != 0 {
		return s
	}
	return 1 // the epoch itself, a second before the tracker: never seen
}

func (c epoch) time(s stamp) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return c.base.Add(time.Duration(s))
}

// rstate is RouteState as an entry keeps it: its table and prefix are the
// entry's key, its times stamps.
type rstate struct {
	Scope  text
	Reason text
	// NexthopFlags are the per-path flags as a string of fib.HWFlags
	// bytes (zero: none recorded): a route's paths are nearly always
	// all offloaded, so a table shares a handful of them.
	NexthopFlags text
	SeenAt       stamp
	ConfirmedAt  stamp
	AdvertisedAt stamp
	WithdrawnAt  stamp
	HoldUntil    stamp
	StateSince   stamp
	// Flaps is int32 here (int in RouteState), after the stamps so that
	// the small fields share a word. Retries and NextRetry, set only while
	// a prefix fails or is refused, are in the entry's retry record
	// (retryState.shown). An entry is 144 bytes, a size class; with those
	// two here it took the 160-byte class.
	Flaps int32
	State State
	Flags fib.HWFlags
}

// public is the RouteState of an entry.
func (c epoch) public(k prefixKey, e *entry) RouteState {
	s := &e.st
	var shown retriesShown
	if e.retry != nil {
		shown = e.retry.shown
	}
	return RouteState{Table: k.table, Prefix: k.prefix(), Scope: s.Scope.String(), State: s.State, Reason: s.Reason.String(),
		Flags: s.Flags, NexthopFlags: s.NexthopFlags.flags(), SeenAt: c.time(s.SeenAt), ConfirmedAt: c.time(s.ConfirmedAt),
		AdvertisedAt: c.time(s.AdvertisedAt), WithdrawnAt: c.time(s.WithdrawnAt), Flaps: int(s.Flaps),
		HoldUntil: c.time(s.HoldUntil), StateSince: c.time(s.StateSince), Retries: int(shown.n), NextRetry: c.time(shown.next)}
}

// stateEqual says whether two states differ in what watchers hear of.
func stateEqual(a, b rstate) bool {
	return a.State == b.State && a.Reason == b.Reason && a.Flags == b.Flags && a.Scope == b.Scope &&
		a.NexthopFlags == b.NexthopFlags && a.Flaps == b.Flaps && a.HoldUntil == b.HoldUntil
}

// text is a string an entry shares with every other entry that holds it
// (unique.Make): 8 bytes instead of a string's 16, and the few scope
// names, reasons and path flags a table's prefixes carry are stored
// once. The zero text is "" (and, for path flags, none recorded).
type text struct{ h unique.Handle[string] }

func textOf(s string) text {
	if s == "" {
		return text{}
	}
	return text{unique.Make(s)}
}

// String is the text; "" for the zero text.
func (t text) String() string {
	if t == (text{}) {
		return ""
	}
	return t.h.Value()
}

// pathFlags is the text of a route's per-path hardware flags (the zero
// text for a route without paths).
func pathFlags(nhs []fib.Nexthop) text {
	b := make([]byte, len(nhs))
	for i, nh := range nhs {
		b[i] = byte(nh.HW)
	}
	return textOf(string(b))
}

// flags is the text as path flags (nil for the zero text): a fresh slice
// for every reader.
func (t text) flags() []fib.HWFlags {
	if t == (text{}) {
		return nil
	}
	s := t.h.Value()
	out := make([]fib.HWFlags, len(s))
	for i := range len(s) {
		out[i] = fib.HWFlags(s[i])
	}
	return out
}

// addr is an address an entry shares like a text: 8 bytes instead of
// netip.Addr's 24, and a leaf's few next hops are stored once.
type addr struct{ h unique.Handle[netip.Addr] }

func addrOf(a netip.Addr) addr {
	if !a.IsValid() {
		return addr{}
	}
	return addr{unique.Make(a)}
}

// Addr is the address; the zero netip.Addr for the zero addr.
func (a addr) Addr() netip.Addr {
	if a == (addr{}) {
		return netip.Addr{}
	}
	return a.h.Value()
}
