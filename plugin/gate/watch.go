package gate

import (
	"errors"
	"fmt"

	"github.com/fibgate/fibgate/plugin/internal/fanout"
)

// ErrWatcherTooSlow ends a Watch whose consumer fell further behind than
// its WatchLimit. The API answers it with RESOURCE_EXHAUSTED: the client
// reconnects and starts again from a fresh snapshot.
var ErrWatcherTooSlow = errors.New("watcher fell too far behind")

// WatchOption configures one Watch.
type WatchOption func(*watchConfig)

type watchConfig struct {
	fanout []fanout.SubscribeOption
}

// WatchLimit bounds how many changed states may wait for the consumer
// (the snapshot does not count). A consumer that falls further behind is
// dropped rather than sent a coalesced catch-up: its queue is released at
// once, drop is called with an error matching ErrWatcherTooSlow that says
// how far behind it was, and then its channel closes. drop runs on the
// watch's own goroutine, never under the tracker's lock; a
// context.CancelCauseFunc fits.
//
// Dropping, not coalescing, because a coalesced catch-up (the latest state
// of each prefix that changed) is itself as large as the table for a
// watcher that stopped reading during a full-table convergence, so memory
// would be bounded only by the table times the slow watchers; and because
// a watcher that is sent a catch-up cannot tell which transitions it
// missed (`fibgate watch` would silently skip a flap). A dropped client
// knows, and reconnecting gives it the same fresh snapshot a catch-up
// would, from the tracker's one copy of the table.
//
// Without WatchLimit a watch queues without bound, as every consumer of
// the route listener does: use that only for a consumer that keeps up.
func WatchLimit(states int, drop func(error)) WatchOption {
	return func(c *watchConfig) {
		c.fanout = append(c.fanout, fanout.WithLimit(states, func(behind int) {
			if drop != nil {
				drop(fmt.Errorf("%w: %d changed states were waiting for it, more than the limit of %d", ErrWatcherTooSlow, behind, states))
			}
		}))
	}
}
