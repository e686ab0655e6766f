//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fibgate/fibgate/internal/syncbuf"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

var topNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func topStats(confirmations, failures, withdrawals uint64, counts ...uint64) *pb.GetStatsResponse {
	s := &pb.GetStatsResponse{
		Confirmations: confirmations, Failures: failures, Withdrawals: withdrawals, Advertisements: 2 * confirmations,
		TimeToHardware: &pb.LatencySummary{Count: 40, P50: durationpb.New(3 * time.Millisecond),
			P90: durationpb.New(40 * time.Millisecond), P99: durationpb.New(1500 * time.Millisecond), Max: durationpb.New(2 * time.Minute)},
		TimeHeldDown: &pb.LatencySummary{Count: 3, P50: durationpb.New(time.Second),
			P90: durationpb.New(2 * time.Second), P99: durationpb.New(4 * time.Second), Max: durationpb.New(4 * time.Second)},
		Listener: &pb.ListenerStats{Notifications: 900, Overruns: 1, Resyncs: 2, OutOfSync: 0, Routes: 812},
	}
	for i, c := range counts {
		s.RoutesByState = append(s.RoutesByState, &pb.StateCount{State: topStates[i], Routes: c})
	}
	return s
}

func pendingFor(prefix, scope, reason string, ago time.Duration) pendingRoute {
	return pendingRoute{Table: 254, Prefix: prefix, Scope: scope, Reason: reason, Since: topNow.Add(-ago)}
}

func TestRenderTopShowsCountsRatesLatenciesAndTheLongestPending(t *testing.T) {
	f := topFrame{
		Now: topNow, Where: "unix socket /run/fibgate/fibgate.sock", Interval: 2 * time.Second, N: 3,
		Stats:   topStats(110, 7, 3, 5, 2, 800, 1, 0, 4),
		Prev:    topStats(100, 6, 3, 5, 2, 800, 1, 0, 4),
		Elapsed: 2 * time.Second,
		Pending: []pendingRoute{
			pendingFor("10.0.0.0/24", "nets", "waiting for hardware", 2*time.Second),
			pendingFor("10.0.9.0/24", "nets", "", 90*time.Minute),
			pendingFor("10.0.1.0/24", "nets", "trap only; scope needs offload", 700*time.Millisecond),
			pendingFor("2001:db8::/48", "v6", "waiting for hardware", 4*time.Minute+10*time.Second),
			pendingFor("10.0.2.0/24", "nets", "waiting for hardware", 10*time.Millisecond),
		},
	}
	got := renderTop(f)
	t.Logf("\n%s", got)
	for _, want := range []string{
		"fibgate top - unix socket /run/fibgate/fibgate.sock - 2026-03-01 12:00:00 (every 2s)\n",
		"routes     pending 5 confirmed 2 released 800 failed 1 held_down 0 withdrawn 4 refused 0  (total 812)\n",
		"gate       confirmations 110 (5.0/s), failures 7 (0.5/s)\n",
		"bgp        advertisements 220 (10.0/s), withdrawals 3 (0.0/s)\n",
		"hardware   time to program p50 3ms, p90 40ms, p99 1.5s, max 2m00s (40 samples)\n",
		"hold-down  time held down p50 1.0s, p90 2.0s, p99 4.0s, max 4.0s (3 samples)\n",
		"listener   812 FIB routes, 900 notifications, 1 overruns, 2 resyncs, 0 out of sync\n",
		"pending longest (3 of 5)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("frame lacks %q", want)
		}
	}
	if strings.Contains(got, "\x1b") {
		t.Error("the frame has escape codes; only the terminal writer adds them")
	}
	// Oldest first, at most N, with how long each has waited, its scope and
	// its reason (or - without one).
	table := got[strings.Index(got, "PREFIX"):]
	rows := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	wantRows := []*regexp.Regexp{
		regexp.MustCompile(`^PREFIX +TABLE +PENDING +SCOPE +REASON$`),
		regexp.MustCompile(`^10\.0\.9\.0/24 +254 +1h30m +nets +-$`),
		regexp.MustCompile(`^2001:db8::/48 +254 +4m10s +v6 +waiting for hardware$`),
		regexp.MustCompile(`^10\.0\.0\.0/24 +254 +2\.0s +nets +waiting for hardware$`),
	}
	if len(rows) != len(wantRows) {
		t.Fatalf("pending table:\n%s", table)
	}
	for i, re := range wantRows {
		if !re.MatchString(rows[i]) {
			t.Errorf("row %d %q does not match %s", i, rows[i], re)
		}
	}
	if strings.Index(rows[0], "PENDING") != strings.Index(rows[1], "1h30m") {
		t.Errorf("columns not aligned:\n%s", table)
	}
}

func TestRenderTopWithoutRatesOrPendingPrefixes(t *testing.T) {
	base := topFrame{Now: topNow, Where: "x", Interval: time.Second, N: 10, Stats: topStats(5, 0, 0, 0, 5)}

	once := base
	once.Once = true
	got := renderTop(once)
	if !strings.Contains(got, "(once)") || !strings.Contains(got, "confirmations 5 (-/s), failures 0 (-/s)") ||
		!strings.Contains(got, "no prefix pending\n") {
		t.Errorf("first frame:\n%s", got)
	}

	restarted := base // the daemon restarted: counters went down
	restarted.Prev, restarted.Elapsed = topStats(50, 1, 0, 0, 5), time.Second
	if got := renderTop(restarted); !strings.Contains(got, "confirmations 5 (-/s), failures 0 (-/s)") {
		t.Errorf("rates across a restart:\n%s", got)
	}

	bare := base // no listener, no confirmation yet, no list
	bare.Stats = &pb.GetStatsResponse{}
	bare.N = 0
	bare.Problems = []string{"stats: cannot reach the fibgate daemon"}
	got = renderTop(bare)
	if strings.Contains(got, "listener") || !strings.Contains(got, "time to program no samples yet") ||
		!strings.Contains(got, "routes     pending 0 confirmed 0 released 0 failed 0 held_down 0 withdrawn 0 refused 0  (total 0)") ||
		strings.Contains(got, "PREFIX") || strings.Contains(got, "no prefix pending") ||
		!strings.Contains(got, "\n! stats: cannot reach the fibgate daemon\n") {
		t.Errorf("bare frame:\n%s", got)
	}

	unknown := base // a pending prefix whose start is unknown
	unknown.Pending = []pendingRoute{{Table: 254, Prefix: "10.1.0.0/16", Scope: "s"}}
	if got := renderTop(unknown); !regexp.MustCompile(`10\.1\.0\.0/16 +254 +\? +s +-`).MatchString(got) {
		t.Errorf("unknown wait:\n%s", got)
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                       "0s",
		250 * time.Microsecond:             "250µs",
		850 * time.Millisecond:             "850ms",
		3200 * time.Millisecond:            "3.2s",
		4*time.Minute + 10*time.Second:     "4m10s",
		2*time.Hour + 5*time.Minute:        "2h05m",
		3*24*time.Hour + 4*time.Hour:       "3d04h",
		47*time.Hour + 59*time.Minute:      "47h59m",
		59*time.Minute + 59*time.Second:    "59m59s",
		time.Minute + 500*time.Millisecond: "1m01s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

func watchRoute(prefix string, st pb.State, seen, confirmed time.Time) *pb.Route {
	r := &pb.Route{Table: 254, Prefix: prefix, Scope: "nets", State: st, Reason: "r " + prefix}
	if !seen.IsZero() {
		r.SeenTime = timestamppb.New(seen)
	}
	if !confirmed.IsZero() {
		r.ConfirmedTime = timestamppb.New(confirmed)
	}
	return r
}

func pendingMap(p *pendingSet) map[string]time.Time {
	routes, _ := p.snapshot()
	out := map[string]time.Time{}
	for _, r := range routes {
		out[r.Prefix] = r.Since
	}
	return out
}

func TestThePendingSetFollowsTheWatchStream(t *testing.T) {
	t0 := topNow.Add(-time.Hour)
	p := newPendingSet()
	// A snapshot in two batches: pending prefixes wait since they entered
	// the FIB, or since their last confirmation when later.
	p.apply(&pb.WatchRoutesResponse{Snapshot: true, Routes: []*pb.Route{
		watchRoute("10.0.0.0/24", pb.State_STATE_PENDING, t0, time.Time{}),
		watchRoute("10.0.1.0/24", pb.State_STATE_RELEASED, t0, t0.Add(time.Second)),
	}}, topNow)
	if got := pendingMap(p); len(got) != 0 {
		t.Errorf("an incomplete snapshot is already shown: %v", got)
	}
	p.apply(&pb.WatchRoutesResponse{Snapshot: true, SnapshotComplete: true, Routes: []*pb.Route{
		watchRoute("10.0.2.0/24", pb.State_STATE_PENDING, t0, t0.Add(10*time.Minute)),
	}}, topNow)
	want := map[string]time.Time{"10.0.0.0/24": t0, "10.0.2.0/24": t0.Add(10 * time.Minute)}
	if got := pendingMap(p); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the snapshot %v, want %v", got, want)
	}

	// Changes: a prefix that becomes pending waits from when it was seen
	// to; one still pending keeps its start; one that leaves pending goes.
	later := topNow.Add(5 * time.Second)
	p.apply(&pb.WatchRoutesResponse{Routes: []*pb.Route{
		watchRoute("10.0.1.0/24", pb.State_STATE_PENDING, t0, t0.Add(time.Second)),
		watchRoute("10.0.0.0/24", pb.State_STATE_PENDING, t0, time.Time{}),
		watchRoute("10.0.2.0/24", pb.State_STATE_CONFIRMED, t0, later),
	}}, later)
	want = map[string]time.Time{"10.0.0.0/24": t0, "10.0.1.0/24": later}
	if got := pendingMap(p); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the changes %v, want %v", got, want)
	}
	routes, _ := p.snapshot()
	for _, r := range routes {
		if r.Reason != "r "+r.Prefix || r.Scope != "nets" || r.Table != 254 {
			t.Errorf("route %+v", r)
		}
	}

	// The stream breaks: the set stays, marked stale; a new snapshot
	// replaces it, keeping the more precise starts seen before.
	p.broken("cannot reach the daemon")
	if _, problems := p.snapshot(); len(problems) != 1 || !strings.Contains(problems[0], "cannot reach the daemon; reconnecting") {
		t.Errorf("problems %q", problems)
	}
	p.apply(&pb.WatchRoutesResponse{Snapshot: true, SnapshotComplete: true, Routes: []*pb.Route{
		watchRoute("10.0.1.0/24", pb.State_STATE_PENDING, t0, t0.Add(time.Second)),
		watchRoute("10.0.3.0/24", pb.State_STATE_PENDING, t0, time.Time{}),
	}}, later)
	want = map[string]time.Time{"10.0.1.0/24": later, "10.0.3.0/24": t0}
	if got := pendingMap(p); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after reconnecting %v, want %v", got, want)
	}
	if _, problems := p.snapshot(); len(problems) != 0 {
		t.Errorf("problems after reconnecting: %q", problems)
	}
}

// TestTopOncePrintsOneFrameFromADaemon runs `fibgate top --once` against
// a real API with two confirmed and two pending prefixes.
func TestTopOncePrintsOneFrameFromADaemon(t *testing.T) {
	d := startDaemon(t)
	code, out, stderr := cli(t, d, "top", "--once")
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	t.Logf("fibgate top --once:\n%s", out)
	for _, want := range []string{
		"fibgate top - unix socket " + d.Socket + " - ",
		"(once)\n",
		"routes     pending 2 confirmed 2 released 0 failed 0 held_down 0 withdrawn 0 refused 0  (total 4)\n",
		"confirmations 2 (-/s), failures 0 (-/s)\n",
		"advertisements 0 (-/s), withdrawals 0 (-/s)\n",
		"time to program p50 ",
		"(2 samples)\n",
		"listener   ",
		"agents     0 connected",
		"pending longest (2 of 2)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, re := range []string{
		`\n203\.0\.113\.0/26 +254 +\d+(\.\d)?(µs|ms|s) +nets +waiting for hardware\n`,
		`\n2001:db8:7::/48 +254 +\d+(\.\d)?(µs|ms|s) +nets +waiting for hardware\n`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output does not match %s", re)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Error("--once printed escape codes")
	}
	if code, out, _ := cli(t, d, "top", "--once", "--n", "1"); code != 0 || !strings.Contains(out, "pending longest (1 of 2)") {
		t.Errorf("--n 1 (exit %d):\n%s", code, out)
	}
}

// waitFor polls s until it contains want (10 s at most).
func waitFor(t *testing.T, s fmt.Stringer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in:\n%s", want, s.String())
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

// TestTopRefreshesUntilInterrupted follows a daemon as routes come and go:
// frames follow one another (no escape codes outside a terminal), new
// pending prefixes appear, rates show from the second frame, and an
// interrupt ends top with status 0.
func TestTopRefreshesUntilInterrupted(t *testing.T) {
	d := startDaemon(t)
	var out, stderr syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"top", "--interval", "50ms", "--socket", d.Socket}, &out, &stderr) }()
	stopped := false
	defer func() {
		cancel()
		if !stopped {
			<-done
		}
	}()
	waitFor(t, &out, "withdrawals 0 (0.0/s)") // a second frame: rates
	kerneltest.IP(t, d.NS, "route", "add", "203.0.113.64/26", "dev", "eth1")
	kerneltest.IP(t, d.NS, "route", "del", "198.51.100.22/32")
	d.WaitState(t, fib.TableMain, "203.0.113.64/26", gate.Pending)
	waitFor(t, &out, "pending longest (3 of 3)")
	waitFor(t, &out, "withdrawn 1 refused 0  (total") // no BGP: no withdrawal counted
	cancel()
	select {
	case code := <-done:
		stopped = true
		if code != exitOK {
			t.Errorf("exit %d after interrupt: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		stopped = true // leave it: waiting again would hang the test
		t.Fatal("top did not stop within 10 s of an interrupt")
	}
	s := out.String()
	if strings.Contains(s, "\x1b") {
		t.Error("escape codes outside a terminal")
	}
	if n := strings.Count(s, "fibgate top - "); n < 3 {
		t.Errorf("%d frames", n)
	}
	// The new prefix waits from when top saw it, so less than the old ones.
	last := s[strings.LastIndex(s, "fibgate top - "):]
	if i, j := strings.Index(last, "203.0.113.0/26"), strings.Index(last, "203.0.113.64/26"); i < 0 || j < i {
		t.Errorf("the new pending prefix is not listed after the older one:\n%s", last)
	}
}

// openPTY returns a pseudo-terminal's two ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// TestTopRedrawsTheScreenOnATerminal checks that frames written to a
// terminal start by clearing it, and that --once never does.
func TestTopRedrawsTheScreenOnATerminal(t *testing.T) {
	d := startDaemon(t)
	master, slave := openPTY(t)
	if !isTerminal(slave) {
		t.Fatal("a pseudo-terminal is not a terminal")
	}
	if f, err := os.Open(os.DevNull); err != nil || isTerminal(f) {
		t.Fatalf("/dev/null is a terminal (%v)", err)
	} else {
		f.Close()
	}
	var seen syncbuf.Buffer
	go io.Copy(&seen, master) // ends when the test closes the master

	if code, _, stderr := runTo(t, slave, "top", "--once", "--socket", d.Socket); code != 0 {
		t.Fatalf("--once exit %d: %s", code, stderr)
	}
	waitFor(t, &seen, "pending longest")
	if strings.Contains(seen.String(), "\x1b") {
		t.Errorf("--once on a terminal printed escape codes: %q", seen.String())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"top", "--interval", "50ms", "--socket", d.Socket}, slave, io.Discard)
	}()
	waitFor(t, &seen, clearScreen+"fibgate top - ")
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("exit %d", code)
	}
}

// runTo runs fibgate with stdout on w.
func runTo(t *testing.T, w io.Writer, args ...string) (int, string, string) {
	t.Helper()
	var stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return run(ctx, args, w, &stderr), "", stderr.String()
}

func TestTopFlagsAndAnUnreachableDaemon(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"top", "--interval", "0s"}, "--interval 0s: want 10ms or more"},
		{[]string{"top", "--interval", "soon"}, "invalid value"},
		{[]string{"top", "--n", "-1"}, "--n -1: want 0 or more"},
		{[]string{"top", "--bogus"}, "flag provided but not defined"},
		{[]string{"top", "now"}, "takes no arguments"},
		{[]string{"top", "--tls-ca", "ca.pem"}, "need --addr"},
	} {
		code, _, stderr := cli(t, nil, tt.args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", tt.args, code, exitUsage, stderr)
		}
		oneLine(t, stderr, tt.want)
	}
	code, out, _ := cli(t, nil, "top", "--help")
	if code != exitOK || !strings.Contains(out, "Usage: fibgate top") || !strings.Contains(out, "-interval") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
	if code, out, _ := cli(t, nil, "--help"); code != exitOK || !strings.Contains(out, "\n  top ") {
		t.Errorf("fibgate --help does not list top:\n%s", out)
	}
	// Like every API command: one line naming the socket, status 1.
	sock := filepath.Join(t.TempDir(), "nobody.sock")
	for _, args := range [][]string{{"top", "--once"}, {"top"}} {
		code, _, stderr := cli(t, nil, append(args, "--socket", sock)...)
		if code != exitError {
			t.Errorf("%v: exit %d, want %d", args, code, exitError)
		}
		oneLine(t, stderr, "cannot reach the fibgate daemon at unix socket "+sock)
	}
}

// TestDurationsReadTheSameEverywhere: every duration printed for people is
// rounded the same way, to what a person reads at a glance.
func TestDurationsReadTheSameEverywhere(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                           "0s",
		850 * time.Microsecond:                      "850µs",
		289905536 * time.Nanosecond:                 "290ms",
		1234 * time.Millisecond:                     "1.2s",
		4*time.Minute + 10*time.Second:              "4m10s",
		2*time.Hour + 5*time.Minute:                 "2h05m",
		3*24*time.Hour + 4*time.Hour:                "3d04h",
		-time.Second:                                "0s",
		59*time.Second + 990*time.Millisecond:       "1m00s",
		999*time.Millisecond + 700*time.Microsecond: "1.0s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
	now := topNow
	if got := inState(timestamppb.New(now.Add(-1234*time.Millisecond)), now); got != "1.2s" {
		t.Errorf("IN STATE of 1.234s = %q, want 1.2s", got)
	}
	if got := inState(nil, now); got != "-" {
		t.Errorf("IN STATE without a state time = %q, want -", got)
	}
}
