//go:build linux

package api_test

import (
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fibgate/fibgate/plugin/api/apitest"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// syncAgent opens an agent session and reads the initial table.
func syncAgent(t *testing.T, d *apitest.Daemon) (pb.HardwareService_ReportRoutesClient, map[string]*pb.RouteInstruction) {
	t.Helper()
	stream, err := pb.NewHardwareServiceClient(d.Conn).ReportRoutes(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.ReportRoutesRequest{Agent: "test-agent"}); err != nil {
		t.Fatal(err)
	}
	table := map[string]*pb.RouteInstruction{}
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range m.GetInstructions() {
			table[in.GetRoute().GetPrefix()] = in
		}
		if m.GetSyncComplete() {
			return stream, table
		}
	}
}

func TestAnExternalAgentConfirmsRoutesOverItsStream(t *testing.T) {
	d := startWithRoutes(t)
	stream, table := syncAgent(t, d)
	in := table["203.0.113.16/28"]
	if in.GetOperation() != pb.Operation_OPERATION_PROGRAM || in.GetRoute().GetTable() != fib.TableMain ||
		len(in.GetRoute().GetNexthops()) != 1 || in.GetRoute().GetNexthops()[0].GetLinkName() != "eth1" || in.GetGeneration() == 0 {
		t.Fatalf("instruction %v, want program 203.0.113.16/28 via eth1", in)
	}
	if _, ok := table["127.0.0.1/32"]; !ok {
		t.Errorf("the initial table lacks the local table's routes: agents get every forwarding route")
	}

	// A report for an older generation is stale and ignored.
	err := stream.Send(&pb.ReportRoutesRequest{Reports: []*pb.RouteReport{
		{Table: fib.TableMain, Prefix: "203.0.113.16/28", Generation: in.GetGeneration() + 1000, Flags: &pb.HardwareFlags{Trap: true}},
		{Table: fib.TableMain, Prefix: "192.0.2.0/24", Flags: &pb.HardwareFlags{Trap: true}},
		{Table: fib.TableMain, Prefix: "203.0.113.16/28", Generation: in.GetGeneration(), Flags: &pb.HardwareFlags{Offload: true}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	st := d.WaitState(t, fib.TableMain, "203.0.113.16/28", gate.Confirmed)
	if st.Flags != fib.Offload {
		t.Errorf("flags %s, want offload", st.Flags)
	}
	stats, err := pb.NewStatsServiceClient(d.Conn).GetStats(ctxT(t), &pb.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if x := stats.GetExternal(); x.GetAgents() != 1 || x.GetReportsApplied() != 1 || x.GetReportsIgnored() != 2 {
		t.Errorf("external stats %v, want 1 agent, 1 applied, 2 ignored", x)
	}

	// Changes reach the agent: a removed route becomes a remove.
	// Other instructions may come first (the kernel adds IPv6 link-local
	// routes once duplicate address detection ends): skip them.
	kerneltest.IP(t, d.NS, "route", "del", "203.0.113.16/28", "dev", "eth1")
	var removed *pb.RouteInstruction
	for removed == nil {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for the remove of 203.0.113.16/28: %v", err)
		}
		for _, ins := range m.GetInstructions() {
			if ins.GetRoute().GetPrefix() == "203.0.113.16/28" {
				removed = ins
			}
		}
	}
	if removed.GetOperation() != pb.Operation_OPERATION_REMOVE {
		t.Errorf("got %v, want remove 203.0.113.16/28", removed)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := stream.Recv(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("session ended with %v, want a clean end after CloseSend", err)
		}
	}
}

func TestAMalformedAgentReportEndsItsSessionNamingTheField(t *testing.T) {
	d := startWithRoutes(t)
	for _, tt := range []struct {
		report *pb.RouteReport
		field  string
	}{
		{&pb.RouteReport{Table: 254, Prefix: "203.0.113.300/28"}, "reports[1].prefix"},
		{&pb.RouteReport{Table: 0, Prefix: "203.0.113.0/28"}, "reports[1].table"},
	} {
		stream, _ := syncAgent(t, d)
		ok := &pb.RouteReport{Table: 254, Prefix: "203.0.113.0/28", Flags: &pb.HardwareFlags{Trap: true}}
		if err := stream.Send(&pb.ReportRoutesRequest{Reports: []*pb.RouteReport{ok, tt.report}}); err != nil {
			t.Fatal(err)
		}
		var err error
		for err == nil {
			_, err = stream.Recv()
		}
		wantStatus(t, err, codes.InvalidArgument, tt.field)
	}
	mustStillServe(t, d)
}

func TestSimControlsWithoutASimAnswerFailedPrecondition(t *testing.T) {
	d := apitest.Start(t, apitest.Options{})
	c := pb.NewSimServiceClient(d.Conn)
	ctx := ctxT(t)
	calls := map[string]func() error{
		"SetSimCapacity": func() error { _, err := c.SetSimCapacity(ctx, &pb.SetSimCapacityRequest{Ipv4Prefix: 10}); return err },
		"SetSimLatency": func() error {
			_, err := c.SetSimLatency(ctx, &pb.SetSimLatencyRequest{Fixed: durationpb.New(1e6)})
			return err
		},
		"SetSimRate": func() error { _, err := c.SetSimRate(ctx, &pb.SetSimRateRequest{RoutesPerSecond: 5}); return err },
		"InjectFailure": func() error {
			_, err := c.InjectFailure(ctx, &pb.InjectFailureRequest{Prefix: "10.0.0.0/8"})
			return err
		},
		"ClearFailure": func() error { _, err := c.ClearFailure(ctx, &pb.ClearFailureRequest{Prefix: "10.0.0.0/8"}); return err },
		"SetFailProbability": func() error {
			_, err := c.SetFailProbability(ctx, &pb.SetFailProbabilityRequest{Probability: 0.5})
			return err
		},
		"GetSimStats": func() error { _, err := c.GetSimStats(ctx, &pb.GetSimStatsRequest{}); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			wantStatus(t, err, codes.FailedPrecondition, "")
			if want := "no simulated ASIC in this daemon"; !strings.Contains(err.Error(), want) {
				t.Errorf("%v does not say %q", err, want)
			}
		})
	}
	mustStillServe(t, d)
}

func TestStatsCountRoutesByStateAndTheListener(t *testing.T) {
	d := startWithRoutes(t)
	s, err := pb.NewStatsServiceClient(d.Conn).GetStats(ctxT(t), &pb.GetStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	by := map[pb.State]uint64{}
	for _, c := range s.GetRoutesByState() {
		by[c.GetState()] = c.GetRoutes()
	}
	if len(by) != 7 || by[pb.State_STATE_CONFIRMED] != 10 || by[pb.State_STATE_PENDING] != 20 {
		t.Errorf("routes by state %v, want all 7 states with 10 confirmed and 20 pending", by)
	}
	if s.GetConfirmations() < 10 || s.GetTimeToHardware().GetCount() < 10 || s.GetTimeToHardware().GetMax() == nil {
		t.Errorf("confirmations %d, time to hardware %v", s.GetConfirmations(), s.GetTimeToHardware())
	}
	if l := s.GetListener(); l.GetNotifications() == 0 || l.GetRoutes() == 0 {
		t.Errorf("listener stats %v", l)
	}
}
