package gate

import (
	"sync"

	"github.com/fibgate/fibgate/plugin/fib"
)

// inbox holds the route events the tracker has read and not judged yet,
// reduced to what judging needs: the prefixes they name and the losses
// among them (losses). A goroutine of its own reads the source as it
// publishes, so while Run waits for BGP (a release of thousands of
// prefixes while GoBGP learns a full table takes seconds) the backlog is a
// set of keys, a few dozen bytes a prefix however many events named it,
// and not the source's queue of events with two routes each: half a
// gigabyte of gobgpd-ext's heap while a full table converged.
type inbox struct {
	mu      sync.Mutex
	keys    map[prefixKey]struct{}
	lost    map[prefixKey]bool
	stopped bool          // the source closed its stream
	kick    chan struct{} // cap 1: something to take
	done    chan struct{} // closed when the reader returns
}

// readEvents starts the reader of events; it returns once events closes
// (the source stopped, or ctx ended: the source then closes it).
func (t *Tracker) readEvents(events <-chan []fib.Event) *inbox {
	in := &inbox{keys: map[prefixKey]struct{}{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(in.done)
		for b := range events {
			lost := t.losses(b, nil)
			in.mu.Lock()
			for _, ev := range b {
				in.keys[keyOf(ev.Route())] = struct{}{}
			}
			for k := range lost {
				if in.lost == nil {
					in.lost = map[prefixKey]bool{}
				}
				in.lost[k] = true
			}
			in.mu.Unlock()
			in.signal()
		}
		in.mu.Lock()
		in.stopped = true
		in.mu.Unlock()
		in.signal()
	}()
	return in
}

func (in *inbox) signal() {
	select {
	case in.kick <- struct{}{}:
	default:
	}
}

// take returns what was read since the last take, and whether the source
// has stopped. Emptied, the maps are made anew: a map keeps the size it
// once had, and a full table's arrival fills them with every prefix.
func (in *inbox) take() (map[prefixKey]struct{}, map[prefixKey]bool, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	keys, lost := in.keys, in.lost
	in.keys, in.lost = make(map[prefixKey]struct{}, min(len(keys), 1024)), nil
	return keys, lost, in.stopped
}

// wait returns once the reader has; after ctx ended, the source closes its
// stream promptly.
func (in *inbox) wait() { <-in.done }
