//go:build linux

package api_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/api/apitest"
	"github.com/fibgate/fibgate/plugin/audit"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// TestAuditServiceAndMetrics runs an Auditor over a real gate and FIB model
// (a route waiting for hardware in a namespace) and a BGP snapshot that
// advertises it: the RPC lists the mismatch, on demand and from the
// periodic audit, and the metrics count it by kind. GoBGP's side is read
// for real in plugin/gobgp and e2e; here it is a given.
func TestAuditServiceAndMetrics(t *testing.T) {
	pending := netip.MustParsePrefix("203.0.113.16/28")
	nb := netip.MustParseAddr("192.0.2.1")
	var d *apitest.Daemon
	a, err := audit.New(audit.Sources{
		Gate: func() []gate.Brief { return d.Tracker.Briefs() },
		FIB: func(audit.Part) (f audit.FIB) {
			d.Listener.View(func(m *fib.FIB) { f = audit.ReadFIB(m, d.Tracker.Policy(), nil, nil) })
			return f
		},
		BGP: func(context.Context, audit.Ask) (*audit.BGP, error) {
			return &audit.BGP{At: time.Now(), Neighbours: []netip.Addr{nb}, Out: map[netip.Prefix][]netip.Addr{pending: {nb}},
				InScope: func(netip.Prefix) bool { return true }, Holds: func(netip.Prefix) bool { return false }}, nil
		},
	}, audit.WithInterval(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	d = apitest.Start(t, apitest.Options{Policy: testPolicy(), Server: []api.Option{api.WithAuditor(a)}})
	kerneltest.Batch(t, d.NS, []string{"route add " + pending.String() + " dev eth1"})
	d.WaitState(t, fib.TableMain, pending.String(), gate.Pending)
	c := pb.NewAuditServiceClient(d.Conn)

	check := func(r *pb.AuditResponse) {
		t.Helper()
		ms := r.GetMismatches()
		if len(ms) != 1 {
			t.Fatalf("mismatches %v, want one", ms)
		}
		m := ms[0]
		if m.GetKind() != pb.MismatchKind_MISMATCH_KIND_ADVERTISED_UNCONFIRMED || m.GetPrefix() != pending.String() || m.GetTable() != 254 ||
			len(m.GetNeighbours()) != 1 || m.GetNeighbours()[0] != nb.String() || !strings.Contains(m.GetDetail(), "waiting for hardware") ||
			m.GetFirstSeen() == nil {
			t.Errorf("mismatch %v", m)
		}
		if r.GetTime() == nil || r.GetCounts().GetNeighbours() != 1 || r.GetCounts().GetAdvertised() != 1 || r.GetCounts().GetGatedRoutes() != 1 {
			t.Errorf("time %v, counts %v", r.GetTime(), r.GetCounts())
		}
	}
	r, err := c.Audit(ctxT(t), &pb.AuditRequest{Run: true, Recheck: durationpb.New(10 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	check(r)
	if r.GetInterval().AsDuration() != 50*time.Millisecond {
		t.Errorf("interval %v", r.GetInterval())
	}
	_, err = c.Audit(ctxT(t), &pb.AuditRequest{Run: true, Recheck: durationpb.New(-time.Second)})
	wantStatus(t, err, codes.InvalidArgument, "recheck")

	// The periodic audit: not run yet, then the same mismatch.
	if r, err := c.Audit(ctxT(t), &pb.AuditRequest{}); err != nil || r.GetTime() != nil || len(r.GetMismatches()) != 0 {
		t.Fatalf("before the periodic audit ran: %v, %v", r, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	lab.Eventually(t, 10*time.Second, "the periodic audit reports the mismatch", func() error {
		r, err = c.Audit(ctxT(t), &pb.AuditRequest{})
		if err == nil && len(r.GetMismatches()) == 0 {
			return errString("nothing reported yet")
		}
		return err
	})
	check(r)

	reg := prometheus.NewRegistry()
	if err := api.NewAuditMetrics(reg, a); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetValue() + "}"
			}
			got[name] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	for _, k := range audit.Kinds() {
		want := 0.0
		if k == audit.AdvertisedUnconfirmed {
			want = 1
		}
		if v, ok := got["fibgate_audit_mismatches{"+k.String()+"}"]; !ok || v != want {
			t.Errorf("fibgate_audit_mismatches{kind=%q} = %v (exported %v), want %v", k, v, ok, want)
		}
	}
	if got["fibgate_audit_passes_total"] < 2 {
		t.Errorf("fibgate_audit_passes_total %v, want at least 2", got["fibgate_audit_passes_total"])
	}
	for _, name := range []string{"fibgate_audit_pass_seconds", "fibgate_audit_deferred_total"} {
		if _, ok := got[name]; !ok {
			t.Errorf("%s not exported", name)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// TestAuditWithoutBGPIsAFailedPrecondition: fibgate serve has nothing to
// audit.
func TestAuditWithoutBGPIsAFailedPrecondition(t *testing.T) {
	d := apitest.Start(t, apitest.Options{})
	_, err := pb.NewAuditServiceClient(d.Conn).Audit(ctxT(t), &pb.AuditRequest{Run: true})
	wantStatus(t, err, codes.FailedPrecondition, "")
}
