package probe_test

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/e2e/probe"
	"github.com/fibgate/fibgate/internal/lab"
)

var (
	vip4 = netip.MustParseAddr("192.0.2.10")
	vip6 = netip.MustParseAddr("2001:db8:10::10")
)

// TestProbesAreCountedWhereTheyArriveAndLostWhereTheyDoNot: an anycast
// address lives in two namespaces and the sender routes to one of them.
// Probes are counted at that one, none at the other; while the sender has
// no route every probe counts as lost, and once the route is back they
// arrive again.
func TestProbesAreCountedWhereTheyArriveAndLostWhereTheyDoNot(t *testing.T) {
	if testing.Short() {
		t.Skip("network namespaces: skipped in -short mode")
	}
	src, a, b := lab.NewNS(t, "psrc"), lab.NewNS(t, "pa"), lab.NewNS(t, "pb")
	lab.Link(t, src, "e0", "10.9.0.1", "fd09::1", a, "e0", "10.9.0.2", "fd09::2")
	for _, ns := range []string{a, b} {
		lab.IP(t, ns, "addr", "add", vip4.String()+"/32", "dev", "lo")
		lab.IP(t, ns, "-6", "addr", "add", vip6.String()+"/128", "dev", "lo", "nodad")
	}
	route := func(verb string) {
		lab.IP(t, src, "route", verb, vip4.String()+"/32", "via", "10.9.0.2")
		lab.IP(t, src, "-6", "route", verb, vip6.String()+"/128", "via", "fd09::2")
	}
	route("add")

	if _, err := probe.Start(probe.Config{From: src, To: []netip.Addr{vip4}, At: map[string]string{"src": src}}); err == nil ||
		!strings.Contains(err.Error(), "no namespace") {
		t.Errorf("a destination nobody has: err %v, want one saying no namespace has it", err)
	}

	p, err := probe.Start(probe.Config{From: src, To: []netip.Addr{vip4, vip6}, At: map[string]string{"a": a, "b": b, "src": src}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	for _, dst := range []netip.Addr{vip4, vip6} {
		if got := p.Receivers(dst); !slices.Equal(got, []string{"a", "b"}) {
			t.Errorf("receivers of %v: %v, want a and b", dst, got)
		}
	}
	arrive := func(after time.Time) {
		t.Helper()
		lab.Eventually(t, 10*time.Second, "probes arrive at a", func() error {
			for _, dst := range []netip.Addr{vip4, vip6} {
				if n := p.Tally(dst, after, time.Now().Add(-50*time.Millisecond)).At["a"]; n < 100 {
					return fmt.Errorf("%d probes to %v at a", n, dst)
				}
			}
			return nil
		})
	}
	arrive(time.Time{})
	up := time.Now()
	time.Sleep(200 * time.Millisecond) // probes sent with the route: part of the experiment
	dropping := time.Now()
	route("del")
	down := time.Now()
	lab.Eventually(t, 10*time.Second, "probes are lost without a route", func() error {
		for _, dst := range []netip.Addr{vip4, vip6} {
			if n := p.Tally(dst, down, time.Now().Add(-50*time.Millisecond)).Lost; n < 100 {
				return fmt.Errorf("%d probes to %v lost", n, dst)
			}
		}
		return nil
	})
	adding := time.Now()
	route("add")
	arrive(time.Now())
	for _, dst := range []netip.Addr{vip4, vip6} {
		with := p.Tally(dst, up, dropping)
		without := p.Tally(dst, down, adding)
		if with.Sent < 100 || with.Lost != 0 || with.At["a"] != with.Sent || with.At["b"] != 0 {
			t.Errorf("%v with a route: %+v, want all at a", dst, with)
		}
		if without.Sent < 50 || without.Lost != without.Sent {
			t.Errorf("%v without a route: %+v, want all lost", dst, without)
		}
		if p.Count(dst, "b") != 0 || p.Count(dst, "a") < with.Sent {
			t.Errorf("%v counted at a %d, at b %d", dst, p.Count(dst, "a"), p.Count(dst, "b"))
		}
	}
}

// TestTheWindowBoundsWhatIsRemembered: a probe keeps the last Window probes
// per destination, so a long-running `fiblab probe` does not grow.
func TestTheWindowBoundsWhatIsRemembered(t *testing.T) {
	if testing.Short() {
		t.Skip("network namespaces: skipped in -short mode")
	}
	src, a := lab.NewNS(t, "wsrc"), lab.NewNS(t, "wa")
	lab.Link(t, src, "e0", "10.9.0.1", "fd09::1", a, "e0", "10.9.0.2", "fd09::2")
	p, err := probe.Start(probe.Config{From: src, To: []netip.Addr{netip.MustParseAddr("10.9.0.2")}, At: map[string]string{"a": a}, Window: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	lab.Eventually(t, 10*time.Second, "more probes than the window", func() error {
		if n := p.Count(netip.MustParseAddr("10.9.0.2"), "a"); n < 200 {
			return fmt.Errorf("%d received", n)
		}
		return nil
	})
	if tl := p.Tally(netip.MustParseAddr("10.9.0.2"), time.Time{}, time.Now()); tl.Sent > 64 || tl.Sent < 32 {
		t.Errorf("tally over everything saw %d probes, want the last 64 or so", tl.Sent)
	}
}
