package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

const auditUsage = `Usage: fibgate audit [--last] [--recheck DURATION] [--json]

Compares what GoBGP advertises (adj-out per neighbour) and holds (its RIB,
HOLD paths, the gate's held sets) with the kernel FIB, the hardware state
and the gate's states, and lists every disagreement, one per line:

  advertised_unconfirmed  GoBGP advertises a gated prefix whose route the
                          hardware has not confirmed (the safety invariant)
  confirmed_unadvertised  the gate released the prefix, but GoBGP's gate
                          still holds it back (a stuck release)
  nexthops_differ         the installer's kernel route does not forward to
                          GoBGP's best path, or is missing
  hold_left               a HOLD path is in GoBGP for a released prefix or
                          one out of the gate's scope
  route_without_best      a kernel route of the installer's protocol that
                          GoBGP has no learned best path for

By default it audits now: two passes --recheck apart, listing only what
both found, so that a change still on its way through the pipeline is not
reported. --last prints the daemon's periodic audit (audit.interval in the
settings) instead. Only gobgpd-ext and fibgated audit.

Exit status: 0 when nothing disagrees, 3 when something does, 1 on an
error, 2 on bad flags.
`

// exitMismatch is audit's exit status when it found a disagreement.
const exitMismatch = 3

// mismatchFound ends audit with exitMismatch; the list is on stdout.
type mismatchFound struct{ n int }

func (e mismatchFound) Error() string { return fmt.Sprintf("%d mismatches", e.n) }

func auditCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	var c connFlags
	c.register(fs)
	// Two passes over a full table take a while.
	c.timeout = 2 * time.Minute
	fs.Lookup("timeout").DefValue = c.timeout.String()
	last := fs.Bool("last", false, "print the daemon's last periodic audit instead of auditing now")
	recheck := fs.Duration("recheck", time.Second, "pause between the two passes of an audit now")
	asJSON := fs.Bool("json", false, "print one JSON object")
	pos, err := parseArgs(fs, args, auditUsage, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Errorf("audit takes no arguments, got %q", pos)}
	}
	if *recheck < 0 {
		return usageError{fmt.Errorf("--recheck %s must not be negative", *recheck)}
	}
	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := c.call(ctx)
	defer cancel()
	r, err := pb.NewAuditServiceClient(conn).Audit(cctx, &pb.AuditRequest{Run: !*last, Recheck: durationpb.New(*recheck)})
	if err != nil {
		return c.rpcErr(err)
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	if *asJSON {
		writeJSONLine(w, auditLineOf(r))
	} else {
		writeAudit(w, r)
	}
	if n := len(r.GetMismatches()); n > 0 {
		return mismatchFound{n}
	}
	return nil
}

func writeAudit(w io.Writer, r *pb.AuditResponse) {
	if r.GetTime() == nil {
		fmt.Fprintf(w, "the periodic audit has not finished two passes yet (every %s); run fibgate audit without --last to audit now\n",
			shortDuration(r.GetInterval().AsDuration()))
		return
	}
	n := r.GetCounts()
	fmt.Fprintf(w, "audited at %s in %s: %d BGP destinations, %d gated routes, %d installed routes, %d gate states; %d unconfirmed prefixes checked against the adj-out of %d neighbours, %d advertised\n",
		r.GetTime().AsTime().Local().Format("15:04:05"), shortDuration(r.GetTook().AsDuration()),
		n.GetDestinations(), n.GetGatedRoutes(), n.GetInstalledRoutes(), n.GetGateStates(), n.GetChecked(), n.GetNeighbours(), n.GetAdvertised())
	if len(r.GetMismatches()) == 0 {
		fmt.Fprintln(w, "no mismatch")
		return
	}
	for _, m := range r.GetMismatches() {
		where := ""
		if m.GetTable() != 0 {
			where = fmt.Sprintf(" table %d", m.GetTable())
		}
		if len(m.GetNeighbours()) > 0 {
			where += " to " + strings.Join(m.GetNeighbours(), ",")
		}
		fmt.Fprintf(w, "%s %s%s: %s (since %s)\n", kindName(m.GetKind()), m.GetPrefix(), where, m.GetDetail(),
			m.GetFirstSeen().AsTime().Local().Format("15:04:05"))
	}
}

// kindName is the audit's own spelling: advertised_unconfirmed, ...
func kindName(k pb.MismatchKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "MISMATCH_KIND_"))
}

// auditLine is the --json form of audit; durations are Go strings.
type auditLine struct {
	Time       *time.Time     `json:"time"`
	Took       string         `json:"took"`
	Interval   string         `json:"interval"`
	Counts     map[string]any `json:"counts"`
	Mismatches []mismatchLine `json:"mismatches"`
}

type mismatchLine struct {
	Kind       string    `json:"kind"`
	Prefix     string    `json:"prefix"`
	Table      uint32    `json:"table,omitempty"`
	Neighbours []string  `json:"neighbours,omitempty"`
	Detail     string    `json:"detail"`
	FirstSeen  time.Time `json:"first_seen"`
}

func auditLineOf(r *pb.AuditResponse) auditLine {
	n := r.GetCounts()
	out := auditLine{
		Took: r.GetTook().AsDuration().String(), Interval: r.GetInterval().AsDuration().String(),
		Counts: map[string]any{"neighbours": n.GetNeighbours(), "checked": n.GetChecked(), "advertised": n.GetAdvertised(), "destinations": n.GetDestinations(),
			"gated_routes": n.GetGatedRoutes(), "installed_routes": n.GetInstalledRoutes(), "gate_states": n.GetGateStates()},
		Mismatches: []mismatchLine{},
	}
	if r.GetTime() != nil {
		t := r.GetTime().AsTime()
		out.Time = &t
	}
	for _, m := range r.GetMismatches() {
		out.Mismatches = append(out.Mismatches, mismatchLine{Kind: kindName(m.GetKind()), Prefix: m.GetPrefix(), Table: m.GetTable(),
			Neighbours: m.GetNeighbours(), Detail: m.GetDetail(), FirstSeen: m.GetFirstSeen().AsTime()})
	}
	return out
}
