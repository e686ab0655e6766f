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
