package kernel

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/syncbuf"
	"github.com/fibgate/fibgate/plugin/fib"
)

func installerNS(t *testing.T) (string, *Installer) {
	t.Helper()
	ns := newTestNS(t)
	addTestLink(t, ns, "eth1")
	ipn(t, ns, "addr", "add", "10.1.0.1/24", "dev", "eth1")
	ipn(t, ns, "-6", "addr", "add", "2001:db8:ff::1/64", "dev", "eth1", "nodad")
	inst, err := NewInstaller(InstallerConfig{NetNS: ns}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Close)
	return ns, inst
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// bgpRoutes returns the proto-bgp routes of the main table as the kernel
// dumps them.
func bgpRoutes(t *testing.T, ns string) map[netip.Prefix]fib.Route {
	t.Helper()
	out := map[netip.Prefix]fib.Route{}
	for r := range kernelModel(t, ns).All() {
		if r.Protocol == fib.ProtoBGP {
			out[r.Prefix] = r.Clone()
		}
	}
	return out
}

func gateways(r fib.Route) []string {
	var out []string
	for _, nh := range r.Nexthops {
		out = append(out, nh.Gateway.String())
	}
	slices.Sort(out)
	return out
}

func TestInstallerWritesReplacesAndRemoves(t *testing.T) {
	ns, inst := installerNS(t)
	l, evs := startListener(t, ns)
	p4, p6 := netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:1::/48")
	err := inst.Install([]InstallRoute{
		{Prefix: p4, Nexthops: addrs("10.1.0.2")},
		{Prefix: p6, Nexthops: addrs("2001:db8:ff::2", "2001:db8:ff::3")},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := bgpRoutes(t, ns)
	if r := got[p4]; r.Priority != 20 || r.Table != fib.TableMain || fmt.Sprint(gateways(r)) != "[10.1.0.2]" {
		t.Errorf("IPv4 route = %s", r.String())
	}
	if r := got[p6]; fmt.Sprint(gateways(r)) != "[2001:db8:ff::2 2001:db8:ff::3]" {
		t.Errorf("IPv6 ECMP route = %s", r.String())
	}
	waitEvent(t, evs, "add of the IPv4 route", isEvent(Added, p4.String()))

	// A new best path replaces the route in place: one change, no delete.
	if err := inst.Install([]InstallRoute{{Prefix: p4, Nexthops: addrs("10.1.0.3", "10.1.0.4")}}); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, evs, "replace of the IPv4 route", func(ev Event) bool { return ev.Route().Prefix == p4 })
	if ev.Kind != Changed {
		t.Errorf("replace seen as %s, want change (in place)", ev.Kind)
	}
	if r := bgpRoutes(t, ns)[p4]; fmt.Sprint(gateways(r)) != "[10.1.0.3 10.1.0.4]" {
		t.Errorf("after replace: %s", r.String())
	}
	if err := inst.Remove([]netip.Prefix{p4, netip.MustParsePrefix("198.51.100.0/24")}); err != nil {
		t.Errorf("remove (one prefix absent): %v", err)
	}
	if _, ok := bgpRoutes(t, ns)[p4]; ok {
		t.Error("IPv4 route still installed after Remove")
	}
	waitInSync(t, l, ns, 10*time.Second)
}

func TestInstallerReconcilesAndFlushesOnlyItsOwnRoutes(t *testing.T) {
	ns, inst := installerNS(t)
	// A predecessor's stale route, one it left right (ECMP, listed in
	// another order), and routes that are not the installer's.
	ipn(t, ns, "route", "add", "198.51.100.0/24", "via", "10.1.0.2", "proto", "bgp", "metric", "20")
	ipn(t, ns, "route", "add", "198.51.101.0/24", "proto", "bgp", "metric", "20", "nexthop", "via", "10.1.0.4", "nexthop", "via", "10.1.0.3")
	ipn(t, ns, "route", "add", "203.0.113.0/24", "via", "10.1.0.2", "proto", "static", "metric", "20")
	ipn(t, ns, "route", "add", "192.0.2.0/24", "via", "10.1.0.9", "proto", "bgp", "metric", "30")
	_, evs := startListener(t, ns)
	right := netip.MustParsePrefix("198.51.101.0/24")
	var changed []netip.Prefix
	installed, removed, err := inst.Reconcile([]InstallRoute{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Nexthops: addrs("10.1.0.2")},
		{Prefix: right, Nexthops: addrs("10.1.0.3", "10.1.0.4")},
	}, func(ps []netip.Prefix) { changed = ps })
	if err != nil || removed != 1 || installed != 1 {
		t.Fatalf("Reconcile = %d installed, %d removed, %v; want 1 and 1 (the right route untouched)", installed, removed, err)
	}
	// Told first about the one route of its own it changes (the stale
	// one); a new route and a route that was right are not changes.
	if fmt.Sprint(changed) != "[198.51.100.0/24]" {
		t.Errorf("Reconcile announced %v as changed, want [198.51.100.0/24]", changed)
	}
	// The kernel says the same: the route that was right saw no change
	// (a replace would have reset its hardware flags).
	waitEvent(t, evs, "install of 192.0.2.0/24", isEvent(Added, "192.0.2.0/24"))
	marker := netip.MustParsePrefix("192.0.2.99/32") // after everything Reconcile did
	ipn(t, ns, "route", "add", marker.String(), "via", "10.1.0.2")
	deadline := time.After(20 * time.Second)
	for seen := false; !seen; {
		select {
		case batch := <-evs:
			for _, ev := range batch {
				if ev.Route().Prefix == right {
					t.Fatalf("Reconcile rewrote a route that was right: %s", ev.Kind)
				}
				seen = seen || ev.Route().Prefix == marker
			}
		case <-deadline:
			t.Fatal("no event for the marker route")
		}
	}
	ipn(t, ns, "route", "del", marker.String())
	if _, removed, err := inst.Reconcile([]InstallRoute{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Nexthops: addrs("10.1.0.2")}}, nil); err != nil || removed != 1 {
		t.Fatalf("second Reconcile removed %d, %v; want 1", removed, err)
	}
	have, err := inst.Installed()
	if err != nil || fmt.Sprint(have) != "[192.0.2.0/24]" {
		t.Fatalf("Installed = %v, %v", have, err)
	}
	n, err := inst.Flush()
	if err != nil || n != 1 {
		t.Fatalf("Flush = %d, %v", n, err)
	}
	var left []string
	for r := range kernelModel(t, ns).All() {
		if r.Table == fib.TableMain && r.Type == fib.TypeUnicast && r.Prefix.Bits() == 24 && r.Protocol != fib.ProtoKernel {
			left = append(left, fmt.Sprintf("%s/%s/%d", r.Prefix, r.Protocol, r.Priority))
		}
	}
	slices.Sort(left)
	if fmt.Sprint(left) != "[192.0.2.0/24/bgp/30 203.0.113.0/24/static/20]" {
		t.Errorf("after flush the kernel holds %v; others' routes must stay", left)
	}
}

// TestInstallerLeavesAnotherDaemonsObjectRoutesAlone: FRR's zebra writes
// its BGP routes as protocol bgp, metric 20 (the installer's defaults),
// over nexthop objects, which the installer never writes. Such routes,
// at either nexthop_compat_mode, are not the installer's: a reconcile does
// not take them for stale, a flush leaves them, and the installer says
// once that another daemon writes as it does.
func TestInstallerLeavesAnotherDaemonsObjectRoutesAlone(t *testing.T) {
	for _, mode := range []string{"1", "0"} {
		t.Run("compat_mode="+mode, func(t *testing.T) {
			ns := objectsNS(t, mode)
			var logs syncbuf.Buffer
			inst, err := NewInstaller(InstallerConfig{NetNS: ns}, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(inst.Close)
			ipn(t, ns, "nexthop", "add", "id", "7", "via", "10.1.0.2", "dev", "eth1")
			ipn(t, ns, "route", "add", "100.64.0.0/24", "nhid", "7", "proto", "bgp", "metric", "20")
			ipn(t, ns, "route", "add", "198.51.100.0/24", "via", "10.1.0.2", "proto", "bgp", "metric", "20") // a predecessor's
			if _, removed, err := inst.Reconcile(nil, nil); err != nil || removed != 1 {
				t.Fatalf("Reconcile removed %d, %v; want 1, the predecessor's", removed, err)
			}
			if n, err := inst.Flush(); err != nil || n != 0 {
				t.Fatalf("Flush = %d, %v; want nothing of its own left", n, err)
			}
			if got := ipn(t, ns, "route", "show", "100.64.0.0/24"); !strings.Contains(got, "nhid 7") {
				t.Errorf("the other daemon's route is gone: %q", got)
			}
			if n := strings.Count(logs.String(), "another daemon writes routes"); n != 1 || !strings.Contains(logs.String(), "install.protocol") {
				t.Errorf("want one warning naming install.protocol:\n%s", logs.String())
			}
		})
	}
}

// A graceful restart: BGP has only part of its table when the installer
// starts, so the predecessor's routes stay, those already right are not
// touched (their hardware flags survive), and only routes that differ are
// replaced, announced first.
func TestInstallerKeepsStaleRoutesOnAGracefulRestart(t *testing.T) {
	ns, inst := installerNS(t)
	stale, right, moved := netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("198.51.101.0/24"), netip.MustParsePrefix("198.51.102.0/24")
	ipn(t, ns, "route", "add", stale.String(), "via", "10.1.0.2", "proto", "bgp", "metric", "20")
	ipn(t, ns, "route", "add", right.String(), "via", "10.1.0.3", "proto", "bgp", "metric", "20")
	ipn(t, ns, "route", "add", moved.String(), "via", "10.1.0.3", "proto", "bgp", "metric", "20")
	_, evs := startListener(t, ns)
	var changed []netip.Prefix
	fresh := netip.MustParsePrefix("192.0.2.0/24")
	installed, kept, err := inst.ReconcileKeepingStale([]InstallRoute{
		{Prefix: right, Nexthops: addrs("10.1.0.3")},
		{Prefix: moved, Nexthops: addrs("10.1.0.4")},
		{Prefix: fresh, Nexthops: addrs("10.1.0.2")},
	}, func(ps []netip.Prefix) { changed = append(changed, ps...) })
	if err != nil || installed != 2 || fmt.Sprint(kept) != "[198.51.100.0/24]" {
		t.Fatalf("ReconcileKeepingStale = %d installed, kept %v, %v; want 2 and [198.51.100.0/24]", installed, kept, err)
	}
	if fmt.Sprint(changed) != "[198.51.102.0/24]" {
		t.Errorf("announced %v as changed, want only the replaced route [198.51.102.0/24]", changed)
	}
	got := bgpRoutes(t, ns)
	if _, ok := got[stale]; !ok {
		t.Errorf("the stale route was removed; it must keep forwarding until BGP has its whole table")
	}
	if fmt.Sprint(gateways(got[moved])) != "[10.1.0.4]" {
		r := got[moved]
		t.Errorf("the route that differed is %s, want via 10.1.0.4", r.String())
	}
	// The route that was right saw no change: nothing reset its flags.
	marker := netip.MustParsePrefix("192.0.2.99/32")
	ipn(t, ns, "route", "add", marker.String(), "via", "10.1.0.2")
	deadline := time.After(20 * time.Second)
	for seen := false; !seen; {
		select {
		case batch := <-evs:
			for _, ev := range batch {
				if p := ev.Route().Prefix; p == right || p == stale {
					t.Fatalf("ReconcileKeepingStale touched %v: %s", p, ev.Kind)
				}
				seen = seen || ev.Route().Prefix == marker
			}
		case <-deadline:
			t.Fatal("no event for the marker route")
		}
	}
}

func TestInstallerNamesThePrefixOnFailure(t *testing.T) {
	_, inst := installerNS(t)
	err := inst.Install([]InstallRoute{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Nexthops: addrs("10.99.0.1")}, // unreachable gateway
		{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Nexthops: addrs("10.1.0.2")},
		{Prefix: netip.MustParsePrefix("2001:db8::/32"), Nexthops: addrs("10.1.0.2")},  // IPv6 via IPv4
		{Prefix: netip.MustParsePrefix("203.0.113.1/24"), Nexthops: addrs("10.1.0.2")}, // host bits
	})
	for _, want := range []string{"192.0.2.0/24", "2001:db8::/32", "203.0.113.1/24"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	if got := fmt.Sprint(FailedPrefixes(err)); got != "[192.0.2.0/24 2001:db8::/32 203.0.113.1/24]" {
		t.Errorf("FailedPrefixes = %s", got)
	}
	if !errors.Is(err, fib.ErrInvalid) {
		t.Errorf("error does not match fib.ErrInvalid: %v", err)
	}
	if have, _ := inst.Installed(); fmt.Sprint(have) != "[198.51.100.0/24]" {
		t.Errorf("a failure stopped the batch: installed %v", have)
	}
}

// BenchmarkInstall measures how fast best paths reach the kernel:
// RTM_NEWROUTE (replace) requests in batches of writeBatch (about 125k
// routes/s here; one request and ack at a time through vishvananda's
// handle did about 55k/s).
func BenchmarkInstall(b *testing.B) {
	ns := newTestNS(b)
	addTestLink(b, ns, "eth1")
	ipn(b, ns, "addr", "add", "10.1.0.1/24", "dev", "eth1")
	inst, err := NewInstaller(InstallerConfig{NetNS: ns}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer inst.Close()
	const n = 10000
	routes := make([]InstallRoute, n)
	for i := range routes {
		routes[i] = InstallRoute{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{16, byte(i >> 8), byte(i), 0}), 24), Nexthops: addrs("10.1.0.2")}
	}
	b.ResetTimer()
	for b.Loop() {
		if err := inst.Install(routes); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "routes/s")
}
