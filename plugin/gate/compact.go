package gate

import (
	"math"
	"net/netip"
	"time"

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
	SeenAt       stamp
	ConfirmedAt  stamp
	AdvertisedAt stamp
	WithdrawnAt  stamp
	HoldUntil    stamp
	StateSince   stamp
	Scope        text
	Reason       text
	// NexthopFlags are the per-path flags as a string of fib.HWFlags
	// bytes (zero: none recorded): a route's paths are nearly always
	// all offloaded, so a table shares a handful of them.
	NexthopFlags text
	// nextHop is the forwarding route's first gateway (for the speaker).
	nextHop id[netip.Addr]
	// Flaps is a uint16 here (int in RouteState) that stops at its
	// maximum (flap), after the stamps so that the small fields share
	// words. Retries and NextRetry, set only while a prefix fails or is
	// refused, are in the tracker's retry records (retryState.shown). An
	// entry is 104 bytes (TestEntryIsSmallAndFlat).
	Flaps uint16
	State State
	Flags fib.HWFlags
	// origin is how the prefix reaches BGP (0: it is never advertised).
	origin Origin
	// out is set from the moment an Advertise is sent until a Withdraw
	// succeeds: the speaker may have the prefix out.
	out bool
	// keep: the route was replaced while the prefix was out on a
	// confirmed one, and the prefix stays out until the new route is
	// programmed, fails or runs out of time (make-before-break).
	keep bool
}

// flap counts one more loss of confirmation; the count stops at its
// maximum, where the hold-down has long reached HoldDown.Max.
func (s *rstate) flap() {
	if s.Flaps < math.MaxUint16 {
		s.Flaps++
	}
}

// public is the RouteState of an entry. Called with t.mu held (read).
func (t *Tracker) public(k prefixKey, e *entry) RouteState {
	s, c := &e.st, t.ep
	var shown retriesShown
	if rs := t.retries[k]; rs != nil {
		shown = rs.shown
	}
	return RouteState{Table: k.table, Prefix: k.prefix(), Scope: t.texts.get(s.Scope), State: s.State, Reason: t.texts.get(s.Reason),
		Flags: s.Flags, NexthopFlags: flagsOf(t.texts.get(s.NexthopFlags)), SeenAt: c.time(s.SeenAt), ConfirmedAt: c.time(s.ConfirmedAt),
		AdvertisedAt: c.time(s.AdvertisedAt), WithdrawnAt: c.time(s.WithdrawnAt), Flaps: int(s.Flaps),
		HoldUntil: c.time(s.HoldUntil), StateSince: c.time(s.StateSince), Retries: int(shown.n), NextRetry: c.time(shown.next)}
}

// stateEqual says whether two states differ in what watchers hear of.
func stateEqual(a, b rstate) bool {
	return a.State == b.State && a.Reason == b.Reason && a.Flags == b.Flags && a.Scope == b.Scope &&
		a.NexthopFlags == b.NexthopFlags && a.Flaps == b.Flaps && a.HoldUntil == b.HoldUntil
}

// text is a string an entry shares with every other entry that holds it
// (Tracker.texts): a scope name, a reason, or path flags as a string of
// fib.HWFlags bytes (the zero text: none recorded).
type text = id[string]

// pathFlags is the text of a route's per-path hardware flags (the zero
// text for a route without paths). Called with t.mu held.
func (t *Tracker) pathFlags(nhs []fib.Nexthop) text {
	b := make([]byte, len(nhs))
	for i, nh := range nhs {
		b[i] = byte(nh.HW)
	}
	return t.texts.of(string(b))
}

// flagsOf is path flags as RouteState has them (nil for none): a fresh
// slice for every reader.
func flagsOf(s string) []fib.HWFlags {
	if s == "" {
		return nil
	}
	out := make([]fib.HWFlags, len(s))
	for i := range len(s) {
		out[i] = fib.HWFlags(s[i])
	}
	return out
}
