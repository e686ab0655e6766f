package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

const routesUsage = `Usage: fibgate routes [--state S] [--family F] [--table N] [--prefix P [--covered]] [--json]

Lists the prefixes the gate holds, with where each stands: pending (waiting
for hardware), confirmed, released (handed to BGP; whether a neighbour
accepted it is not known here), failed, held_down, withdrawn or refused
(the kernel refused to install the route: the reason has its error); the
hardware flags of its route (offload, trap, offload_failed); the scope that
gates it; how long it has been in its state (IN STATE: 290ms, 1.2s, 4m10s);
and why it is where it is, with the next retry of a failed or refused one.

With --json, prints one JSON object per line (fields: table, prefix, family,
scope, state, reason, flags, nexthop_flags, seen_time, confirmed_time,
advertised_time, withdrawn_time, flaps, hold_until, state_time, retries,
next_retry_time).

Exit status: 0 on success, 1 when the daemon cannot be reached or refuses,
2 on bad flags.
`

const watchUsage = `Usage: fibgate watch [--family F] [--table N] [--prefix P [--covered]] [--json]

Prints the state of every gated prefix, then one line per change as it
happens, until interrupted. With --json, one JSON object per line as in
'fibgate routes --json', plus "snapshot": true for the initial states.
`

// routeFilterFlags are the filters routes and watch share.
type routeFilterFlags struct {
	family, prefix string
	table          uint
	covered        bool
}

func (f *routeFilterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.family, "family", "", "only ipv4 or ipv6")
	fs.UintVar(&f.table, "table", 0, "only this routing table (254 is main; default all)")
	fs.StringVar(&f.prefix, "prefix", "", "only this prefix (CIDR)")
	fs.BoolVar(&f.covered, "covered", false, "with --prefix: every prefix inside it too")
}

// check validates the filters here, so a typo is a usage error (exit 2)
// rather than a round trip.
func (f *routeFilterFlags) check() (pb.Family, error) {
	if f.prefix != "" {
		p, err := netip.ParsePrefix(f.prefix)
		if err != nil {
			return 0, usageError{fmt.Errorf("--prefix %q is not a prefix in CIDR notation (like 192.0.2.0/24)", f.prefix)}
		}
		if p != p.Masked() {
			return 0, usageError{fmt.Errorf("--prefix %s has host bits set (did you mean %s?)", p, p.Masked())}
		}
	} else if f.covered {
		return 0, usageError{errors.New("--covered needs --prefix")}
	}
	if f.table > 1<<32-1 {
		return 0, usageError{fmt.Errorf("--table %d is not a routing table id", f.table)}
	}
	return parseFamily(f.family)
}

func parseFamily(s string) (pb.Family, error) {
	switch strings.ToLower(s) {
	case "":
		return pb.Family_FAMILY_UNSPECIFIED, nil
	case "ipv4", "inet", "4":
		return pb.Family_FAMILY_IPV4, nil
	case "ipv6", "inet6", "6":
		return pb.Family_FAMILY_IPV6, nil
	}
	return 0, usageError{fmt.Errorf("--family %q: want ipv4 or ipv6", s)}
}

func parseState(s string) (pb.State, error) {
	switch s {
	case "":
		return pb.State_STATE_UNSPECIFIED, nil
	case "advertised": // released's former name
		return pb.State_STATE_RELEASED, nil
	}
	v, ok := pb.State_value["STATE_"+strings.ToUpper(strings.ReplaceAll(s, "-", "_"))]
	if !ok || v == 0 {
		return 0, usageError{fmt.Errorf("--state %q: want pending, confirmed, released, failed, held_down, withdrawn or refused", s)}
	}
	return pb.State(v), nil
}

func routesCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("routes", flag.ContinueOnError)
	var c connFlags
	var f routeFilterFlags
	c.register(fs)
	f.register(fs)
	state := fs.String("state", "", "only prefixes in this state")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	pos, err := parseArgs(fs, args, routesUsage, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Errorf("routes takes no arguments, got %q (use --prefix)", pos)}
	}
	fam, err := f.check()
	if err != nil {
		return err
	}
	st, err := parseState(*state)
	if err != nil {
		return err
	}
	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	client := pb.NewRouteServiceClient(conn)
	req := &pb.ListRoutesRequest{Prefix: f.prefix, IncludeCovered: f.covered, Family: fam, Table: uint32(f.table), State: st, PageSize: 1000}
	var routes []*pb.Route
	for {
		cctx, cancel := c.call(ctx)
		resp, err := client.ListRoutes(cctx, req)
		cancel()
		if err != nil {
			return c.rpcErr(err)
		}
		routes = append(routes, resp.GetRoutes()...)
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	if *asJSON {
		for _, r := range routes {
			writeJSONLine(w, routeLineOf(r, false))
		}
		return nil
	}
	printRouteTable(w, routes, time.Now())
	return nil
}

// routeLine is the --json form of a route: a stable interface for scripts.
type routeLine struct {
	Snapshot       bool       `json:"snapshot,omitempty"`
	Table          uint32     `json:"table"`
	Prefix         string     `json:"prefix"`
	Family         string     `json:"family"`
	Scope          string     `json:"scope"`
	State          string     `json:"state"`
	Reason         string     `json:"reason"`
	Flags          []string   `json:"flags"`
	NexthopFlags   [][]string `json:"nexthop_flags"`
	SeenTime       string     `json:"seen_time,omitempty"`
	ConfirmedTime  string     `json:"confirmed_time,omitempty"`
	AdvertisedTime string     `json:"advertised_time,omitempty"`
	WithdrawnTime  string     `json:"withdrawn_time,omitempty"`
	Flaps          uint32     `json:"flaps"`
	HoldUntil      string     `json:"hold_until,omitempty"`
	StateTime      string     `json:"state_time,omitempty"`
	Retries        uint32     `json:"retries"`
	NextRetryTime  string     `json:"next_retry_time,omitempty"`
}

func routeLineOf(r *pb.Route, snapshot bool) routeLine {
	l := routeLine{
		Snapshot: snapshot, Table: r.GetTable(), Prefix: r.GetPrefix(), Family: familyName(r.GetFamily()),
		Scope: r.GetScope(), State: stateName(r.GetState()), Reason: r.GetReason(), Flags: flagNames(r.GetFlags()),
		NexthopFlags: [][]string{}, SeenTime: timeString(r.GetSeenTime()), ConfirmedTime: timeString(r.GetConfirmedTime()),
		AdvertisedTime: timeString(r.GetAdvertisedTime()), WithdrawnTime: timeString(r.GetWithdrawnTime()),
		Flaps: r.GetFlaps(), HoldUntil: timeString(r.GetHoldUntil()), StateTime: timeString(r.GetStateTime()),
		Retries: r.GetRetries(), NextRetryTime: timeString(r.GetNextRetryTime()),
	}
	for _, f := range r.GetNexthopFlags() {
		l.NexthopFlags = append(l.NexthopFlags, flagNames(f))
	}
	return l
}

func writeJSONLine(w *bufio.Writer, v any) {
	b, _ := json.Marshal(v)
	w.Write(b)
	w.WriteByte('\n')
}

func familyName(f pb.Family) string {
	switch f {
	case pb.Family_FAMILY_IPV4:
		return "ipv4"
	case pb.Family_FAMILY_IPV6:
		return "ipv6"
	}
	return ""
}

// stateName is the gate's own spelling: pending, held_down, ...
func stateName(s pb.State) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATE_"))
}

// flagNames never returns nil, so JSON shows [] rather than null.
func flagNames(f *pb.HardwareFlags) []string {
	out := []string{}
	if f.GetOffload() {
		out = append(out, "offload")
	}
	if f.GetTrap() {
		out = append(out, "trap")
	}
	if f.GetOffloadFailed() {
		out = append(out, "offload_failed")
	}
	return out
}

func timeString(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return t.AsTime().UTC().Format(time.RFC3339Nano)
}

// printRouteTable prints aligned columns for people.
func printRouteTable(w io.Writer, routes []*pb.Route, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tTABLE\tSTATE\tIN STATE\tFLAGS\tSCOPE\tREASON")
	for _, r := range routes {
		reason := reasonText(r)
		if reason == "" {
			reason = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.GetPrefix(), r.GetTable(), stateName(r.GetState()),
			inState(r.GetStateTime(), now), flagsColumn(r), r.GetScope(), reason)
	}
	tw.Flush()
}

// reasonText is the reason, with the next retry of a failed or refused
// prefix: the daemon keeps that apart, since a retry is no change of state
// (watch prints a line per failure, not one per retry).
func reasonText(r *pb.Route) string {
	s := r.GetReason()
	t := r.GetNextRetryTime()
	if t == nil {
		return s
	}
	at := t.AsTime().Local().Format("15:04:05")
	n := r.GetRetries()
	times := func(n uint32) string {
		if n == 1 {
			return "once"
		}
		return fmt.Sprintf("%d times", n)
	}
	switch {
	case r.GetState() == pb.State_STATE_REFUSED:
		s += fmt.Sprintf(" (refused %s; written again at %s)", times(n), at)
	case r.GetState() == pb.State_STATE_FAILED && n > 0:
		s += fmt.Sprintf(" (written again %s; next at %s)", times(n), at)
	case r.GetState() == pb.State_STATE_FAILED:
		s += fmt.Sprintf(" (written again at %s)", at)
	}
	return s
}

// flagsColumn shows the route's flags and, when paths differ from it, each
// path's in brackets.
func flagsColumn(r *pb.Route) string {
	s := strings.Join(flagNames(r.GetFlags()), ",")
	if s == "" {
		s = "-"
	}
	var nh []string
	differ := false
	for _, f := range r.GetNexthopFlags() {
		n := strings.Join(flagNames(f), ",")
		if n == "" {
			n = "-"
		}
		differ = differ || n != s
		nh = append(nh, n)
	}
	if differ && len(nh) > 1 {
		s += " [" + strings.Join(nh, " ") + "]"
	}
	return s
}

// inState is the time since t, when the prefix entered its state; "-" from
// a daemon that does not say (before state_time).
func inState(t *timestamppb.Timestamp, now time.Time) string {
	if t == nil {
		return "-"
	}
	return shortDuration(now.Sub(t.AsTime()))
}

// watchEnded turns the error that ended a watch into one line. A watch the
// daemon dropped because this client read too slowly (RESOURCE_EXHAUSTED)
// says so plainly and that changes were missed, since the lines already
// printed look like a complete history.
func watchEnded(c *connFlags, err error) error {
	if st, ok := status.FromError(err); ok && st.Code() == codes.ResourceExhausted {
		return fmt.Errorf("the fibgate daemon at %s ended the watch: %s (changes after the last line printed were not shown; run fibgate watch again for the current state)",
			c.where(), st.Message())
	}
	return c.rpcErr(err)
}

func watchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	var c connFlags
	var f routeFilterFlags
	c.register(fs)
	f.register(fs)
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	pos, err := parseArgs(fs, args, watchUsage, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Errorf("watch takes no arguments, got %q", pos)}
	}
	fam, err := f.check()
	if err != nil {
		return err
	}
	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := pb.NewRouteServiceClient(conn).WatchRoutes(ctx, &pb.WatchRoutesRequest{
		Prefix: f.prefix, IncludeCovered: f.covered, Family: fam, Table: uint32(f.table),
	})
	if err != nil {
		return c.rpcErr(err)
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	for {
		m, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return watchEnded(&c, err)
		}
		for _, r := range m.GetRoutes() {
			if *asJSON {
				writeJSONLine(w, routeLineOf(r, m.GetSnapshot()))
				continue
			}
			kind := "change"
			if m.GetSnapshot() {
				kind = "state"
			}
			fmt.Fprintf(w, "%s %-6s %-10s %s table %d flags %s scope %s", time.Now().UTC().Format(time.RFC3339Nano), kind,
				stateName(r.GetState()), r.GetPrefix(), r.GetTable(), flagsColumn(r), r.GetScope())
			if reason := reasonText(r); reason != "" {
				fmt.Fprintf(w, " (%s)", reason)
			}
			w.WriteByte('\n')
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	}
}
