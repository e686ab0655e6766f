package fib

import "net/netip"

// How the model keeps its routes. A full table is a million routes, so
// what one costs is most of the model's memory (issue 10: 300 bytes a route
// for all of fibgate's state), and a million objects are what every
// collection marks. The trie keeps a record per (table, prefix) in its own
// arrays, by value and without a pointer: the routes without the table and
// prefix the trie's position already says, the first one inline, next hops
// and preferred source as ids of shared values (shared.go). Operations
// edit an entry, the routes as []Route, opened from the record and packed
// back when the operation ends (commit): the kernel's rules stay written
// against routes.

// slim is a stored route without its table and prefix, and without a
// pointer: 24 bytes where a Route takes 104 (in the 112-byte size class).
// Its next hops and preferred source are ids into the FIB's shared values.
type slim struct {
	Priority   uint32
	NHID       uint32
	Type       RouteType
	TOS        uint8
	Protocol   Protocol
	Scope      uint8
	Flags      HWFlags
	Unmodelled bool
	src        uint32 // preferred source: id in FIB.srcs, 0 none
	nhs        uint32 // next hops: id in FIB.nhs, 0 none
}

// slimOf packs r, taking a count on each shared value it names.
func (f *FIB) slimOf(r *Route) slim {
	s := slim{Priority: r.Priority, NHID: r.NHID, Type: r.Type, TOS: r.TOS, Protocol: r.Protocol, Scope: r.Scope,
		Flags: r.Flags, Unmodelled: r.Unmodelled, nhs: f.nhs.idOf(r.Nexthops)}
	if r.PrefSrc.IsValid() {
		id, ok := f.srcs.find(r.PrefSrc)
		if !ok {
			id = f.srcs.add(r.PrefSrc, r.PrefSrc)
		}
		s.src = id
	}
	f.nhs.ref(s.nhs)
	f.srcs.ref(s.src)
	return s
}

// drop gives back the counts s took.
func (f *FIB) drop(s *slim) {
	f.nhs.unref(s.nhs)
	f.srcs.unref(s.src)
}

// route is s at (table, p); its next hops are the stored list, which the
// caller must not write (Clone to own them).
func (f *FIB) route(s *slim, table uint32, p netip.Prefix) Route {
	r := Route{Table: table, Priority: s.Priority, NHID: s.NHID, Type: s.Type, TOS: s.TOS, Protocol: s.Protocol,
		Scope: s.Scope, Flags: s.Flags, Unmodelled: s.Unmodelled, Prefix: p, Nexthops: f.nhs.list(s.nhs)}
	if s.src != 0 {
		r.PrefSrc = f.srcs.get(s.src)
	}
	return r
}

// rec is what the trie keeps for one (table, prefix), in place: never
// empty (an entry left without routes leaves the trie), and without a
// pointer, so the trie's arrays of them are not scanned by the collector.
// The few prefixes with more than one route have the ones behind the
// first in a list of their own (FIB.more).
type rec struct {
	ver   uint64 // the version of the forwarding route: see FIB.Version
	first slim   // the forwarding route
	more  uint32 // the routes behind it, in kernel order: id in FIB.more; 0 none
}

// moreLists holds the routes behind the first of the prefixes that have
// several, by id; a freed list keeps its array for the next one.
type moreLists struct {
	lists [][]slim // by id; lists[0] unused
	free  []uint32
}

func (m *moreLists) alloc() uint32 {
	if n := len(m.free); n > 0 {
		id := m.free[n-1]
		m.free = m.free[:n-1]
		return id
	}
	if len(m.lists) == 0 {
		m.lists = append(m.lists, nil)
	}
	m.lists = append(m.lists, nil)
	return uint32(len(m.lists) - 1)
}

func (m *moreLists) release(id uint32) {
	m.lists[id] = m.lists[id][:0]
	m.free = append(m.free, id)
}

// count is the number of routes in r.
func (f *FIB) count(r *rec) int {
	if r.more == 0 {
		return 1
	}
	return 1 + len(f.more.lists[r.more])
}

// at is route i of r.
func (f *FIB) at(r *rec, i int) *slim {
	if i == 0 {
		return &r.first
	}
	return &f.more.lists[r.more][i-1]
}

// pack is e, whose routes are not empty, as a record, its counts taken.
func (f *FIB) pack(e *entry) rec {
	r := rec{ver: e.ver, first: f.slimOf(&e.routes[0])}
	if len(e.routes) > 1 {
		r.more = f.more.alloc()
		more := f.more.lists[r.more]
		for i := range e.routes[1:] {
			more = append(more, f.slimOf(&e.routes[i+1]))
		}
		f.more.lists[r.more] = more
	}
	return r
}

// unpack gives back r's counts and its list of routes behind the first.
func (f *FIB) unpack(r *rec) {
	f.drop(&r.first)
	if r.more != 0 {
		for i := range f.more.lists[r.more] {
			f.drop(&f.more.lists[r.more][i])
		}
		f.more.release(r.more)
	}
}

// opened is an entry an operation is editing.
type opened struct {
	table uint32
	p     netip.Prefix
	e     *entry
}

// entry opens (table, p) for editing: its routes as the operation sees
// them, nil when there are none. The operation ends with commit.
func (f *FIB) entry(table uint32, p netip.Prefix) *entry {
	if o := f.openFor(table, p); o != nil {
		return o.e
	}
	r, ok := f.recAt(table, p)
	if !ok {
		return nil
	}
	e := f.spare()
	e.ver = r.ver
	for i := range f.count(&r) {
		e.routes = append(e.routes, f.route(f.at(&r, i), table, p))
	}
	f.open = append(f.open, opened{table, p, e})
	return e
}

// openFor is the operation's open entry of (table, p), or nil.
func (f *FIB) openFor(table uint32, p netip.Prefix) *opened {
	for i := range f.open {
		if o := &f.open[i]; o.table == table && o.p == p {
			return o
		}
	}
	return nil
}

// recAt is the record of (table, p), a copy.
func (f *FIB) recAt(table uint32, p netip.Prefix) (rec, bool) {
	t := f.table(table, false)
	if t == nil {
		return rec{}, false
	}
	return t.Get(p)
}

// spare is an empty entry to open: the last operation's, reused.
func (f *FIB) spare() *entry {
	if n := len(f.free); n > 0 {
		e := f.free[n-1]
		f.free = f.free[:n-1]
		return e
	}
	return &entry{}
}

// store says that e, an entry the operation made or opened, is now what
// (table, p) holds; commit writes it back.
func (f *FIB) store(table uint32, p netip.Prefix, e *entry) {
	if o := f.openFor(table, p); o != nil {
		o.e = e
		return
	}
	f.open = append(f.open, opened{table, p, e})
}

// commit writes back every entry the operation opened: packed into the
// trie, or taken out of it when left without routes (so the trie shrinks).
// Every exported method that changes the model ends with it. A record's
// new counts are taken before its old ones are given back, and shared
// values are freed only once every record is written, so a list dropped
// by one route and stored by another keeps its id.
func (f *FIB) commit() {
	for i := range f.open {
		o := &f.open[i]
		// The routes' next-hop lists are the pool's already: every
		// operation interns what it stores.
		t := f.table(o.table, true)
		t.Update(o.p, func(old rec, had bool) (rec, bool) {
			var r rec
			keep := len(o.e.routes) > 0
			if keep {
				r = f.pack(o.e)
			}
			if had {
				f.unpack(&old)
			}
			return r, keep
		})
		if t.Len() == 0 {
			delete(f.tables, o.table)
		}
		clear(o.e.routes)
		o.e.routes, o.e.ver = o.e.routes[:0], 0
		f.free = append(f.free, o.e)
		*o = opened{}
	}
	f.open = f.open[:0]
	if len(f.free) > 4 {
		f.free = f.free[:4]
	}
	f.nhs.sweep()
	f.srcs.sweep(nil)
}
