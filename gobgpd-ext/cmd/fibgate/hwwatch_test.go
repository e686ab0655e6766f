package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/internal/syncbuf"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// TestServeWarnsOfAFamilyTheDriverNeverFlags: hardware that programs IPv4
// routes only, as Marvell's prestera driver does (it drops every IPv6 FIB
// event). Here it is an agent on the external backend's API that traps
// every IPv4 route it is told of and never an IPv6 one: the IPv4 prefix is
// confirmed, the IPv6 one stays pending, and once it has waited
// --warn-unconfirmed the daemon says that the driver flags IPv4 routes
// only and what to do, once, without taking IPv4 for silent too.
func TestServeWarnsOfAFamilyTheDriverNeverFlags(t *testing.T) {
	ns := kerneltest.NewNS(t)
	kerneltest.AddLink(t, ns, "eth1")
	sock := filepath.Join(t.TempDir(), "fibgate.sock")
	stderr := serveInBackground(t, sock, "--netns", ns, "--backend", "external", "--set-notify", "1", "--warn-unconfirmed", "500ms")

	conn, err := grpc.NewClient("unix:"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	agentDone := make(chan error, 1)
	t.Cleanup(func() {
		cancel()
		<-agentDone
	})
	stream, err := pb.NewHardwareServiceClient(conn).ReportRoutes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.ReportRoutesRequest{Agent: "ipv4-only"}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				agentDone <- err
				return
			}
			for _, in := range m.GetInstructions() {
				r := in.GetRoute()
				p, err := netip.ParsePrefix(r.GetPrefix())
				if err != nil || !p.Addr().Is4() || in.GetOperation() == pb.Operation_OPERATION_REMOVE {
					continue
				}
				if err := stream.Send(&pb.ReportRoutesRequest{Reports: []*pb.RouteReport{{Table: r.GetTable(), Prefix: r.GetPrefix(),
					Generation: in.GetGeneration(), Flags: &pb.HardwareFlags{Trap: true}}}}); err != nil {
					agentDone <- err
					return
				}
			}
		}
	}()

	added := time.Now()
	kerneltest.IP(t, ns, "route", "add", "192.0.2.0/24", "dev", "eth1")
	kerneltest.IP(t, ns, "-6", "route", "add", "2001:db8:9::/48", "dev", "eth1")
	state := func(p string) string { return routesText(sock, p) }
	lab.Eventually(t, 20*time.Second, "192.0.2.0/24 confirmed by the agent, 2001:db8:9::/48 pending", func() error {
		if v4, v6 := state("192.0.2.0/24"), state("2001:db8:9::/48"); !strings.Contains(v4, "trap") || !strings.Contains(v6, "pending") {
			return fmt.Errorf("routes: %q and %q", v4, v6)
		}
		return nil
	})
	waitWarning(t, stderr, "no ipv6 route has shown a hardware flag since start, while ipv4 routes have", added)
	log := stderr.String()
	if strings.Count(log, "has shown a hardware flag") != 1 || !strings.Contains(log, "family=ipv6") || !strings.Contains(log, "level fib") {
		t.Errorf("want one warning, for IPv6 only, saying what to do:\n%s", log)
	}
	if v6 := state("2001:db8:9::/48"); !strings.Contains(v6, "pending") {
		t.Errorf("2001:db8:9::/48 after the warning: %q, want still pending (a warning, not a release)", v6)
	}
}

// TestServeLetsNoNexthopMarkConfirmARoute: the kernel keeps an IPv4
// route's next-hop marks (RTNH_F_OFFLOAD, `offload` beside a next hop in
// `ip route`) on its fib_info, which every route through the same next
// hops shares. On a Spectrum switch a new route through spines whose
// adjacency group is written shows the marks from its add on, before mlxsw
// has written the route; rocker marks next hops and never flags a route.
// Here user space leaves the marks a driver would, and routes added after
// them (as the installer adds a learned prefix) stay pending whatever
// their next hops show: ECMP and single-path alike. The warning then says
// that the marks confirm nothing, rather than asking for a driver.
func TestServeLetsNoNexthopMarkConfirmARoute(t *testing.T) {
	ns := kerneltest.NewNS(t)
	kerneltest.AddLink(t, ns, "eth1")
	kerneltest.IP(t, ns, "addr", "add", "10.1.0.1/24", "dev", "eth1")
	sock := filepath.Join(t.TempDir(), "fibgate.sock")
	stderr := serveInBackground(t, sock, "--netns", ns, "--backend", "kernel", "--set-notify", "1", "--warn-unconfirmed", "500ms")

	// What a driver leaves: routes whose next hops it has marked.
	kerneltest.AddMarkedRoute(t, ns, "198.51.100.0/24", "eth1", "10.1.0.2", "10.1.0.3")
	kerneltest.AddMarkedRoute(t, ns, "198.51.101.0/24", "eth1", "10.1.0.4")
	// New routes through the same next hops, as the FIB installer writes a
	// learned prefix.
	added := time.Now()
	kerneltest.IP(t, ns, "route", "add", "192.0.2.0/24", "proto", "bgp",
		"nexthop", "via", "10.1.0.2", "dev", "eth1", "nexthop", "via", "10.1.0.3", "dev", "eth1")
	kerneltest.IP(t, ns, "route", "add", "203.0.113.0/24", "proto", "bgp", "via", "10.1.0.4", "dev", "eth1")
	prefixes := []string{"192.0.2.0/24", "203.0.113.0/24"}
	for _, p := range prefixes {
		if out := kerneltest.IP(t, ns, "route", "show", p); !strings.Contains(out, "offload") {
			t.Fatalf("the kernel does not show %s's next hops marked, so this test shows nothing:\n%s", p, out)
		}
	}
	state := func(p string) string { return routesText(sock, p) }
	const reason = "next hops are marked in hardware"
	lab.Eventually(t, 20*time.Second, "both routes pending, their marks named", func() error {
		for _, p := range prefixes {
			if s := state(p); !strings.Contains(s, "pending") || !strings.Contains(s, reason) {
				return fmt.Errorf("%s: %q", p, s)
			}
		}
		return nil
	})
	const warning = "the driver marks next hops and not routes"
	waitWarning(t, stderr, warning, added)
	if log := stderr.String(); strings.Count(log, warning) != 1 || !strings.Contains(log, "family=ipv4") ||
		!strings.Contains(log, "level fib") || strings.Contains(log, "is there a switchdev driver") {
		t.Errorf("want one warning, for IPv4, that the marks confirm nothing and what to do:\n%s", log)
	}
	for _, p := range prefixes {
		if s := state(p); !strings.Contains(s, "pending") {
			t.Errorf("%s after the warning: %q, want still pending", p, s)
		}
	}
}

// routesText is what `fibgate routes --prefix p` prints.
func routesText(sock, p string) string {
	var out strings.Builder
	run(context.Background(), []string{"routes", "--socket", sock, "--prefix", p}, &out, io.Discard)
	return out.String()
}

// waitWarning waits for warning in serve's log and checks that it came no
// sooner than --warn-unconfirmed 500ms after the routes were added.
func waitWarning(t *testing.T, stderr *syncbuf.Buffer, warning string, added time.Time) {
	t.Helper()
	lab.Eventually(t, 20*time.Second, "the warning", func() error {
		if !strings.Contains(stderr.String(), warning) {
			return fmt.Errorf("serve: %s", stderr.String())
		}
		return nil
	})
	if took := time.Since(added); took < 500*time.Millisecond {
		t.Errorf("warned %v after the routes, before --warn-unconfirmed 500ms", took)
	}
}
