package gate

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// TestTimeToHardwareIsProgrammingAndHoldDownIsApart: the hardware's
// programming time is measured from the route needing hardware to the
// hardware holding it; a hold-down that follows is measured on its own, and
// a recovery from failed is neither (its sample would be the failure's
// length). Operators read the first as "how slow is my ASIC": with a
// 300 ms sim and a repeated failure it read p90 4.3 s.
func TestTimeToHardwareIsProgrammingAndHoldDownIsApart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		obs := &recObserver{}
		tr := startTracker(t, src, DefaultPolicy(), WithObserver(obs))
		r := route("10.0.0.0/24")
		src.add(t, r)
		time.Sleep(300 * time.Millisecond)
		src.flags(r, fib.Trap) // programmed in 300 ms
		stateOf(t, tr, "10.0.0.0/24")

		src.flags(r, fib.OffloadFailed) // flap 1: failed for 2 s
		time.Sleep(2 * time.Second)
		src.flags(r, fib.Trap) // back, held down 1 s
		st := stateOf(t, tr, "10.0.0.0/24")
		if st.State != HeldDown || st.Reason != "flapped once: held down for 1s, until 00:00:03.300Z" {
			t.Fatalf("after the failure: %v %q, want held down for 1s", st.State, st.Reason)
		}
		time.Sleep(time.Second)
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Confirmed {
			t.Fatalf("after the hold: %v, want confirmed", st.State)
		}

		src.flags(r, 0) // flap 2: pending, programmed again in 300 ms
		time.Sleep(300 * time.Millisecond)
		src.flags(r, fib.Trap)
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != HeldDown || !strings.HasPrefix(st.Reason, "flapped 2 times: held down for 2s") {
			t.Fatalf("second flap: %v %q, want held down for 2s", st.State, st.Reason)
		}
		time.Sleep(2 * time.Second)
		st = stateOf(t, tr, "10.0.0.0/24")
		if st.State != Confirmed || !st.StateSince.Equal(time.Now()) {
			t.Fatalf("after the second hold: %v since %v, want confirmed now (%v)", st.State, st.StateSince, time.Now())
		}

		ms := 300 * time.Millisecond
		if got, want := obs.samples(), "hw 300ms, hw 300ms, held 1s, held 2s"; got != want {
			t.Errorf("observed %s, want %s: programming and hold-down apart", got, want)
		}
		s := tr.Stats()
		if p := s.TimeToHardware; p.Count != 2 || p.Max != ms || p.P50 != ms {
			t.Errorf("time to hardware = %+v, want 2 samples of 300ms: programming only", p)
		}
		if h := s.TimeHeldDown; h.Count != 2 || h.Max != 2*time.Second {
			t.Errorf("time held down = %+v, want 1s and 2s", h)
		}
	})
}

// recObserver records the latencies a tracker reports.
type recObserver struct {
	mu       sync.Mutex
	hw, held []time.Duration
}

func (o *recObserver) TimeToHardware(d time.Duration) {
	o.mu.Lock()
	o.hw = append(o.hw, d)
	o.mu.Unlock()
}
func (o *recObserver) HeldDown(d time.Duration) {
	o.mu.Lock()
	o.held = append(o.held, d)
	o.mu.Unlock()
}
func (o *recObserver) ConfirmToAdvertise(time.Duration) {}

func (o *recObserver) samples() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, d := range o.hw {
		out = append(out, "hw "+d.String())
	}
	for _, d := range o.held {
		out = append(out, "held "+d.String())
	}
	return strings.Join(out, ", ")
}

// slowSpeaker takes d for every call, as a busy BGP speaker does.
type slowSpeaker struct {
	*recSpeaker
	d time.Duration
}

func (s slowSpeaker) Advertise(ctx context.Context, ads []Advertisement) error {
	time.Sleep(s.d)
	return s.recSpeaker.Advertise(ctx, ads)
}

// callObserver records confirm-to-advertise and the speaker's calls.
type callObserver struct {
	recObserver
	confirmToAdv []time.Duration
	calls        []string
}

func (o *callObserver) ConfirmToAdvertise(d time.Duration) {
	o.mu.Lock()
	o.confirmToAdv = append(o.confirmToAdv, d)
	o.mu.Unlock()
}

func (o *callObserver) SpeakerCall(call string, n int, d time.Duration) {
	o.mu.Lock()
	o.calls = append(o.calls, fmt.Sprintf("%s %d %v", call, n, d))
	o.mu.Unlock()
}

// TestConfirmToAdvertiseIncludesTheSpeakersCall: a prefix is advertised
// when BGP has taken it. With a speaker that takes 7 ms per call, the
// confirmation-to-advertisement latency and the advertised time include
// those 7 ms (they were taken when the call began: 0), and a CallObserver
// sees the call itself.
func TestConfirmToAdvertiseIncludesTheSpeakersCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		obs := &callObserver{}
		const took = 7 * time.Millisecond
		tr := startTracker(t, src, DefaultPolicy(), WithObserver(obs),
			WithSpeaker(slowSpeaker{newRecSpeaker(1), took}, ByProtocol(fib.ProtoBGP)))
		r := route("10.0.0.0/24")
		src.add(t, r)
		synctest.Wait()
		src.flags(r, fib.Offload)
		confirmedAt := time.Now()
		if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Confirmed {
			t.Fatalf("state %v while BGP takes the release, want confirmed", st.State)
		}
		time.Sleep(took)
		st := stateOf(t, tr, "10.0.0.0/24")
		if st.State != Advertised {
			t.Fatalf("state %v, want advertised", st.State)
		}
		if got := st.AdvertisedAt.Sub(confirmedAt); got != took {
			t.Errorf("advertised %v after the confirmation, want %v: when the speaker's call returned", got, took)
		}
		obs.mu.Lock()
		defer obs.mu.Unlock()
		if want := []time.Duration{took}; !slices.Equal(obs.confirmToAdv, want) {
			t.Errorf("confirm-to-advertise samples %v, want %v", obs.confirmToAdv, want)
		}
		if want := []string{"advertise 1 7ms"}; !slices.Equal(obs.calls, want) {
			t.Errorf("speaker calls %q, want %q", obs.calls, want)
		}
	})
}

// orderSpeaker records its calls in order.
type orderSpeaker struct {
	mu    sync.Mutex
	calls []string
}

func (s *orderSpeaker) call(kind string, ads []Advertisement) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := make([]string, len(ads))
	for i, ad := range ads {
		ps[i] = ad.Prefix.String()
	}
	s.calls = append(s.calls, kind+" "+strings.Join(ps, ","))
	return nil
}

func (s *orderSpeaker) Advertise(_ context.Context, ads []Advertisement) error {
	return s.call("advertise", ads)
}
func (s *orderSpeaker) Withdraw(_ context.Context, ads []Advertisement) error {
	return s.call("withdraw", ads)
}

// TestATurnTakesBackThenReleasesThenSettles: in one turn of the tracker,
// a prefix that is out and lost its confirmation is taken back first (a
// loss must not wait behind a release), then the confirmed prefixes are
// released, and only then does the speaker hear of a prefix that went
// without ever being out (it only lets the speaker drop a fence), so
// that releases do not wait for it.
func TestATurnTakesBackThenReleasesThenSettles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		sp := &orderSpeaker{}
		tr := startTracker(t, src, DefaultPolicy(), WithSpeaker(sp, ByProtocol(fib.ProtoBGP)))
		a, b, c := route("10.0.1.0/24"), route("10.0.2.0/24"), route("10.0.3.0/24")
		src.add(t, a)
		src.flags(a, fib.Offload)
		src.add(t, b) // pending
		src.add(t, c) // pending: never out
		if st := stateOf(t, tr, "10.0.1.0/24"); st.State != Advertised {
			t.Fatalf("a: %v, want advertised", st.State)
		}
		// One turn: a loses its confirmation, b gets it, c goes.
		src.together(flagged(a, 0), flagged(b, fib.Offload), removed(t, c))
		synctest.Wait()
		sp.mu.Lock()
		defer sp.mu.Unlock()
		want := []string{"advertise 10.0.1.0/24", "withdraw 10.0.1.0/24", "advertise 10.0.2.0/24", "withdraw 10.0.3.0/24"}
		if !slices.Equal(sp.calls, want) {
			t.Errorf("calls:\n  %s\nwant:\n  %s", strings.Join(sp.calls, "\n  "), strings.Join(want, "\n  "))
		}
	})
}

// TestAPrefixSeenAgainDoesNotWaitForTheSpeaker: the tracker asks the
// speaker whether a prefix is already out (WithAlreadyOut) only for one
// it meets for the first time or while it judges the whole table: only
// those can be out without its release. A prefix it saw go and sees
// again is judged without asking, so a speaker whose lock is held by a
// long call to BGP (in a sidecar, round trips to gobgpd) does not hold up
// the judging of the churn.
func TestAPrefixSeenAgainDoesNotWaitForTheSpeaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		sp := &orderSpeaker{}
		var mu sync.Mutex
		var busy chan struct{} // while set, asking waits for it
		asked := 0
		out := func(netip.Prefix) bool {
			mu.Lock()
			b := busy
			asked++
			mu.Unlock()
			if b != nil {
				<-b
			}
			return false
		}
		tr := startTracker(t, src, DefaultPolicy(), WithSpeaker(sp, ByProtocol(fib.ProtoBGP)), WithAlreadyOut(out))
		a := route("10.0.1.0/24")
		src.add(t, a)
		src.flags(a, fib.Offload)
		if st := stateOf(t, tr, "10.0.1.0/24"); st.State != Advertised {
			t.Fatalf("a: %v, want advertised", st.State)
		}
		src.del(t, a)
		if st := stateOf(t, tr, "10.0.1.0/24"); st.State != Withdrawn {
			t.Fatalf("a after its route left: %v, want withdrawn", st.State)
		}
		mu.Lock()
		if asked != 1 {
			t.Errorf("asked %d times whether a new prefix is out, want once", asked)
		}
		busy = make(chan struct{})
		mu.Unlock()
		src.add(t, a)
		src.flags(a, fib.Offload)
		synctest.Wait() // the judging is done, or waits for the speaker
		mu.Lock()
		if asked != 1 {
			t.Errorf("asked %d times in all; want no question for a prefix seen again", asked)
		}
		close(busy)
		mu.Unlock()
		if st := stateOf(t, tr, "10.0.1.0/24"); st.State != Advertised {
			t.Fatalf("a seen again: %v, want advertised", st.State)
		}
	})
}
