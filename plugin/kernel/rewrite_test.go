//go:build linux

package kernel

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fibgate/fibgate/plugin/fib"
)

func TestDecodeAckReadsTheKernelsReason(t *testing.T) {
	capped := control(nlmsgError, nlmFCapped|nlmFAckTLVs, 7, int32(unix.EPERM), "Exceeded number of supported fib entries")
	if a, ok := decodeAck(capped); !ok || a.seq != 7 || a.errno != int32(unix.EPERM) || a.msg != "Exceeded number of supported fib entries" {
		t.Errorf("capped ack with a message: %+v, %v", a, ok)
	}
	// Without NETLINK_CAP_ACK the whole request comes back before the
	// attributes.
	req := EncodeRoute(RouteMessage{Type: rtmNewRoute, Route: fib.Route{Table: 254, Prefix: pfx("192.0.2.0/24"), Type: fib.TypeUnicast}})
	full := make([]byte, nlmsgHdrLen+4)
	binary.NativeEndian.PutUint16(full[4:], nlmsgError)
	binary.NativeEndian.PutUint16(full[6:], nlmFAckTLVs)
	binary.NativeEndian.PutUint32(full[8:], 9)
	errno := -int32(unix.ENETUNREACH)
	binary.NativeEndian.PutUint32(full[16:], uint32(errno))
	full = append(full, req...)
	text := append([]byte("Nexthop has invalid gateway"), 0)
	full = binary.NativeEndian.AppendUint16(full, uint16(rtaHdrLen+len(text)))
	full = binary.NativeEndian.AppendUint16(full, nlmsgerrMsg)
	full = append(full, text...)
	binary.NativeEndian.PutUint32(full, uint32(len(full)))
	if a, ok := decodeAck(full); !ok || a.seq != 9 || a.errno != int32(unix.ENETUNREACH) || a.msg != "Nexthop has invalid gateway" {
		t.Errorf("uncapped ack with a message: %+v, %v", a, ok)
	}
	if a, ok := decodeAck(control(nlmsgError, nlmFCapped, 3, 0, "")); !ok || a.errno != 0 || a.msg != "" {
		t.Errorf("plain ack: %+v, %v", a, ok)
	}
	if _, ok := decodeAck(control(nlmsgDone, 0, 3, 0, "")); ok {
		t.Error("NLMSG_DONE read as an ack")
	}
	if _, ok := decodeAck(capped[:10]); ok {
		t.Error("a truncated message read as an ack")
	}
}

func TestRealKernelRefusalsCarryTheirReason(t *testing.T) {
	ns, _ := installerNS(t)
	w, err := NewRouteWriter(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	errs := w.Write([]RouteOp{{Route: fib.Route{Table: fib.TableMain, Prefix: pfx("198.51.100.0/24"), Type: fib.TypeUnicast,
		Protocol: fib.ProtoBGP, Priority: 20, Nexthops: []fib.Nexthop{{Gateway: ip("10.99.0.1")}}}}})
	var ae *AckError
	if !errors.As(errs[0], &ae) || !errors.Is(errs[0], unix.ENETUNREACH) || ae.Msg == "" {
		t.Fatalf("unreachable gateway: %v (%T), want an *AckError with ENETUNREACH and the kernel's message", errs[0], errs[0])
	}
	t.Logf("the kernel says: %v", errs[0])
}

func TestDecodeMarksUnmodelledAttributes(t *testing.T) {
	ns, _ := installerNS(t)
	for _, args := range [][]string{
		{"route", "add", "198.51.100.1/32", "via", "10.1.0.2"},
		{"route", "add", "198.51.100.2/32", "via", "10.1.0.2", "mtu", "1400"},
		{"route", "add", "198.51.100.3/32", "via", "10.1.0.2", "realm", "3"},
		{"route", "add", "198.51.100.4/32", "nexthop", "via", "10.1.0.2", "realm", "3", "nexthop", "via", "10.1.0.3"},
		{"-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8:ff::2"},
		{"-6", "route", "add", "2001:db8:2::/64", "via", "2001:db8:ff::2", "pref", "high"},
		{"-6", "route", "add", "2001:db8:3::/64", "via", "2001:db8:ff::2", "expires", "600"},
		{"-6", "route", "add", "2001:db8:4::/64", "via", "2001:db8:ff::2", "mtu", "1400"},
	} {
		ipn(t, ns, args...)
	}
	want := map[string]bool{
		"198.51.100.1/32": false, "198.51.100.2/32": true, "198.51.100.3/32": true, "198.51.100.4/32": true,
		"2001:db8:1::/64": false, "2001:db8:2::/64": true, "2001:db8:3::/64": true, "2001:db8:4::/64": true,
	}
	m := kernelModel(t, ns)
	for p, w := range want {
		r, ok := m.First(fib.TableMain, pfx(p))
		if !ok {
			t.Errorf("%s not in the dump", p)
			continue
		}
		if r.Unmodelled != w {
			t.Errorf("%s: Unmodelled = %v, want %v", r.String(), r.Unmodelled, w)
		}
	}
	// Connected routes and the local table carry nothing unmodelled.
	for r := range m.All() {
		if r.Table != fib.TableMain && r.Unmodelled {
			t.Errorf("%s marked unmodelled", r.String())
		}
	}
}

// recordingDriver records what the listener tells it and sets the flags
// the test asks for on every route it is told to program.
type recordingDriver struct {
	mu     sync.Mutex
	events []fib.DriverEvent
	flags  fib.HWFlags
	l      *Listener
	work   chan fib.DriverEvent
}

func (d *recordingDriver) Event(ev fib.DriverEvent) error {
	d.mu.Lock()
	d.events = append(d.events, ev)
	d.mu.Unlock()
	d.work <- ev
	return nil
}

func (d *recordingDriver) run(stop <-chan struct{}) {
	for {
		select {
		case ev := <-d.work:
			d.mu.Lock()
			f := d.flags
			d.mu.Unlock()
			if ev.Kind == fib.DriverReplace {
				d.l.SetFlags(&ev.Route, f)
			}
		case <-stop:
			return
		}
	}
}

// startRecording attaches a recordingDriver that reports flags to a
// listener of ns, both running until the test ends.
func startRecording(t *testing.T, ns string, flags fib.HWFlags) *recordingDriver {
	t.Helper()
	d := &recordingDriver{work: make(chan fib.DriverEvent, 1<<10), flags: flags}
	d.l, _ = startListener(t, ns, WithDriver(d))
	stop := make(chan struct{})
	go d.run(stop)
	t.Cleanup(func() { close(stop) })
	return d
}

// first is the forwarding route of p in the listener's model of the main
// table, with its version.
func (d *recordingDriver) first(p netip.Prefix) (fib.Route, uint64) {
	var r fib.Route
	var v uint64
	d.l.View(func(f *fib.FIB) { r, v, _ = f.FirstVersion(fib.TableMain, p) })
	return r, v
}

func (d *recordingDriver) set(f fib.HWFlags) {
	d.mu.Lock()
	d.flags = f
	d.mu.Unlock()
}

func (d *recordingDriver) replaces(p netip.Prefix) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, ev := range d.events {
		if ev.Kind == fib.DriverReplace && ev.Route.Prefix == p {
			n++
		}
	}
	return n
}

// TestRewriteMakesTheDriverProgramTheRouteAgain is the retry of a route
// whose programming failed: the kernel (or, here, the listener a user-space
// driver is attached to) hands the driver the route again and its flags
// start over, for IPv4 (where replacing with an identical route would do
// nothing) and IPv6. A route changed meanwhile, a route with attributes
// the model lacks and an address route are left alone.
func TestRewriteMakesTheDriverProgramTheRouteAgain(t *testing.T) {
	ns, _ := installerNS(t)
	if err := SetNotifyMode(Options{NetNS: ns}, fib.IPv4, 1); err != nil {
		t.Fatal(err)
	}
	if err := SetNotifyMode(Options{NetNS: ns}, fib.IPv6, 1); err != nil {
		t.Fatal(err)
	}
	d := startRecording(t, ns, fib.OffloadFailed)

	p4, p6, pm := pfx("192.0.2.0/24"), pfx("2001:db8:1::/64"), pfx("198.51.100.0/24")
	ipn(t, ns, "route", "add", p4.String(), "via", "10.1.0.2", "proto", "static")
	ipn(t, ns, "-6", "route", "add", p6.String(), "nexthop", "via", "2001:db8:ff::2", "nexthop", "via", "2001:db8:ff::3")
	ipn(t, ns, "route", "add", pm.String(), "via", "10.1.0.2", "mtu", "1400")
	first := d.first
	waitFor(t, "the driver failed all three", func() bool {
		for _, p := range []netip.Prefix{p4, p6, pm} {
			if r, _ := first(p); r.Flags&fib.OffloadFailed == 0 {
				return false
			}
		}
		return true
	})

	// The driver accepts from now on; the rewrite gives it the chance.
	d.set(fib.Trap)
	r4, v4 := first(p4)
	r6, v6 := first(p6)
	rm, _ := first(pm)
	n4, n6 := d.replaces(p4), d.replaces(p6)
	w, err := NewRouteWriter(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	local, ok := kernelModel(t, ns).First(fib.TableLocal, pfx("10.1.0.1/32"))
	if !ok {
		t.Fatal("no local route for 10.1.0.1")
	}
	errs := w.Rewrite([]fib.Route{r4, r6, rm, local})
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("rewrite: %v, %v", errs[0], errs[1])
	}
	if !errors.Is(errs[2], ErrUnmodelled) {
		t.Errorf("a route with an mtu: %v, want ErrUnmodelled", errs[2])
	}
	if !errors.Is(errs[3], ErrAddressRoute) {
		t.Errorf("a local route: %v, want ErrAddressRoute", errs[3])
	}
	waitFor(t, "both rewritten routes trapped", func() bool {
		a, _ := first(p4)
		b, _ := first(p6)
		return a.Flags == fib.Trap && b.Flags&fib.Trap != 0 && b.Flags&fib.OffloadFailed == 0
	})
	if a, v := first(p4); !a.SameAs(&r4) || v == v4 || d.replaces(p4) <= n4 {
		t.Errorf("IPv4: %s version %d (was %d), %d driver replaces (were %d): want the same route, a new version, told to the driver", a.String(), v, v4, d.replaces(p4), n4)
	}
	if b, v := first(p6); !b.SameAs(&r6) || v == v6 || d.replaces(p6) <= n6 {
		t.Errorf("IPv6: %s version %d (was %d), %d driver replaces (were %d)", b.String(), v, v6, d.replaces(p6), n6)
	}
	if m := kernelModel(t, ns); true {
		got, _ := m.First(fib.TableMain, pm)
		if !got.Unmodelled || got.Flags != 0 && got.Flags != rm.Flags {
			t.Errorf("the mtu route changed: %s", got.String())
		}
		if _, ok := m.First(fib.TableLocal, pfx("10.1.0.1/32")); !ok {
			t.Error("the local route is gone")
		}
	}

	// Someone changed the route meanwhile: the stale copy is not written.
	ipn(t, ns, "route", "replace", p4.String(), "via", "10.1.0.3", "proto", "static")
	if err := w.Rewrite([]fib.Route{r4})[0]; !errors.Is(err, unix.ESRCH) {
		t.Errorf("rewrite of a route changed meanwhile: %v, want ESRCH", err)
	}
	if got, _ := kernelModel(t, ns).First(fib.TableMain, p4); got.Nexthops[0].Gateway != ip("10.1.0.3") {
		t.Errorf("the newer route was overwritten: %s", got.String())
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// vetoFull refuses routes beyond n, like netdevsim with a FIB of n entries.
type vetoFull struct {
	n       int
	held    []netip.Prefix
	written []RouteOp
	errs    []error
}

func (v *vetoFull) Veto(ops []RouteOp) []error {
	errs := make([]error, len(ops))
	for i, op := range ops {
		if op.Delete || slices.Contains(v.held, op.Route.Prefix) {
			continue
		}
		if len(v.held) >= v.n {
			errs[i] = &AckError{Errno: unix.EPERM, Msg: "Exceeded number of supported fib entries"}
			continue
		}
		v.held = append(v.held, op.Route.Prefix)
	}
	return errs
}

func (v *vetoFull) Written(ops []RouteOp, errs []error) {
	v.written, v.errs = append(v.written, ops...), append(v.errs, errs...)
}

func TestWriterSendsNothingTheVetoerRefuses(t *testing.T) {
	ns, _ := installerNS(t)
	v := &vetoFull{n: 2}
	w, err := NewRouteWriter(ns, WithVetoer(v))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	route := func(p, gw string) fib.Route {
		return fib.Route{Table: fib.TableMain, Prefix: pfx(p), Type: fib.TypeUnicast, Protocol: fib.ProtoBGP, Priority: 20,
			Nexthops: []fib.Nexthop{{Gateway: ip(gw)}}}
	}
	errs := w.Write([]RouteOp{
		{Route: route("192.0.2.0/24", "10.1.0.2")},
		{Route: route("192.0.2.128/25", "10.99.0.1")}, // let through, refused by the kernel
		{Route: route("198.51.100.0/24", "10.1.0.2")}, // over the vetoer's room
	})
	if errs[0] != nil || !errors.Is(errs[1], unix.ENETUNREACH) {
		t.Errorf("ops the vetoer let through: %v, %v", errs[0], errs[1])
	}
	var ae *AckError
	if !errors.As(errs[2], &ae) || !errors.Is(errs[2], unix.EPERM) || ae.Error() != "operation not permitted: Exceeded number of supported fib entries" {
		t.Errorf("vetoed op: %v, want the vetoer's EPERM", errs[2])
	}
	if len(v.written) != 2 || v.errs[0] != nil || v.errs[1] == nil {
		t.Errorf("Written got %d ops with %v, want the two let through with the kernel's answers", len(v.written), v.errs)
	}
	got := bgpRoutes(t, ns)
	if _, ok := got[pfx("198.51.100.0/24")]; ok || len(got) != 1 {
		t.Errorf("the kernel holds %v, want only 192.0.2.0/24", got)
	}
}

// TestAnIdenticalIPv6ReplaceIsProgrammedAgain: `ip -6 route replace` with
// nothing changed (what FRR's zebra does when its client sends a route
// again) makes the kernel write a new route object, announced without
// flags, which its drivers program again. A driver attached to the
// listener is told so too, and the route is flagged again; without that
// the prefix waited for hardware for good. Over a nexthop object too, as
// zebra writes its routes.
func TestAnIdenticalIPv6ReplaceIsProgrammedAgain(t *testing.T) {
	ns, _ := installerNS(t)
	if err := SetNotifyMode(Options{NetNS: ns}, fib.IPv6, 1); err != nil {
		t.Fatal(err)
	}
	d := startRecording(t, ns, fib.Trap)

	ipn(t, ns, "nexthop", "add", "id", "14", "via", "2001:db8:ff::2", "dev", "eth1")
	plain, object := pfx("2001:db8:1::/64"), pfx("2001:db8:2::/64")
	routes := map[netip.Prefix][]string{
		plain:  {"via", "2001:db8:ff::2", "proto", "bgp", "metric", "20"},
		object: {"nhid", "14", "proto", "bgp", "metric", "20"},
	}
	for p, how := range routes {
		ipn(t, ns, append([]string{"-6", "route", "add", p.String()}, how...)...)
	}
	first := d.first
	for p, how := range routes {
		waitFor(t, p.String()+" trapped", func() bool { r, _ := first(p); return r.Flags == fib.Trap })
		r, v := first(p)
		n := d.replaces(p)
		ipn(t, ns, append([]string{"-6", "route", "replace", p.String()}, how...)...)
		waitFor(t, p.String()+" told to the driver again", func() bool { return d.replaces(p) > n })
		waitFor(t, p.String()+" trapped again", func() bool { r, _ := first(p); return r.Flags == fib.Trap })
		if got, gv := first(p); !got.SameAs(&r) || gv == v {
			t.Errorf("%s after an identical replace: %s version %d (was %d); want the same route, a new version", p, got.String(), gv, v)
		}
	}
}
