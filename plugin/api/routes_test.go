//go:build linux

package api_test

import (
	"net/netip"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/fibgate/fibgate/plugin/api/apitest"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

func prefixes(routes []*pb.Route) []string {
	out := make([]string, 0, len(routes))
	for _, r := range routes {
		out = append(out, r.GetPrefix())
	}
	return out
}

func TestListRoutesFilters(t *testing.T) {
	d := startWithRoutes(t)
	c := pb.NewRouteServiceClient(d.Conn)
	confirmed, p4, p6 := testRoutes()
	all := append(append(slices.Clone(confirmed), p4...), p6...)
	tests := []struct {
		name string
		req  *pb.ListRoutesRequest
		want []string
	}{
		{"no filter lists every gated prefix", &pb.ListRoutesRequest{PageSize: 1000}, all},
		{"by state", &pb.ListRoutesRequest{State: pb.State_STATE_CONFIRMED}, confirmed},
		{"by family", &pb.ListRoutesRequest{Family: pb.Family_FAMILY_IPV6}, p6},
		{"by table", &pb.ListRoutesRequest{Table: 100}, nil},
		{"by main table", &pb.ListRoutesRequest{Table: fib.TableMain, Family: pb.Family_FAMILY_IPV6}, p6},
		{"by exact prefix", &pb.ListRoutesRequest{Prefix: "203.0.113.32/28"}, []string{"203.0.113.32/28"}},
		{"an exact prefix does not cover", &pb.ListRoutesRequest{Prefix: "203.0.113.0/24"}, nil},
		{"covered by a prefix", &pb.ListRoutesRequest{Prefix: "203.0.113.0/26", IncludeCovered: true}, p4[:4]},
		{"covered includes the prefix itself", &pb.ListRoutesRequest{Prefix: "2001:db8:2::/48", IncludeCovered: true}, p6[1:2]},
		{"filters combine", &pb.ListRoutesRequest{Prefix: "198.51.100.0/24", IncludeCovered: true, State: pb.State_STATE_PENDING}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := c.ListRoutes(ctxT(t), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := prefixes(r.GetRoutes()); !slices.Equal(got, tt.want) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
			if r.GetNextPageToken() != "" {
				t.Errorf("a complete answer has a next page token")
			}
		})
	}
	r, err := c.ListRoutes(ctxT(t), &pb.ListRoutesRequest{Prefix: "198.51.100.7/32"})
	if err != nil || len(r.GetRoutes()) != 1 {
		t.Fatal(r, err)
	}
	got := r.GetRoutes()[0]
	if got.GetScope() != "hosts" || got.GetTable() != fib.TableMain || got.GetFamily() != pb.Family_FAMILY_IPV4 ||
		got.GetSeenTime() == nil || got.GetConfirmedTime() == nil || got.GetWithdrawnTime() != nil || got.GetFlags() == nil {
		t.Errorf("route has wrong or missing fields: %v", got)
	}
}

func TestListRoutesPagesThroughEveryRouteOnce(t *testing.T) {
	d := startWithRoutes(t)
	c := pb.NewRouteServiceClient(d.Conn)
	confirmed, p4, p6 := testRoutes()
	want := append(append(slices.Clone(confirmed), p4...), p6...)

	var got []string
	pages := 0
	req := &pb.ListRoutesRequest{PageSize: 7}
	for {
		r, err := c.ListRoutes(ctxT(t), req)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(r.GetRoutes()) > 7 {
			t.Fatalf("page of %d routes, asked for 7", len(r.GetRoutes()))
		}
		got = append(got, prefixes(r.GetRoutes())...)
		if r.GetNextPageToken() == "" {
			break
		}
		req.PageToken = r.GetNextPageToken()
		if pages == 2 {
			// A route added behind the cursor does not shift what follows.
			kerneltest.IP(t, d.NS, "route", "add", "198.51.100.200/32", "dev", "eth1")
			d.WaitState(t, fib.TableMain, "198.51.100.200/32", gate.Confirmed)
		}
	}
	if pages != 5 || !slices.Equal(got, want) {
		t.Errorf("%d pages: %v\nwant 5 pages: %v", pages, got, want)
	}

	// A token is bound to its filters.
	r, err := c.ListRoutes(ctxT(t), &pb.ListRoutesRequest{PageSize: 2, State: pb.State_STATE_PENDING})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListRoutes(ctxT(t), &pb.ListRoutesRequest{PageToken: r.GetNextPageToken()})
	wantStatus(t, err, codes.InvalidArgument, "page_token")
}

func TestGetRoute(t *testing.T) {
	d := startWithRoutes(t)
	c := pb.NewRouteServiceClient(d.Conn)
	r, err := c.GetRoute(ctxT(t), &pb.GetRouteRequest{Prefix: "2001:db8:3::/48"})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetRoute().GetState() != pb.State_STATE_PENDING || r.GetRoute().GetScope() != "v6" || r.GetRoute().GetReason() == "" {
		t.Errorf("got %v", r.GetRoute())
	}
	_, err = c.GetRoute(ctxT(t), &pb.GetRouteRequest{Prefix: "192.0.2.0/24"})
	wantStatus(t, err, codes.NotFound, "")
	_, err = c.GetRoute(ctxT(t), &pb.GetRouteRequest{Prefix: "198.51.100.1/32", Table: 100})
	wantStatus(t, err, codes.NotFound, "")
}

func TestWatchRoutesSendsTheSnapshotThenChanges(t *testing.T) {
	d := startWithRoutes(t)
	c := pb.NewRouteServiceClient(d.Conn)
	stream, err := c.WatchRoutes(ctxT(t), &pb.WatchRoutesRequest{Family: pb.Family_FAMILY_IPV4})
	if err != nil {
		t.Fatal(err)
	}
	var snap []string
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if !m.GetSnapshot() {
			t.Fatalf("a change before the snapshot completed: %v", m)
		}
		snap = append(snap, prefixes(m.GetRoutes())...)
		if m.GetSnapshotComplete() {
			break
		}
	}
	confirmed, p4, _ := testRoutes()
	if want := append(slices.Clone(confirmed), p4...); !slices.Equal(snap, want) {
		t.Errorf("snapshot %v\nwant %v", snap, want)
	}

	kerneltest.IP(t, d.NS, "route", "add", "2001:db8:99::/48", "dev", "eth1") // filtered out
	kerneltest.IP(t, d.NS, "route", "del", "198.51.100.3/32", "dev", "eth1")
	m, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if m.GetSnapshot() || len(m.GetRoutes()) != 1 || m.GetRoutes()[0].GetPrefix() != "198.51.100.3/32" ||
		m.GetRoutes()[0].GetState() != pb.State_STATE_WITHDRAWN || m.GetRoutes()[0].GetWithdrawnTime() == nil {
		t.Errorf("change %v, want 198.51.100.3/32 withdrawn", m)
	}
}

func TestWatchRoutesOfAnEmptyGateCompletesTheSnapshotAtOnce(t *testing.T) {
	pol := gate.Policy{Scopes: []gate.Scope{{Name: "doc", Prefixes: []gate.PrefixRange{{Prefix: netip.MustParsePrefix("192.0.2.0/24")}}}}}
	d := apitest.Start(t, apitest.Options{Policy: pol}) // nothing gated yet
	c := pb.NewRouteServiceClient(d.Conn)
	stream, err := c.WatchRoutes(ctxT(t), &pb.WatchRoutesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err != nil || !m.GetSnapshot() || !m.GetSnapshotComplete() || len(m.GetRoutes()) != 0 {
		t.Fatalf("got %v, %v; want an empty complete snapshot", m, err)
	}
	kerneltest.IP(t, d.NS, "route", "add", "192.0.2.0/24", "dev", "eth1")
	m, err = stream.Recv()
	if err != nil || m.GetSnapshot() || len(m.GetRoutes()) != 1 || m.GetRoutes()[0].GetState() != pb.State_STATE_PENDING {
		t.Fatalf("got %v, %v; want 192.0.2.0/24 pending as a change", m, err)
	}
}
