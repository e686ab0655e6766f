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

Prints the gate's counters: prefixes per state, confirmations, failures and
withdrawals, the time routes take to reach hardware (p50, p90, p99, max over
recent confirmations), the route listener's notifications, overruns and
resyncs, and, when agents can connect, the external backend's counters.
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
	fmt.Fprintf(w, "\ngate      confirmations %d, failures %d, withdrawals %d\n", s.GetConfirmations(), s.GetFailures(), s.GetWithdrawals())
	l := s.GetTimeToHardware()
	fmt.Fprintf(w, "hardware  time to confirm p50 %s, p90 %s, p99 %s, max %s (%d samples)\n",
		l.GetP50().AsDuration(), l.GetP90().AsDuration(), l.GetP99().AsDuration(), l.GetMax().AsDuration(), l.GetCount())
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
	Withdrawals    uint64            `json:"withdrawals"`
	TimeToHardware latencyLine       `json:"time_to_hardware"`
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
	l := s.GetTimeToHardware()
	out := statsLine{
		RoutesByState: map[string]uint64{}, Confirmations: s.GetConfirmations(), Failures: s.GetFailures(),
		Withdrawals:    s.GetWithdrawals(),
		TimeToHardware: latencyLine{Count: l.GetCount(), P50: d(l.GetP50()), P90: d(l.GetP90()), P99: d(l.GetP99()), Max: d(l.GetMax())},
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
