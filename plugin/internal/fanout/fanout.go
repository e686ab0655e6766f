// Package fanout delivers batches from one producer to many consumers
// without letting a slow consumer stall the producer: each consumer has its
// own queue and goroutine. Producers that own state (the listener's model,
// the gate's table) call Subscribe and Publish while holding their own lock,
// so a consumer gets every change either in its first batch or as a later
// batch, never both and never neither.
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

type sub[T any] struct {
	mu     sync.Mutex
	queue  [][]T
	closed bool
	wake   chan struct{}
	out    chan []T
}

// Subscribe registers a consumer whose first batch is first and returns its
// channel. A nil first sends nothing; an empty non-nil first is delivered as
// an empty batch, so a consumer that asked for a snapshot can tell an empty
// one from one still to come. The channel closes when ctx ends or the hub
// closes (after the queued batches are delivered). Batches queue without
// bound: the consumer must keep reading.
func (h *Hub[T]) Subscribe(ctx context.Context, first []T) <-chan []T {
	s := &sub[T]{wake: make(chan struct{}, 1), out: make(chan []T)}
	if first != nil {
		s.queue = append(s.queue, first)
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

func (h *Hub[T]) deliver(ctx context.Context, s *sub[T]) {
	defer close(s.out)
	defer h.remove(s)
	for {
		s.mu.Lock()
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
				return
			}
		}
		b := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.mu.Unlock()
		select {
		case s.out <- b:
		case <-ctx.Done():
			return
		}
	}
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

// Publish queues a batch for every consumer. An empty batch is dropped.
func (h *Hub[T]) Publish(batch []T) {
	if len(batch) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.mu.Lock()
		s.queue = append(s.queue, batch)
		s.mu.Unlock()
		s.signal()
	}
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
