package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gobgp"
	"github.com/fibgate/fibgate/plugin/kernel"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
)

// TestNextHopsBehindARouteAreResolved: a next hop reachable only through
// another route (an iBGP neighbour's loopback behind a static or IGP
// route) is written through that route's gateway, in a real kernel, for
// both families; when that route moves to another gateway the prefix
// follows it, when it goes the write is refused (with the hint), and when
// it comes back the prefix is written again. A connected next hop is
// written as it is, an IPv6 IGP route's link-local gateway is written with
// its interface, an onlink gateway (an IGP over unnumbered interfaces)
// onlink on its interface, and BGP's own routes resolve nothing.
func TestNextHopsBehindARouteAreResolved(t *testing.T) {
	ns := kerneltest.NewNS(t)
	kerneltest.AddLink(t, ns, "eth1")
	kerneltest.IP(t, ns, "addr", "add", "10.0.0.1/24", "dev", "eth1")
	kerneltest.IP(t, ns, "-6", "addr", "add", "fd00::1/64", "dev", "eth1", "nodad")
	kerneltest.IP(t, ns, "route", "add", "192.0.2.0/24", "via", "10.0.0.2", "proto", "static")
	kerneltest.IP(t, ns, "-6", "route", "add", "2001:db8:9::/48", "via", "fd00::2", "proto", "static")
	// An IPv6 IGP's route: a link-local gateway, meaningful only with its
	// interface.
	kerneltest.IP(t, ns, "-6", "route", "add", "2001:db8:7::/48", "via", "fe80::2", "dev", "eth1", "proto", "ospf")
	// An IGP over unnumbered interfaces (FRR's OSPF on a point-to-point
	// link that borrows a loopback's address): a gateway on no connected
	// network, which the kernel takes only onlink.
	kerneltest.IP(t, ns, "route", "add", "100.64.0.0/16", "via", "10.255.0.1", "dev", "eth1", "onlink", "proto", "ospf")
	// A BGP route of the installer's protocol covering a next hop: not
	// resolved over.
	kerneltest.IP(t, ns, "route", "add", "198.18.0.0/15", "via", "10.0.0.2", "proto", "bgp", "metric", "20")

	r := newResolveRig(t, ns)
	l, inst, f, g := r.l, r.inst, r.f, r.g

	direct, far4, far6 := netip.MustParsePrefix("10.8.0.0/16"), netip.MustParsePrefix("10.9.0.0/16"), netip.MustParsePrefix("2001:db8:a::/48")
	overBGP, ecmp := netip.MustParsePrefix("10.10.0.0/16"), netip.MustParsePrefix("10.11.0.0/16")
	viaLL, onlink := netip.MustParsePrefix("2001:db8:b::/48"), netip.MustParsePrefix("10.12.0.0/16")
	f.apply(false, []gobgp.BestPath{
		{Prefix: onlink, Nexthops: []netip.Addr{netip.MustParseAddr("100.64.0.5")}},
		{Prefix: viaLL, Nexthops: []netip.Addr{netip.MustParseAddr("2001:db8:7::5")}},
		{Prefix: ecmp, Nexthops: []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("203.0.113.9")}},
		{Prefix: direct, Nexthops: []netip.Addr{netip.MustParseAddr("10.0.0.2")}},
		{Prefix: far4, Nexthops: []netip.Addr{netip.MustParseAddr("192.0.2.55")}},
		{Prefix: far6, Nexthops: []netip.Addr{netip.MustParseAddr("2001:db8:9::5")}},
		{Prefix: overBGP, Nexthops: []netip.Addr{netip.MustParseAddr("198.18.0.1")}},
	})
	route := func(p netip.Prefix) string {
		args := []string{"route", "show", p.String()}
		if p.Addr().Is6() {
			args = append([]string{"-6"}, args...)
		}
		return strings.TrimSpace(kerneltest.IP(t, ns, args...))
	}
	for p, want := range map[netip.Prefix]string{direct: "via 10.0.0.2", far4: "via 10.0.0.2", far6: "via fd00::2",
		ecmp:   "10.11.0.0/16 via 10.0.0.2 dev eth1", // over the next hop it can reach
		viaLL:  "via fe80::2 dev eth1",
		onlink: "via 10.255.0.1 dev eth1 proto bgp metric 20 onlink"} {
		if got := route(p); !strings.Contains(got, want) {
			t.Errorf("%v in the kernel: %q, want %q", p, got, want)
		}
	}
	// Read back as it was written: the link-local gateway with its
	// interface, so a restart's reconcile finds the route right.
	irs, err := inst.Routes()
	if err != nil {
		t.Fatal(err)
	}
	// The audit's view of what the feeder writes (resolveIn) is what the
	// kernel holds, read back so, for the resolved prefixes.
	written := resolveIn(l.View, inst.Table(), fib.ProtoBGP)
	for _, ir := range irs {
		if ir.Prefix == viaLL && (len(ir.Nexthops) != 1 || !ir.Nexthops[0].IsLinkLocalUnicast() || ir.Nexthops[0].Zone() == "") {
			t.Errorf("%v read back via %v, want fe80::2 with its interface", viaLL, ir.Nexthops)
		}
		for p, nh := range map[netip.Prefix]string{viaLL: "2001:db8:7::5", onlink: "100.64.0.5", far4: "192.0.2.55"} {
			if want := written([]netip.Addr{netip.MustParseAddr(nh)}); ir.Prefix == p && !slices.Equal(ir.Nexthops, want) {
				t.Errorf("%v read back via %v, the feeder's resolution %v", p, ir.Nexthops, want)
			}
		}
	}
	refused, _, _ := g.snapshot()
	if len(refused) != 1 || refused[0].Prefix != overBGP || !strings.HasSuffix(refused[0].Err, unconnectedHint) {
		t.Errorf("refused %+v, want only %v (its next hop is behind a BGP route) with the hint", refused, overBGP)
	}

	// A route to the ECMP's other next hop appears: both paths now.
	kerneltest.IP(t, ns, "route", "add", "203.0.113.0/24", "via", "10.0.0.4", "proto", "static")
	eventually(t, ecmp.String()+" over both paths", func() bool {
		got := route(ecmp)
		return strings.Contains(got, "nexthop via 10.0.0.2") && strings.Contains(got, "nexthop via 10.0.0.4")
	})

	// The resolving route moves to another gateway: the prefix follows.
	kerneltest.IP(t, ns, "route", "replace", "192.0.2.0/24", "via", "10.0.0.3", "proto", "static")
	eventually(t, far4.String()+" via 10.0.0.3", func() bool { return strings.Contains(route(far4), "via 10.0.0.3") })
	if got := route(far6); !strings.Contains(got, "via fd00::2") {
		t.Errorf("%v moved with another family's route: %q", far6, got)
	}

	// It goes: the prefix cannot be written (the kernel refuses its next
	// hop) and is shown refused; it comes back: written again.
	kerneltest.IP(t, ns, "route", "del", "192.0.2.0/24")
	eventually(t, far4.String()+" refused", func() bool {
		refused, _, _ := g.snapshot()
		for _, r := range refused {
			if r.Prefix == far4 && strings.HasSuffix(r.Err, unconnectedHint) {
				return true
			}
		}
		return false
	})
	// The kernel keeps the route it had, as with every refused write; the
	// daemon's fence (gobgp.Speaker.Fence) keeps the prefix from BGP until
	// a newer route is confirmed.
	kerneltest.IP(t, ns, "route", "add", "192.0.2.0/24", "via", "10.0.0.2", "proto", "static")
	eventually(t, far4.String()+" written again", func() bool { return strings.Contains(route(far4), "via 10.0.0.2") })
	eventually(t, far4.String()+" reported installed", func() bool {
		_, installed, _ := g.snapshot()
		for _, p := range installed {
			if p == far4 {
				return true
			}
		}
		return false
	})

	// GoBGP's path goes: nothing is kept of it.
	f.apply(false, []gobgp.BestPath{{Prefix: far4}, {Prefix: far6}})
	f.mu.Lock()
	kept := len(f.rec.bgp)
	f.mu.Unlock()
	if kept != 4 { // overBGP, still refused, the ECMP, viaLL and onlink
		t.Errorf("%d prefixes kept for resolution after the withdrawals, want 4", kept)
	}
	if got := route(far4); got != "" {
		t.Errorf("%v still in the kernel: %q", far4, got)
	}
}

// TestANextHopOverANexthopObjectIsResolved: with
// net.ipv4.nexthop_compat_mode at 0 the kernel shows a route over a
// nexthop object (what FRR's zebra installs) by the object's id alone, and
// announces nothing of it when the object changes or goes. The next hops
// behind such a route are written through the object's gateways all the
// same (an IPv6 link-local one, under an IPv4 route, with its interface;
// over another daemon's BGP route too, which names an object where the
// installer's own never do), follow the object when it is replaced in place (to the members of
// a group), and are refused with the hint when it is deleted, which takes
// its route away without a word from the kernel.
func TestANextHopOverANexthopObjectIsResolved(t *testing.T) {
	ns := kerneltest.NewNS(t)
	kerneltest.AddLink(t, ns, "eth1")
	kerneltest.IP(t, ns, "addr", "add", "10.0.0.1/24", "dev", "eth1")
	if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.nexthop_compat_mode=0").CombinedOutput(); err != nil {
		t.Fatalf("nexthop_compat_mode: %v: %s", err, out)
	}
	kerneltest.IP(t, ns, "nexthop", "add", "id", "10", "via", "10.0.0.2", "dev", "eth1")
	kerneltest.IP(t, ns, "route", "add", "100.66.0.0/16", "nhid", "10", "proto", "ospf")
	// An IPv4 route over an IPv6 link-local object: what an underlay of
	// BGP unnumbered (RFC 5549) installs, FRR's over nexthop objects.
	kerneltest.IP(t, ns, "nexthop", "add", "id", "30", "via", "fe80::2", "dev", "eth1")
	kerneltest.IP(t, ns, "route", "add", "100.67.0.0/16", "nhid", "30", "proto", "ospf")
	// FRR's BGP underlay: protocol bgp and metric 20, the installer's own,
	// but over an object, which the installer never writes.
	kerneltest.IP(t, ns, "nexthop", "add", "id", "40", "via", "10.0.0.6", "dev", "eth1")
	kerneltest.IP(t, ns, "route", "add", "100.68.0.0/16", "nhid", "40", "proto", "bgp", "metric", "20")
	if got := kerneltest.IP(t, ns, "route", "show", "100.66.0.0/16"); strings.Contains(got, "via") {
		t.Fatalf("the kernel shows the object's route as %q, want the object's id alone (compat mode 0)", got)
	}

	r := newResolveRig(t, ns)
	f, g := r.f, r.g
	behind := []netip.Prefix{netip.MustParsePrefix("10.13.0.0/16"), netip.MustParsePrefix("10.14.0.0/16")}
	for _, p := range behind {
		f.apply(false, []gobgp.BestPath{{Prefix: p, Nexthops: []netip.Addr{netip.MustParseAddr("100.66.0.5")}}})
	}
	route := func(p netip.Prefix) string {
		return strings.TrimSpace(kerneltest.IP(t, ns, "route", "show", p.String()))
	}
	for _, p := range behind {
		if got := route(p); !strings.Contains(got, "via 10.0.0.2") {
			t.Errorf("%v in the kernel: %q, want via 10.0.0.2, the object's gateway", p, got)
		}
	}
	unnumbered, overlay := netip.MustParsePrefix("10.15.0.0/16"), netip.MustParsePrefix("10.16.0.0/16")
	f.apply(false, []gobgp.BestPath{{Prefix: unnumbered, Nexthops: []netip.Addr{netip.MustParseAddr("100.67.0.5")}},
		{Prefix: overlay, Nexthops: []netip.Addr{netip.MustParseAddr("100.68.0.5")}}})
	if got := route(unnumbered); !strings.Contains(got, "via inet6 fe80::2 dev eth1") {
		t.Errorf("%v in the kernel: %q, want via inet6 fe80::2 dev eth1, the object's link-local gateway on its interface", unnumbered, got)
	}
	if got := route(overlay); !strings.Contains(got, "via 10.0.0.6") {
		t.Errorf("%v in the kernel: %q, want via 10.0.0.6, resolved over another daemon's BGP route", overlay, got)
	}
	if refused, _, _ := g.snapshot(); len(refused) != 0 {
		t.Errorf("refused %+v, want none", refused)
	}

	// Replaced in place, by a group: the prefixes follow to its members.
	kerneltest.IP(t, ns, "nexthop", "add", "id", "11", "via", "10.0.0.3", "dev", "eth1")
	kerneltest.IP(t, ns, "nexthop", "add", "id", "12", "via", "10.0.0.4", "dev", "eth1")
	kerneltest.IP(t, ns, "nexthop", "replace", "id", "10", "via", "10.0.0.5", "dev", "eth1")
	eventually(t, "the prefixes via 10.0.0.5", func() bool {
		return strings.Contains(route(behind[0]), "via 10.0.0.5") && strings.Contains(route(behind[1]), "via 10.0.0.5")
	})
	kerneltest.IP(t, ns, "nexthop", "add", "id", "20", "group", "11/12")
	kerneltest.IP(t, ns, "route", "replace", "100.66.0.0/16", "nhid", "20", "proto", "ospf")
	eventually(t, "the prefixes over the group's members", func() bool {
		got := route(behind[0])
		return strings.Contains(got, "nexthop via 10.0.0.3") && strings.Contains(got, "nexthop via 10.0.0.4")
	})
	kerneltest.IP(t, ns, "nexthop", "del", "id", "11")
	eventually(t, "the prefixes via the member left", func() bool {
		got := route(behind[1])
		return strings.Contains(got, "via 10.0.0.4") && !strings.Contains(got, "10.0.0.3")
	})

	// Deleted: its route goes without a notification, and nothing else
	// resolves the next hop.
	kerneltest.IP(t, ns, "nexthop", "del", "id", "20")
	eventually(t, "both prefixes refused", func() bool {
		refused, _, _ := g.snapshot()
		n := 0
		for _, rf := range refused {
			if slices.Contains(behind, rf.Prefix) && strings.HasSuffix(rf.Err, unconnectedHint) {
				n++
			}
		}
		return n == 2
	})
}

// resolveRig is a listener on a namespace and a feeder that resolves next
// hops over its model and writes through a real installer, as the daemon
// puts them together; its goroutines end with the test.
type resolveRig struct {
	l    *kernel.Listener
	inst *kernel.Installer
	f    *feeder
	g    *sink
	logs *logLines
}

func newResolveRig(t *testing.T, ns string) *resolveRig {
	t.Helper()
	l := kernel.NewListener(kernel.WithNetNS(ns))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = l.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	<-l.Ready()
	inst, err := kernel.NewInstaller(kernel.InstallerConfig{NetNS: ns}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inst.Close)
	r := &resolveRig{l: l, inst: inst, g: &sink{}, logs: &logLines{}}
	r.f = newFeeder(nil, inst, inst.Table(), r.g, slog.New(r.logs))
	r.f.ctx = ctx
	r.f.res = &resolver{view: l.View, proto: fib.ProtoBGP,
		events: func(ctx context.Context) <-chan []fib.Event { return l.Events(ctx, false) }}
	wg.Go(func() { r.f.watchResolutions(ctx) })
	wg.Go(func() { r.f.retry(ctx) })
	return r
}
