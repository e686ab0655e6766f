//go:build linux

package api_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/api/apitest"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/hw/sim"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// recordingRetrier is a Retrier that remembers what it was asked.
type recordingRetrier struct {
	mu    sync.Mutex
	calls []string
}

func (r *recordingRetrier) RetryNow(_ context.Context, table uint32, p netip.Prefix) (api.RetryResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf("%s table %d", p, table))
	return api.RetryResult{Rewritten: 1}, nil
}

// TestTableZeroMeansEveryTable: in every request, table 0 is every table.
// 203.0.113.0/28 is in main and in table 100, 203.0.113.16/28 in table 100
// alone: ListRoutes lists all three, GetRoute without a table finds the
// one that is in one table and asks to name the table of the other, and
// RetryRoutes without a table retries the prefix wherever it failed.
func TestTableZeroMeansEveryTable(t *testing.T) {
	scope := gate.DefaultScope()
	scope.Name, scope.Family, scope.Tables = "vrf", fib.IPv4, []uint32{100, fib.TableMain}
	scope.Prefixes = []gate.PrefixRange{{Prefix: netip.MustParsePrefix("203.0.113.0/24")}}
	cfg := sim.DefaultConfig()
	cfg.Latency = time.Millisecond
	cfg.Tables = append(cfg.Tables, 100)
	retrier := &recordingRetrier{}
	d := apitest.Start(t, apitest.Options{Policy: gate.Policy{Scopes: []gate.Scope{scope}}, Sim: true, SimConfig: &cfg,
		Server: []api.Option{api.WithRetrier(retrier)}})
	kerneltest.Batch(t, d.NS, []string{
		"route add 203.0.113.0/28 dev eth1",
		"route add 203.0.113.0/28 dev eth1 table 100",
		"route add 203.0.113.16/28 dev eth1 table 100",
	})
	d.WaitState(t, fib.TableMain, "203.0.113.0/28", gate.Confirmed)
	d.WaitState(t, 100, "203.0.113.0/28", gate.Confirmed)
	d.WaitState(t, 100, "203.0.113.16/28", gate.Confirmed)
	routes := pb.NewRouteServiceClient(d.Conn)

	l, err := routes.ListRoutes(ctxT(t), &pb.ListRoutesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, r := range l.GetRoutes() {
		listed = append(listed, fmt.Sprintf("%s@%d", r.GetPrefix(), r.GetTable()))
	}
	if strings.Join(listed, " ") != "203.0.113.0/28@100 203.0.113.16/28@100 203.0.113.0/28@254" {
		t.Errorf("ListRoutes with table 0 = %v, want both of table 100 then main's", listed)
	}

	r, err := routes.GetRoute(ctxT(t), &pb.GetRouteRequest{Prefix: "203.0.113.16/28"})
	if err != nil || r.GetRoute().GetTable() != 100 {
		t.Errorf("GetRoute of a prefix in table 100 alone, table 0: %v, %v; want table 100's", r.GetRoute(), err)
	}
	_, err = routes.GetRoute(ctxT(t), &pb.GetRouteRequest{Prefix: "203.0.113.0/28"})
	wantStatus(t, err, codes.FailedPrecondition, "")
	if !strings.Contains(err.Error(), "tables 100, 254") {
		t.Errorf("%v does not name the tables", err)
	}
	for _, table := range []uint32{100, fib.TableMain} {
		r, err := routes.GetRoute(ctxT(t), &pb.GetRouteRequest{Prefix: "203.0.113.0/28", Table: table})
		if err != nil || r.GetRoute().GetTable() != table {
			t.Errorf("GetRoute in table %d: %v, %v", table, r.GetRoute(), err)
		}
	}
	_, err = routes.GetRoute(ctxT(t), &pb.GetRouteRequest{Prefix: "203.0.113.32/28"})
	wantStatus(t, err, codes.NotFound, "")

	hw := pb.NewHardwareServiceClient(d.Conn)
	_, err = hw.RetryRoutes(ctxT(t), &pb.RetryRoutesRequest{Prefix: "203.0.113.0/28"})
	wantStatus(t, err, codes.FailedPrecondition, "")
	if !strings.Contains(err.Error(), "table 100") || !strings.Contains(err.Error(), "table 254") {
		t.Errorf("%v does not say where the prefix is not failed", err)
	}
	if _, err := pb.NewSimServiceClient(d.Conn).InjectFailure(ctxT(t), &pb.InjectFailureRequest{Prefix: "203.0.113.0/28"}); err != nil {
		t.Fatal(err)
	}
	d.WaitState(t, 100, "203.0.113.0/28", gate.Failed)
	if _, err := hw.RetryRoutes(ctxT(t), &pb.RetryRoutesRequest{Prefix: "203.0.113.0/28"}); err != nil {
		t.Fatalf("RetryRoutes of a prefix failed in some table, table 0: %v", err)
	}
	retrier.mu.Lock()
	defer retrier.mu.Unlock()
	if strings.Join(retrier.calls, ";") != "203.0.113.0/28 table 0" {
		t.Errorf("retrier asked %q, want the prefix in every table (0)", retrier.calls)
	}
}
