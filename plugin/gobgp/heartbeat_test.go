package gobgp

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// slowWatch delays GoBGP's delivery of the heartbeat's add by delay, as a
// watcher with a backlog would.
// With stop armed it stops the next one until stop is closed instead.
type slowWatch struct {
	backend
	delay   atomic.Int64
	armed   atomic.Bool
	stopped chan struct{}
	stop    chan struct{}
}

func (b *slowWatch) watchBest(ctx context.Context, fn func([]watched), errc chan<- error) (bool, error) {
	return b.backend.watchBest(ctx, func(ps []watched) {
		if len(ps) == 1 && !ps[0].withdraw && ps[0].prefix == heartbeatPrefix {
			if b.armed.CompareAndSwap(true, false) {
				close(b.stopped)
				<-b.stop
			}
			time.Sleep(time.Duration(b.delay.Load())) // the backlog under test
		}
		fn(ps)
	}, errc)
}

// TestWatchBestTimesItsHeartbeat: with a watch hook, WatchBest times a path
// of its own through GoBGP's best-path watch once a second. A delivery
// delayed by 300 ms must show in the beat. Neighbours get nothing of it
// (a heartbeat deleted each second sent them a withdrawal each time), the
// installer is never told of it, and it is gone once WatchBest returns,
// also when it returns while a heartbeat is on its way.
func TestWatchBestTimesItsHeartbeat(t *testing.T) {
	x := newLoopLab(t)
	beats := make(chan WatchBeat, 64)
	sp := x.speaker(t, WithWatchHook(func(b WatchBeat) {
		select {
		case beats <- b:
		default:
		}
	}))
	sw := &slowWatch{backend: sp.b, stopped: make(chan struct{}), stop: make(chan struct{})}
	sp.mu.Lock()
	sp.b = sw
	sp.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reported := make(chan []BestPath, 64)
	done := make(chan error, 1)
	go func() {
		done <- sp.WatchBest(ctx, func(_ bool, bs []BestPath) { reported <- bs })
	}()
	next := func() WatchBeat {
		t.Helper()
		select {
		case b := <-beats:
			return b
		case <-time.After(10 * time.Second):
			t.Fatal("no heartbeat within 10 s")
		}
		panic("unreachable")
	}
	if b := next(); b.Read < b.Delivered || b.Read > 250*time.Millisecond {
		t.Errorf("idle GoBGP: %+v, want a delivery within the read, both short", b)
	}
	updates := func() uint64 {
		t.Helper()
		var n uint64
		err := x.receiver.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
			n += p.GetState().GetMessages().GetReceived().GetUpdate()
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := updates()
	const delay = 300 * time.Millisecond
	sw.delay.Store(int64(delay))
	for len(beats) > 0 { // one may have come meanwhile
		<-beats
	}
	next() // may have been sent before the delay was set
	b := next()
	// The beat is timed from the return of GoBGP's call, which may come a
	// little after GoBGP's watcher took the event (CI saw 299.0 ms).
	const slack = 25 * time.Millisecond
	if b.Delivered < delay-slack || b.Read < b.Delivered {
		t.Errorf("delivery delayed by %v: %+v, want a delivery at least that late (less %v) and a read after it", delay, b, slack)
	}
	if n := updates() - before; n != 0 {
		t.Errorf("the receiver got %d UPDATEs from the leaf over the heartbeats, want none", n)
	}
	sw.delay.Store(0)
	sw.armed.Store(true)
	<-sw.stopped // a heartbeat is in GoBGP, its event not yet delivered
	cancel()
	err := <-done
	close(sw.stop)
	if err != nil {
		t.Fatal(err)
	}
	for len(reported) > 0 {
		for _, bp := range <-reported {
			if ownPrefix(bp.Prefix) {
				t.Errorf("the heartbeat was reported to the installer: %+v", bp)
			}
		}
	}
	if _, ok := rib(t, x.leaf)[heartbeatPrefix]; ok {
		t.Errorf("the heartbeat's path %v is still in GoBGP after WatchBest returned", heartbeatPrefix)
	}
}
