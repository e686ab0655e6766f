package gobgp

import (
	"context"
	"net/netip"
	"sync/atomic"
	"time"
)

// WatchBeat is one heartbeat through GoBGP's best-path watch
// (WithWatchHook). A fence can only start once WatchBest has read the
// best-path change it answers, and GoBGP exports a path learned again
// meanwhile at once: so the time a best-path event takes from GoBGP's main
// loop to WatchBest is part of the window a re-announcement leaks through,
// the part before FenceEvent.Took. The fence hook cannot see it (it starts
// when WatchBest reads the event) and GoBGP's own timestamps have a
// second's resolution, so WatchBest measures it with a path of its own:
// every second a HOLD path on heartbeatPrefix (0.0.0.1/32, never exported
// and never a route) replaces the one before (beatPath); it is deleted
// when WatchBest returns.
type WatchBeat struct {
	// Delivered runs from GoBGP's main loop processing the heartbeat's
	// path until GoBGP's watcher handed its event to fibgate: GoBGP's
	// queue of best-path events and their conversion to the API's form
	// (and over gRPC the stream).
	Delivered time.Duration
	// Read runs until WatchBest's loop read the event, ready to fence:
	// Delivered plus the events and fences queued in front of it.
	Read time.Duration
}

// WithWatchHook has WatchBest send its heartbeat and call fn with each
// (fn must not call the Speaker): the daemons'
// fibgate_gobgp_watch_delay_seconds. Without it no heartbeat is sent.
func WithWatchHook(fn func(WatchBeat)) Option { return func(o *options) { o.watchHook = fn } }

// heartbeatEvery is how often WatchBest sends its heartbeat.
const heartbeatEvery = time.Second

// heartbeatPrefix is the prefix of the heartbeat's path: in 0.0.0.0/8
// ("this network"), never a route, and not snapshotMarker, so that a
// heartbeat left in GoBGP by a fibgate that was killed is never taken for
// the end of the next one's snapshot.
var heartbeatPrefix = netip.MustParsePrefix("0.0.0.1/32")

// ownPrefix says whether p is one of WatchBest's own prefixes
// (snapshotMarker, heartbeatPrefix): HOLD paths there are not the gate's,
// and the audit leaves them out.
func ownPrefix(p netip.Prefix) bool { return p == snapshotMarker || p == heartbeatPrefix }

// heartbeatPatience is how long a heartbeat waits to be seen before the
// next one replaces it (GoBGP may not report a path that did not change
// best, such as one left behind by a failed delete).
const heartbeatPatience = time.Minute

// heartbeat is the state one heartbeat shares between its goroutine
// (send), GoBGP's watch callback (delivered) and WatchBest's loop (read).
type heartbeat struct {
	pending   atomic.Bool  // an add is on its way: the callback looks for it
	delivered atomic.Int64 // Unix ns when the callback got it
	read      atomic.Int64 // Unix ns when the loop read it
	seen      chan struct{}
}

func newHeartbeat() *heartbeat { return &heartbeat{seen: make(chan struct{}, 1)} }

// deliver is called by GoBGP's watch callback for every batch: only a
// single path (GoBGP reports a path added alone as an event of its own)
// can be the heartbeat, and only while one is pending is it decoded.
func (h *heartbeat) deliver(ps []watched) {
	if h != nil && len(ps) == 1 && !ps[0].withdraw && h.pending.Load() && ps[0].prefix == heartbeatPrefix {
		h.delivered.Store(time.Now().UnixNano())
	}
}

// readNow is called by WatchBest's loop when it read the heartbeat's add.
func (h *heartbeat) readNow() {
	if h == nil {
		return
	}
	h.read.Store(time.Now().UnixNano())
	select {
	case h.seen <- struct{}{}:
	default:
	}
}

// run sends a heartbeat every heartbeatEvery until ctx ends, each once the
// one before was seen, and reports each to fn. send adds beat n's path
// (replacing the one before) or, with withdraw, deletes it: only before
// run returns.
func (h *heartbeat) run(ctx context.Context, send func(ctx context.Context, n uint32, withdraw bool) error, fn func(WatchBeat), warn func(msg string, args ...any)) {
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	var n uint32 // the last beat sent
	added := false
	defer func() {
		if added {
			c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := send(c, n, true); err != nil {
				warn("deleting the best-path watch's heartbeat path failed", "prefix", heartbeatPrefix, "err", err)
			}
		}
	}()
	patience := time.NewTimer(heartbeatPatience)
	defer patience.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select { // a late signal of the one before
		case <-h.seen:
		default:
		}
		h.delivered.Store(0)
		h.pending.Store(true)
		n++
		err := send(ctx, n, false)
		sent := time.Now()
		added = added || err == nil
		if err != nil {
			h.pending.Store(false)
			if ctx.Err() == nil && !failing {
				warn("sending the best-path watch's heartbeat failed; trying again every second, quietly until it works", "prefix", heartbeatPrefix, "err", err)
			}
			failing = true
			continue
		}
		failing = false
		patience.Reset(heartbeatPatience)
		select {
		case <-ctx.Done():
			return
		case <-patience.C:
			h.pending.Store(false)
			warn("the best-path watch did not report its heartbeat; sending another", "after", heartbeatPatience)
			continue
		case <-h.seen:
		}
		h.pending.Store(false)
		b := WatchBeat{Read: max(0, time.Unix(0, h.read.Load()).Sub(sent))}
		b.Delivered = b.Read // not seen by the callback: at most that
		if ns := h.delivered.Load(); ns != 0 {
			b.Delivered = min(b.Read, max(0, time.Unix(0, ns).Sub(sent)))
		}
		fn(b)
	}
}
