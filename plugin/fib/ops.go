package fib

import (
	"fmt"
	"slices"
)

// Add inserts r the way `ip route add|append|prepend|replace` does, with req
// holding the request's NLM_F_* flags (add: Create|Excl, append:
// Create|Append, prepend: Create, replace: Create|Replace). It returns the
// notifications the kernel would send, and calls the driver synchronously: a
// driver error vetoes the change, which is then rolled back; the messages
// returned with that error are the ones the kernel still sent. New routes start
// without hardware flags.
func (f *FIB) Add(r Route, req NLFlags) ([]Message, error) {
	defer f.commit()
	r = f.fresh(r)
	if err := validate(&r); err != nil {
		return nil, fmt.Errorf("add %s: %w", r.String(), err)
	}
	before, had := f.forwarding(r.Table, r.Prefix)
	var msgs []Message
	var err error
	if r.Family() == IPv4 {
		msgs, _, err = f.add4(r, req, f.driver, false)
	} else {
		msgs, _, err = f.add6(r, req, f.driver, false)
	}
	f.stamp(f.entry(r.Table, r.Prefix), &before, had)
	if err != nil {
		// A vetoed IPv6 multipath add still announced and withdrew the route.
		return msgs, fmt.Errorf("add %s: %w", r.String(), err)
	}
	return msgs, nil
}

// Delete removes the first route that matches spec the way `ip route del`
// does: Table, Prefix and (IPv4) TOS must match; zero Type, Protocol,
// Priority, NHID and an invalid PrefSrc match anything; listed nexthops must
// match (a zero field in a nexthop matches anything). For an IPv6 multipath
// route, listing some nexthops removes only those siblings.
func (f *FIB) Delete(spec Route) ([]Message, error) {
	defer f.commit()
	spec.Prefix = spec.Prefix.Masked()
	before, had := f.forwarding(spec.Table, spec.Prefix)
	msgs, _, err := f.del(spec, f.driver, false)
	f.stamp(f.entry(spec.Table, spec.Prefix), &before, had)
	if err != nil {
		return nil, fmt.Errorf("delete %s: %w", spec.String(), err)
	}
	return msgs, nil
}

// fresh returns r with no hardware state (the kernel never takes hardware
// flags from user space), its next hops the pool's: r's are not written.
func (f *FIB) fresh(r Route) Route {
	r.Flags = 0
	r.Nexthops = f.nhs.cleared(r.Nexthops)
	return r
}

// add4 implements fib_table_insert for one (table, prefix). In mirror mode it
// applies a notification the kernel already accepted: an identical route is
// then updated in place instead of being an error.
func (f *FIB) add4(r Route, req NLFlags, drv Driver, mirror bool) ([]Message, []Change, error) {
	r.Nexthops = f.nhs.intern(r.Nexthops)
	e := f.entry(r.Table, r.Prefix)
	if e == nil {
		e = f.spare()
	}
	rs := e.routes
	// The first route at or after the place r sorts into: routes are ordered
	// by tos descending, then priority ascending.
	i := 0
	for i < len(rs) && (rs[i].TOS > r.TOS || (rs[i].TOS == r.TOS && rs[i].Priority < r.Priority)) {
		i++
	}
	out := NLMExcl
	if i < len(rs) && rs[i].TOS == r.TOS && rs[i].Priority == r.Priority {
		first, match, end := i, -1, i
		for ; end < len(rs) && rs[end].TOS == r.TOS && rs[end].Priority == r.Priority; end++ {
			if match < 0 && rs[end].Type == r.Type && rs[end].sameInfo(&r) {
				match = end
			}
		}
		if mirror && match >= 0 {
			return nil, f.updateFlags(e, match, &r), nil
		}
		if req&NLMExcl != 0 {
			return nil, nil, ErrExists
		}
		out &^= NLMExcl
		if req&NLMReplace != 0 {
			if match == first {
				return nil, nil, nil
			}
			if match >= 0 {
				return nil, nil, ErrExists
			}
			old := rs[first]
			rs[first] = r
			if first == 0 && drv != nil {
				if err := drv.Event(DriverEvent{Kind: DriverReplace, Route: r.Clone()}); err != nil {
					rs[first] = old
					return nil, nil, err
				}
			}
			return []Message{{Type: NewRoute, NLFlags: NLMReplace, Route: r.Clone()}},
				[]Change{{Old: &old, New: clonePtr(r)}}, nil
		}
		if match >= 0 {
			return nil, nil, ErrExists
		}
		if req&NLMAppend != 0 {
			out |= NLMAppend
			i = end
		} else {
			i = first
		}
	}
	if req&NLMCreate == 0 {
		return nil, nil, ErrNoCreate
	}
	out |= NLMCreate
	e.routes = slices.Insert(rs, i, r)
	if i == 0 && drv != nil {
		if err := drv.Event(DriverEvent{Kind: DriverReplace, Route: r.Clone()}); err != nil {
			e.routes = slices.Delete(e.routes, 0, 1)
			return nil, nil, err
		}
	}
	f.store(r.Table, r.Prefix, e)
	f.routes++
	return []Message{{Type: NewRoute, NLFlags: out, Route: r.Clone()}}, []Change{{New: clonePtr(r)}}, nil
}

// del removes a route matching spec; in mirror mode spec is a kernel
// RTM_DELROUTE and only an identical route matches.
func (f *FIB) del(spec Route, drv Driver, mirror bool) ([]Message, []Change, error) {
	e := f.entry(spec.Table, spec.Prefix)
	if e == nil {
		return nil, nil, ErrNotFound
	}
	if spec.Family() == IPv6 {
		return f.del6(e, spec, drv, mirror)
	}
	rs := e.routes
	k := -1
	for i := range rs {
		if rs[i].TOS != spec.TOS {
			continue
		}
		if (mirror && rs[i].SameAs(&spec)) || (!mirror && matches(&rs[i], &spec)) {
			k = i
			break
		}
	}
	if k < 0 {
		return nil, nil, ErrNotFound
	}
	gone := rs[k]
	if k == 0 && drv != nil {
		// fib_notify_alias_delete: the next route takes over in hardware.
		if len(rs) > 1 {
			_ = drv.Event(DriverEvent{Kind: DriverReplace, Route: rs[1].Clone()})
		} else {
			_ = drv.Event(DriverEvent{Kind: DriverDel, Route: gone.Clone()})
		}
	}
	e.routes = slices.Delete(rs, k, k+1)
	f.store(spec.Table, spec.Prefix, e)
	f.routes--
	return []Message{{Type: DelRoute, Route: gone.Clone()}}, []Change{{Old: &gone}}, nil
}

// matches is the kernel's delete matching with zero values as wildcards.
func matches(r, spec *Route) bool {
	if spec.Type != 0 && spec.Type != r.Type ||
		spec.Protocol != 0 && spec.Protocol != r.Protocol ||
		spec.Priority != 0 && spec.Priority != r.Priority ||
		spec.NHID != 0 && spec.NHID != r.NHID ||
		spec.PrefSrc.IsValid() && spec.PrefSrc != r.PrefSrc {
		return false
	}
	if len(spec.Nexthops) == 0 {
		return true
	}
	if len(spec.Nexthops) != len(r.Nexthops) {
		return false
	}
	for i := range spec.Nexthops {
		if !nhMatches(r.Nexthops[i], spec.Nexthops[i]) {
			return false
		}
	}
	return true
}

func nhMatches(nh, spec Nexthop) bool {
	return (!spec.Gateway.IsValid() || spec.Gateway == nh.Gateway) &&
		(spec.LinkIndex == 0 || spec.LinkIndex == nh.LinkIndex) &&
		(spec.Weight == 0 || spec.weight() == nh.weight())
}

// updateFlags copies the hardware state of r onto stored route k (mirror of
// a notification for a route the model has) and reports the change, if any.
// r is the same route as k by identity, so their nexthops pair up.
func (f *FIB) updateFlags(e *entry, k int, r *Route) []Change {
	cur := &e.routes[k]
	if sameHW(cur, r) {
		return nil
	}
	old := cur.Clone()
	cur.Flags = r.Flags
	if len(cur.Nexthops) > 0 {
		cur.Nexthops = f.nhs.withHWOf(cur.Nexthops, r.Nexthops)
	}
	return []Change{{Old: &old, New: clonePtr(*cur)}}
}

func clonePtr(r Route) *Route {
	c := r.Clone()
	return &c
}
