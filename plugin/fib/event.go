package fib

import "time"

// EventKind says what happened to a route.
type EventKind uint8

const (
	// Added: the route appeared in the FIB.
	Added EventKind = iota + 1
	// Changed: the route's hardware state changed, or it was replaced in place.
	Changed
	// Removed: the route left the FIB.
	Removed
)

// String returns the word used in `fibgate monitor` output.
func (k EventKind) String() string {
	switch k {
	case Added:
		return "add"
	case Changed:
		return "change"
	case Removed:
		return "delete"
	}
	return "?"
}

// Event is one change of one route as a listener or hardware backend saw
// it. It lives here, not with the netlink code, so consumers such as the
// gate depend only on the model. Consumers decide from Old.Flags and
// New.Flags whether hardware confirmed the route. Every subscriber receives
// the same values: treat them as read-only (Clone a route to change it).
type Event struct {
	Kind EventKind
	// Resync marks events found by comparing a fresh dump with the model
	// (after an overrun, or a link or address loss) rather than read from a
	// notification.
	Resync bool
	// Snapshot marks the Added events that describe the model as it was when
	// a subscriber asked for a snapshot.
	Snapshot bool
	Time     time.Time
	Old      *Route // nil when Added
	New      *Route // nil when Removed
}

// Route returns the route the event is about (New, or Old when removed).
func (e Event) Route() *Route {
	if e.New != nil {
		return e.New
	}
	return e.Old
}

// EventOf turns a model change into an event.
func EventOf(c Change, now time.Time, resync bool) Event {
	ev := Event{Old: c.Old, New: c.New, Time: now, Resync: resync}
	switch {
	case c.Old == nil:
		ev.Kind = Added
	case c.New == nil:
		ev.Kind = Removed
	default:
		ev.Kind = Changed
	}
	return ev
}
