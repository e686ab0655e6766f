package kernel

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// TestListenerFollowsNexthopObjects: routes over nexthop objects (what
// FRR's zebra installs) in a real kernel, at both values of
// net.ipv4.nexthop_compat_mode. The model, and a subscriber that builds
// its view from the events alone, show each route with its object's next
// hops, at start and after, and follow what the kernel does without a
// route notification: at 0 an object replaced in place moves its routes;
// at either value a deleted object's IPv4 routes go and a group that loses
// a member moves its routes (and, at 0, a deleted object's IPv6 routes
// go). All of it without a resync and without a notification the model
// could not place.
func TestListenerFollowsNexthopObjects(t *testing.T) {
	for _, mode := range []string{"0", "1"} {
		t.Run("compat_mode="+mode, func(t *testing.T) {
			ns := objectsNS(t, mode)
			ipn(t, ns, "-6", "addr", "add", "2001:db8:ff::1/64", "dev", "eth1", "nodad")
			for _, args := range [][]string{
				{"nexthop", "add", "id", "1", "via", "10.1.0.2", "dev", "eth1"},
				{"nexthop", "add", "id", "2", "via", "10.1.0.3", "dev", "eth1"},
				{"nexthop", "add", "id", "10", "group", "1/2,3"},
				{"nexthop", "add", "id", "5", "via", "10.1.0.4", "dev", "eth1"},
				{"nexthop", "add", "id", "6", "via", "2001:db8:ff::2", "dev", "eth1"},
				{"route", "add", "198.51.100.0/24", "nhid", "10", "proto", "ospf"},
				{"route", "add", "198.51.101.0/24", "nhid", "1", "proto", "ospf"},
				{"route", "add", "203.0.113.0/24", "nhid", "5", "proto", "ospf"},
				{"-6", "route", "add", "2001:db8:5::/64", "nhid", "6", "proto", "ospf"},
			} {
				ipn(t, ns, args...)
			}
			l, _ := startListener(t, ns)
			seen := followEvents(t, l)
			// What the snapshot showed at start, then the changes.
			seen.wait(t, "198.51.101.0/24", "10.1.0.2")
			for p, want := range map[string]string{"198.51.100.0/24": "10.1.0.2,10.1.0.3*3", "198.51.101.0/24": "10.1.0.2",
				"203.0.113.0/24": "10.1.0.4", "2001:db8:5::/64": "2001:db8:ff::2"} {
				if got := hopsIn(l, p); got != want {
					t.Errorf("%s at start: %q, want %q", p, got, want)
				}
			}
			// A route added after the start, and an object replaced in place.
			ipn(t, ns, "route", "add", "192.0.2.0/24", "nhid", "5", "proto", "ospf")
			seen.wait(t, "192.0.2.0/24", "10.1.0.4")
			ipn(t, ns, "nexthop", "replace", "id", "5", "via", "10.1.0.5", "dev", "eth1")
			seen.wait(t, "192.0.2.0/24", "10.1.0.5")
			seen.wait(t, "203.0.113.0/24", "10.1.0.5")
			// A member goes: its own route goes, its group's routes move.
			ipn(t, ns, "nexthop", "del", "id", "1")
			seen.wait(t, "198.51.101.0/24", "")
			seen.wait(t, "198.51.100.0/24", "10.1.0.3*3")
			ipn(t, ns, "nexthop", "del", "id", "6")
			seen.wait(t, "2001:db8:5::/64", "")
			// The group's last member goes, and with it the group.
			ipn(t, ns, "nexthop", "del", "id", "2")
			seen.wait(t, "198.51.100.0/24", "")
			ipn(t, ns, "nexthop", "del", "id", "5")
			seen.wait(t, "192.0.2.0/24", "")
			seen.wait(t, "203.0.113.0/24", "")
			for _, p := range []string{"198.51.100.0/24", "198.51.101.0/24", "192.0.2.0/24", "203.0.113.0/24", "2001:db8:5::/64"} {
				if got := hopsIn(l, p); got != "" {
					t.Errorf("%s still in the model: %q", p, got)
				}
			}
			waitInSync(t, l, ns, 10*time.Second)
			if s := l.Stats(); s.Resyncs != 0 || s.OutOfSync != 0 {
				t.Errorf("stats %+v: want no resync and nothing out of sync", s)
			}
		})
	}
}

// objectsNS is a namespace with eth1 on 10.1.0.1/24 and
// net.ipv4.nexthop_compat_mode at mode, for routes over nexthop objects.
func objectsNS(t *testing.T, mode string) string {
	t.Helper()
	ns := newTestNS(t)
	addTestLink(t, ns, "eth1")
	ipn(t, ns, "addr", "add", "10.1.0.1/24", "dev", "eth1")
	if err := writeSysctl(Options{NetNS: ns}, procSys+"/net/ipv4/nexthop_compat_mode", mode); err != nil {
		t.Fatal(err)
	}
	return ns
}

// hops renders a route's next hops as "gw,gw*weight", or "" for none.
func hops(r *fib.Route) string {
	var s []string
	for _, nh := range r.Nexthops {
		h := nh.Gateway.String()
		if nh.Weight > 1 {
			h += "*" + strconv.Itoa(nh.Weight)
		}
		s = append(s, h)
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

// hopsIn is the model's route of prefix p in the main table ("" if none).
func hopsIn(l *Listener, p string) string {
	var got string
	l.View(func(f *fib.FIB) {
		if r, ok := f.First(fib.TableMain, netip.MustParsePrefix(p)); ok {
			got = hops(&r)
		}
	})
	return got
}

// eventView is a subscriber's view built from the events alone (the
// snapshot, then the changes): each prefix of the main table with its
// route's next hops.
type eventView struct {
	mu   sync.Mutex
	hops map[netip.Prefix]string
	ping chan struct{}
}

func followEvents(t *testing.T, l *Listener) *eventView {
	v := &eventView{hops: map[netip.Prefix]string{}, ping: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	evs := l.Events(ctx, true)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case batch, ok := <-evs:
				if !ok {
					return
				}
				v.mu.Lock()
				for _, ev := range batch {
					if r := ev.Route(); r.Table == fib.TableMain {
						if ev.Kind == Removed {
							delete(v.hops, r.Prefix)
						} else {
							v.hops[r.Prefix] = hops(ev.New)
						}
					}
				}
				v.mu.Unlock()
				select {
				case v.ping <- struct{}{}:
				default:
				}
			}
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return v
}

// wait waits until the events have left prefix p with next hops want (""
// for gone), failing after 10 s.
func (v *eventView) wait(t *testing.T, p, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		v.mu.Lock()
		got := v.hops[netip.MustParsePrefix(p)]
		v.mu.Unlock()
		if got == want {
			return
		}
		select {
		case <-v.ping:
		case <-deadline:
			t.Fatalf("%s by the events: %q, want %q", p, got, want)
		}
	}
}
