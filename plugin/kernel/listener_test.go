package kernel

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// startListener runs a listener on ns until the test ends and returns it
// with an event stream that starts after the first dump.
func startListener(t *testing.T, ns string, opts ...ListenerOption) (*Listener, <-chan []Event) {
	t.Helper()
	l := NewListener(append([]ListenerOption{WithNetNS(ns)}, opts...)...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("listener stopped with error: %v", err)
		}
	})
	select {
	case <-l.Ready():
	case err := <-done:
		t.Fatalf("listener failed to start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("listener not ready after 30 s")
	}
	return l, l.Events(ctx, false)
}

// waitEvent reads events until one satisfies pred, failing at the deadline.
func waitEvent(t *testing.T, evs <-chan []Event, what string, pred func(Event) bool) Event {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case batch, ok := <-evs:
			if !ok {
				t.Fatalf("event stream closed while waiting for %s", what)
			}
			for _, ev := range batch {
				if pred(ev) {
					return ev
				}
			}
		case <-deadline:
			t.Fatalf("no event %s within 20 s", what)
		}
	}
}

func isEvent(kind EventKind, prefix string) func(Event) bool {
	p := netip.MustParsePrefix(prefix)
	return func(ev Event) bool { return ev.Kind == kind && ev.Route().Prefix == p }
}

// ignoredTable is the table listener tests leave out (WithIgnoreTables).
const ignoredTable = 4242

// kernelModel loads a fresh dump of ns into a model, as the listener does.
func kernelModel(t *testing.T, ns string) *fib.FIB {
	t.Helper()
	m := fib.New()
	for _, fam := range []fib.Family{fib.IPv4, fib.IPv6} {
		msgs, err := DumpRoutes(Options{NetNS: ns}, fam)
		if err != nil {
			t.Fatalf("dump: %v", err)
		}
		for _, msg := range msgs {
			if msg.Src.IsValid() || msg.Route.Table == ignoredTable {
				continue
			}
			if err := m.Append(msg.Route); err != nil {
				t.Fatalf("load dump: %v", err)
			}
		}
	}
	return m
}

// waitInSync polls until the listener's model equals a dump of the kernel.
func waitInSync(t *testing.T, l *Listener, ns string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		want := kernelModel(t, ns)
		var equal bool
		var got string
		l.View(func(f *fib.FIB) {
			equal = fib.Equal(f, want)
			if !equal {
				got = fmt.Sprintf("model has %d routes, kernel %d", f.Len(), want.Len())
			}
		})
		if equal {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("listener model differs from the kernel after %s: %s", within, got)
		}
		time.Sleep(50 * time.Millisecond) // polling a state with a deadline, not synchronising
	}
}

func TestListenerFollowsRouteChanges(t *testing.T) {
	ns := newTestNS(t)
	addTestLink(t, ns, "dummy1")
	ipn(t, ns, "addr", "add", "10.1.0.1/24", "dev", "dummy1")
	ipn(t, ns, "-6", "addr", "add", "2001:db8:ff::1/64", "dev", "dummy1", "nodad")
	l, evs := startListener(t, ns, WithIgnoreTables(ignoredTable))

	ipn(t, ns, "route", "add", "192.0.2.0/24", "via", "10.1.0.2")
	ev := waitEvent(t, evs, "add 192.0.2.0/24", isEvent(Added, "192.0.2.0/24"))
	if ev.New.Flags != 0 || ev.Resync {
		t.Errorf("add event: flags %s resync %v; want none from a notification", ev.New.Flags, ev.Resync)
	}
	if l.LinkName(ev.New.Nexthops[0].LinkIndex) != "dummy1" {
		t.Errorf("nexthop link %d is not named dummy1", ev.New.Nexthops[0].LinkIndex)
	}
	ipn(t, ns, "route", "append", "192.0.2.0/24", "via", "10.1.0.3")
	ipn(t, ns, "route", "prepend", "192.0.2.0/24", "via", "10.1.0.4")
	ipn(t, ns, "route", "replace", "192.0.2.0/24", "via", "10.1.0.5")
	waitEvent(t, evs, "replace 192.0.2.0/24", isEvent(Changed, "192.0.2.0/24"))
	ipn(t, ns, "-6", "route", "add", "2001:db8:1::/64", "nexthop", "via", "2001:db8:ff::2", "nexthop", "via", "2001:db8:ff::3")
	ipn(t, ns, "-6", "route", "append", "2001:db8:1::/64", "via", "2001:db8:ff::4")
	ipn(t, ns, "-6", "route", "del", "2001:db8:1::/64", "via", "2001:db8:ff::3")
	ipn(t, ns, "route", "del", "192.0.2.0/24", "via", "10.1.0.3")
	waitEvent(t, evs, "delete 192.0.2.0/24", isEvent(Removed, "192.0.2.0/24"))
	// An ignored table stays out of the model and the stream.
	ipn(t, ns, "route", "add", "198.51.100.0/24", "via", "10.1.0.2", "table", "4242")
	ipn(t, ns, "route", "add", "198.51.100.0/24", "via", "10.1.0.2")
	ev = waitEvent(t, evs, "add 198.51.100.0/24", isEvent(Added, "198.51.100.0/24"))
	if ev.New.Table != fib.TableMain {
		t.Errorf("event from ignored table %d", ev.New.Table)
	}
	waitInSync(t, l, ns, 10*time.Second)
	if s := l.Stats(); s.Notifications == 0 || s.Resyncs != 0 {
		t.Errorf("stats = %+v: want notifications and no resync", s)
	}
	var hops int
	l.View(func(f *fib.FIB) {
		r, _ := f.First(fib.TableMain, netip.MustParsePrefix("2001:db8:1::/64"))
		hops = len(r.Nexthops)
	})
	if hops != 2 {
		t.Errorf("IPv6 route has %d siblings after append and one-hop delete, want 2", hops)
	}
}

// TestListenerResyncsAfterOverrun proves the listener ends equal to the
// kernel after its socket overran: a tiny receive buffer, a burst of 100k
// route changes, and a subscriber whose view, built only from events, must
// match the kernel's dump at the end.
func TestListenerResyncsAfterOverrun(t *testing.T) {
	n := 66668 // n adds and n/2 deletes: 100k changes
	if testing.Short() {
		n = 10000
	}
	prefix := func(i int) string { return fmt.Sprintf("%d.%d.%d.0/24", 100+i>>16, i>>8&255, i&255) }
	ns := newTestNS(t)
	addTestLink(t, ns, "dummy1")
	l, evs := startListener(t, ns, WithRcvBuf(4096))

	// The subscriber's own view of the main table, built from events only.
	var mu sync.Mutex
	view := map[netip.Prefix]bool{}
	go func() {
		for batch := range evs {
			mu.Lock()
			for _, ev := range batch {
				r := ev.Route()
				if r.Table != fib.TableMain || r.Type != fib.TypeUnicast {
					continue
				}
				switch ev.Kind {
				case Added:
					view[r.Prefix] = true
				case Removed:
					delete(view, r.Prefix)
				}
			}
			mu.Unlock()
		}
	}()

	// n adds, then every other one deleted again.
	var lines []string
	for i := range n {
		lines = append(lines, "route add "+prefix(i)+" dev dummy1")
	}
	for i := 0; i < n; i += 2 {
		lines = append(lines, "route del "+prefix(i)+" dev dummy1")
	}
	ipBatch(t, ns, lines)
	waitInSync(t, l, ns, 60*time.Second)
	if s := l.Stats(); s.Overruns == 0 || s.Resyncs == 0 {
		t.Fatalf("stats = %+v: the burst did not overrun the socket, the test proves nothing", s)
	}
	// Events reach the subscriber after the model changed: poll its view.
	want := map[netip.Prefix]bool{}
	for i := 1; i < n; i += 2 {
		want[netip.MustParsePrefix(prefix(i))] = true
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		same := maps.Equal(view, want)
		got := len(view)
		mu.Unlock()
		if same {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriber built %d routes from events, kernel has %d (or they differ)", got, len(want))
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
	t.Logf("stats after burst: %+v", l.Stats())
}

func TestListenerResyncsWhenALinkDisappears(t *testing.T) {
	ns := newTestNS(t)
	addTestLink(t, ns, "dummy1")
	addTestLink(t, ns, "dummy2")
	ipn(t, ns, "route", "add", "198.51.100.0/24", "dev", "dummy2")
	ipn(t, ns, "route", "add", "192.0.2.0/24", "dev", "dummy1")
	l, evs := startListener(t, ns)
	ipn(t, ns, "link", "del", "dummy2")
	ev := waitEvent(t, evs, "removal of 198.51.100.0/24", isEvent(Removed, "198.51.100.0/24"))
	if !ev.Resync {
		t.Errorf("removal was not found by a resync; the kernel sends no RTM_DELROUTE for it")
	}
	waitInSync(t, l, ns, 10*time.Second)
	var kept bool
	l.View(func(f *fib.FIB) { _, kept = f.First(fib.TableMain, netip.MustParsePrefix("192.0.2.0/24")) })
	if !kept {
		t.Errorf("route via the surviving link is gone from the model")
	}
}

func TestListenerFailsClearlyForAMissingNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to enter network namespaces")
	}
	l := NewListener(WithNetNS("fibgate-test-does-not-exist"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := l.Run(ctx)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "fibgate-test-does-not-exist") {
		t.Fatalf("Run = %v, want an error naming the namespace and wrapping os.ErrNotExist", err)
	}
}
