package fib

// shared keeps values that a table's routes hold by the hundred thousand
// (next-hop lists, preferred sources) once each, behind a 4-byte id, so a
// stored route holds no pointer and the collector does not scan the model
// (issue 10: a full table is a million routes, and every collection marked
// each one's record).
//
// Ids are counted: a stored record holds one count per id it names
// (commit takes and drops them). An id whose count falls to zero, or that
// was made and never stored, is freed by the next sweep, which commit
// runs once an operation's records are all written, so a value dropped
// and stored again within one operation keeps its id. Id 0 is "none".
type shared[K comparable, V any] struct {
	ids  map[K]uint32
	vals []sharedVal[K, V] // by id; vals[0] unused
	free []uint32          // ids to reuse
	zero []uint32          // ids whose count was zero at some point since the last sweep
}

type sharedVal[K comparable, V any] struct {
	key  K
	val  V
	refs int32
	live bool
}

// find returns k's id, if k is held.
func (s *shared[K, V]) find(k K) (uint32, bool) {
	id, ok := s.ids[k]
	return id, ok
}

// add holds v under k, with no count yet: the next sweep frees it unless a
// record took it.
func (s *shared[K, V]) add(k K, v V) uint32 {
	if s.ids == nil {
		s.ids = map[K]uint32{}
		s.vals = make([]sharedVal[K, V], 1, 16)
	}
	var id uint32
	if n := len(s.free); n > 0 {
		id, s.free = s.free[n-1], s.free[:n-1]
	} else {
		id = uint32(len(s.vals))
		s.vals = append(s.vals, sharedVal[K, V]{})
	}
	s.vals[id] = sharedVal[K, V]{key: k, val: v, live: true}
	s.ids[k] = id
	s.zero = append(s.zero, id)
	return id
}

func (s *shared[K, V]) get(id uint32) V { return s.vals[id].val }

func (s *shared[K, V]) ref(id uint32) {
	if id != 0 {
		s.vals[id].refs++
	}
}

func (s *shared[K, V]) unref(id uint32) {
	if id == 0 {
		return
	}
	v := &s.vals[id]
	if v.refs--; v.refs == 0 {
		s.zero = append(s.zero, id)
	}
}

// sweep frees the ids no record holds, calling gone with each freed value.
func (s *shared[K, V]) sweep(gone func(V)) {
	for _, id := range s.zero {
		v := &s.vals[id]
		if !v.live || v.refs != 0 {
			continue
		}
		delete(s.ids, v.key)
		if gone != nil {
			gone(v.val)
		}
		*v = sharedVal[K, V]{}
		s.free = append(s.free, id)
	}
	s.zero = s.zero[:0]
}

// held is the number of values held.
func (s *shared[K, V]) held() int { return len(s.ids) }
