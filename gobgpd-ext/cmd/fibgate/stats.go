package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

const statsUsage = `Usage: fibgate stats [--json]

Prints the gate's counters: prefixes per state; confirmations by the
hardware and failures; advertisements and withdrawals, the prefixes handed
to BGP and taken back (0 without BGP); how long the hardware took to program
routes and, apart from it, how long flapping prefixes were held down (p50,
p90, p99, max over recent samples); route writes the kernel refused and
prefixes that became refused, and failed routes written again so their
driver tries again (retries); the route listener's notifications,
overruns and resyncs; and, when agents can connect, the external backend's
counters. Durations are rounded for reading (290ms, 1.2s); --json keeps
them exact.
`

func statsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	var c connFlags
	c.register(fs)
	asJSON := fs.Bool("json", false, "print one JSON object")
	pos, err := parseArgs(fs, args, statsUsage, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Errorf("stats takes no arguments, got %q", pos)}
	}
	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := c.call(ctx)
	defer cancel()
	s, err := pb.NewStatsServiceClient(conn).GetStats(cctx, &pb.GetStatsRequest{})
	if err != nil {
		return c.rpcErr(err)
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	if *asJSON {
		writeJSONLine(w, statsLineOf(s))
		return nil
	}
	fmt.Fprint(w, "routes   ")
	for _, sc := range s.GetRoutesByState() {
		fmt.Fprintf(w, " %s %d", stateName(sc.GetState()), sc.GetRoutes())
	}
	fmt.Fprintf(w, "\ngate      confirmations %d, failures %d\n", s.GetConfirmations(), s.GetFailures())
	fmt.Fprintf(w, "bgp       advertisements %d, withdrawals %d\n", s.GetAdvertisements(), s.GetWithdrawals())
	fmt.Fprintf(w, "hardware  time to program %s\n", latencyText(s.GetTimeToHardware()))
	fmt.Fprintf(w, "hold-down time held down %s\n", latencyText(s.GetTimeHeldDown()))
	fmt.Fprintf(w, "retries   refused writes %d (%d prefixes refused), failed routes written again %d (%d could not be)\n",
		s.GetRefusedWrites(), s.GetRefusals(), s.GetRewrites(), s.GetRewriteErrors())
	if li := s.GetListener(); li != nil {
		fmt.Fprintf(w, "listener  %d routes, %d notifications, %d overruns, %d resyncs, %d out of sync\n",
			li.GetRoutes(), li.GetNotifications(), li.GetOverruns(), li.GetResyncs(), li.GetOutOfSync())
	}
	if x := s.GetExternal(); x != nil {
		fmt.Fprintf(w, "agents    %d connected, %d routes, reports %d applied, %d ignored\n",
			x.GetAgents(), x.GetRoutes(), x.GetReportsApplied(), x.GetReportsIgnored())
	}
	return nil
}

// statsLine is the --json form of stats; durations are Go strings ("1.5ms").
type statsLine struct {
	RoutesByState  map[string]uint64 `json:"routes_by_state"`
	Confirmations  uint64            `json:"confirmations"`
	Failures       uint64            `json:"failures"`
	Advertisements uint64            `json:"advertisements"`
	Withdrawals    uint64            `json:"withdrawals"`
	TimeToHardware latencyLine       `json:"time_to_hardware"`
	TimeHeldDown   latencyLine       `json:"time_held_down"`
	RefusedWrites  uint64            `json:"refused_writes"`
	Refusals       uint64            `json:"refusals"`
	Rewrites       uint64            `json:"rewrites"`
	RewriteErrors  uint64            `json:"rewrite_errors"`
	Listener       *listenerLine     `json:"listener,omitempty"`
	External       *externalLine     `json:"external,omitempty"`
}

type latencyLine struct {
	Count uint64 `json:"count"`
	P50   string `json:"p50"`
	P90   string `json:"p90"`
	P99   string `json:"p99"`
	Max   string `json:"max"`
}

type listenerLine struct {
	Notifications uint64 `json:"notifications"`
	Overruns      uint64 `json:"overruns"`
	Resyncs       uint64 `json:"resyncs"`
	OutOfSync     uint64 `json:"out_of_sync"`
	Routes        uint64 `json:"routes"`
}

type externalLine struct {
	Agents         uint64 `json:"agents"`
	Routes         uint64 `json:"routes"`
	ReportsApplied uint64 `json:"reports_applied"`
	ReportsIgnored uint64 `json:"reports_ignored"`
}

func statsLineOf(s *pb.GetStatsResponse) statsLine {
	d := func(x interface{ AsDuration() time.Duration }) string { return x.AsDuration().String() }
	lat := func(l *pb.LatencySummary) latencyLine {
		return latencyLine{Count: l.GetCount(), P50: d(l.GetP50()), P90: d(l.GetP90()), P99: d(l.GetP99()), Max: d(l.GetMax())}
	}
	out := statsLine{
		RoutesByState: map[string]uint64{}, Confirmations: s.GetConfirmations(), Failures: s.GetFailures(),
		Advertisements: s.GetAdvertisements(), Withdrawals: s.GetWithdrawals(),
		TimeToHardware: lat(s.GetTimeToHardware()), TimeHeldDown: lat(s.GetTimeHeldDown()),
		RefusedWrites: s.GetRefusedWrites(), Refusals: s.GetRefusals(), Rewrites: s.GetRewrites(), RewriteErrors: s.GetRewriteErrors(),
	}
	for _, sc := range s.GetRoutesByState() {
		out.RoutesByState[stateName(sc.GetState())] = sc.GetRoutes()
	}
	if li := s.GetListener(); li != nil {
		out.Listener = &listenerLine{li.GetNotifications(), li.GetOverruns(), li.GetResyncs(), li.GetOutOfSync(), li.GetRoutes()}
	}
	if x := s.GetExternal(); x != nil {
		out.External = &externalLine{x.GetAgents(), x.GetRoutes(), x.GetReportsApplied(), x.GetReportsIgnored()}
	}
	return out
}
