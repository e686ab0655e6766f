package gate

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// TestWatchGivesOneStatePerChangeWithASpeaker: with BGP behind the gate a
// prefix goes through advertise and withdraw calls as well as judgements,
// and each change of its state reaches a watcher once. The withdrawal's
// completion used to publish the failed (or withdrawn) state a second
// time, so `fibgate watch` on the BGP daemons printed it twice.
func TestWatchGivesOneStatePerChangeWithASpeaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		sp := newRecSpeaker(1)
		tr, err := NewTracker(src, DefaultPolicy(), WithSpeaker(sp, ByProtocol(fib.ProtoBGP)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tr.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
		<-tr.Ready()
		w := tr.Watch(ctx, false)
		var got []RouteState
		take := func() { // everything published so far
			for {
				synctest.Wait()
				select {
				case b := <-w:
					got = append(got, b...)
				default:
					return
				}
			}
		}
		r := route("10.0.0.0/24")
		src.add(t, r)
		take()
		src.flags(r, fib.Trap)
		take()
		src.flags(r, fib.OffloadFailed)
		take()
		if _, out := sp.snapshot()[r.Prefix]; out {
			t.Fatalf("%v failed but is still out in BGP", r.Prefix)
		}
		if st, _ := tr.Get(r.Table, r.Prefix); st.WithdrawnAt.IsZero() {
			t.Errorf("Get: no withdrawn time after BGP took %v back", r.Prefix)
		}
		src.flags(r, fib.Trap)
		take()
		time.Sleep(time.Second) // the hold-down of the first flap
		take()
		src.del(t, r)
		take()

		want := []State{Pending, Confirmed, Advertised, Failed, HeldDown, Confirmed, Advertised, Withdrawn}
		var states []State
		for _, st := range got {
			states = append(states, st.State)
		}
		if len(states) != len(want) {
			t.Fatalf("watch got %v, want %v", states, want)
		}
		for i := range want {
			if states[i] != want[i] {
				t.Fatalf("watch got %v, want %v", states, want)
			}
		}
		if s := tr.Stats(); s.Withdrawn != 2 || s.Advertised != 2 {
			t.Errorf("advertisements %d, withdrawals %d; want 2 and 2: BGP got the prefix twice, and took it back when it failed and when it left the FIB",
				s.Advertised, s.Withdrawn)
		}
	})
}
