package kernel

import (
	"context"
	"sync"
	"time"
)

// subscriber queues batches for one consumer so that a slow consumer never
// stalls the listener (which would overrun the kernel socket for everyone).
type subscriber struct {
	mu     sync.Mutex
	queue  [][]Event
	closed bool
	wake   chan struct{}
	out    chan []Event
}

// Events streams event batches to the caller until ctx ends or the listener
// stops, then closes the channel. With snapshot set, the first batch lists
// every route of the model as Added (Snapshot set), taken atomically with the
// registration so that no change is missed or seen twice. Batches queue
// without bound for a slow consumer; the consumer must keep reading.
func (l *Listener) Events(ctx context.Context, snapshot bool) <-chan []Event {
	s := &subscriber{wake: make(chan struct{}, 1), out: make(chan []Event)}
	l.mu.Lock()
	if snapshot {
		now := time.Now()
		var evs []Event
		for r := range l.model.All() {
			c := r.Clone()
			evs = append(evs, Event{Kind: Added, Snapshot: true, Time: now, New: &c})
		}
		s.queue = append(s.queue, evs)
	}
	l.subs[s] = struct{}{}
	l.mu.Unlock()
	if snapshot {
		s.signal()
	}
	go func() {
		defer close(s.out)
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
					l.unsubscribe(s)
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
				l.unsubscribe(s)
				return
			}
		}
	}()
	return s.out
}

func (s *subscriber) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (l *Listener) unsubscribe(s *subscriber) {
	l.mu.Lock()
	delete(l.subs, s)
	l.mu.Unlock()
}

// publishLocked hands a batch to every subscriber. The caller holds l.mu
// for writing, so a subscriber registering meanwhile gets each change either
// in its snapshot or as an event, never both.
func (l *Listener) publishLocked(evs []Event) {
	if len(evs) == 0 {
		return
	}
	for s := range l.subs {
		s.mu.Lock()
		s.queue = append(s.queue, evs)
		s.mu.Unlock()
		s.signal()
	}
}

// closeSubscribers ends every stream once the queued batches are delivered.
func (l *Listener) closeSubscribers() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for s := range l.subs {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.signal()
		delete(l.subs, s)
	}
}
