package fib

import (
	"fmt"
	"iter"
	"slices"
)

// Change is one difference in the model: Old nil means added, New nil means
// removed, both set means the route was replaced in place or its hardware
// state changed. Routes in a Change are copies owned by the receiver.
type Change struct {
	Old, New *Route
}

// Route returns the route the change is about (New, or Old when removed).
func (c Change) Route() *Route {
	if c.New != nil {
		return c.New
	}
	return c.Old
}

// Apply brings the model in line with one notification the kernel sent (an
// rtnetlink RTM_NEWROUTE or RTM_DELROUTE, decoded) and returns what changed.
// The kernel has already made the change, so nothing is vetoed and no driver
// is called. A notification that does not fit the model (a delete or a flag
// change for a route the model lacks) returns an error wrapping
// ErrOutOfSync: the caller should resynchronise from a dump.
func (f *FIB) Apply(m Message) ([]Change, error) {
	defer f.commit()
	// No copy of the next hops: what the model keeps of them it interns
	// (nhPool copies), and nothing here writes them.
	r := m.Route
	r.Prefix = r.Prefix.Masked()
	if err := validate(&r); err != nil {
		return nil, fmt.Errorf("apply %s: %w", m, err)
	}
	before, had := f.forwarding(r.Table, r.Prefix)
	var ch []Change
	var err error
	switch {
	case m.Type == DelRoute:
		_, ch, err = f.del(r, nil, true)
	case m.NLFlags&(NLMCreate|NLMReplace) == 0:
		ch, err = f.applyFlags(r)
	case r.Family() == IPv4:
		_, ch, err = f.add4(r, m.NLFlags&^NLMExcl, nil, true)
	default:
		_, ch, err = f.add6(r, m.NLFlags&^NLMExcl, nil, true)
	}
	if err != nil {
		return nil, fmt.Errorf("apply %s: %w: %w", m, ErrOutOfSync, err)
	}
	e := f.entry(r.Table, r.Prefix)
	if m.Type == NewRoute && m.NLFlags&NLMReplace != 0 && e != nil && e.routes[0].SameAs(&r) {
		// Written anew, though the same: the kernel replaced the route
		// object (an IPv6 replace always does; an IPv4 one only for
		// attributes the model does not keep), so its drivers got it as a
		// REPLACE and its flags start over. It is a new route to the
		// gate and to a driver attached here, not a flap.
		f.stamp(e, nil, false)
	} else {
		f.stamp(e, &before, had)
	}
	return ch, nil
}

// applyFlags mirrors a hardware-flag notification (nlflags 0).
func (f *FIB) applyFlags(r Route) ([]Change, error) {
	e := f.entry(r.Table, r.Prefix)
	if e == nil {
		return nil, ErrNotFound
	}
	if k := indexSame(e.routes, &r); k >= 0 {
		if r.Family() == IPv6 && len(r.Nexthops) > 0 {
			return f.siblingFlags(e, k, &r), nil
		}
		return f.updateFlags(e, k, &r), nil
	}
	if r.Family() == IPv6 && len(r.Nexthops) > 0 {
		// The message lists the reported sibling first; our route may hold
		// the siblings in another order.
		for k := range e.routes {
			c := &e.routes[k]
			if c.Priority == r.Priority && c.Type == r.Type &&
				slices.ContainsFunc(c.Nexthops, r.Nexthops[0].SameAs) {
				return f.siblingFlags(e, k, &r), nil
			}
		}
	}
	return nil, ErrNotFound
}

// Append adds r behind the routes already stored for its (table, prefix),
// keeping its hardware state. It is how a dump, which lists routes in kernel
// order, is loaded into a fresh model. Duplicates are kept: an IPv6 replace can
// leave two identical routes in the kernel.
func (f *FIB) Append(r Route) error {
	defer f.commit()
	r.Prefix = r.Prefix.Masked()
	if err := validate(&r); err != nil {
		return fmt.Errorf("load %s: %w", r.String(), err)
	}
	r.Nexthops = f.nhs.intern(r.Nexthops) // a copy: the caller keeps r's
	e := f.entry(r.Table, r.Prefix)
	if e == nil {
		e = f.spare()
	}
	e.routes = append(e.routes, r)
	if len(e.routes) == 1 {
		f.stamp(e, nil, false)
	}
	f.store(r.Table, r.Prefix, e)
	f.routes++
	return nil
}

// Diff returns the changes that turn old into new: routes only in old are
// removed, routes only in new are added, routes in both whose hardware state
// differs are changed. Order follows new's walk, then removals. It is what a
// resync reports after an overrun, so subscribers see exactly the
// differences and nothing else.
func Diff(old, new *FIB) []Change {
	var out []Change
	for r := range new.All() {
		o, ok := old.Find(r)
		if !ok {
			out = append(out, Change{New: clonePtr(*r)})
			continue
		}
		if !sameHW(&o, r) {
			out = append(out, Change{Old: &o, New: clonePtr(*r)})
		}
	}
	for r := range old.All() {
		if _, ok := new.Find(r); !ok {
			out = append(out, Change{Old: clonePtr(*r)})
		}
	}
	return out
}

func sameHW(a, b *Route) bool {
	if a.Flags != b.Flags || len(a.Nexthops) != len(b.Nexthops) {
		return false
	}
	for i := range a.Nexthops {
		if a.Nexthops[i].HW != b.Nexthops[i].HW {
			return false
		}
	}
	return true
}

// Equal reports whether two models hold the same routes in the same order
// with the same hardware state; tests use it to prove a mirror is exact.
func Equal(a, b *FIB) bool {
	if a.Len() != b.Len() {
		return false
	}
	next, stop := iter.Pull(b.All())
	defer stop()
	for r := range a.All() {
		o, ok := next()
		if !ok || !o.SameAs(r) || !sameHW(o, r) {
			return false
		}
	}
	_, more := next()
	return !more
}
