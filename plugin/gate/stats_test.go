package gate

import (
	"context"
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
		tr, err := NewTracker(src, DefaultPolicy(), WithObserver(obs))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go tr.Run(ctx)
		<-tr.Ready()
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
