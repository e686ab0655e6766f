package gate

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// mbbRig is a tracker with a recording speaker over a model FIB, for the
// make-before-break cases: one transit prefix out on a confirmed route.
type mbbRig struct {
	src   *modelSource
	sp    *recSpeaker
	tr    *Tracker
	p     netip.Prefix
	route fib.Route
}

func newMBBRig(t *testing.T, scope Scope) *mbbRig {
	x := &mbbRig{src: newModelSource(), sp: newRecSpeaker(1), p: netip.MustParsePrefix("10.0.0.0/24")}
	x.route = route(x.p.String())
	scope.HoldDown = HoldDown{Initial: time.Second, Max: time.Minute, Multiplier: 2}
	tr, err := NewTracker(x.src, Policy{Scopes: []Scope{scope}}, WithSpeaker(x.sp, ByProtocol(fib.ProtoBGP)),
		WithAlreadyOut(func(p netip.Prefix) bool { _, ok := x.sp.snapshot()[p]; return ok }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = tr.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	<-tr.Ready()
	x.tr = tr
	x.src.add(t, x.route)
	x.src.flags(x.route, fib.Offload)
	synctest.Wait()
	if ad, ok := x.sp.snapshot()[x.p]; !ok || ad.Version != x.version() {
		t.Fatalf("before the test: out %v (%+v), want out on version %d", ok, ad, x.version())
	}
	return x
}

func (x *mbbRig) version() uint64 {
	x.src.mu.RLock()
	defer x.src.mu.RUnlock()
	return x.src.f.Version(fib.TableMain, x.p)
}

// replace rewrites the route over another next hop, as the installer does
// for a best path whose next hops changed; fence says whether the speaker
// took the prefix back first (its attributes changed too).
func (x *mbbRig) replace(t *testing.T, fence bool) fib.Route {
	if fence {
		x.sp.fence(x.p, x.src.clock())
	}
	nr := x.route.Clone()
	nr.Nexthops[0].LinkIndex = 3
	x.src.replace(t, x.route, nr)
	x.route = nr
	synctest.Wait()
	return nr
}

func (x *mbbRig) out() (Advertisement, bool) {
	ad, ok := x.sp.snapshot()[x.p]
	return ad, ok
}

// TestReplacedRouteKeepsItsPrefixOutUntilProgrammed: a prefix out on a
// confirmed route whose route is replaced (not fenced: neighbours see
// nothing new) stays out, shown advertised with the reason, until the new
// route is confirmed; then it is released on the new version, and no
// hold-down follows (it never went down).
func TestReplacedRouteKeepsItsPrefixOutUntilProgrammed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newMBBRig(t, DefaultScope())
		old := x.version()
		nr := x.replace(t, false)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if ad, ok := x.out(); !ok || ad.Version != old {
			t.Fatalf("while the new route is pending: out %v (%+v), want still out on version %d", ok, ad, old)
		}
		st, _ := x.tr.Get(fib.TableMain, x.p)
		if st.State != Advertised || !strings.Contains(st.Reason, "make-before-break") || st.Flaps != 0 {
			t.Errorf("while pending: %v %q, %d flaps; want advertised, make-before-break, no flap", st.State, st.Reason, st.Flaps)
		}
		x.src.flags(nr, fib.Offload)
		synctest.Wait()
		if ad, ok := x.out(); !ok || ad.Version != x.version() || ad.Version == old {
			t.Errorf("after the new route is programmed: out %v (%+v), want out on version %d", ok, ad, x.version())
		}
		st, _ = x.tr.Get(fib.TableMain, x.p)
		if st.State != Advertised || st.Flaps != 0 {
			t.Errorf("after: %v %q, %d flaps; want advertised without hold-down", st.State, st.Reason, st.Flaps)
		}
	})
}

// TestReplacedRouteThatFailsOrTakesTooLongIsWithdrawn: the kept
// advertisement ends with the scope's failure rule when the new route
// fails, and when it is still pending at the keep limit (the pending
// timeout, or DefaultKeepLimit when the scope waits forever).
func TestReplacedRouteThatFailsOrTakesTooLongIsWithdrawn(t *testing.T) {
	t.Run("offload_failed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			x := newMBBRig(t, DefaultScope())
			nr := x.replace(t, false)
			x.src.flags(nr, fib.OffloadFailed)
			synctest.Wait()
			if _, ok := x.out(); ok {
				t.Errorf("out after the new route failed")
			}
		})
	})
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		limit   time.Duration
	}{{"default limit", 0, DefaultKeepLimit}, {"pending timeout", 4 * time.Second, 4 * time.Second}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := DefaultScope()
				s.PendingTimeout = tc.timeout
				x := newMBBRig(t, s)
				x.replace(t, false)
				time.Sleep(tc.limit - time.Millisecond)
				synctest.Wait()
				if _, ok := x.out(); !ok {
					t.Fatalf("withdrawn before the keep limit %v", tc.limit)
				}
				time.Sleep(2 * time.Millisecond)
				synctest.Wait()
				if _, ok := x.out(); ok {
					t.Errorf("still out %v after the replacement, past the keep limit", tc.limit)
				}
				if st, _ := x.tr.Get(fib.TableMain, x.p); st.State != Pending {
					t.Errorf("state %v %q, want pending (fail-closed)", st.State, st.Reason)
				}
			})
		})
	}
}

// TestFencedReplacementIsNotKept: when the speaker took the prefix back
// (new attributes), the tracker does not count it as out on the old
// route: it is released again once the new route is programmed.
func TestFencedReplacementIsNotKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newMBBRig(t, DefaultScope())
		nr := x.replace(t, true)
		if _, ok := x.out(); ok {
			t.Fatalf("out after the fence")
		}
		if st, _ := x.tr.Get(fib.TableMain, x.p); st.State != Pending {
			t.Errorf("fenced and pending: state %v %q, want pending", st.State, st.Reason)
		}
		x.src.flags(nr, fib.Offload)
		synctest.Wait()
		if ad, ok := x.out(); !ok || ad.Version != x.version() {
			t.Errorf("after the new route is programmed: out %v (%+v), want out on version %d", ok, ad, x.version())
		}
	})
}
