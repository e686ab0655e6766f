package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

const topCmdUsage = `Usage: fibgate top [--interval D] [--n N] [--once]

A live view of the gate, redrawn every --interval: prefixes per state,
confirmations and failures per second since the previous refresh, the time
routes take to reach hardware (p50, p90, p99, max), the route listener's
counters, and the --n prefixes that have been pending longest, oldest first,
with how long they have waited, their scope and why.

On a terminal each refresh redraws the screen; otherwise frames follow one
another. With --once, prints one frame without escape codes and exits (rates
need two samples, so they show as -).

A prefix's wait is counted from when top saw it become pending; for prefixes
already pending when top started, from when the route entered the FIB or was
last confirmed, whichever is later.

Exit status: 0 on success or interrupt, 1 when the daemon cannot be reached
or refuses, 2 on bad flags.
`

// clearScreen moves the cursor home and clears the terminal, so each frame
// replaces the previous one.
const clearScreen = "\x1b[H\x1b[2J"

func topCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("top", flag.ContinueOnError)
	var c connFlags
	c.register(fs)
	interval := fs.Duration("interval", time.Second, "time between refreshes")
	n := fs.Int("n", 10, "how many of the longest-pending prefixes to list")
	once := fs.Bool("once", false, "print one frame without escape codes and exit")
	pos, err := parseArgs(fs, args, topCmdUsage, stdout)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageError{fmt.Errorf("top takes no arguments, got %q", pos)}
	case *interval < 10*time.Millisecond:
		return usageError{fmt.Errorf("--interval %s: want 10ms or more", *interval)}
	case *n < 0:
		return usageError{fmt.Errorf("--n %d: want 0 or more", *n)}
	}
	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	statsClient := pb.NewStatsServiceClient(conn)
	getStats := func() (*pb.GetStatsResponse, error) {
		cctx, cancel := c.call(ctx)
		defer cancel()
		return statsClient.GetStats(cctx, &pb.GetStatsRequest{})
	}
	stats, err := getStats()
	if err != nil {
		return c.rpcErr(err)
	}

	// The pending prefixes come from the watch stream, kept up to date in
	// the background; the first frame waits for its snapshot.
	wctx, wcancel := context.WithCancel(ctx)
	pending := newPendingSet()
	synced := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pending.follow(wctx, pb.NewRouteServiceClient(conn), *interval, c.rpcErr, synced)
	}()
	defer func() {
		wcancel()
		wg.Wait()
	}()
	select {
	case err := <-synced:
		if err != nil {
			return err
		}
	case <-time.After(c.timeout):
		return c.rpcErr(status.Error(codes.DeadlineExceeded, "no snapshot"))
	case <-ctx.Done():
		return nil
	}

	tty := !*once && isTerminal(stdout)
	frame := topFrame{Where: c.where(), Interval: *interval, N: *n, Once: *once}
	draw := func(f topFrame) error {
		out := renderTop(f)
		switch {
		case tty:
			out = clearScreen + out
		case !f.Once:
			out += "\n" // frames in a pipe or a file, one after another
		}
		if _, err := io.WriteString(stdout, out); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
		return nil
	}
	prevAt := time.Now()
	frame.Now, frame.Stats = prevAt, stats
	frame.Pending, frame.Problems = pending.snapshot()
	if err := draw(frame); err != nil || *once {
		return err
	}
	ticker := time.NewTicker(*interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		s, err := getStats()
		now := time.Now()
		if ctx.Err() != nil {
			return nil
		}
		f := topFrame{Where: c.where(), Interval: *interval, N: *n, Now: now}
		f.Pending, f.Problems = pending.snapshot()
		if err != nil {
			// Keep showing the last counters, without rates, until the
			// daemon answers again.
			f.Stats = stats
			f.Problems = append([]string{"stats: " + rpcLine(c.rpcErr(err))}, f.Problems...)
		} else {
			f.Stats, f.Prev, f.Elapsed = s, stats, now.Sub(prevAt)
			stats, prevAt = s, now
		}
		if err := draw(f); err != nil {
			return err
		}
	}
}

// rpcLine is an error's one line, or a placeholder for the nil rpcErr
// returns for an interrupted call.
func rpcLine(err error) string {
	if err == nil {
		return "interrupted"
	}
	return err.Error()
}

// isTerminal says whether w is a terminal, where frames redraw the screen.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// pendingRoute is one pending prefix as top shows it.
type pendingRoute struct {
	Table  uint32
	Prefix string
	Scope  string
	Reason string
	// Since is when the prefix became pending, as well as top knows it.
	Since time.Time
}

type routeKey struct {
	table  uint32
	prefix string
}

// pendingSet follows WatchRoutes and keeps the prefixes that are pending
// now; only those, so a full table costs top nothing but the snapshot.
type pendingSet struct {
	mu       sync.Mutex
	routes   map[routeKey]pendingRoute
	building map[routeKey]pendingRoute // a new stream's snapshot, until complete
	problem  string                    // why the stream is down; empty while it runs
}

func newPendingSet() *pendingSet {
	return &pendingSet{routes: map[routeKey]pendingRoute{}}
}

// pendingSince estimates when a route already pending in a snapshot became
// pending: it entered the FIB at seen_time and, if confirmed since, lost
// its confirmation after confirmed_time.
func pendingSince(r *pb.Route) time.Time {
	var t time.Time
	for _, ts := range []*timestamppb.Timestamp{r.GetSeenTime(), r.GetConfirmedTime()} {
		if ts != nil && ts.AsTime().After(t) {
			t = ts.AsTime()
		}
	}
	return t
}

// apply updates the set with one message of the stream, received at now.
// A new stream's snapshot replaces the set once complete; until then the
// old one stays on screen.
func (p *pendingSet) apply(m *pb.WatchRoutesResponse, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m.GetSnapshot() {
		if p.building == nil {
			p.building = map[routeKey]pendingRoute{}
		}
		for _, r := range m.GetRoutes() {
			if r.GetState() != pb.State_STATE_PENDING {
				continue
			}
			k := routeKey{r.GetTable(), r.GetPrefix()}
			since := pendingSince(r)
			if old, ok := p.routes[k]; ok && old.Since.After(since) {
				since = old.Since // seen become pending before a reconnect: more precise
			}
			p.building[k] = pendingRoute{Table: k.table, Prefix: k.prefix, Scope: r.GetScope(), Reason: r.GetReason(), Since: since}
		}
		if m.GetSnapshotComplete() {
			p.routes, p.building, p.problem = p.building, nil, ""
		}
		return
	}
	for _, r := range m.GetRoutes() {
		k := routeKey{r.GetTable(), r.GetPrefix()}
		if r.GetState() != pb.State_STATE_PENDING {
			delete(p.routes, k)
			continue
		}
		since := now // it became pending (or appeared) just now
		if old, ok := p.routes[k]; ok {
			since = old.Since // still pending: only the reason or flags changed
		}
		p.routes[k] = pendingRoute{Table: k.table, Prefix: k.prefix, Scope: r.GetScope(), Reason: r.GetReason(), Since: since}
	}
}

// broken notes why the stream ended; the set stays as it was.
func (p *pendingSet) broken(why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.building = nil
	p.problem = why
}

// snapshot returns the pending prefixes and what is wrong with them, if
// anything.
func (p *pendingSet) snapshot() ([]pendingRoute, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]pendingRoute, 0, len(p.routes))
	for _, r := range p.routes {
		out = append(out, r)
	}
	var problems []string
	if p.problem != "" {
		problems = append(problems, "watch: "+p.problem+"; reconnecting, the pending list may be stale")
	}
	return out, problems
}

// follow keeps the set up to date until ctx ends. The first snapshot's
// completion, or the error that prevented it, is sent on synced; later the
// stream is reopened every retry after it breaks. describe turns stream
// errors into one line.
func (p *pendingSet) follow(ctx context.Context, client pb.RouteServiceClient, retry time.Duration,
	describe func(error) error, synced chan<- error) {
	first := true
	for {
		err := p.pump(ctx, client, func() {
			if first {
				first = false
				synced <- nil
			}
		})
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, io.EOF) {
			err = errors.New("the daemon ended the watch")
		}
		if err = describe(err); err == nil {
			err = errors.New("the watch was cancelled")
		}
		if first {
			synced <- err
			return
		}
		p.broken(err.Error())
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}

// pump runs one WatchRoutes stream into the set until it fails.
func (p *pendingSet) pump(ctx context.Context, client pb.RouteServiceClient, onSynced func()) error {
	stream, err := client.WatchRoutes(ctx, &pb.WatchRoutesRequest{})
	if err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		p.apply(m, time.Now())
		if m.GetSnapshotComplete() {
			onSynced()
		}
	}
}

// topFrame is everything one frame of top shows; renderTop draws it.
type topFrame struct {
	Now      time.Time
	Where    string        // the daemon, as errors name it
	Interval time.Duration // between refreshes
	Once     bool
	Stats    *pb.GetStatsResponse
	// Prev is the previous refresh's stats, Elapsed the time since; rates
	// need both (nil on the first frame).
	Prev    *pb.GetStatsResponse
	Elapsed time.Duration
	// Pending holds every pending prefix, in any order.
	Pending []pendingRoute
	N       int
	// Problems are shown first: a daemon that stopped answering, a watch
	// being reopened.
	Problems []string
}

// topStates is the order states are shown in: the gate's own.
var topStates = []pb.State{pb.State_STATE_PENDING, pb.State_STATE_CONFIRMED, pb.State_STATE_RELEASED,
	pb.State_STATE_FAILED, pb.State_STATE_HELD_DOWN, pb.State_STATE_WITHDRAWN, pb.State_STATE_REFUSED}

// renderTop draws a frame as plain text (no escape codes); it depends on
// nothing but f.
func renderTop(f topFrame) string {
	var b strings.Builder
	every := "once"
	if !f.Once {
		every = "every " + f.Interval.String()
	}
	fmt.Fprintf(&b, "fibgate top - %s - %s (%s)\n", f.Where, f.Now.Format("2006-01-02 15:04:05"), every)
	for _, p := range f.Problems {
		fmt.Fprintf(&b, "! %s\n", p)
	}
	b.WriteByte('\n')

	s := f.Stats
	byState := map[pb.State]uint64{}
	var total uint64
	for _, sc := range s.GetRoutesByState() {
		byState[sc.GetState()] += sc.GetRoutes()
		total += sc.GetRoutes()
	}
	b.WriteString("routes    ")
	for _, st := range topStates {
		fmt.Fprintf(&b, " %s %d", stateName(st), byState[st])
	}
	fmt.Fprintf(&b, "  (total %d)\n", total)

	rate := func(get func(*pb.GetStatsResponse) uint64) string {
		if f.Prev == nil || f.Elapsed <= 0 || get(s) < get(f.Prev) { // none yet, or the daemon restarted
			return "-/s"
		}
		return strconv.FormatFloat(float64(get(s)-get(f.Prev))/f.Elapsed.Seconds(), 'f', 1, 64) + "/s"
	}
	fmt.Fprintf(&b, "gate       confirmations %d (%s), failures %d (%s)\n",
		s.GetConfirmations(), rate((*pb.GetStatsResponse).GetConfirmations),
		s.GetFailures(), rate((*pb.GetStatsResponse).GetFailures))
	fmt.Fprintf(&b, "bgp        advertisements %d (%s), withdrawals %d (%s)\n",
		s.GetAdvertisements(), rate((*pb.GetStatsResponse).GetAdvertisements),
		s.GetWithdrawals(), rate((*pb.GetStatsResponse).GetWithdrawals))
	fmt.Fprintf(&b, "hardware   time to program %s\n", latencyText(s.GetTimeToHardware()))
	fmt.Fprintf(&b, "hold-down  time held down %s\n", latencyText(s.GetTimeHeldDown()))
	if li := s.GetListener(); li != nil {
		fmt.Fprintf(&b, "listener   %d FIB routes, %d notifications, %d overruns, %d resyncs, %d out of sync\n",
			li.GetRoutes(), li.GetNotifications(), li.GetOverruns(), li.GetResyncs(), li.GetOutOfSync())
	}
	if x := s.GetExternal(); x != nil {
		fmt.Fprintf(&b, "agents     %d connected, %d routes, reports %d applied, %d ignored\n",
			x.GetAgents(), x.GetRoutes(), x.GetReportsApplied(), x.GetReportsIgnored())
	}
	if f.N == 0 {
		return b.String()
	}

	b.WriteByte('\n')
	if len(f.Pending) == 0 {
		b.WriteString("no prefix pending\n")
		return b.String()
	}
	oldest := slices.SortedFunc(slices.Values(f.Pending), func(x, y pendingRoute) int {
		return cmp.Or(x.Since.Compare(y.Since), cmp.Compare(x.Table, y.Table), strings.Compare(x.Prefix, y.Prefix))
	})
	shown := oldest[:min(f.N, len(oldest))]
	fmt.Fprintf(&b, "pending longest (%d of %d)\n", len(shown), len(oldest))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tTABLE\tPENDING\tSCOPE\tREASON")
	for _, r := range shown {
		reason := r.Reason
		if reason == "" {
			reason = "-"
		}
		waited := "?"
		if !r.Since.IsZero() {
			waited = shortDuration(f.Now.Sub(r.Since))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", r.Prefix, r.Table, waited, r.Scope, reason)
	}
	tw.Flush()
	return b.String()
}
