package gobgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/plugin/gate"
)

func versioned(o gate.Origin, v uint64, ps ...netip.Prefix) []gate.Advertisement {
	out := ads(o, ps...)
	for i := range out {
		out[i].Version = v
	}
	return out
}

// TestFenceHoldsAtOnceAndRefusesStaleConfirmations is the bulk-churn leak
// in small. p1 and p2 are released; p1's best path changes, so the
// installer fences it. The feeder then withdraws both and announces them
// again (a session flap): p2, released all along, goes out again at once,
// as GoBGP does; p1 must not, although the tracker still counts it as
// released. A confirmation of p1's old route is refused as stale; one of
// a route written after the fence releases it. A withdrawal that reports
// p1 gone at a later clock lets the fence go.
func TestFenceHoldsAtOnceAndRefusesStaleConfirmations(t *testing.T) {
	x := newLoopLab(t)
	var clock atomic.Uint64
	clock.Store(5)
	sp := x.speaker(t, WithFIBClock(clock.Load))
	ctx := context.Background()
	both := []netip.Prefix{p1, p2}
	x.announce(t, false, both...)
	x.learned(t, both...)
	if err := sp.Advertise(ctx, versioned(gate.Transit, 5, both...)); err != nil {
		t.Fatal(err)
	}
	x.received(t, both, both...)

	clock.Store(10)
	if err := sp.Fence(ctx, []netip.Prefix{p1}); err != nil {
		t.Fatal(err)
	}
	x.received(t, both, p2) // withdrawn at the neighbour at once
	x.announce(t, true, both...)
	x.received(t, both)
	x.announce(t, false, both...)
	x.received(t, both, p2) // p2 is back; p1, learned in the same burst, is not
	lab.Never(t, 300*time.Millisecond, "p1 stays held", func() error {
		if _, ok := rib(t, x.receiver)[p1]; ok {
			return fmt.Errorf("%v reached the neighbour", p1)
		}
		return nil
	})

	err := sp.Advertise(ctx, versioned(gate.Transit, 10, p1))
	var se *gate.StaleError
	if !errors.As(err, &se) || !slices.Equal(se.Prefixes, []netip.Prefix{p1}) {
		t.Fatalf("Advertise of the route confirmed before the fence: %v, want a StaleError for %v", err, p1)
	}
	x.received(t, both, p2)
	if err := sp.Advertise(ctx, versioned(gate.Transit, 11, p1)); err != nil {
		t.Fatalf("Advertise of the route written after the fence: %v", err)
	}
	x.received(t, both, both...)

	// Fenced again, then reported gone at a later clock: nothing older
	// can be released after that, so the fence is forgotten.
	clock.Store(20)
	if err := sp.Fence(ctx, []netip.Prefix{p1}); err != nil {
		t.Fatal(err)
	}
	if err := sp.Withdraw(ctx, versioned(gate.Transit, 21, p1)); err != nil {
		t.Fatal(err)
	}
	sp.mu.Lock()
	left, kept := sp.rec.lookup(p1)
	sp.mu.Unlock()
	if kept {
		t.Errorf("record of %v kept after it was reported gone: %+v", p1, left)
	}
	if got := countHold(t, sp.b, sp.cfg.hold); got != 0 {
		t.Errorf("%d HOLD paths left behind", got)
	}
}

// TestFenceDoesNotWaitForTheInstaller: WatchBest fences while the FIB
// installer is still writing an earlier batch (here: blocked in fn). A
// fence that queued behind the kernel writes let GoBGP export paths
// learned again meanwhile for prefixes still released; in the
// steady-churn benchmark a slow pass of the installer's loop was a leak.
// What is reported while fn is busy comes in its next call, in order.
func TestFenceDoesNotWaitForTheInstaller(t *testing.T) {
	x := newLoopLab(t)
	sp := x.speaker(t)
	ctx := context.Background()

	var calls atomic.Int32
	busy, free := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var got []BestPath
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- sp.WatchBest(wctx, func(initial bool, ps []BestPath) {
			if calls.Add(1) == 2 { // the first change: the installer is slow
				close(busy)
				<-free
			}
			if !initial {
				mu.Lock()
				got = append(got, ps...)
				mu.Unlock()
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchBest: %v", err)
		}
	})
	release := sync.OnceFunc(func() { close(free) })
	t.Cleanup(release) // runs first: a failing test does not leave fn blocked
	lab.Eventually(t, 10*time.Second, "the initial table is delivered", func() error {
		if calls.Load() == 0 {
			return errors.New("not yet")
		}
		return nil
	})

	x.announce(t, false, p2)
	<-busy // the installer is busy with p2's route
	x.announce(t, false, p1)
	x.learned(t, p1, p2)
	if err := sp.Advertise(ctx, ads(gate.Transit, p1)); err != nil {
		t.Fatal(err)
	}
	x.received(t, []netip.Prefix{p1, p2}, p1)
	x.announce(t, true, p1)
	lab.Eventually(t, 10*time.Second, "p1 fenced while the installer is still busy", func() error {
		if sp.IsReleased(p1) {
			return errors.New("still released")
		}
		return nil
	})
	if n := calls.Load(); n != 2 {
		t.Fatalf("fn called %d times while blocked, want 2", n)
	}
	release()
	lab.Eventually(t, 10*time.Second, "the queued reports are delivered", func() error {
		mu.Lock()
		defer mu.Unlock()
		var order []string
		for _, b := range got {
			order = append(order, fmt.Sprintf("%v:%d", b.Prefix, len(b.Nexthops)))
		}
		if want := []string{p2.String() + ":1", p1.String() + ":1", p1.String() + ":0"}; !slices.Equal(order, want) {
			return fmt.Errorf("delivered %v, want %v", order, want)
		}
		return nil
	})
}

// slowBackend is the Speaker's backend, GoBGP itself, made as slow as a
// busy one: each call sending paths takes perPath a path before it goes
// through. first is closed at the first such call.
type slowBackend struct {
	backend
	perPath time.Duration
	first   chan struct{}
	once    sync.Once
}

func (b *slowBackend) sendPaths(ctx context.Context, paths []*api.Path) error {
	b.once.Do(func() { close(b.first) })
	time.Sleep(time.Duration(len(paths)) * b.perPath)
	return b.backend.sendPaths(ctx, paths)
}

// TestFenceDoesNotWaitForALongRelease: a fence that comes while a large
// release is going into a slow GoBGP gets in after the step in progress,
// not after the whole release. A step of 4,096 prefixes held the lock for
// seconds on a full table converging, and a prefix whose best path
// changed meanwhile stayed released: a path learned again for it went out
// unconfirmed. The release's steps are sized to hold the lock about
// stepTime, so the fence is in while most of the release is still to go;
// the prefix is held, and the release of the others still completes.
func TestFenceDoesNotWaitForALongRelease(t *testing.T) {
	x := newLoopLab(t)
	var clock atomic.Uint64
	clock.Store(5)
	sp := x.speaker(t, WithFIBClock(clock.Load))
	ctx := context.Background()
	x.announce(t, false, p1)
	x.learned(t, p1)
	if err := sp.Advertise(ctx, versioned(gate.Transit, 5, p1)); err != nil {
		t.Fatal(err)
	}
	var many []netip.Prefix
	for i := range 1500 {
		many = append(many, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 50, byte(i >> 8), byte(i)}), 32))
	}
	x.announce(t, false, many...)
	x.learned(t, many...)

	slow := &slowBackend{backend: sp.b, perPath: 100 * time.Microsecond, first: make(chan struct{})}
	sp.mu.Lock()
	sp.b = slow
	sp.mu.Unlock()
	released := make(chan time.Time, 1)
	go func() {
		if err := sp.Advertise(ctx, versioned(gate.Transit, 5, many...)); err != nil {
			t.Errorf("release: %v", err)
		}
		released <- time.Now()
	}()
	<-slow.first // the release is in its first step, holding the lock
	clock.Store(10)
	if err := sp.Fence(ctx, []netip.Prefix{p1}); err != nil {
		t.Fatal(err)
	}
	fenced := time.Now()
	if sp.IsReleased(p1) {
		t.Error("p1 is still released after its fence")
	}
	if done := <-released; !fenced.Before(done) {
		t.Fatalf("the fence waited for the whole release (done %v before the fence)", fenced.Sub(done))
	}
	for _, p := range many {
		if !sp.IsReleased(p) {
			t.Fatalf("%v is not released after the release returned", p)
		}
	}
	x.received(t, append([]netip.Prefix{p1}, many[0], many[len(many)-1]), many[0], many[len(many)-1])
}
