//go:build linux

package api_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/fibgate/fibgate/internal/syncbuf"
	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/api/apitest"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

func TestAWatchClientThatStopsReadingIsDroppedWithResourceExhausted(t *testing.T) {
	var logs syncbuf.Buffer
	d := apitest.Start(t, apitest.Options{Server: []api.Option{
		api.WithWatchLimit(100),
		api.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
	}})
	// Fixed flow-control windows (no BDP growth), so the server's sends
	// block soon after the client stops reading.
	conn, err := grpc.NewClient("unix:"+d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := pb.NewRouteServiceClient(conn).WatchRoutes(ctxT(t), &pb.WatchRoutesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := stream.Recv(); err != nil || !m.GetSnapshotComplete() {
		t.Fatalf("first message %v, %v; want the (empty) snapshot's end", m, err)
	}

	// The client reads nothing while 1,000 routes come and go, as often as
	// it takes for gRPC's buffers to fill and the daemon's queue for the
	// client to pass the limit (how much that takes varies with the
	// transport's buffers): until the tracker no longer counts the watcher.
	var add, del []string
	for i := range 1000 {
		p := fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)
		add = append(add, "route add "+p+" dev eth1")
		del = append(del, "route del "+p+" dev eth1")
	}
	churnEnd := time.Now().Add(60 * time.Second)
	for d.Tracker.Watchers() > 0 {
		if time.Now().After(churnEnd) {
			t.Fatal("the client is still subscribed after 60 s of churn: the daemon did not drop it")
		}
		kerneltest.Batch(t, d.NS, add)
		kerneltest.Batch(t, d.NS, del)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "WatchRoutes client fell behind") {
		if time.Now().After(deadline) {
			t.Fatalf("no log line about the dropped client within 10 s; logs:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}

	// Reading again, the client gets what was in flight, then the status.
	var n int
	for {
		m, err := stream.Recv()
		if err == nil {
			n += len(m.GetRoutes())
			continue
		}
		st, _ := status.FromError(err)
		if st.Code() != codes.ResourceExhausted {
			t.Fatalf("stream ended with %v, want RESOURCE_EXHAUSTED", err)
		}
		for _, want := range []string{"read too slowly", "limit of 100", "reconnect for a fresh snapshot"} {
			if !strings.Contains(st.Message(), want) {
				t.Errorf("status message %q does not say %q", st.Message(), want)
			}
		}
		break
	}
	t.Logf("%d states reached the client before RESOURCE_EXHAUSTED (of 10000)", n)
	if n >= 10000 {
		t.Errorf("the client got all %d states: it was never behind, the test proves nothing", n)
	}
	mustStillServe(t, d)
}

func TestAWatchLimitMustBePositive(t *testing.T) {
	if _, err := api.New(api.WithUnixSocket("/nonexistent/x.sock"), api.WithWatchLimit(0)); err == nil || !strings.Contains(err.Error(), "watch limit") {
		t.Errorf("api.New with a watch limit of 0: %v, want an error naming the watch limit", err)
	}
}
