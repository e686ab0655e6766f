package gate

import (
	"iter"
	"net/netip"
)

// Memory, continued (compact.go): an entry names what many entries repeat
// (a scope name, a reason, path flags, a next hop) by a 4-byte id into a
// table the tracker owns, and the entries live in pages, not one object
// each. So an entry holds no pointer: at a full table the collector has a
// million fewer objects and five million fewer pointers to mark on every
// cycle (BenchmarkMemoryPerRoute, tracker-gc-ns/route), where unique
// handles and an entry per allocation made the tracker one of the largest
// things it scanned (docs/design-notes.md, "The live heap with the table
// steady").

// id names a value of a table. The zero id is T's zero value.
type id[T comparable] uint32

// table holds each value the tracker's entries name once. Values no entry
// names any more are freed by sweep, which the tracker runs between
// judgements (no copy of a state is alive then, so a freed id cannot be
// mistaken for the value it is given next). Used with t.mu held.
type table[T comparable] struct {
	vals []T // by id; vals[0] is the zero value
	ids  map[T]id[T]
	free []id[T]
	live int // values named at the last sweep
}

// of returns v's id, adding v.
func (tb *table[T]) of(v T) id[T] {
	var zero T
	if v == zero {
		return 0
	}
	if i, ok := tb.ids[v]; ok {
		return i
	}
	if tb.ids == nil {
		tb.ids = make(map[T]id[T])
		tb.vals = make([]T, 1)
	}
	var i id[T]
	if n := len(tb.free); n > 0 {
		i, tb.free = tb.free[n-1], tb.free[:n-1]
		tb.vals[i] = v
	} else {
		i = id[T](len(tb.vals))
		tb.vals = append(tb.vals, v)
	}
	tb.ids[v] = i
	return i
}

// get returns the value of i.
func (tb *table[T]) get(i id[T]) T {
	if i == 0 {
		var zero T
		return zero
	}
	return tb.vals[i]
}

// due says whether the table has grown enough since its last sweep for
// one to be worth a walk of n entries: to twice what was named then, and
// by a sixty-fourth of n, so that a walk is paid for by as many new
// values (a flapping table makes a hold-down reason a flap).
func (tb *table[T]) due(n int) bool { return len(tb.ids) > 2*tb.live+max(256, n/64) }

// sweep frees every value that marks does not name.
func (tb *table[T]) sweep(marks iter.Seq[id[T]]) {
	used := make([]bool, len(tb.vals))
	for i := range marks {
		used[i] = true
	}
	var zero T
	for v, i := range tb.ids {
		if !used[i] {
			delete(tb.ids, v)
			tb.vals[i] = zero
			tb.free = append(tb.free, i)
		}
	}
	tb.live = len(tb.ids)
}

// sweepTables frees the texts and next hops that no entry names any more,
// once the tables have grown enough. Called with t.mu held, between
// judgements: no copy of a state is alive.
func (t *Tracker) sweepTables() {
	n := t.entries.len()
	if t.texts.due(n) {
		t.texts.sweep(func(yield func(text) bool) {
			for _, e := range t.entries.all() {
				if !yield(e.st.Scope) || !yield(e.st.Reason) || !yield(e.st.NexthopFlags) {
					return
				}
			}
		})
	}
	if t.hops.due(n) {
		t.hops.sweep(func(yield func(id[netip.Addr]) bool) {
			for _, e := range t.entries.all() {
				if !yield(e.st.nextHop) {
					return
				}
			}
		})
	}
}

// entryPage is how many entries a page holds: 112 KB of them, so a full
// table is about ten thousand objects.
const entryPage = 1024

// entryTable holds the tracker's entries by key. An entry stays where it
// is while it exists (pointers to it are stable), and its slot is reused
// by a later add once it is dropped; a dropped entry keeps its contents
// until then, so a caller may still read it. Pages are kept when entries
// go: a table that held a million entries keeps their memory for the
// next million.
type entryTable struct {
	idx   map[prefixKey]uint32
	pages []*[entryPage]entry
	free  []uint32
}

func (et *entryTable) slot(i uint32) *entry { return &et.pages[i/entryPage][i%entryPage] }

// get returns k's entry, nil if there is none.
func (et *entryTable) get(k prefixKey) *entry {
	i, ok := et.idx[k]
	if !ok {
		return nil
	}
	return et.slot(i)
}

// add returns a new zero entry for k, which has none.
func (et *entryTable) add(k prefixKey) *entry {
	if et.idx == nil {
		et.idx = make(map[prefixKey]uint32)
	}
	var i uint32
	if n := len(et.free); n > 0 {
		i, et.free = et.free[n-1], et.free[:n-1]
	} else {
		i = uint32(len(et.pages) * entryPage)
		et.pages = append(et.pages, new([entryPage]entry))
		for j := uint32(entryPage - 1); j > 0; j-- {
			et.free = append(et.free, i+j)
		}
	}
	et.idx[k] = i
	e := et.slot(i)
	*e = entry{}
	return e
}

// drop removes k's entry.
func (et *entryTable) drop(k prefixKey) {
	if i, ok := et.idx[k]; ok {
		delete(et.idx, k)
		et.free = append(et.free, i)
	}
}

func (et *entryTable) len() int { return len(et.idx) }

// all yields every entry with its key. The loop's body may drop the entry
// it was given, and add none.
func (et *entryTable) all() iter.Seq2[prefixKey, *entry] {
	return func(yield func(prefixKey, *entry) bool) {
		for k, i := range et.idx {
			if !yield(k, et.slot(i)) {
				return
			}
		}
	}
}
