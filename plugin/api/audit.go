package api

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fibgate/fibgate/plugin/audit"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// Auditor is the consistency audit the daemon runs (plugin/audit's
// Auditor): its last periodic result, an audit on demand, and its numbers.
type Auditor interface {
	Last() audit.Result
	Audit(ctx context.Context, recheck time.Duration) (audit.Result, error)
	Interval() time.Duration
	Stats() audit.Stats
}

// maxRecheck bounds the pause an Audit request may ask for between its
// two passes.
const maxRecheck = 5 * time.Minute

// auditService serves AuditService.
type auditService struct {
	pb.UnimplementedAuditServiceServer
	s *Server
}

// Audit returns the last periodic result, or audits now when asked or
// when the periodic audit is off.
func (a *auditService) Audit(ctx context.Context, req *pb.AuditRequest) (*pb.AuditResponse, error) {
	au := a.s.cfg.auditor
	if au == nil {
		return nil, statusOf(ErrNoAudit)
	}
	recheck := audit.DefaultRecheck
	if req.GetRecheck() != nil {
		if err := req.GetRecheck().CheckValid(); err != nil {
			return nil, statusOf(badField("recheck", "%v", err))
		}
		recheck = req.GetRecheck().AsDuration()
		if recheck < 0 || recheck > maxRecheck {
			return nil, statusOf(badField("recheck", "%s: want 0 to %s", recheck, maxRecheck))
		}
	}
	res := au.Last()
	if req.GetRun() || au.Interval() == 0 {
		var err error
		if res, err = au.Audit(ctx, recheck); err != nil {
			return nil, statusOf(err)
		}
	}
	return auditToProto(res, au.Interval()), nil
}

var kindToProto = map[audit.Kind]pb.MismatchKind{
	audit.AdvertisedUnconfirmed: pb.MismatchKind_MISMATCH_KIND_ADVERTISED_UNCONFIRMED,
	audit.ConfirmedUnadvertised: pb.MismatchKind_MISMATCH_KIND_CONFIRMED_UNADVERTISED,
	audit.NexthopsDiffer:        pb.MismatchKind_MISMATCH_KIND_NEXTHOPS_DIFFER,
	audit.HoldLeft:              pb.MismatchKind_MISMATCH_KIND_HOLD_LEFT,
	audit.RouteWithoutBest:      pb.MismatchKind_MISMATCH_KIND_ROUTE_WITHOUT_BEST,
}

func auditToProto(r audit.Result, interval time.Duration) *pb.AuditResponse {
	out := &pb.AuditResponse{
		Counts: &pb.AuditCounts{Neighbours: uint32(r.Counts.Neighbours), Checked: uint64(r.Counts.Checked), Advertised: uint64(r.Counts.Advertised),
			Destinations: uint64(r.Counts.Destinations), GatedRoutes: uint64(r.Counts.GatedRoutes),
			InstalledRoutes: uint64(r.Counts.InstalledRoutes), GateStates: uint64(r.Counts.GateStates)},
		Took: durationpb.New(r.Took),
	}
	if !r.At.IsZero() {
		out.Time = timestamppb.New(r.At)
	}
	if interval > 0 {
		out.Interval = durationpb.New(interval)
	}
	for _, m := range r.Mismatches {
		pm := &pb.Mismatch{Kind: kindToProto[m.Kind], Prefix: m.Prefix.String(), Table: m.Table, Detail: m.Detail,
			FirstSeen: timestamppb.New(m.FirstSeen)}
		for _, n := range m.Neighbours {
			pm.Neighbours = append(pm.Neighbours, n.String())
		}
		out.Mismatches = append(out.Mismatches, pm)
	}
	return out
}

// Metrics of the audit, named fibgate_audit_*.
var (
	descAuditMismatches = prometheus.NewDesc("fibgate_audit_mismatches",
		"Disagreements the periodic consistency audit found in two passes in a row, by kind.", []string{"kind"}, nil)
	descAuditPasses   = prometheus.NewDesc("fibgate_audit_passes_total", "Periodic audit passes that ended.", nil, nil)
	descAuditFailures = prometheus.NewDesc("fibgate_audit_failures_total", "Periodic audit passes that failed (GoBGP could not be read).", nil, nil)
	descAuditSeconds  = prometheus.NewDesc("fibgate_audit_pass_seconds", "How long the last periodic audit pass took.", nil, nil)
	descAuditDeferred = prometheus.NewDesc("fibgate_audit_deferred_total", "Periodic audit passes that waited for the gate to converge (a large share of the table on its way).", nil, nil)
)

// auditCollector exports an Auditor's numbers at scrape time.
type auditCollector struct{ a Auditor }

// NewAuditMetrics registers the audit's metrics with reg: every kind of
// fibgate_audit_mismatches (zeros included, so an alert on "> 0" sees the
// series before anything goes wrong), the passes, the failed passes and
// the last pass's duration, and the passes that waited for the gate to
// converge.
func NewAuditMetrics(reg prometheus.Registerer, a Auditor) error {
	if err := reg.Register(auditCollector{a}); err != nil {
		return fmt.Errorf("register fibgate audit metrics: %w", err)
	}
	return nil
}

// Describe implements prometheus.Collector.
func (c auditCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAuditMismatches, descAuditPasses, descAuditFailures, descAuditSeconds, descAuditDeferred} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c auditCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.a.Stats()
	for _, k := range audit.Kinds() {
		ch <- prometheus.MustNewConstMetric(descAuditMismatches, prometheus.GaugeValue, float64(s.Mismatches[k]), k.String())
	}
	ch <- prometheus.MustNewConstMetric(descAuditPasses, prometheus.CounterValue, float64(s.Passes))
	ch <- prometheus.MustNewConstMetric(descAuditFailures, prometheus.CounterValue, float64(s.Failures))
	ch <- prometheus.MustNewConstMetric(descAuditSeconds, prometheus.GaugeValue, s.Took.Seconds())
	ch <- prometheus.MustNewConstMetric(descAuditDeferred, prometheus.CounterValue, float64(s.Deferred))
}
