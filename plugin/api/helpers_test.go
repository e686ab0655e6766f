//go:build linux

package api_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fibgate/fibgate/plugin/api/apitest"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// testPolicy gates three ranges differently, so filters on scope, state
// and family have something to tell apart: host routes of 198.51.100.0/24
// are confirmed by the FIB alone, /28s of 203.0.113.0/24 and 2001:db8::/32
// wait for hardware (no agent confirms them unless a test does).
func testPolicy() gate.Policy {
	hd := gate.DefaultScope().HoldDown
	return gate.Policy{Scopes: []gate.Scope{
		{Name: "hosts", Family: fib.IPv4, Level: gate.LevelFIB, HoldDown: hd,
			Prefixes: []gate.PrefixRange{{Prefix: netip.MustParsePrefix("198.51.100.0/24"), MinLen: 32}}},
		{Name: "v4", Family: fib.IPv4, HoldDown: hd,
			Prefixes: []gate.PrefixRange{{Prefix: netip.MustParsePrefix("203.0.113.0/24")}}},
		{Name: "v6", Family: fib.IPv6, HoldDown: hd, PendingTimeout: time.Minute,
			Prefixes: []gate.PrefixRange{{Prefix: netip.MustParsePrefix("2001:db8::/32")}}},
	}}
}

// testRoutes are the routes startWithRoutes adds: 10 confirmed hosts, 16
// pending IPv4 /28s and 4 pending IPv6 /48s.
func testRoutes() (confirmed, pending4, pending6 []string) {
	for i := 1; i <= 10; i++ {
		confirmed = append(confirmed, fmt.Sprintf("198.51.100.%d/32", i))
	}
	for i := range 16 {
		pending4 = append(pending4, fmt.Sprintf("203.0.113.%d/28", i*16))
	}
	for i := 1; i <= 4; i++ {
		pending6 = append(pending6, fmt.Sprintf("2001:db8:%x::/48", i))
	}
	return confirmed, pending4, pending6
}

// startWithRoutes runs the API over testPolicy with testRoutes in the
// namespace and waits until the gate has judged all of them.
func startWithRoutes(t *testing.T) *apitest.Daemon {
	t.Helper()
	d := apitest.Start(t, apitest.Options{Policy: testPolicy()})
	c, p4, p6 := testRoutes()
	var lines []string
	for _, p := range append(append(c, p4...), p6...) {
		lines = append(lines, "route add "+p+" dev eth1")
	}
	kerneltest.Batch(t, d.NS, lines)
	for _, p := range c {
		d.WaitState(t, fib.TableMain, p, gate.Confirmed)
	}
	for _, p := range append(p4, p6...) {
		d.WaitState(t, fib.TableMain, p, gate.Pending)
	}
	return d
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantStatus checks an RPC error's code and that its message and, when a
// field is given, its BadRequest detail name the field.
func wantStatus(t *testing.T, err error, code codes.Code, field string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("got %v, want code %s", err, code)
	}
	if field == "" {
		return
	}
	if !strings.Contains(st.Message(), field) {
		t.Errorf("message %q does not name the field %q", st.Message(), field)
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if strings.HasSuffix(v.GetField(), field) {
					return
				}
			}
		}
	}
	t.Errorf("no BadRequest detail names %q: %v", field, st.Details())
}

// mustStillServe proves the server survived what came before.
func mustStillServe(t *testing.T, d *apitest.Daemon) {
	t.Helper()
	if _, err := pb.NewPolicyServiceClient(d.Conn).GetPolicy(ctxT(t), &pb.GetPolicyRequest{}); err != nil {
		t.Fatalf("server stopped serving: %v", err)
	}
}
