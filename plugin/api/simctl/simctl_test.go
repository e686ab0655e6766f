//go:build linux

package simctl_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/api/apitest"
	"github.com/fibgate/fibgate/plugin/api/simctl"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/hw/sim"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

var _ api.SimControl = simctl.New((*sim.Sim)(nil))

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestTheSimIsSteeredThroughTheAPI(t *testing.T) {
	pol := gate.Policy{Scopes: []gate.Scope{{Name: "doc", Prefixes: []gate.PrefixRange{{Prefix: netip.MustParsePrefix("192.0.2.0/24")}}}}}
	d := apitest.Start(t, apitest.Options{Sim: true, Policy: pol})
	c := pb.NewSimServiceClient(d.Conn)
	ctx := ctxT(t)

	kerneltest.IP(t, d.NS, "route", "add", "192.0.2.0/24", "dev", "eth1")
	if st := d.WaitState(t, fib.TableMain, "192.0.2.0/24", gate.Confirmed); st.Flags != fib.Trap {
		t.Errorf("the sim programmed the route with %s, want trap", st.Flags)
	}
	if _, err := c.InjectFailure(ctx, &pb.InjectFailureRequest{Prefix: "192.0.2.0/24"}); err != nil {
		t.Fatal(err)
	}
	if st := d.WaitState(t, fib.TableMain, "192.0.2.0/24", gate.Failed); st.Flags&fib.OffloadFailed == 0 {
		t.Errorf("after InjectFailure the flags are %s", st.Flags)
	}
	if _, err := c.ClearFailure(ctx, &pb.ClearFailureRequest{Prefix: "192.0.2.0/24"}); err != nil {
		t.Fatal(err)
	}
	d.WaitState(t, fib.TableMain, "192.0.2.0/24", gate.Confirmed)

	calls := []func() error{
		func() error {
			_, err := c.SetSimCapacity(ctx, &pb.SetSimCapacityRequest{Ipv4Prefix: 1000, Ipv4Host: 10, Ipv6Prefix: 500, Ipv6Host: 5})
			return err
		},
		func() error {
			_, err := c.SetSimLatency(ctx, &pb.SetSimLatencyRequest{Fixed: durationpb.New(3 * time.Millisecond), Jitter: durationpb.New(time.Millisecond)})
			return err
		},
		func() error {
			_, err := c.SetSimRate(ctx, &pb.SetSimRateRequest{RoutesPerSecond: 500, Batch: 16})
			return err
		},
		func() error { _, err := c.SetSimRate(ctx, &pb.SetSimRateRequest{RoutesPerSecond: 400}); return err }, // keeps the batch
		func() error {
			_, err := c.SetFailProbability(ctx, &pb.SetFailProbabilityRequest{Probability: 0.125})
			return err
		},
	}
	for i, call := range calls {
		if err := call(); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	s, err := c.GetSimStats(ctx, &pb.GetSimStatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if s.GetCapacity().GetIpv4Prefix() != 1000 || s.GetCapacity().GetIpv6Host() != 5 || s.GetLatency().AsDuration() != 3*time.Millisecond ||
		s.GetJitter().AsDuration() != time.Millisecond || s.GetRoutesPerSecond() != 400 || s.GetBatch() != 16 ||
		s.GetFailProbability() != 0.125 || s.GetProgrammed() == 0 || s.GetUsed().GetIpv4Prefix() == 0 || s.GetOps() == 0 {
		t.Errorf("sim stats %v", s)
	}
}

func TestInvalidSimSettingsNameTheRequestField(t *testing.T) {
	d := apitest.Start(t, apitest.Options{Sim: true})
	c := pb.NewSimServiceClient(d.Conn)
	_, err := c.SetSimRate(ctxT(t), &pb.SetSimRateRequest{RoutesPerSecond: 10, Batch: 1 << 21})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "batch") {
		t.Fatalf("got %v, want INVALID_ARGUMENT naming batch", err)
	}
	found := false
	for _, det := range st.Details() {
		if br, ok := det.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				found = found || v.GetField() == "batch"
			}
		}
	}
	if !found {
		t.Errorf("no BadRequest detail for batch: %v", st.Details())
	}
	_, err = c.SetSimLatency(ctxT(t), &pb.SetSimLatencyRequest{Fixed: durationpb.New(-time.Second)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "fixed") {
		t.Errorf("negative latency: %v", err)
	}
	_, err = c.SetFailProbability(ctxT(t), &pb.SetFailProbabilityRequest{Probability: 2})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "probability") {
		t.Errorf("probability 2: %v", err)
	}
}
