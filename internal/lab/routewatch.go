//go:build linux

package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fibgate/fibgate/plugin/kernel"
)

// RouteEvent is one change of a kernel route seen by a RouteWatch: the
// route of Prefix in Table appeared or changed (Present, with its next hops
// as NH) or went, at At, when the test read the notification. The kernel
// made the change a little earlier, never later.
type RouteEvent struct {
	At      time.Time
	Table   uint32
	Prefix  netip.Prefix
	Present bool
	// NH is the route's next hops as "gateway@ifindex" joined by spaces, a
	// key to compare two routes' forwarding by.
	NH string
}

// RouteWatch follows some routing tables of a namespace over netlink from
// the test process, outside every daemon, and stamps each change on the
// test's clock. It sees what the kernel holds, whatever the daemons that
// write it do: a test compares it with what BGP neighbours received (for
// the simulated ASIC, its mirror table is the hardware). It keeps one
// route per table and prefix, which is all a lab writes.
type RouteWatch struct {
	sub    *kernel.Subscription
	tables []uint32
	within netip.Prefix

	mu   sync.Mutex
	now  map[routeKey]string
	log  []RouteEvent
	err  error
	done chan struct{}
}

type routeKey struct {
	table  uint32
	prefix netip.Prefix
}

// routeWatchBuf is the watch's receive buffer: 64 MiB queues about 160k
// IPv4 notifications, so the daemons' bursts cannot overrun it.
const routeWatchBuf = 64 << 20

// WatchRoutes starts following the routes inside `within` of tables in
// namespace ns, the current ones first. The watch ends when the test does.
// An overrun of its own socket (which would leave it blind) is reported by
// Err.
func WatchRoutes(tb testing.TB, ns string, within netip.Prefix, tables ...uint32) *RouteWatch {
	tb.Helper()
	opts := kernel.Options{NetNS: ns, RcvBuf: routeWatchBuf}
	// Subscribe before the dump: nothing falls between the two.
	sub, err := kernel.Subscribe(opts)
	if err != nil {
		tb.Fatalf("watch routes in %s: %v", ns, err)
	}
	w := &RouteWatch{sub: sub, tables: tables, within: within, now: map[routeKey]string{}, done: make(chan struct{})}
	msgs, err := kernel.DumpRoutes(opts, 0)
	if err != nil {
		sub.Close()
		tb.Fatalf("watch routes in %s: %v", ns, err)
	}
	at := time.Now()
	w.mu.Lock()
	for _, m := range msgs {
		w.apply(m, at)
	}
	w.mu.Unlock()
	go w.run()
	tb.Cleanup(func() {
		sub.Close()
		<-w.done
	})
	return w
}

func (w *RouteWatch) run() {
	defer close(w.done)
	for {
		msgs, err := w.sub.Receive()
		at := time.Now()
		w.mu.Lock()
		for _, b := range msgs {
			if t := kernel.MessageType(b); t != unix.RTM_NEWROUTE && t != unix.RTM_DELROUTE {
				continue
			}
			m, derr := kernel.DecodeRoute(b)
			if derr != nil {
				continue // not a route this model keeps (e.g. multicast)
			}
			w.apply(m, at)
		}
		stop := err != nil && (errors.Is(err, net.ErrClosed) || !errors.Is(err, kernel.ErrOverrun))
		if err != nil && !errors.Is(err, net.ErrClosed) && w.err == nil {
			w.err = fmt.Errorf("route watch: %w", err)
		}
		w.mu.Unlock()
		if stop {
			return
		}
	}
}

// apply records m if it is a route the watch follows. Called with w.mu.
func (w *RouteWatch) apply(m kernel.RouteMessage, at time.Time) {
	r := m.Route
	if !slices.Contains(w.tables, r.Table) || !w.within.Contains(r.Prefix.Addr()) || r.Prefix.Bits() < w.within.Bits() {
		return
	}
	k := routeKey{r.Table, r.Prefix}
	if m.Type == unix.RTM_DELROUTE {
		if _, ok := w.now[k]; ok {
			delete(w.now, k)
			w.log = append(w.log, RouteEvent{At: at, Table: r.Table, Prefix: r.Prefix})
		}
		return
	}
	var nh []string
	for _, n := range r.Nexthops {
		nh = append(nh, fmt.Sprintf("%v@%d", n.Gateway, n.LinkIndex))
	}
	key := strings.Join(nh, " ")
	if old, ok := w.now[k]; ok && old == key {
		return // a flag change or the same route written again
	}
	w.now[k] = key
	w.log = append(w.log, RouteEvent{At: at, Table: r.Table, Prefix: r.Prefix, Present: true, NH: key})
}

// Events returns every change so far, oldest first.
func (w *RouteWatch) Events() []RouteEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.log)
}

// Routes returns the prefixes table holds now, with their next-hop keys.
func (w *RouteWatch) Routes(table uint32) map[netip.Prefix]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[netip.Prefix]string{}
	for k, nh := range w.now {
		if k.table == table {
			out[k.prefix] = nh
		}
	}
	return out
}

// Err returns what went wrong with the watch's own socket (an overrun: some
// changes were not seen), or nil.
func (w *RouteWatch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}
