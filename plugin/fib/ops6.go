package fib

import "slices"

// ecmp6 is rt6_qualify_for_ecmp: only gateway routes without a nexthop
// object become siblings of each other.
func ecmp6(r *Route) bool {
	if r.NHID != 0 || len(r.Nexthops) == 0 {
		return false
	}
	for _, nh := range r.Nexthops {
		if !nh.Gateway.IsValid() {
			return false
		}
	}
	return true
}

// add6 implements fib6_add_rt2node for one (table, prefix): routes are
// ordered by metric; at an equal metric, routes that qualify for ECMP merge
// into one route whose nexthops are the siblings, others queue behind.
func (f *FIB) add6(r Route, req NLFlags, drv Driver, mirror bool) ([]Message, []Change, error) {
	r.Nexthops = f.nhs.intern(r.Nexthops)
	e := f.entry(r.Table, r.Prefix)
	if e == nil {
		e = f.spare()
	}
	rs := e.routes
	lo := 0
	for lo < len(rs) && rs[lo].Priority < r.Priority {
		lo++
	}
	hi := lo
	for hi < len(rs) && rs[hi].Priority == r.Priority {
		hi++
	}
	out := NLMExcl
	if len(r.Nexthops) > 1 {
		out = 0 // a multipath add is announced as CREATE only
	}
	canECMP := ecmp6(&r)
	if lo < hi {
		// A replace may leave two identical routes (the kernel does not check
		// for duplicates there), so a mirrored replace is applied as such.
		if mirror && req&NLMReplace == 0 {
			if k := indexSame(rs[lo:hi], &r); k >= 0 {
				return nil, f.updateFlags(e, lo+k, &r), nil
			}
		}
		if req&NLMExcl != 0 && !mirror {
			return nil, nil, ErrExists
		}
		out &^= NLMExcl
		if req&NLMReplace != 0 {
			t := lo
			for k := lo; k < hi; k++ {
				if ecmp6(&rs[k]) == canECMP {
					t = k
					break
				}
			}
			old := rs[t]
			rs[t] = r
			if t == 0 && drv != nil {
				if err := drv.Event(DriverEvent{Kind: DriverReplace, Route: r.Clone()}); err != nil {
					rs[t] = old
					return nil, nil, err
				}
			}
			return []Message{{Type: NewRoute, NLFlags: NLMReplace, Route: r.Clone()}},
				[]Change{{Old: &old, New: clonePtr(r)}}, nil
		}
		for k := lo; k < hi; k++ {
			if dupNexthop(&rs[k], &r) {
				if mirror {
					return f.merge6(e, k, r, req, nil)
				}
				return nil, nil, ErrExists
			}
		}
		if canECMP {
			for k := lo; k < hi; k++ {
				if ecmp6(&rs[k]) {
					return f.merge6(e, k, r, req, drv)
				}
			}
		}
		lo = hi
	}
	if req&NLMCreate == 0 && !mirror {
		return nil, nil, ErrNoCreate
	}
	out |= NLMCreate
	if req&NLMAppend != 0 {
		out |= NLMAppend
	}
	e.routes = slices.Insert(rs, lo, r)
	if lo == 0 && drv != nil {
		if err := drv.Event(DriverEvent{Kind: DriverReplace, Route: r.Clone()}); err != nil {
			e.routes = slices.Delete(e.routes, 0, 1)
			if len(r.Nexthops) > 1 {
				// ip6_route_multipath_add announced the route before the
				// veto came back, and takes it back.
				return []Message{{Type: NewRoute, NLFlags: out, Route: r.Clone()}, {Type: DelRoute, Route: r.Clone()}},
					nil, err
			}
			return nil, nil, err
		}
	}
	f.store(r.Table, r.Prefix, e)
	f.routes++
	return []Message{{Type: NewRoute, NLFlags: out, Route: r.Clone()}}, []Change{{New: clonePtr(r)}}, nil
}

// dupNexthop is rt6_duplicate_nexthop: some path of r already exists in s.
func dupNexthop(s, r *Route) bool {
	if s.NHID != 0 || r.NHID != 0 {
		return s.NHID == r.NHID && s.Type == r.Type
	}
	for _, a := range s.Nexthops {
		for _, b := range r.Nexthops {
			if a.SameAs(b) {
				return true
			}
		}
	}
	return len(s.Nexthops) == 0 && len(r.Nexthops) == 0 && s.Type == r.Type
}

// merge6 adds r's paths that s lacks as siblings of stored route k.
func (f *FIB) merge6(e *entry, k int, r Route, req NLFlags, drv Driver) ([]Message, []Change, error) {
	cur := &e.routes[k]
	old := cur.Clone()
	var added []Nexthop
	for _, nh := range r.Nexthops {
		if !slices.ContainsFunc(cur.Nexthops, nh.SameAs) {
			added = append(added, nh)
		}
	}
	if len(added) == 0 {
		if drv == nil && cur.NHID != 0 {
			// A route over a nexthop object is one fib6_info, not
			// siblings: its flags are the whole route's.
			return nil, f.updateFlags(e, k, &r), nil
		}
		if drv == nil {
			// A notification about siblings the model has: take its flags.
			return nil, f.siblingFlags(e, k, &r), nil
		}
		return nil, nil, ErrExists
	}
	prev := cur.Nexthops
	cur.Nexthops = f.nhs.intern(append(cur.Nexthops, added...))
	if k == 0 && drv != nil {
		app := *cur
		app.Nexthops = added
		if err := drv.Event(DriverEvent{Kind: DriverAppend, Route: app.Clone()}); err != nil {
			cur.Nexthops = prev
			return nil, nil, err
		}
	}
	nl := NLMCreate | req&NLMAppend
	return []Message{{Type: NewRoute, NLFlags: nl, Route: cur.Clone()}},
		[]Change{{Old: &old, New: clonePtr(*cur)}}, nil
}

// siblingFlags applies an IPv6 notification whose first path carries the
// flags in Route.Flags (the kernel lists the sibling it reports first).
func (f *FIB) siblingFlags(e *entry, k int, r *Route) []Change {
	if len(r.Nexthops) == 0 {
		return nil
	}
	cur := &e.routes[k]
	i := slices.IndexFunc(cur.Nexthops, r.Nexthops[0].SameAs)
	if i < 0 || cur.Nexthops[i].HW == r.Flags {
		return nil
	}
	old := cur.Clone()
	cur.Nexthops = f.nhs.withHW(cur.Nexthops, i, r.Flags)
	cur.Flags = cur.Nexthops[0].HW
	return []Change{{Old: &old, New: clonePtr(*cur)}}
}

// del6 removes siblings or a whole IPv6 route (ip6_route_del): with
// nexthops in spec only those siblings go, otherwise the whole route.
func (f *FIB) del6(e *entry, spec Route, drv Driver, mirror bool) ([]Message, []Change, error) {
	rs := e.routes
	for k := range rs {
		r := &rs[k]
		head := *r
		head.Nexthops = nil
		sp := spec
		sp.Nexthops = nil
		if mirror && (r.Priority != spec.Priority || r.Type != spec.Type || r.NHID != spec.NHID) ||
			!mirror && !matches(&head, &sp) {
			continue
		}
		var gone []int
		for _, want := range spec.Nexthops {
			i := slices.IndexFunc(r.Nexthops, func(nh Nexthop) bool {
				if mirror {
					return nh.SameAs(want)
				}
				return nhMatches(nh, want)
			})
			if i < 0 {
				gone = nil
				break
			}
			gone = append(gone, i)
		}
		if len(spec.Nexthops) > 0 && len(gone) == 0 {
			continue
		}
		old := r.Clone()
		if len(gone) > 0 && len(gone) < len(r.Nexthops) {
			removed := *r
			removed.Nexthops = nil
			for _, i := range gone {
				removed.Nexthops = append(removed.Nexthops, r.Nexthops[i])
			}
			// A fresh list: the stored one may be shared (nhPool).
			r.Nexthops = f.nhs.intern(slices.DeleteFunc(slices.Clone(r.Nexthops), func(nh Nexthop) bool {
				return slices.ContainsFunc(removed.Nexthops, nh.SameAs)
			}))
			r.Flags = r.Nexthops[0].HW
			if k == 0 && drv != nil {
				_ = drv.Event(DriverEvent{Kind: DriverDel, Route: removed.Clone()})
			}
			return []Message{{Type: DelRoute, Route: removed.Clone()}}, []Change{{Old: &old, New: clonePtr(*r)}}, nil
		}
		if k == 0 && drv != nil {
			if len(rs) > 1 {
				_ = drv.Event(DriverEvent{Kind: DriverReplace, Route: rs[1].Clone()})
			} else {
				_ = drv.Event(DriverEvent{Kind: DriverDel, Route: old.Clone()})
			}
		}
		e.routes = slices.Delete(rs, k, k+1)
		f.store(spec.Table, spec.Prefix, e)
		f.routes--
		return []Message{{Type: DelRoute, Route: old.Clone()}}, []Change{{Old: &old}}, nil
	}
	return nil, nil, ErrNotFound
}
