// Package fanout delivers batches from one producer to many consumers
// without letting a slow consumer stall the producer: each consumer has its
// own queue and goroutine. Producers that own state (the listener's model,
// the gate's table) call Subscribe and Publish while holding their own lock,
// so a consumer gets every change either in its first batch or as a later
// batch, never both and never neither.
//
// A queue is unbounded unless the subscription asks for a limit
// (WithLimit): consumers that must never lose an event (the gate's tracker
// reading the route listener) subscribe without one and must keep reading;
// consumers that can start again from a snapshot (API watch streams) set a
// limit and are dropped when they fall further behind, so a client that
// stops reading costs a bounded amount of memory.
package fanout

import (
	"context"
	"sync"
)

// Hub is the producer side. The zero value is ready to use.
type Hub[T any] struct {
	mu     sync.Mutex
	subs   map[*sub[T]]struct{}
	closed bool
}

// queued is one batch waiting for its consumer; counted says whether it
// counts against the limit (published batches do, the first does not).
type queued[T any] struct {
	batch   []T
	counted bool
}

type sub[T any] struct {
	limit  int              // 0: unbounded
	onDrop func(behind int) // called once, from the consumer's goroutine
	mu     sync.Mutex
	queue  []queued[T]
	// pending counts the items of published batches not yet handed to
	// the consumer (the batch being offered included).
	pending int
	// dropped is set, with the number of items the consumer was behind,
	// when a batch would have taken pending past limit (see WithLimit);
	// the queue is cleared at once and the consumer unsubscribed.
	dropped int
	closed  bool
	wake    chan struct{}
	out     chan []T
}

// SubscribeOption configures one subscription.
type SubscribeOption func(*subConfig)

type subConfig struct {
	limit  int
	onDrop func(behind int)
}

// WithLimit bounds how far the consumer may fall behind, in items of
// published batches not yet received (the first batch does not count: it
// is a snapshot the consumer asked for, bounded by the producer's state,
// not by churn). When a batch would take the consumer past limit items
// and more than the batch it is being offered is waiting, the hub drops
// it: its queue is released at once, it gets nothing more, onDrop is
// called with the number of items it was behind (that batch included),
// and then its channel closes. A consumer with at most one batch waiting
// takes the next one whatever its size, so a big but rare batch (a policy
// change judges the whole table) does not drop every watcher: a consumer
// holds at most max(limit, two batches) items. A limit below 1 means no
// limit. The producer never waits: dropping is how it stays fast.
func WithLimit(limit int, onDrop func(behind int)) SubscribeOption {
	return func(c *subConfig) { c.limit, c.onDrop = max(limit, 0), onDrop }
}

// Subscribe registers a consumer whose first batch is first and returns its
// channel. A nil first sends nothing; an empty non-nil first is delivered as
// an empty batch, so a consumer that asked for a snapshot can tell an empty
// one from one still to come. The channel closes when ctx ends, when the
// hub closes (after the queued batches are delivered), or when a limited
// consumer is dropped. Without WithLimit batches queue without bound: the
// consumer must keep reading. When ctx ends the consumer is unsubscribed
// and its queue released at once, whether or not it was reading.
func (h *Hub[T]) Subscribe(ctx context.Context, first []T, opts ...SubscribeOption) <-chan []T {
	var c subConfig
	for _, o := range opts {
		o(&c)
	}
	s := &sub[T]{limit: c.limit, onDrop: c.onDrop, wake: make(chan struct{}, 1), out: make(chan []T)}
	if first != nil {
		s.queue = append(s.queue, queued[T]{batch: first})
		s.signal()
	}
	h.mu.Lock()
	if h.closed {
		s.closed = true
		s.signal()
	} else {
		if h.subs == nil {
			h.subs = map[*sub[T]]struct{}{}
		}
		h.subs[s] = struct{}{}
	}
	h.mu.Unlock()
	go h.deliver(ctx, s)
	return s.out
}

// deliver offers the head of the queue to the consumer until it takes it;
// the head stays queued (and counted) meanwhile, and a wake-up while it is
// offered re-checks whether the consumer was dropped.
func (h *Hub[T]) deliver(ctx context.Context, s *sub[T]) {
	defer close(s.out)
	defer h.remove(s)
	for {
		s.mu.Lock()
		if s.dropped > 0 {
			behind := s.dropped
			s.mu.Unlock()
			if s.onDrop != nil {
				s.onDrop(behind)
			}
			return
		}
		if len(s.queue) == 0 {
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
				s.release()
				return
			}
		}
		head := s.queue[0]
		s.mu.Unlock()
		select {
		case s.out <- head.batch:
			s.mu.Lock()
			if s.dropped == 0 && len(s.queue) > 0 {
				// Publish only appends, and a drop empties the queue, so
				// the head is still the batch just sent.
				s.queue[0] = queued[T]{}
				s.queue = s.queue[1:]
				if head.counted {
					s.pending -= len(head.batch)
				}
			}
			s.mu.Unlock()
		case <-s.wake:
		case <-ctx.Done():
			s.release()
			return
		}
	}
}

// release lets go of everything queued, so a consumer that left holds no
// memory even while something still refers to it.
func (s *sub[T]) release() {
	s.mu.Lock()
	s.queue, s.pending = nil, 0
	s.mu.Unlock()
}

func (s *sub[T]) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (h *Hub[T]) remove(s *sub[T]) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// Publish queues a batch for every consumer, and drops the limited
// consumers it would take past their limit. An empty batch is dropped.
// Publish never waits for a consumer.
func (h *Hub[T]) Publish(batch []T) {
	if len(batch) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.mu.Lock()
		if s.limit > 0 && len(s.queue) > 1 && s.pending+len(batch) > s.limit {
			s.dropped = s.pending + len(batch)
			s.queue, s.pending = nil, 0
			delete(h.subs, s)
		} else {
			s.queue = append(s.queue, queued[T]{batch: batch, counted: true})
			s.pending += len(batch)
		}
		s.mu.Unlock()
		s.signal()
	}
}

// Consumers reports how many consumers are subscribed now, so a producer
// with none can skip building batches no one would read (a full table's
// state changes are a batch of hundreds of MB).
func (h *Hub[T]) Consumers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Backlog reports how many consumers are subscribed and how many items of
// published batches they have not received yet, summed over all of them
// (a batch queued for three consumers counts three times, though it is
// stored once). It is what a test or a gauge needs to see that slow
// consumers stay bounded and that consumers that left are gone.
func (h *Hub[T]) Backlog() (consumers, items int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.mu.Lock()
		items += s.pending
		s.mu.Unlock()
	}
	return len(h.subs), items
}

// Close ends every stream once its queued batches are delivered; later
// subscribers get a closed channel.
func (h *Hub[T]) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.signal()
	}
}
