//go:build linux

package api_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/api/apitest"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

func TestBadRequestsAreRefusedClearlyAndTheServerKeepsServing(t *testing.T) {
	d := startWithRoutes(t)
	routes := pb.NewRouteServiceClient(d.Conn)
	ctx := ctxT(t)
	list := func(r *pb.ListRoutesRequest) error { _, err := routes.ListRoutes(ctx, r); return err }
	get := func(p string) error { _, err := routes.GetRoute(ctx, &pb.GetRouteRequest{Prefix: p}); return err }
	watch := func(r *pb.WatchRoutesRequest) error {
		s, err := routes.WatchRoutes(ctx, r)
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"a prefix that is no prefix", func() error { return get("nonsense") }, "prefix"},
		{"a prefix length beyond 32", func() error { return get("10.0.0.0/33") }, "prefix"},
		{"a prefix with host bits", func() error { return get("10.0.0.1/8") }, "prefix"},
		{"an empty prefix", func() error { return get("") }, "prefix"},
		{"an unknown family", func() error { return list(&pb.ListRoutesRequest{Family: 9}) }, "family"},
		{"an unknown state", func() error { return list(&pb.ListRoutesRequest{State: 42}) }, "state"},
		{"a page too large", func() error { return list(&pb.ListRoutesRequest{PageSize: 1001}) }, "page_size"},
		{"a negative page size", func() error { return list(&pb.ListRoutesRequest{PageSize: -1}) }, "page_size"},
		{"covered without a prefix", func() error { return list(&pb.ListRoutesRequest{IncludeCovered: true}) }, "include_covered"},
		{"a prefix of the other family", func() error {
			return list(&pb.ListRoutesRequest{Prefix: "10.0.0.0/8", Family: pb.Family_FAMILY_IPV6})
		}, "prefix"},
		{"a forged page token", func() error { return list(&pb.ListRoutesRequest{PageToken: "AAAA"}) }, "page_token"},
		{"a watch of an unknown family", func() error { return watch(&pb.WatchRoutesRequest{Family: 3}) }, "family"},
		{"a watch of a malformed prefix", func() error { return watch(&pb.WatchRoutesRequest{Prefix: "::/129"}) }, "prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantStatus(t, tt.call(), codes.InvalidArgument, tt.field)
		})
	}
	t.Run("a request over the size limit", func(t *testing.T) {
		huge := &pb.Policy{Scopes: []*pb.Scope{{Name: strings.Repeat("x", api.DefaultMaxRecvMsgSize+1)}}}
		_, err := pb.NewPolicyServiceClient(d.Conn).SetPolicy(ctx, &pb.SetPolicyRequest{Policy: huge})
		wantStatus(t, err, codes.ResourceExhausted, "")
	})
	mustStillServe(t, d)
	if _, err := routes.GetRoute(ctx, &pb.GetRouteRequest{Prefix: "198.51.100.1/32"}); err != nil {
		t.Fatalf("after bad requests: %v", err)
	}
}

func TestHealthAndReflectionAreServed(t *testing.T) {
	d := apitest.Start(t, apitest.Options{})
	for _, svc := range []string{"", "fibgate.v1.RouteService", "fibgate.v1.PolicyService"} {
		r, err := healthpb.NewHealthClient(d.Conn).Check(ctxT(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q: %v, %v", svc, r.GetStatus(), err)
		}
	}
	s, err := reflectionpb.NewServerReflectionClient(d.Conn).ServerReflectionInfo(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, svc := range r.GetListServicesResponse().GetService() {
		names = append(names, svc.GetName())
	}
	for _, want := range []string{"fibgate.v1.PolicyService", "fibgate.v1.RouteService", "fibgate.v1.HardwareService", "fibgate.v1.SimService", "fibgate.v1.StatsService", "grpc.health.v1.Health"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("reflection lists %v, lacks %s", names, want)
		}
	}
}

func TestHealthIsNotServingUntilReady(t *testing.T) {
	sock := filepath.Join(apitest.SocketDir(t), "s")
	ready := make(chan struct{})
	srv, err := api.New(api.WithUnixSocket(sock), api.WithReady(ready))
	if err != nil {
		t.Fatal(err)
	}
	apitest.Serve(t, srv)
	conn := apitest.Dial(t, sock)
	h := healthpb.NewHealthClient(conn)
	r, err := h.Check(ctxT(t), &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("before ready: %v, %v", r.GetStatus(), err)
	}
	close(ready)
	apitest.WaitServing(t, conn)
}

func TestTheSocketIsPrivateAndStaleOnesAreReplaced(t *testing.T) {
	dir := apitest.SocketDir(t)
	sock := filepath.Join(dir, "fibgate.sock")
	// A stale socket, as a crashed daemon leaves it.
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	srv, err := api.New(api.WithUnixSocket(sock))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	conn := apitest.Dial(t, sock)
	apitest.WaitServing(t, conn)
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}

	// A second server must not steal a live socket.
	other, _ := api.New(api.WithUnixSocket(sock))
	if err := other.Serve(context.Background()); err == nil || !strings.Contains(err.Error(), "another server is listening") {
		t.Errorf("second server on a live socket: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind after Serve: %v", err)
	}
}

func TestListeningProblemsAreClearErrors(t *testing.T) {
	dir := apitest.SocketDir(t)
	file := filepath.Join(dir, "not-a-socket")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts []api.Option
		want string
	}{
		{"a missing directory", []api.Option{api.WithUnixSocket(filepath.Join(dir, "absent", "s.sock"))}, "absent does not exist"},
		{"a file in the way", []api.Option{api.WithUnixSocket(file)}, "is not a socket"},
		{"a file as directory", []api.Option{api.WithUnixSocket(filepath.Join(file, "s.sock"))}, "is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := api.New(tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			err = srv.Serve(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %v, want one line saying %q", err, tt.want)
			}
		})
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Errorf("a file that is not a socket was touched")
	}
	for _, opts := range [][]api.Option{
		{api.WithUnixSocket("")},
		{api.WithTCP("127.0.0.1:0", nil)},
		{api.WithMaxRecvMsgSize(0)},
	} {
		if _, err := api.New(opts...); err == nil {
			t.Errorf("New accepted %d options that cannot work", len(opts))
		}
	}
}

// TestServeStopsGracefullyAndLeavesNoGoroutine stops a server with long
// streams open: Serve returns soon, the streams end with UNAVAILABLE, and
// none of the server's goroutines remain.
func TestServeStopsGracefullyAndLeavesNoGoroutine(t *testing.T) {
	d := apitest.StartGate(t, apitest.Options{})
	<-d.Tracker.Ready()
	srv, err := api.New(api.WithUnixSocket(d.Socket), api.WithGate(d.Tracker), api.WithAgents(d.Backend), api.WithShutdownTimeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	conn := apitest.Dial(t, d.Socket)
	apitest.WaitServing(t, conn)

	watch, err := pb.NewRouteServiceClient(conn).WatchRoutes(ctxT(t), &pb.WatchRoutesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	agent, err := pb.NewHardwareServiceClient(conn).ReportRoutes(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agent.Recv(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Serve took %s to stop: the streams did not end by themselves", took)
	}
	for _, recv := range []func() error{
		func() error { _, err := watch.Recv(); return err },
		func() error { _, err := agent.Recv(); return err },
	} {
		wantStatus(t, recv(), codes.Unavailable, "")
	}
	conn.Close()

	deadline := time.Now().Add(5 * time.Second)
	for {
		left := serverGoroutines()
		if left == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left behind:\n%s", left)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

// serverGoroutines returns the stacks of goroutines running API or gRPC
// code, other than this test's own.
func serverGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var left []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "TestServeStopsGracefully") {
			continue
		}
		if strings.Contains(g, "fibgate/plugin/api.") || strings.Contains(g, "google.golang.org/grpc") {
			left = append(left, g)
		}
	}
	return strings.Join(left, "\n\n")
}
