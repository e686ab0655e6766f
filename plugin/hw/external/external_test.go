package external

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/fibgate/fibgate/plugin/fib"
)

// recorder is a Target that records what it is told, for tests of the
// backend's own logic; the kernel-backed tests are in agent_test.go.
type recorder struct {
	ready chan struct{}
	mu    sync.Mutex
	calls []string
}

func newRecorder() *recorder {
	r := &recorder{ready: make(chan struct{})}
	close(r.ready)
	return r
}

func (r *recorder) Ready() <-chan struct{} { return r.ready }
func (r *recorder) SetFlags(rt *fib.Route, f fib.HWFlags) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "route "+rt.Prefix.String()+" "+f.String())
}
func (r *recorder) SetNexthopFlags(rt *fib.Route, nh int, f fib.HWFlags) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "nexthop "+rt.Prefix.String()+" "+strconv.Itoa(nh)+" "+f.String())
}

func route(p string, nexthops int) fib.Route {
	r := fib.Route{Table: fib.TableMain, Prefix: netip.MustParsePrefix(p), Type: fib.TypeUnicast}
	for i := range nexthops {
		r.Nexthops = append(r.Nexthops, fib.Nexthop{LinkIndex: i + 2})
	}
	return r
}

func TestAttachGivesTheTableThenChangesWithRisingGenerations(t *testing.T) {
	b := New()
	b.Bind(newRecorder())
	b.Event(fib.DriverEvent{Kind: fib.DriverReplace, Route: route("10.0.2.0/24", 1)})
	b.Event(fib.DriverEvent{Kind: fib.DriverReplace, Route: route("10.0.1.0/24", 1)})
	ctx, cancel := context.WithCancel(context.Background())
	snap, updates, err := b.Attach(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(snap) != 2 || snap[0].Route.Prefix.String() != "10.0.1.0/24" || snap[0].Generation != 2 || snap[1].Generation != 1 {
		t.Fatalf("snapshot %+v, want both routes sorted with their generations", snap)
	}
	b.Event(fib.DriverEvent{Kind: fib.DriverDel, Route: route("10.0.1.0/24", 1)})
	b.Event(fib.DriverEvent{Kind: fib.DriverAppend, Route: route("10.0.2.0/24", 1)})
	got := append(<-updates, <-updates...)
	if len(got) != 2 || got[0].Op != Remove || got[0].Generation != 3 ||
		got[1].Op != Program || len(got[1].Route.Nexthops) != 2 || got[1].Generation != 4 {
		t.Errorf("updates %+v, want remove (gen 3) then program with two nexthops (gen 4)", got)
	}
	if s := b.Stats(); s.Agents != 1 || s.Routes != 1 {
		t.Errorf("stats %+v", s)
	}
	cancel()
	for range updates {
	}
}

func TestReportsAreAppliedOnlyToTheRouteTheyAnswer(t *testing.T) {
	rec := newRecorder()
	b := New()
	if err := b.Report(Report{Table: fib.TableMain, Prefix: netip.MustParsePrefix("10.0.0.0/24")}); !errors.Is(err, ErrNotBound) {
		t.Errorf("report before Bind: %v", err)
	}
	b.Bind(rec)
	b.Event(fib.DriverEvent{Kind: fib.DriverReplace, Route: route("10.0.0.0/24", 2)})
	b.Event(fib.DriverEvent{Kind: fib.DriverReplace, Route: route("2001:db8::/64", 2)})
	p4, p6 := netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("2001:db8::/64")
	tests := []struct {
		name string
		r    Report
		err  error
	}{
		{"unknown prefix", Report{Table: fib.TableMain, Prefix: netip.MustParsePrefix("10.9.0.0/24")}, ErrUnknownRoute},
		{"other table", Report{Table: 100, Prefix: p4}, ErrUnknownRoute},
		{"stale generation", Report{Table: fib.TableMain, Prefix: p4, Generation: 2}, ErrStaleReport},
		{"nexthop count", Report{Table: fib.TableMain, Prefix: p4, NexthopFlags: []fib.HWFlags{fib.Trap}}, ErrNexthopCount},
		{"current generation", Report{Table: fib.TableMain, Prefix: p4, Generation: 1, Flags: fib.Offload, NexthopFlags: []fib.HWFlags{fib.Offload, fib.Trap}}, nil},
		{"any generation", Report{Table: fib.TableMain, Prefix: p6, Flags: fib.Trap}, nil},
		{"ipv6 per path", Report{Table: fib.TableMain, Prefix: p6, Generation: 2, NexthopFlags: []fib.HWFlags{fib.Offload, fib.OffloadFailed}}, nil},
	}
	for _, tt := range tests {
		if err := b.Report(tt.r); !errors.Is(err, tt.err) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.err)
		}
	}
	want := []string{
		// IPv4: per-path bits first, then the route's flags that announce them.
		"nexthop 10.0.0.0/24 0 offload", "nexthop 10.0.0.0/24 1 trap", "route 10.0.0.0/24 offload",
		"route 2001:db8::/64 trap",
		// IPv6 multipath: each sibling its own flags.
		"nexthop 2001:db8::/64 0 offload", "nexthop 2001:db8::/64 1 offload_failed",
	}
	if !slices.Equal(rec.calls, want) {
		t.Errorf("calls %q\nwant  %q", rec.calls, want)
	}
	if s := b.Stats(); s.ReportsApplied != 3 || s.ReportsIgnored != 5 {
		t.Errorf("stats %+v, want 3 applied and 5 ignored", s)
	}
}

func TestAttachWaitsForTheListenersTable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, _, err := b.Attach(ctx, "early"); !errors.Is(err, context.Canceled) {
			t.Errorf("Attach before Bind with a dead context: %v", err)
		}
		rec := &recorder{ready: make(chan struct{})}
		b.Bind(rec)
		ctx, cancel = context.WithCancel(context.Background())
		defer cancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			if _, _, err := b.Attach(ctx, "waiting"); err != nil {
				t.Error(err)
			}
		}()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("Attach returned before the listener was ready")
		default:
		}
		close(rec.ready)
		<-done
	})
}
