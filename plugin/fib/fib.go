// Package fib is fibgate's model of the Linux FIB: longest-prefix-match tables
// per routing table id, with the kernel's rules for which routes may coexist
// for one prefix, which of them forwards, how hardware state is stored, and
// when the kernel tells user space about it.
//
// The same model serves two roles. As fibgate's view of the kernel it is kept
// equal to the kernel's table by plugin/kernel (Apply). As the simulated
// ASIC's hardware table, and in tests, it behaves like the kernel itself (Add,
// Delete, SetFlags), producing the rtnetlink messages and driver events the
// kernel would. A FIB is not safe for concurrent use: one goroutine owns it.
package fib

import (
	"errors"
	"iter"
	"net/netip"
	"slices"
	"unsafe"

	"github.com/fibgate/fibgate/plugin/fib/internal/trie"
)

// Errors returned by the kernel-like operations, matching what the kernel
// answers so callers can map them to errno and messages.
var (
	// ErrExists is EEXIST: the route, or a route with the same key under NLM_F_EXCL, exists.
	ErrExists = errors.New("route exists")
	// ErrNotFound is ESRCH: no route matches a delete.
	ErrNotFound = errors.New("no such route")
	// ErrNoCreate is ENOENT: the route is absent and NLM_F_CREATE was not given.
	ErrNoCreate = errors.New("route absent and create not requested")
	// ErrInvalid is EINVAL: the route cannot exist (bad prefix, no nexthop for unicast...).
	ErrInvalid = errors.New("invalid route")
	// ErrOutOfSync says a kernel notification did not fit the model (Apply);
	// the caller resynchronises from a dump.
	ErrOutOfSync = errors.New("notification does not match the model")
)

// entry holds the routes of one (table, prefix) in kernel order, as an
// operation edits them (store.go); routes[0] forwards and is the one
// drivers program.
type entry struct {
	routes []Route
	// ver is the FIB's clock when routes[0] last changed identity (not
	// hardware state): see Version.
	ver uint64
}

// FIB is a set of routing tables with kernel semantics.
type FIB struct {
	tables map[uint32]*trie.Table[rec]
	mode   [2]NotifyMode
	driver Driver
	routes int
	clock  uint64                         // last version handed out
	nhs    nhPool                         // stored routes' next-hop lists, shared
	srcs   shared[netip.Addr, netip.Addr] // stored routes' preferred sources, shared
	more   moreLists                      // routes behind the first of a prefix (store.go)
	open   []opened                       // entries the current operation edits (store.go)
	free   []*entry                       // entries to open, reused
}

// Option configures a FIB.
type Option func(*FIB)

// WithNotifyMode sets fib_notify_on_flag_change for one family.
func WithNotifyMode(f Family, m NotifyMode) Option {
	return func(x *FIB) { x.mode[f.Index()] = m }
}

// WithDriver attaches a switchdev-like driver to the notifier chain.
func WithDriver(d Driver) Option {
	return func(x *FIB) { x.driver = d }
}

// New returns an empty FIB. Without options the notify mode is 0 for both
// families, as in a new network namespace, and there is no driver.
func New(opts ...Option) *FIB {
	f := &FIB{tables: make(map[uint32]*trie.Table[rec])}
	for _, o := range opts {
		o(f)
	}
	return f
}

// SetNotifyMode changes fib_notify_on_flag_change for one family, as writing
// the sysctl does; it affects only later flag changes.
func (f *FIB) SetNotifyMode(fam Family, m NotifyMode) { f.mode[fam.Index()] = m }

// NotifyMode returns the family's fib_notify_on_flag_change.
func (f *FIB) NotifyMode(fam Family) NotifyMode { return f.mode[fam.Index()] }

// Len returns the number of routes (aliases, with IPv6 siblings folded) in all tables.
func (f *FIB) Len() int { return f.routes }

// TableLen is the number of prefixes with routes in table id, for readers
// that size what they copy of it (the audit's snapshot of a full table).
func (f *FIB) TableLen(id uint32) int {
	if t := f.tables[id]; t != nil {
		return t.Len()
	}
	return 0
}

// Tables returns the ids of tables that hold routes, sorted.
func (f *FIB) Tables() []uint32 {
	ids := make([]uint32, 0, len(f.tables))
	for id, t := range f.tables {
		if t.Len() > 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (f *FIB) table(id uint32, create bool) *trie.Table[rec] {
	t := f.tables[id]
	if t == nil && create {
		t = &trie.Table[rec]{}
		f.tables[id] = t
	}
	return t
}

// Routes returns copies of the routes of (table, prefix) in kernel order; the
// first one forwards. It returns nil when there are none.
func (f *FIB) Routes(table uint32, p netip.Prefix) []Route {
	p = p.Masked()
	r, ok := f.recAt(table, p)
	if !ok {
		return nil
	}
	out := make([]Route, f.count(&r))
	for i := range out {
		out[i] = f.route(f.at(&r, i), table, p).Clone()
	}
	return out
}

// Version returns the version of the forwarding route of (table, prefix):
// the FIB's Clock when that route was installed (hardware flags changing do
// not count), or 0 when there is none. A route with a version above a
// Clock reading was written after that reading; the gate uses this to
// release a prefix only on the route that was current when it asked
// (gobgp.Speaker's fences), however far behind the events it judges are.
// Every operation that changes a forwarding route stamps it (Add, Delete,
// Apply, Append); InheritVersions carries versions over a resync.
func (f *FIB) Version(table uint32, p netip.Prefix) uint64 {
	r, _ := f.recAt(table, p.Masked())
	return r.ver
}

// Clock returns the last version handed out. Every forwarding route written
// after this call gets a higher Version.
func (f *FIB) Clock() uint64 { return f.clock }

// InheritVersions carries versions over from old, the model a fresh dump
// replaces: prefixes whose forwarding route is the same keep their version,
// the others get new ones above old's Clock, so versions only grow across a
// resynchronisation.
func (f *FIB) InheritVersions(old *FIB) {
	f.clock = max(f.clock, old.clock)
	for id, t := range f.tables {
		for p, r := range t.All() {
			ver := uint64(0)
			if o, ok := old.recAt(id, p); ok {
				a, b := f.route(&r.first, id, p), old.route(&o.first, id, p)
				if a.SameAs(&b) {
					ver = o.ver
				}
			}
			if ver == 0 {
				f.clock++
				ver = f.clock
			}
			// Updating a present prefix writes its record in place, so
			// the walk goes on undisturbed.
			t.Update(p, func(r rec, _ bool) (rec, bool) {
				r.ver = ver
				return r, true
			})
		}
	}
}

// forwarding returns a shallow copy of the forwarding route (for stamp).
func (f *FIB) forwarding(table uint32, p netip.Prefix) (Route, bool) {
	if e := f.entry(table, p); e != nil && len(e.routes) > 0 {
		return e.routes[0], true
	}
	return Route{}, false
}

// firstOf is the forwarding route of (table, p), its next hops the stored
// list, and its version.
func (f *FIB) firstOf(table uint32, p netip.Prefix) (Route, uint64, bool) {
	r, ok := f.recAt(table, p)
	if !ok {
		return Route{}, 0, false
	}
	return f.route(&r.first, table, p), r.ver, true
}

// stamp gives e's forwarding route a new version when it is not the route
// before was (had: there was one).
func (f *FIB) stamp(e *entry, before *Route, had bool) {
	if e == nil || len(e.routes) == 0 {
		return
	}
	if had && e.routes[0].SameAs(before) && e.ver != 0 {
		return
	}
	f.clock++
	e.ver = f.clock
}

// First returns the forwarding route of (table, prefix): the one drivers
// program and whose hardware flags mean something.
func (f *FIB) First(table uint32, p netip.Prefix) (Route, bool) {
	r, _, ok := f.FirstVersion(table, p)
	return r, ok
}

// FirstVersion is First with the route's Version, in one lookup: what the
// gate reads for every prefix it judges.
func (f *FIB) FirstVersion(table uint32, p netip.Prefix) (Route, uint64, bool) {
	r, ver, ok := f.firstOf(table, p.Masked())
	if !ok {
		return Route{}, 0, false
	}
	return r.Clone(), ver, true
}

// FirstShared is FirstVersion without the copy of the next hops: the
// route's Nexthops is the model's own list, shared by the routes with the
// same next hops. A stored list is never written (a change stores another
// list), so it stays as it is however the model changes; the caller must
// not write it either, and may keep it. For readers on a route's way
// through, where a copy a route was most of what they allocated: a driver
// told of a change (Driver), a simulated ASIC's own table.
func (f *FIB) FirstShared(table uint32, p netip.Prefix) (Route, uint64, bool) {
	return f.firstOf(table, p.Masked())
}

// Find returns the stored route that is the same as r by kernel identity,
// with its current hardware state.
func (f *FIB) Find(r *Route) (Route, bool) {
	rc, ok := f.recAt(r.Table, r.Prefix)
	if !ok {
		return Route{}, false
	}
	for i := range f.count(&rc) {
		if c := f.route(f.at(&rc, i), r.Table, r.Prefix); c.SameAs(r) {
			return c.Clone(), true
		}
	}
	return Route{}, false
}

// Lookup returns the forwarding route for an address in one table by longest
// prefix match, as the data plane would use it.
func (f *FIB) Lookup(table uint32, a netip.Addr) (Route, bool) {
	t := f.table(table, false)
	if t == nil {
		return Route{}, false
	}
	p, r, ok := t.Lookup(a)
	if !ok {
		return Route{}, false
	}
	return f.route(&r.first, table, p).Clone(), true
}

// All walks every route: tables in ascending id, prefixes in address order,
// routes of a prefix in kernel order. The yielded route is built from the
// model for the step, with the model's shared next-hop list: it must not be
// modified or kept past the iteration step (Clone it).
func (f *FIB) All() iter.Seq[*Route] {
	return func(yield func(*Route) bool) {
		var r Route // one for the walk: a yielded route is not kept
		for _, id := range f.Tables() {
			for p, rc := range f.tables[id].All() {
				for i := range f.count(&rc) {
					r = f.route(f.at(&rc, i), id, p)
					if !yield(&r) {
						return
					}
				}
			}
		}
	}
}

// Subtree walks the routes of one table whose prefix lies within p (p
// included), in the same order and with the same rules as All.
func (f *FIB) Subtree(table uint32, p netip.Prefix) iter.Seq[*Route] {
	return func(yield func(*Route) bool) {
		t := f.table(table, false)
		if t == nil {
			return
		}
		var r Route // one for the walk: a yielded route is not kept
		for q, rc := range t.Subtree(p.Masked()) {
			for i := range f.count(&rc) {
				r = f.route(f.at(&rc, i), table, q)
				if !yield(&r) {
					return
				}
			}
		}
	}
}

// MemoryEstimate approximates the bytes the model holds: the tries with the
// records in them, the routes behind the first, and the shared next-hop
// lists and preferred sources.
func (f *FIB) MemoryEstimate() int {
	n := 0
	for _, t := range f.tables {
		n += t.MemoryEstimate()
	}
	for _, l := range f.more.lists {
		n += cap(l) * int(unsafe.Sizeof(slim{}))
	}
	for _, v := range f.nhs.vals {
		n += cap(v.val) * int(unsafe.Sizeof(Nexthop{}))
	}
	return n + cap(f.srcs.vals)*int(unsafe.Sizeof(sharedVal[netip.Addr, netip.Addr]{}))
}

func indexSame(rs []Route, r *Route) int {
	for i := range rs {
		if rs[i].SameAs(r) {
			return i
		}
	}
	return -1
}

// validate checks what the kernel would reject outright, before any state changes.
func validate(r *Route) error {
	if !r.Prefix.IsValid() {
		return errors.Join(ErrInvalid, errors.New("prefix is not valid"))
	}
	if r.Prefix != r.Prefix.Masked() {
		return errors.Join(ErrInvalid, errors.New("prefix "+r.Prefix.String()+" has host bits set"))
	}
	if r.Prefix.Addr().Is4In6() {
		return errors.Join(ErrInvalid, errors.New("IPv4-mapped IPv6 prefix "+r.Prefix.String()))
	}
	if r.Family() == IPv6 && r.TOS != 0 {
		return errors.Join(ErrInvalid, errors.New("IPv6 routes have no tos"))
	}
	if r.Type == 0 {
		return errors.Join(ErrInvalid, errors.New("route type is unspecified"))
	}
	for _, nh := range r.Nexthops {
		if nh.Weight < 0 || nh.Weight > 256 {
			return errors.Join(ErrInvalid, errors.New("nexthop weight out of 1-256"))
		}
	}
	return nil
}
