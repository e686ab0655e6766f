package fib

// SetFlags is what a driver calls to report the hardware state of a route
// (fib_alias_hw_flags_set, and fib6_info_hw_flags_set on every sibling of an
// IPv6 route). The route is found by kernel identity; a route that is gone
// (deleted or replaced meanwhile) is silently ignored, as in the kernel. The
// flags are always stored; the returned messages follow the family's
// NotifyMode: one per changed route, and for IPv6 one per changed sibling.
func (f *FIB) SetFlags(r *Route, flags HWFlags) []Message {
	defer f.commit()
	e := f.entry(r.Table, r.Prefix)
	if e == nil {
		return nil
	}
	k := indexSame(e.routes, r)
	if k < 0 {
		return nil
	}
	cur := &e.routes[k]
	mode := f.mode[r.Family().Index()]
	if r.Family() == IPv4 || len(cur.Nexthops) == 0 {
		old := cur.Flags
		cur.Flags = flags
		if !FlagChangeNotifies(mode, old, flags) {
			return nil
		}
		return []Message{{Type: NewRoute, Route: cur.Clone()}}
	}
	var msgs []Message
	for i := range cur.Nexthops {
		msgs = append(msgs, f.setSibling(cur, i, flags)...)
	}
	return msgs
}

// SetNexthopFlags reports the state of one path. For IPv6 a path is a
// sibling fib6_info with its own flags and notifications; for IPv4 it is the
// RTNH_F_OFFLOAD/RTNH_F_TRAP bit of one nexthop, which the kernel shows in
// dumps but never announces on its own.
func (f *FIB) SetNexthopFlags(r *Route, nh int, flags HWFlags) []Message {
	defer f.commit()
	e := f.entry(r.Table, r.Prefix)
	if e == nil {
		return nil
	}
	k := indexSame(e.routes, r)
	if k < 0 || nh < 0 || nh >= len(e.routes[k].Nexthops) {
		return nil
	}
	cur := &e.routes[k]
	if cur.Family() == IPv4 {
		cur.Nexthops = f.nhs.withHW(cur.Nexthops, nh, flags&^OffloadFailed)
		return nil
	}
	return f.setSibling(cur, nh, flags)
}

// setSibling sets the flags of IPv6 sibling i. The route's own flags are
// those of its first sibling, which is what a dump shows.
func (f *FIB) setSibling(cur *Route, i int, flags HWFlags) []Message {
	old := cur.Nexthops[i].HW
	cur.Nexthops = f.nhs.withHW(cur.Nexthops, i, flags)
	cur.Flags = cur.Nexthops[0].HW
	if !FlagChangeNotifies(f.mode[1], old, flags) {
		return nil
	}
	// The kernel fills the message from the sibling it reports: its flags in
	// rtm_flags, its path first in RTA_MULTIPATH.
	m := cur.Clone()
	m.Flags = flags
	if i > 0 {
		nh := m.Nexthops[i]
		copy(m.Nexthops[1:i+1], m.Nexthops[:i])
		m.Nexthops[0] = nh
	}
	return []Message{{Type: NewRoute, Route: m}}
}

// RestoreFlags copies the hardware state of r (route and per-path) onto the
// stored route identical to it, without any message. A listener whose
// driver lives outside the kernel uses it to carry flags across a resync,
// since the kernel's dump cannot know them.
func (f *FIB) RestoreFlags(r *Route) bool {
	defer f.commit()
	e := f.entry(r.Table, r.Prefix)
	if e == nil {
		return false
	}
	k := indexSame(e.routes, r)
	if k < 0 {
		return false
	}
	f.updateFlags(e, k, r)
	return true
}
