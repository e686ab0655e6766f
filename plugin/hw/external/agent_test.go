//go:build linux

package external_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/api/apitest"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/hw/external"
	"github.com/fibgate/fibgate/plugin/kernel"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// The listener is what the backend reports to.
var _ external.Target = (*kernel.Listener)(nil)

// agent is a test agent on a real ReportRoutes stream: it keeps the table
// of routes it was told to program, like a SAI agent would.
type agent struct {
	t      *testing.T
	stream pb.HardwareService_ReportRoutesClient
	table  map[string]*pb.RouteInstruction
}

func connect(t *testing.T, d *apitest.Daemon, name string) (*agent, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	stream, err := pb.NewHardwareServiceClient(d.Conn).ReportRoutes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.ReportRoutesRequest{Agent: name}); err != nil {
		t.Fatal(err)
	}
	a := &agent{t: t, stream: stream, table: map[string]*pb.RouteInstruction{}}
	for m := a.recv(); !m.GetSyncComplete(); m = a.recv() {
	}
	return a, cancel
}

// recv applies one message to the agent's table and returns it.
func (a *agent) recv() *pb.ReportRoutesResponse {
	a.t.Helper()
	m, err := a.stream.Recv()
	if err != nil {
		a.t.Fatal(err)
	}
	for _, in := range m.GetInstructions() {
		k := in.GetRoute().GetPrefix()
		if in.GetOperation() == pb.Operation_OPERATION_REMOVE {
			delete(a.table, k)
		} else {
			a.table[k] = in
		}
	}
	return m
}

// until reads messages until the instruction for prefix satisfies ok.
func (a *agent) until(prefix string, ok func(*pb.RouteInstruction) bool) *pb.RouteInstruction {
	a.t.Helper()
	for !ok(a.table[prefix]) {
		a.recv()
	}
	return a.table[prefix]
}

func (a *agent) report(reports ...*pb.RouteReport) {
	a.t.Helper()
	if err := a.stream.Send(&pb.ReportRoutesRequest{Reports: reports}); err != nil {
		a.t.Fatal(err)
	}
}

// setup runs the daemon with two links, a connected IPv4 route and an IPv4
// and an IPv6 multipath route, all in place before any agent connects.
func setup(t *testing.T) *apitest.Daemon {
	t.Helper()
	d := apitest.Start(t, apitest.Options{Links: []string{"eth1", "eth2"}})
	kerneltest.Batch(t, d.NS, []string{
		"route add 192.0.2.0/24 dev eth1",
		"route add 198.51.100.0/24 nexthop via 10.0.1.2 dev eth1 onlink nexthop via 10.0.2.2 dev eth2 onlink",
		"route add 2001:db8:1::/48 nexthop via fe80::1 dev eth1 nexthop via fe80::2 dev eth2",
	})
	for _, p := range []string{"192.0.2.0/24", "198.51.100.0/24", "2001:db8:1::/48"} {
		d.WaitState(t, fib.TableMain, p, gate.Pending)
	}
	return d
}

// modelRoute returns the listener's forwarding route for prefix.
func modelRoute(d *apitest.Daemon, prefix string) (r fib.Route, ok bool) {
	d.Listener.View(func(f *fib.FIB) { r, ok = f.First(fib.TableMain, netip.MustParsePrefix(prefix)) })
	return r, ok
}

func TestAnAgentGetsTheWholeTableFirstThenEveryChange(t *testing.T) {
	d := setup(t)
	a, _ := connect(t, d, "sai")
	for _, p := range []string{"192.0.2.0/24", "198.51.100.0/24", "2001:db8:1::/48", "127.0.0.0/8"} {
		if a.table[p] == nil {
			t.Errorf("initial table lacks %s", p)
		}
	}
	mp := a.table["198.51.100.0/24"].GetRoute()
	if len(mp.GetNexthops()) != 2 || mp.GetNexthops()[1].GetGateway() != "10.0.2.2" || mp.GetNexthops()[1].GetLinkName() != "eth2" {
		t.Errorf("multipath route %v", mp)
	}
	if n := len(a.table["2001:db8:1::/48"].GetRoute().GetNexthops()); n != 2 {
		t.Errorf("IPv6 siblings arrive as one route with 2 nexthops, got %d", n)
	}

	old := a.table["192.0.2.0/24"].GetGeneration()
	kerneltest.IP(t, d.NS, "route", "replace", "192.0.2.0/24", "dev", "eth2")
	in := a.until("192.0.2.0/24", func(in *pb.RouteInstruction) bool { return in.GetGeneration() != old })
	if in.GetGeneration() <= old || in.GetRoute().GetNexthops()[0].GetLinkName() != "eth2" {
		t.Errorf("replace gave %v", in)
	}
	kerneltest.IP(t, d.NS, "route", "del", "192.0.2.0/24")
	a.until("192.0.2.0/24", func(in *pb.RouteInstruction) bool { return in == nil })

	// A second agent gets the same table, and both hear of changes.
	b, stopB := connect(t, d, "p4")
	if len(b.table) != len(a.table) {
		t.Errorf("second agent's table has %d routes, the first's %d", len(b.table), len(a.table))
	}
	if got := d.Backend.Stats().Agents; got != 2 {
		t.Errorf("%d agents counted, want 2", got)
	}
	kerneltest.IP(t, d.NS, "route", "add", "203.0.113.0/24", "dev", "eth1")
	a.until("203.0.113.0/24", func(in *pb.RouteInstruction) bool { return in != nil })
	b.until("203.0.113.0/24", func(in *pb.RouteInstruction) bool { return in != nil })

	stopB()
	deadline := time.Now().Add(10 * time.Second)
	for d.Backend.Stats().Agents != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("a disconnected agent is still counted: %+v", d.Backend.Stats())
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

func TestReportsBecomeTheRoutesHardwareFlags(t *testing.T) {
	d := setup(t)
	a, _ := connect(t, d, "sai")
	gen := func(p string) uint64 { return a.table[p].GetGeneration() }

	a.report(
		&pb.RouteReport{Table: 254, Prefix: "192.0.2.0/24", Generation: gen("192.0.2.0/24"), Flags: &pb.HardwareFlags{Offload: true}},
		&pb.RouteReport{Table: 254, Prefix: "198.51.100.0/24", Generation: gen("198.51.100.0/24"), Flags: &pb.HardwareFlags{Offload: true},
			NexthopFlags: []*pb.HardwareFlags{{Offload: true}, {Offload: true}}},
		&pb.RouteReport{Table: 254, Prefix: "2001:db8:1::/48", Generation: gen("2001:db8:1::/48"),
			NexthopFlags: []*pb.HardwareFlags{{Offload: true}, {OffloadFailed: true}}},
	)
	d.WaitState(t, fib.TableMain, "192.0.2.0/24", gate.Confirmed)
	d.WaitState(t, fib.TableMain, "198.51.100.0/24", gate.Confirmed)
	st := d.WaitState(t, fib.TableMain, "2001:db8:1::/48", gate.Failed)
	if len(st.NexthopFlags) != 2 || st.NexthopFlags[0] != fib.Offload || st.NexthopFlags[1] != fib.OffloadFailed {
		t.Errorf("IPv6 per-sibling flags in the gate: %v", st.NexthopFlags)
	}
	r, _ := modelRoute(d, "198.51.100.0/24")
	if r.Flags != fib.Offload || r.Nexthops[0].HW != fib.Offload || r.Nexthops[1].HW != fib.Offload {
		t.Errorf("IPv4 multipath in the model: %s", r.String())
	}

	// The route is replaced: a late report for the old one is stale and
	// must not confirm the new one.
	old := gen("192.0.2.0/24")
	kerneltest.IP(t, d.NS, "route", "replace", "192.0.2.0/24", "dev", "eth2")
	a.until("192.0.2.0/24", func(in *pb.RouteInstruction) bool { return in.GetGeneration() != old })
	d.WaitState(t, fib.TableMain, "192.0.2.0/24", gate.Pending)
	ignored := d.Backend.Stats().ReportsIgnored
	a.report(&pb.RouteReport{Table: 254, Prefix: "192.0.2.0/24", Generation: old, Flags: &pb.HardwareFlags{Offload: true}})
	a.report(&pb.RouteReport{Table: 254, Prefix: "192.0.2.0/24", Generation: gen("192.0.2.0/24"), Flags: &pb.HardwareFlags{Trap: true}})
	st = d.WaitState(t, fib.TableMain, "192.0.2.0/24", gate.Confirmed)
	if st.Flags != fib.Trap {
		t.Errorf("after a stale offload report and a current trap report the flags are %s", st.Flags)
	}
	if got := d.Backend.Stats().ReportsIgnored - ignored; got != 1 {
		t.Errorf("%d reports ignored, want the stale one", got)
	}
	if r, _ := modelRoute(d, "192.0.2.0/24"); r.Flags != fib.Trap {
		t.Errorf("model flags %s", r.Flags)
	}
}

// TestARewrittenRouteIsProgrammedAgain is the retry of a failed route with
// the external backend (issue 11): the daemon's rewrite (what the gate's
// retry and `fibgate hw retry` do) reaches the agent as a new instruction
// for the route, so the agent programs it again and its report confirms it.
func TestARewrittenRouteIsProgrammedAgain(t *testing.T) {
	d := setup(t)
	a, _ := connect(t, d, "sai")
	old := a.table["192.0.2.0/24"].GetGeneration()
	a.report(&pb.RouteReport{Table: 254, Prefix: "192.0.2.0/24", Generation: old, Flags: &pb.HardwareFlags{OffloadFailed: true}})
	d.WaitState(t, fib.TableMain, "192.0.2.0/24", gate.Failed)

	r, ok := modelRoute(d, "192.0.2.0/24")
	if !ok {
		t.Fatal("no route in the model")
	}
	w, err := kernel.NewRouteWriter(d.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Rewrite([]fib.Route{r})[0]; err != nil {
		t.Fatalf("rewrite: %v", err)
	}
	in := a.until("192.0.2.0/24", func(in *pb.RouteInstruction) bool { return in != nil && in.GetGeneration() != old })
	if in.GetOperation() != pb.Operation_OPERATION_PROGRAM || in.GetRoute().GetNexthops()[0].GetLinkName() != "eth1" {
		t.Errorf("after the rewrite the agent got %v, want the same route to program", in)
	}
	a.report(&pb.RouteReport{Table: 254, Prefix: "192.0.2.0/24", Generation: in.GetGeneration(), Flags: &pb.HardwareFlags{Offload: true}})
	if st := d.WaitState(t, fib.TableMain, "192.0.2.0/24", gate.Confirmed); st.Flags != fib.Offload {
		t.Errorf("confirmed with %s, want offload", st.Flags)
	}
}
