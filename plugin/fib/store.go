package fib

import (
	"net/netip"

	"github.com/fibgate/fibgate/plugin/internal/intern"
)

// How the model keeps its routes. A full table is a million routes, so
// what one costs is most of the model's memory (issue 10: 300 bytes a route
// for all of fibgate's state). The trie keeps a packed record per (table,
// prefix): the routes without the table and prefix the trie's position
// already says, the first one inline. Operations edit an entry, the routes
// as []Route, opened from the record and packed back when the operation
// ends (commit): the kernel's rules stay written against routes.

// slim is a stored route without its table and prefix: 48 bytes where a
// Route takes 104 (in the 112-byte size class).
type slim struct {
	Priority   uint32
	NHID       uint32
	Type       RouteType
	TOS        uint8
	Protocol   Protocol
	Scope      uint8
	Flags      HWFlags
	Unmodelled bool
	PrefSrc    intern.Value[netip.Addr] // 8 bytes: routes have none or the router's few
	Nexthops   []Nexthop                // shared (nhPool): never written
}

func slimOf(r *Route) slim {
	return slim{Priority: r.Priority, NHID: r.NHID, Type: r.Type, TOS: r.TOS, Protocol: r.Protocol, Scope: r.Scope,
		Flags: r.Flags, Unmodelled: r.Unmodelled, PrefSrc: intern.Of(r.PrefSrc), Nexthops: r.Nexthops}
}

// route is s at (table, p); its next hops are the stored list, which the
// caller must not write (Clone to own them).
func (s *slim) route(table uint32, p netip.Prefix) Route {
	return Route{Table: table, Priority: s.Priority, NHID: s.NHID, Type: s.Type, TOS: s.TOS, Protocol: s.Protocol,
		Scope: s.Scope, Flags: s.Flags, Unmodelled: s.Unmodelled, Prefix: p, PrefSrc: s.PrefSrc.Get(), Nexthops: s.Nexthops}
}

// packed is what the trie keeps for one (table, prefix): never empty (an
// entry left without routes leaves the trie). 64 bytes, one allocation,
// for a prefix with one route; the few prefixes with more routes have
// them in a list of their own.
type packed struct {
	ver   uint64  // the version of the forwarding route: see FIB.Version
	first slim    // the forwarding route
	more  *[]slim // the routes behind it, in kernel order; nil: none
}

func (pk *packed) len() int {
	if pk.more == nil {
		return 1
	}
	return 1 + len(*pk.more)
}

func (pk *packed) at(i int) *slim {
	if i == 0 {
		return &pk.first
	}
	return &(*pk.more)[i-1]
}

// moreCap is the capacity of the list of routes behind the first.
func (pk *packed) moreCap() int {
	if pk.more == nil {
		return 0
	}
	return cap(*pk.more)
}

// set packs e, whose routes are not empty, into pk.
func (pk *packed) set(e *entry) {
	pk.ver = e.ver
	pk.first = slimOf(&e.routes[0])
	if len(e.routes) == 1 {
		pk.more = nil
		return
	}
	if pk.more == nil || cap(*pk.more) < len(e.routes)-1 {
		more := make([]slim, len(e.routes)-1)
		pk.more = &more
	}
	more := (*pk.more)[:len(e.routes)-1]
	for i := range more {
		more[i] = slimOf(&e.routes[i+1])
	}
	*pk.more = more
}

// opened is an entry an operation is editing.
type opened struct {
	table uint32
	p     netip.Prefix
	e     *entry
	pk    *packed // its record in the trie; nil for a new one
}

// entry opens (table, p) for editing: its routes as the operation sees
// them, nil when there are none. The operation ends with commit.
func (f *FIB) entry(table uint32, p netip.Prefix) *entry {
	if o := f.openFor(table, p); o != nil {
		return o.e
	}
	pk := f.packedAt(table, p)
	if pk == nil {
		return nil
	}
	e := f.spare()
	e.ver = pk.ver
	for i := range pk.len() {
		e.routes = append(e.routes, pk.at(i).route(table, p))
	}
	f.open = append(f.open, opened{table, p, e, pk})
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

func (f *FIB) packedAt(table uint32, p netip.Prefix) *packed {
	t := f.table(table, false)
	if t == nil {
		return nil
	}
	pk, _ := t.Get(p)
	return pk
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
	f.open = append(f.open, opened{table, p, e, nil})
}

// commit writes back every entry the operation opened: packed into the
// trie, or taken out of it when left without routes (so the trie shrinks).
// Every exported method that changes the model ends with it.
func (f *FIB) commit() {
	for i := range f.open {
		o := &f.open[i]
		// The routes' next-hop lists are the pool's already: every
		// operation interns what it stores.
		switch t := f.table(o.table, true); {
		case len(o.e.routes) == 0:
			if o.pk != nil {
				t.Delete(o.p)
			}
			if t.Len() == 0 {
				delete(f.tables, o.table)
			}
		case o.pk != nil:
			o.pk.set(o.e)
		default:
			pk := &packed{}
			pk.set(o.e)
			t.Insert(o.p, pk)
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
}
