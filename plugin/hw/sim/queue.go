package sim

import (
	"net/netip"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/internal/pkey"
)

// key names a hardware entry: one per (table, prefix), as a driver programs
// only the forwarding route of a prefix.
type key struct {
	p     pkey.Key // pointer-free: the engine's maps of a full table are not scanned
	table uint32
}

func keyFor(table uint32, p netip.Prefix) key { return key{pkey.Of(p.Masked()), table} }

func keyOf(r *fib.Route) key { return keyFor(r.Table, r.Prefix) }

func (k key) prefix() netip.Prefix { return k.p.Prefix() }

type opKind uint8

const (
	// opReplace programs the route the driver was told forwards now.
	opReplace opKind = iota + 1
	// opDelete removes the prefix from hardware.
	opDelete
	// opAppend adds IPv6 siblings to what hardware holds.
	opAppend
	// opReprogram writes the held route again (a failure was injected or
	// cleared); it yields to a newer replace or delete of the same key.
	opReprogram
)

// op is one unit of hardware work in the FIFO. The route names the key
// (table and prefix) for every kind.
type op struct {
	route fib.Route
	due   time.Duration // not before: since the engine's epoch
	kind  opKind
	dead  bool // superseded by a newer replace or delete of the same key
}

func (o *op) key() key { return keyOf(&o.route) }

// chunkLen is the size of a fifo chunk: big enough to amortise, small
// enough that growing never copies a large block (a full table queues a
// million ops; one slice would be copied, hundreds of megabytes at a time,
// while the listener waits).
const chunkLen = 1024

// fifo is a queue in fixed-size chunks with stable logical indices, so a
// queued element can be reached (to mark it superseded) until it is popped.
// Every chunk but the last is full.
type fifo[T any] struct {
	chunks [][]T
	head   int // next element of chunks[0]
	base   int // logical index of chunks[0][0]
	n      int
	// spare is the largest chunk popped whole, zeroed, for the next push that
	// needs one: a table's worth of driver events passes through the
	// queues a chunk at a time, and new chunks were a twentieth of all the
	// pipeline allocated at 120k prefixes.
	spare []T
}

func (f *fifo[T]) len() int { return f.n }

// push appends v and returns its logical index.
func (f *fifo[T]) push(v T) int {
	if len(f.chunks) == 0 || len(f.chunks[len(f.chunks)-1]) == chunkLen {
		var c []T
		switch {
		case f.spare != nil:
			c, f.spare = f.spare, nil
		case len(f.chunks) > 0:
			c = make([]T, 0, chunkLen) // a burst: the previous one filled
		default:
			// Small at first, grown by append up to chunkLen: a queue that
			// is emptied after every few elements (the engine's inbox, one
			// driver event at a time) must not cost a whole chunk each time.
			c = make([]T, 0, 4)
		}
		f.chunks = append(f.chunks, c)
	}
	last := len(f.chunks) - 1
	f.chunks[last] = append(f.chunks[last], v)
	f.n++
	return f.base + last*chunkLen + len(f.chunks[last]) - 1
}

// at returns the element at a logical index that has not been popped.
func (f *fifo[T]) at(idx int) *T {
	i := idx - f.base
	return &f.chunks[i/chunkLen][i%chunkLen]
}

// front returns the oldest element.
func (f *fifo[T]) front() (*T, bool) {
	if f.n == 0 {
		return nil, false
	}
	return &f.chunks[0][f.head], true
}

// pop removes the oldest element.
func (f *fifo[T]) pop() (T, bool) {
	var zero T
	if f.n == 0 {
		return zero, false
	}
	c := f.chunks[0]
	v := c[f.head]
	c[f.head] = zero
	f.head++
	f.n--
	if f.head == len(c) && (len(c) == chunkLen || len(f.chunks) == 1) {
		if cap(c) > cap(f.spare) {
			// Every element zeroed as it was popped. A chunk still growing
			// is kept too: a queue emptied after every few hundred
			// elements (the engine's inbox) grows it once, not each time.
			f.spare = c[:0]
		}
		f.chunks[0] = nil
		f.chunks = f.chunks[1:]
		f.base += len(c)
		f.head = 0
		if len(f.chunks) == 0 {
			f.chunks = nil
		}
	}
	return v, true
}

// each calls fn for the elements from the oldest until fn returns false.
func (f *fifo[T]) each(fn func(*T) bool) {
	start := f.head
	for _, c := range f.chunks {
		for i := start; i < len(c); i++ {
			if !fn(&c[i]) {
				return
			}
		}
		start = 0
	}
}

// queue is the FIFO between the driver events and the hardware, like
// netdevsim's work queue. The engine marks an op dead when a newer replace
// or delete of the same key supersedes it (it keeps the newest op's index
// in the key's slot), so a route that flaps faster than the hardware
// programs costs one write, not many.
type queue struct {
	ops  fifo[op]
	live int // ops not dead
}

func supersedes(k opKind) bool { return k == opReplace || k == opDelete }

// push queues o and returns its logical index.
func (q *queue) push(o op) int {
	q.live++
	return q.ops.push(o)
}

// kill marks the op at a logical index superseded.
func (q *queue) kill(idx int) {
	d := q.ops.at(idx)
	d.dead, d.route = true, fib.Route{}
	q.live--
}

// trim drops superseded ops at the head.
func (q *queue) trim() {
	for {
		o, ok := q.ops.front()
		if !ok || !o.dead {
			return
		}
		q.ops.pop()
	}
}

// front returns the oldest live op.
func (q *queue) front() (*op, bool) {
	q.trim()
	return q.ops.front()
}

// due counts the live ops at the head that may run at now, up to max. Ops
// run strictly in order: one not yet due holds back those behind it.
func (q *queue) due(now time.Duration, max int) int {
	n := 0
	q.ops.each(func(o *op) bool {
		if o.dead {
			return true
		}
		if o.due > now {
			return false
		}
		n++
		return n < max
	})
	return n
}

// pop removes and returns the oldest live op with its logical index.
func (q *queue) pop() (op, int, bool) {
	q.trim()
	idx := q.ops.base + q.ops.head
	o, ok := q.ops.pop()
	if !ok {
		return op{}, 0, false
	}
	q.live--
	return o, idx, true
}
