//go:build linux

package gobgp

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/plugin/gate"
)

// TestFenceWindow measures what fences cannot close: a prefix whose best
// path is withdrawn is held again only once GoBGP's best-path event has
// reached the Speaker and the hold is back in GoBGP. A path learned again
// within that window is exported at once, released as the prefix still is
// (the fence's own HOLD toggle then withdraws it again). The feeder
// withdraws 100 released prefixes and announces them again, back to back
// or after a gap; every appearance at the receiver counts, and each must be
// withdrawn again. It runs with
// the Speaker in process (gobgpd-ext) and over gRPC to a stock gobgpd (the
// sidecar), logs the table for docs/design-notes.md, and asserts the
// bound: with a gap of 50 ms nothing leaks (100 ms under the race
// detector, where CI runs it beside the whole suite on two cores: 1 of
// 100 leaked at 50 ms there once).
func TestFenceWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("timing measurement with three BGP speakers")
	}
	// -1: each prefix withdrawn and announced again back to back, in two
	// UPDATEs microseconds apart; 0: all withdrawn, then all announced.
	gaps := []time.Duration{-1, 0, 2 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond}
	for _, leafKind := range []string{"in process", "stock gobgpd over gRPC"} {
		t.Run(leafKind, func(t *testing.T) {
			w := newWindowLab(t, leafKind == "in process")
			for gi, gap := range gaps {
				ps := make([]netip.Prefix, 100)
				for i := range ps {
					ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + gi), byte(i), 0}), 24)
				}
				leaked := w.churn(t, ps, gap)
				what := gap.String()
				if gap < 0 {
					what = "none (back to back)"
				}
				t.Logf("%s: gap %s between withdrawal and new announcement: %d of %d reached the receiver unconfirmed", leafKind, what, leaked, len(ps))
				bound := 50 * time.Millisecond
				if raceEnabled {
					bound = 100 * time.Millisecond
				}
				if gap >= bound && leaked > 0 {
					t.Errorf("gap %v: %d prefixes leaked; the fence should be in place long before", gap, leaked)
				}
			}
		})
	}
}

type windowLab struct {
	feeder, receiver *server.BgpServer
	sp               *Speaker
}

func newWindowLab(t *testing.T, inProcess bool, extra ...Option) *windowLab {
	port := freePort(t)
	// The neighbours first: StartBgp writes GoBGP's process-wide multipath
	// switch, which a running server's best-path events read.
	w := &windowLab{
		feeder:   lab.StartServer(t, "", &api.Global{Asn: 65002, RouterId: "10.0.0.2"}),
		receiver: lab.StartServer(t, "", &api.Global{Asn: 65003, RouterId: "10.0.0.3"}),
	}
	var clock struct {
		sync.Mutex
		n uint64
	}
	tick := func() uint64 { clock.Lock(); defer clock.Unlock(); clock.n++; return clock.n }
	opts := append([]Option{WithFIBClock(tick)}, extra...)
	var err error
	if inProcess {
		leaf := lab.StartServer(t, "", &api.Global{Asn: 65001, RouterId: "10.0.0.1", ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"}})
		lab.AddPeer(t, leaf, lab.Peer{Address: feederAddr, AS: 65002, Families: []string{"ipv4"}})
		lab.AddPeer(t, leaf, lab.Peer{Address: receiverAddr, AS: 65003, Families: []string{"ipv4"}})
		w.sp, err = NewInProcess(leaf, Config{}, opts...)
	} else {
		conf := lab.GobgpdConf{AS: 65001, RouterID: "10.0.0.1", Port: port, Listen: "127.0.0.1",
			Neighbours: []lab.Neighbour{{Address: feederAddr, AS: 65002}, {Address: receiverAddr, AS: 65003}}}
		g := lab.StartGobgpd(t, "", conf.String())
		w.sp, err = NewClient(g.Dial(t), Config{}, opts...)
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := w.sp.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = w.sp.WatchBest(ctx, func(bool, []BestPath) {}) }()
	t.Cleanup(func() { cancel(); <-done; w.sp.Close(context.Background()) })
	lab.AddPeer(t, w.feeder, lab.Peer{Address: "127.0.0.1", AS: 65001, Families: []string{"ipv4"}, Active: true, RemotePort: uint32(port), LocalAddress: feederAddr})
	lab.AddPeer(t, w.receiver, lab.Peer{Address: "127.0.0.1", AS: 65001, Families: []string{"ipv4"}, Active: true, RemotePort: uint32(port), LocalAddress: receiverAddr})
	lab.WaitEstablished(t, w.feeder, "127.0.0.1", 10*time.Second)
	lab.WaitEstablished(t, w.receiver, "127.0.0.1", 10*time.Second)
	return w
}

// churn releases ps, withdraws them at the feeder and announces them again
// (gap < 0: each back to back), and returns how many reached the receiver
// meanwhile.
func (w *windowLab) churn(t *testing.T, ps []netip.Prefix, gap time.Duration) int {
	t.Helper()
	x := &loopLab{feeder: w.feeder, receiver: w.receiver}
	stop := w.releaseAndWatch(t, ps)
	if gap < 0 {
		for _, p := range ps {
			x.announce(t, true, p)
			x.announce(t, false, p)
		}
	} else {
		x.announce(t, true, ps...)
		time.Sleep(gap) // the variable under measurement, not a synchronisation
		x.announce(t, false, ps...)
	}
	// Long enough for every re-announcement to reach the receiver if it
	// was exported: GoBGP relays over loopback in milliseconds.
	time.Sleep(500 * time.Millisecond)
	leaked := stop()
	// A leak is a moment, never a state: whatever went out before its
	// fence is withdrawn again, as the Speaker released none of the paths
	// learned again (a fence that only held a prefix a path had come back
	// for would leave it at the receiver for good).
	x.received(t, ps)
	return leaked
}

// TestFenceWindowDuringABulkRelease measures TestFenceWindow's window while
// the Speaker releases 20,000 other prefixes, the case of a session
// flapping while a table converges: the feeder withdraws 100 released
// prefixes and announces them again after a gap. Each withdrawal's fence
// waits for the release's step in progress, and WatchBest fences a burst
// one batch of events after another, so the last of the 100 is held later
// than with GoBGP idle. It logs, beside the same churn with no release
// running, when the last of the 100 was held and how many reached the
// receiver unconfirmed (docs/design-notes.md, "Fences during a bulk
// release"), and asserts that with a gap of 200 ms nothing leaks. Not
// under the race detector, which makes every step several times slower
// (CI runs the deterministic parts: TestStepsShortenWhileFencesCome,
// TestAFenceIsNotOvertakenByTheNextStep).
func TestFenceWindowDuringABulkRelease(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("timing measurement with three BGP speakers and 20,000 prefixes; not under -race")
	}
	w := newWindowLab(t, true)
	x := &loopLab{feeder: w.feeder, receiver: w.receiver}
	ctx := context.Background()
	bulk := make([]netip.Prefix, 20000)
	for i := range bulk {
		bulk[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 200 + byte(i>>16), byte(i >> 8), byte(i)}), 32)
	}
	x.announce(t, false, bulk...)
	w.learned(t, func(p netip.Prefix) bool { return p.Bits() == 32 }, len(bulk))
	for gi, gap := range []time.Duration{0, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond} {
		for ri, release := range []bool{false, true} {
			ps := make([]netip.Prefix, 100)
			for i := range ps {
				ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + 2*gi + ri), byte(i), 0}), 24)
			}
			stop := w.releaseAndWatch(t, ps)
			released := make(chan error, 1)
			if release {
				go func() { released <- w.sp.Advertise(ctx, versioned(gate.Transit, 1<<40, bulk...)) }()
				lab.Eventually(t, 10*time.Second, "the bulk release under way", func() error {
					if !w.sp.IsReleased(bulk[0]) {
						return fmt.Errorf("%v not released yet", bulk[0])
					}
					return nil
				})
			} else {
				released <- nil
			}
			start := time.Now()
			held := make(chan time.Duration, 1)
			go func() {
				defer close(held)
				for time.Since(start) < 10*time.Second {
					n := 0
					for _, p := range ps {
						if w.sp.IsReleased(p) {
							n++
						}
					}
					if n == 0 {
						held <- time.Since(start)
						return
					}
					time.Sleep(time.Millisecond) // the resolution of the figure, not a synchronisation
				}
			}()
			x.announce(t, true, ps...)
			time.Sleep(gap) // the variable under measurement
			x.announce(t, false, ps...)
			last, ok := <-held
			if !ok {
				t.Fatal("the withdrawn prefixes were still released after 10 s")
			}
			if err := <-released; err != nil {
				t.Fatal(err)
			}
			// Long enough for a re-announcement to reach the receiver if
			// it was exported: GoBGP relays over loopback in milliseconds.
			time.Sleep(500 * time.Millisecond)
			leaked := stop()
			what := "GoBGP idle"
			if release {
				what = "during a release of 20,000"
			}
			t.Logf("%s, gap %v: the last of %d withdrawn prefixes held after %v; %d reached the receiver unconfirmed",
				what, gap, len(ps), last.Round(time.Millisecond), leaked)
			if gap >= 200*time.Millisecond && leaked > 0 {
				t.Errorf("%s, gap %v: %d prefixes leaked; the fences should be in long before", what, gap, leaked)
			}
			if release {
				if err := w.sp.Withdraw(ctx, ads(gate.Transit, bulk...)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// releaseAndWatch has the feeder announce ps (/24s of one 10.x/16), the
// Speaker release them, and the receiver get them, then counts every
// appearance of one of them at the receiver from then on, also one that a
// fence's withdrawal takes back a moment later: the neighbour had it.
// stop ends the count and returns it.
func (w *windowLab) releaseAndWatch(t *testing.T, ps []netip.Prefix) (stop func() int) {
	t.Helper()
	x := &loopLab{feeder: w.feeder, receiver: w.receiver}
	x.announce(t, false, ps...)
	second := ps[0].Addr().As4()[1]
	w.learned(t, func(p netip.Prefix) bool { return p.Bits() == 24 && p.Addr().As4()[1] == second }, len(ps))
	if err := w.sp.Advertise(context.Background(), versioned(gate.Transit, 1<<40, ps...)); err != nil {
		t.Fatal(err)
	}
	x.received(t, ps, ps...)
	return w.watchReceiver(t, ps)
}

// learned waits until the leaf's RIB has want prefixes that match.
func (w *windowLab) learned(t *testing.T, match func(netip.Prefix) bool, want int) {
	t.Helper()
	lab.Eventually(t, 30*time.Second, fmt.Sprintf("leaf learned %d prefixes", want), func() error {
		n := 0
		err := w.sp.b.listGlobal(context.Background(), familyV4, func(d *api.Destination) {
			if p, err := netip.ParsePrefix(d.Prefix); err == nil && match(p) {
				n++
			}
		})
		if err != nil || n != want {
			return fmt.Errorf("%d of %d (%v)", n, want, err)
		}
		return nil
	})
}

// watchReceiver counts the prefixes of ps the receiver gets as best from
// now on; stop ends the watch and returns the count.
func (w *windowLab) watchReceiver(t *testing.T, ps []netip.Prefix) (stop func() int) {
	t.Helper()
	var mu sync.Mutex
	seen := map[netip.Prefix]bool{}
	want := make(map[netip.Prefix]bool, len(ps))
	for _, p := range ps {
		want[p] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	err := w.receiver.WatchEvent(ctx, &api.WatchEventRequest{Table: &api.WatchEventRequest_Table{
		Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_BEST}}}},
		func(r *api.WatchEventResponse) {
			for _, path := range r.GetTable().GetPaths() {
				if p, ok := pathPrefix(path); ok && !path.IsWithdraw && want[p] {
					mu.Lock()
					seen[p] = true
					mu.Unlock()
				}
			}
		})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return func() int {
		cancel()
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
}

// TestFenceHookTimesEachTakeBack: the fence hook (the daemons'
// fibgate_gobgp_fence_seconds) hears of every fence that took prefixes
// back, from WatchBest (a withdrawal at the feeder) and from Fence, with
// how many and how long, and of none that took nothing back; only the
// former shorten release steps (urgentStepTime).
func TestFenceHookTimesEachTakeBack(t *testing.T) {
	events := make(chan FenceEvent, 16)
	w := newWindowLab(t, true, WithFenceHook(func(e FenceEvent) { events <- e }))
	x := &loopLab{feeder: w.feeder, receiver: w.receiver}
	ctx := context.Background()
	ps := []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24"), netip.MustParsePrefix("10.77.1.0/24")}
	x.announce(t, false, ps...)
	w.learned(t, func(p netip.Prefix) bool { return p.Addr().As4()[1] == 77 }, len(ps))
	if err := w.sp.Advertise(ctx, versioned(gate.Transit, 1<<40, ps...)); err != nil {
		t.Fatal(err)
	}
	x.received(t, ps, ps...)
	next := func(what string) FenceEvent {
		t.Helper()
		select {
		case e := <-events:
			if e.Took < e.Waited || e.Waited < 0 {
				t.Errorf("%s: took %v, waited %v", what, e.Took, e.Waited)
			}
			return e
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no fence event", what)
			return FenceEvent{}
		}
	}
	// WatchBest: the feeder withdraws ps[0].
	x.announce(t, true, ps[0])
	if e := next("withdrawal"); e.Prefixes != 1 {
		t.Errorf("the withdrawal's fence took back %d prefixes, want 1", e.Prefixes)
	}
	// Fence: ps[1], released, and ps[0], already held.
	if err := w.sp.Fence(ctx, ps); err != nil {
		t.Fatal(err)
	}
	if e := next("Fence"); e.Prefixes != 1 {
		t.Errorf("Fence took back %d prefixes, want 1 (the other was held already)", e.Prefixes)
	}
	// Nothing left to take back: no event, and releases keep their full
	// steps (no burst of take-backs is under way).
	pressure := func() time.Time {
		w.sp.steps.mu.Lock()
		defer w.sp.steps.mu.Unlock()
		return w.sp.steps.fenced
	}
	before := pressure()
	if err := w.sp.Fence(ctx, ps); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-events:
		t.Errorf("a fence that took nothing back was reported: %+v", e)
	default:
	}
	if after := pressure(); !after.Equal(before) {
		t.Error("a fence that took nothing back shortened the release steps")
	}
}
