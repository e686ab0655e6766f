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

// released has the feeder announce ps and sp release them at version 5.
func (x *loopLab) released(t *testing.T, sp *Speaker, ps ...netip.Prefix) {
	t.Helper()
	x.announce(t, false, ps...)
	x.learned(t, ps...)
	if err := sp.Advertise(context.Background(), versioned(gate.Transit, 5, ps...)); err != nil {
		t.Fatal(err)
	}
}

// newFenceLab is a loop lab with a Speaker whose FIB clock the test sets
// (at 5 to begin with).
func newFenceLab(t *testing.T, opts ...Option) (*loopLab, *Speaker, *atomic.Uint64) {
	x := newLoopLab(t)
	clock := new(atomic.Uint64)
	clock.Store(5)
	return x, x.speaker(t, append([]Option{WithFIBClock(clock.Load)}, opts...)...), clock
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
	x, sp, clock := newFenceLab(t)
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
	x, sp, clock := newFenceLab(t)
	ctx := context.Background()
	x.released(t, sp, p1)
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

// gatedBackend records GoBGP's path calls, and stops a release step in its
// first call (its HOLD paths) while the test arranges a fence.
type gatedBackend struct {
	backend
	fenced map[netip.Prefix]bool
	armed  atomic.Bool
	in     chan struct{} // a release step is stopped in its call
	resume chan struct{}

	mu    sync.Mutex
	calls []gatedCall
}

type gatedCall struct {
	release bool // a release step's first call: HOLD paths of prefixes not fenced
	fenced  netip.Prefix
}

func (b *gatedBackend) sendPaths(ctx context.Context, paths []*api.Path) error {
	c := gatedCall{release: len(paths) > 0}
	for _, path := range paths {
		p, _ := pathPrefix(path)
		if b.fenced[p] {
			c.fenced, c.release = p, false
		}
		if path.IsWithdraw {
			c.release = false
		}
	}
	b.mu.Lock()
	b.calls = append(b.calls, c)
	b.mu.Unlock()
	if c.release && b.armed.CompareAndSwap(true, false) {
		b.in <- struct{}{}
		<-b.resume
	}
	return b.backend.sendPaths(ctx, paths)
}

func (b *gatedBackend) mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.calls)
}

// TestAFenceIsNotOvertakenByTheNextStep: a fence that asks for the lock
// while a release step holds it gets the lock when that step ends, before
// the release's next step. With the Speaker's mutex alone the release's
// goroutine often took the lock back at once while the woken fence still
// waited for a CPU, and a fence waited for two steps (seen as 40-60 ms
// waits during a release of 20,000 prefixes). Five fences, each asked for
// while a step is stopped in its first GoBGP call; between the fence's
// call and its own call to GoBGP no release step may start.
//
// Steps of at most 100 prefixes: sized by time alone, on a fast machine
// the 2,000 went out in fewer steps than the test has fences (the release
// ended first in 3 to 4 runs of 10).
func TestAFenceIsNotOvertakenByTheNextStep(t *testing.T) {
	x, sp, clock := newFenceLab(t, WithBatchSize(100))
	ctx := context.Background()
	var fenced, many []netip.Prefix
	for i := range 5 {
		fenced = append(fenced, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 60, 0, byte(i)}), 32))
	}
	for i := range 2000 {
		many = append(many, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 50, byte(i >> 8), byte(i)}), 32))
	}
	x.announce(t, false, append(fenced, many...)...)
	x.learned(t, append(fenced, many...)...)
	if err := sp.Advertise(ctx, versioned(gate.Transit, 5, fenced...)); err != nil {
		t.Fatal(err)
	}
	gb := &gatedBackend{backend: sp.b, fenced: make(map[netip.Prefix]bool), in: make(chan struct{}), resume: make(chan struct{})}
	for _, p := range fenced {
		gb.fenced[p] = true
	}
	sp.mu.Lock()
	sp.b = gb
	sp.mu.Unlock()
	released := make(chan error, 1)
	go func() { released <- sp.Advertise(ctx, versioned(gate.Transit, 5, many...)) }()
	clock.Store(10)
	for _, p := range fenced {
		gb.armed.Store(true)
		select {
		case <-gb.in:
		case err := <-released:
			t.Fatalf("the release ended (%v) before the fence of %v", err, p)
		}
		done := make(chan error, 1)
		go func() { done <- sp.Fence(ctx, []netip.Prefix{p}) }()
		// The fence waits for the lock: no new step may begin.
		lab.Eventually(t, 5*time.Second, "the fence waits for the step", func() error {
			if sp.turn.TryRLock() {
				sp.turn.RUnlock()
				return errors.New("a step could still begin")
			}
			return nil
		})
		from := gb.mark()
		gb.resume <- struct{}{}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		gb.mu.Lock()
		calls := slices.Clone(gb.calls[from:])
		gb.mu.Unlock()
		for _, c := range calls {
			if c.fenced == p {
				break
			}
			if c.release {
				t.Fatalf("a release step began between the fence of %v and its hold", p)
			}
		}
		if sp.IsReleased(p) {
			t.Errorf("%v is still released after its fence", p)
		}
	}
	if err := <-released; err != nil {
		t.Fatal(err)
	}
}

// stalledBackend stops the first read of GoBGP's export assignment (the
// guard's Check) until the test resumes it.
type stalledBackend struct {
	backend
	armed  atomic.Bool
	in     chan struct{}
	resume chan struct{}
}

func (b *stalledBackend) exportAssignment(ctx context.Context) (*api.PolicyAssignment, error) {
	if b.armed.CompareAndSwap(true, false) {
		close(b.in)
		<-b.resume
	}
	return b.backend.exportAssignment(ctx)
}

// TestAFenceDoesNotWaitForTheGuardsReads: the guard's Check runs every
// 100 ms and reads GoBGP (its export chain, the sentinel set), each a
// round trip through GoBGP's main loop, which takes long while that loop
// is busy. Check held the Speaker's lock through them, so a fence waited
// for them. Here a read of Check's is stopped in GoBGP; a fence of a
// released prefix must still hold it, and Check then finds the gate in
// place.
func TestAFenceDoesNotWaitForTheGuardsReads(t *testing.T) {
	x, sp, clock := newFenceLab(t)
	ctx := context.Background()
	x.released(t, sp, p1)
	sb := &stalledBackend{backend: sp.b, in: make(chan struct{}), resume: make(chan struct{})}
	sb.armed.Store(true)
	sp.mu.Lock()
	sp.b = sb
	sp.mu.Unlock()
	checked := make(chan error, 1)
	go func() {
		again, err := sp.Check(ctx)
		if err == nil && again {
			err = errors.New("Check re-installed the gate")
		}
		checked <- err
	}()
	<-sb.in // Check is reading GoBGP
	clock.Store(10)
	fenced := make(chan error, 1)
	go func() { fenced <- sp.Fence(ctx, []netip.Prefix{p1}) }()
	select {
	case err := <-fenced:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		close(sb.resume)
		t.Fatal("the fence waited for the guard's read of GoBGP")
	}
	if sp.IsReleased(p1) {
		t.Error("p1 is still released after its fence")
	}
	close(sb.resume)
	if err := <-checked; err != nil {
		t.Fatal(err)
	}
	x.received(t, []netip.Prefix{p1})
}

// holdCounter counts the HOLD paths sent per prefix (adds and deletes).
type holdCounter struct {
	backend
	hold uint32
	mu   sync.Mutex
	sent map[netip.Prefix]int
}

func (b *holdCounter) sendPaths(ctx context.Context, paths []*api.Path) error {
	b.mu.Lock()
	for _, path := range paths {
		if _, comms, err := pathAttrs(path); err == nil && slices.Contains(comms, b.hold) {
			p, _ := pathPrefix(path)
			b.sent[p]++
		}
	}
	b.mu.Unlock()
	return b.backend.sendPaths(ctx, paths)
}

func (b *holdCounter) of(p netip.Prefix) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sent[p]
}

// TestAWithdrawalIsFencedWithoutAHoldPath: when a released prefix's last
// path goes, GoBGP withdraws it from every neighbour itself, so its fence
// only holds it in the held set: no HOLD path, whose add and delete are two
// best-path events GoBGP's watcher converts ahead of other prefixes'. A
// path learned again afterwards stays held.
func TestAWithdrawalIsFencedWithoutAHoldPath(t *testing.T) {
	x, sp, _ := newFenceLab(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sp.WatchBest(ctx, func(bool, []BestPath) {}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchBest: %v", err)
		}
	})
	both := []netip.Prefix{p1, p2}
	x.released(t, sp, both...)
	x.received(t, both, both...)
	hc := &holdCounter{backend: sp.b, hold: sp.cfg.hold, sent: make(map[netip.Prefix]int)}
	sp.mu.Lock()
	sp.b = hc
	sp.mu.Unlock()
	x.announce(t, true, p1)
	x.received(t, both, p2)
	lab.Eventually(t, 10*time.Second, "p1 fenced", func() error {
		if sp.IsReleased(p1) {
			return errors.New("still released")
		}
		return nil
	})
	if n := hc.of(p1); n != 0 {
		t.Errorf("the fence of p1's withdrawal sent %d HOLD paths, want none", n)
	}
	x.announce(t, false, p1)
	x.learned(t, p1)
	lab.Never(t, 300*time.Millisecond, "p1 stays held", func() error {
		if _, ok := rib(t, x.receiver)[p1]; ok {
			return fmt.Errorf("%v reached the neighbour", p1)
		}
		return nil
	})
	if got := countHold(t, sp.b, sp.cfg.hold); got != 0 {
		t.Errorf("%d HOLD paths left behind", got)
	}
}

// TestAQuietTakeBackWithdrawsAPathThatCameBack: a fence told that p1's
// best path went (the hint WatchBest gives) finds p1 with a path again, as
// when a re-announcement reached GoBGP before the fence and went out. The
// fence must take it back from the neighbour as with a HOLD path, not only
// hold it (GoBGP would then never withdraw what it sent).
func TestAQuietTakeBackWithdrawsAPathThatCameBack(t *testing.T) {
	x, sp, clock := newFenceLab(t)
	ctx := context.Background()
	both := []netip.Prefix{p1, p2}
	x.released(t, sp, both...)
	x.received(t, both, both...)
	clock.Store(10)
	gone := func(p netip.Prefix) bool { return p == p1 || p == p2 }
	if err := sp.fence(ctx, time.Now(), both, nil, nil, gone); err != nil {
		t.Fatal(err)
	}
	x.received(t, both) // withdrawn at the neighbour
	for _, p := range both {
		if sp.IsReleased(p) {
			t.Errorf("%v is still released after its fence", p)
		}
	}
	if got := countHold(t, sp.b, sp.cfg.hold); got != 0 {
		t.Errorf("%d HOLD paths left behind", got)
	}
}
