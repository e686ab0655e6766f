package kernel

import (
	"context"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// Events streams event batches to the caller until ctx ends or the listener
// stops, then closes the channel. With snapshot set, the first batch lists
// every route of the model as Added (Snapshot set), taken atomically with
// the registration so that no change is missed or seen twice. Batches queue
// without bound for a slow consumer, which never stalls the listener (that
// would overrun the kernel socket for everyone); the consumer must keep
// reading.
func (l *Listener) Events(ctx context.Context, snapshot bool) <-chan []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first []Event
	if snapshot {
		first = make([]Event, 0, l.model.Len())
		now := time.Now()
		for r := range l.model.All() {
			c := r.Clone()
			first = append(first, Event{Kind: fib.Added, Snapshot: true, Time: now, New: &c})
		}
	}
	return l.hub.Subscribe(ctx, first)
}

// publishLocked hands a batch to every subscriber. The caller holds l.mu
// for writing, which makes Events' snapshot atomic with the stream.
func (l *Listener) publishLocked(evs []Event) { l.hub.Publish(evs) }
