//go:build linux

package kernel

import (
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fibgate/fibgate/plugin/fib"
)

// TestRouteWriterMatchesEveryAnswerToItsRequest writes more routes than one
// batch holds, with failures among them, and checks that each op gets its
// own answer: the kernel's errno where it refused, nil where it did the
// work, and that the kernel then holds exactly the routes that succeeded.
// (Only failures and each batch's last request are answered: a success is
// what a request without an answer before the last one's means.)
func TestRouteWriterMatchesEveryAnswerToItsRequest(t *testing.T) {
	ns, _ := installerNS(t)
	w, err := NewRouteWriter(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	route := func(i int, gw string) fib.Route {
		return fib.Route{Table: fib.TableMain, Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32),
			Type: fib.TypeUnicast, Protocol: fib.ProtoBGP, Priority: 20, Nexthops: []fib.Nexthop{{Gateway: netip.MustParseAddr(gw)}}}
	}
	const n = 3*writeBatch + 7
	// Refused ops inside batches and as the last of one (the request
	// that asks for an acknowledgement: its refusal is its answer).
	refused := func(i int) bool { return i%100 == 7 || i == writeBatch-1 }
	ops := make([]RouteOp, n)
	for i := range ops {
		gw := "10.1.0.2"
		if refused(i) {
			gw = "10.99.0.1" // not reachable: the kernel refuses it
		}
		ops[i] = RouteOp{Route: route(i, gw)}
	}
	ops[n-1] = RouteOp{Delete: true, Route: route(5000, "10.1.0.2")} // not there
	errs := w.Write(ops)
	want := 0
	for i, err := range errs {
		switch {
		case i == n-1:
			if !errors.Is(err, unix.ESRCH) {
				t.Errorf("delete of an absent route: %v, want ESRCH", err)
			}
		case refused(i):
			if !errors.Is(err, unix.ENETUNREACH) {
				t.Errorf("op %d (unreachable gateway): %v, want ENETUNREACH", i, err)
			}
		case err != nil:
			t.Errorf("op %d: %v", i, err)
		default:
			want++
		}
	}
	got := 0
	for r := range kernelModel(t, ns).All() {
		if r.Protocol == fib.ProtoBGP && r.Prefix.Bits() == 32 {
			got++
		}
	}
	if got != want {
		t.Errorf("the kernel holds %d of the routes, want the %d that were acknowledged", got, want)
	}
}

// TestNotificationsNameTheWriteThatMadeThem pins what a fence that does
// not wait for the listener would rest on (docs/design-notes.md, "Best
// paths moving at scale", the listener's lag): the kernel stamps the
// notification of a change a request made with the request's nlmsg_seq
// and the writer's port id (rtmsg_fib and inet6_rt_notify pass the
// request's nl_info), whoever reads it and however late, and a change
// another program made with that program's own port, never the writer's.
// Both families, an add, a replace and a delete, in one batch.
func TestNotificationsNameTheWriteThatMadeThem(t *testing.T) {
	ns, _ := installerNS(t)
	sub := testSubscribe(t, ns)
	w, err := NewRouteWriter(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	sa, err := unix.Getsockname(w.fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*unix.SockaddrNetlink).Pid
	r4 := fib.Route{Table: fib.TableMain, Prefix: netip.MustParsePrefix("198.18.7.0/24"), Type: fib.TypeUnicast,
		Protocol: fib.ProtoBGP, Priority: 20, Nexthops: []fib.Nexthop{{Gateway: netip.MustParseAddr("10.1.0.2")}}}
	r6 := fib.Route{Table: fib.TableMain, Prefix: netip.MustParsePrefix("2001:db8:77::/48"), Type: fib.TypeUnicast,
		Protocol: fib.ProtoBGP, Priority: 20, Nexthops: []fib.Nexthop{{Gateway: netip.MustParseAddr("2001:db8:ff::2")}}}
	moved := r4
	moved.Nexthops = []fib.Nexthop{{Gateway: netip.MustParseAddr("10.1.0.3")}}
	ops := []RouteOp{{Route: r4}, {Route: r6}, {Route: moved}, {Delete: true, Route: r6}}
	for i, err := range w.Write(ops) {
		if err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
	}
	first := w.seq - uint32(len(ops)) + 1
	// Then a route of ip's: its notification comes after the writer's.
	ipn(t, ns, "route", "add", "198.18.8.0/24", "via", "10.1.0.2")
	var got []RouteMessage
	ip := waitMessage(t, sub, "ip's route", func(v any) bool {
		m, ok := v.(RouteMessage)
		if ok && m.Route.Protocol == fib.ProtoBGP {
			got = append(got, m)
		}
		return routeTo(unix.RTM_NEWROUTE, "198.18.8.0/24")(v)
	}).(RouteMessage)
	want := []struct {
		typ    uint16
		prefix netip.Prefix
	}{{unix.RTM_NEWROUTE, r4.Prefix}, {unix.RTM_NEWROUTE, r6.Prefix}, {unix.RTM_NEWROUTE, r4.Prefix}, {unix.RTM_DELROUTE, r6.Prefix}}
	if len(got) != len(want) {
		t.Fatalf("%d notifications of the writer's routes, want %d: %+v", len(got), len(want), got)
	}
	for i, x := range want {
		m := got[i]
		if m.Type != x.typ || m.Route.Prefix != x.prefix || m.PID != port || m.Seq != first+uint32(i) {
			t.Errorf("op %d's notification: type %d %v port %d seq %d, want type %d %v, the writer's port %d and the request's seq %d",
				i, m.Type, m.Route.Prefix, m.PID, m.Seq, x.typ, x.prefix, port, first+uint32(i))
		}
	}
	if ip.PID == port || ip.PID == 0 {
		t.Errorf("a route another program added: notification port %d, want that program's (not 0, not the writer's %d)", ip.PID, port)
	}
}
