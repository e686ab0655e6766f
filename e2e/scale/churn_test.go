//go:build linux && scale

package scale

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fibgate/fibgate/internal/lab"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// TestSteadyChurn is issue 10's steady churn (`make bench-churn`): with
// the table loaded through the leaf, the source withdraws prefixes of it
// and announces each again a second later, at a steady rate for a fixed
// time, and every change is timed from the source's API to the observer.
// The source and the observer are stock gobgpds here, not BIRD: the test
// drives the source over its API (AddPathStream) and gets every best-path
// change of the observer pushed with its own timestamp (lab.WatchBest).
//
//	source (gobgpd, AS 65010) ── leaf under test (AS 65001) ── observer (gobgpd, AS 65020)
//
// Each mode runs on a fresh lab, stock gobgpd among them as the
// baseline; the gated leaves also serve their metrics, whose
// confirm-to-advertise and time-to-hardware histograms are read before
// and after the churn, and every re-announced prefix's confirmation
// time is read from the gate's API, to count the prefixes the observer
// had before the leaf confirmed them. Settings as TestScaleBench's
// (FIBGATE_SCALE_SIZES, _ROUNDS, _FAMILIES, _TIMEOUT, _REPORT,
// _COMMAND), and:
//
//	FIBGATE_SCALE_MODES      ext, ext-fib, ext-copy, ext-toggle, sidecar, gobgpd, frr (not originated: it has no source); default ext,ext-copy,sidecar,gobgpd
//	FIBGATE_SCALE_CHURN      changes per second: 1000 (default) or 1000/s
//	FIBGATE_SCALE_CHURN_FOR  how long the churn lasts, 30s by default
//	FIBGATE_SCALE_PPROF      a directory: gobgpd-ext's CPU and allocation profiles of the churn (and 5 s after it: profileTail), a 5 s execution trace, and the heap at rest before it and after the drain (each after a collection) go there; `go tool pprof -sample_index=alloc_space -base X.heap-before.pprof X.heap.pprof` is what the churn and its drain allocated (the allocs profile counts to the last collection, which at the full table may be many seconds before its end)
//	FIBGATE_SCALE_CHURN_CSV  a directory: every change's times go there, one CSV file per run
//	FIBGATE_SCALE_CHURN_AUDIT the gated leaves' audit.interval (0s: off); the daemons' default when unset
//	FIBGATE_SCALE_CHURN_MOVES 1: best paths move instead of going (a backup source holds the table too; moves_test.go)
//
// It writes its own section of docs/scale.md (TestScaleBench keeps it).
func TestSteadyChurn(t *testing.T) {
	cfg, cc, err := churnConfig()
	if err != nil {
		t.Fatal(err)
	}
	lab.RequireRoot(t)
	rep := &churnReport{cfg: cfg, churn: cc, started: time.Now()}
	for _, size := range cfg.sizes {
		n, _ := parseSize(size)
		tab, err := sample(n, cfg.ipv6)
		if err != nil {
			t.Fatal(err)
		}
		timeout := cfg.timeout
		if timeout == 0 {
			// Twice TestScaleBench's: this lab is set up on a busier
			// machine more often than not, and a slow load is no result.
			all, _ := sample(0, cfg.ipv6)
			timeout = 2 * max(2*time.Minute, time.Duration(float64(10*time.Minute)*float64(tab.len())/float64(all.len()))).Round(time.Second)
		}
		plan := churnPlan(tab, cc.rate, cc.duration)
		for round := 1; round <= cfg.rounds; round++ {
			for _, m := range cfg.modes {
				t.Run(fmt.Sprintf("%s/%d/%s", size, round, m.key), func(t *testing.T) {
					r := runChurn(t, m, tab, plan, cc, timeout, fmt.Sprintf("%s-%d-%s", size, round, m.key))
					r.size, r.round = size, round
					t.Logf("%s, %s, round %d: %s", m.title, size, round, r.line())
					rep.add(r, tab)
				})
				if cfg.dir != "" {
					if err := rep.write(cfg.dir); err != nil {
						t.Fatalf("write the report: %v", err)
					}
				}
			}
		}
	}
}

// churnSettings are TestSteadyChurn's own settings.
type churnSettings struct {
	rate     int           // changes per second
	duration time.Duration // of the churn
	pprof    string        // directory for gobgpd-ext's or fibgated's profiles; "" none
	data     string        // directory for every change's times as CSV; "" none
	audit    string        // the gated leaves' audit.interval; "" the default
	// moves: a backup source holds the table one AS longer, so that the
	// churn moves best paths to it and back (moves_test.go).
	moves bool
}

// churnLag is how long after its withdrawal the source announces a
// prefix again: long enough for the withdrawal to have gone through
// every leaf (so both changes are seen), short enough that only a
// second's worth of prefixes is missing at a time.
const churnLag = time.Second

// churnTick is the pacer's period: each tick sends the changes that are
// due, in one message to the source, so the rate holds even when a tick
// is late.
const churnTick = 10 * time.Millisecond

func churnConfig() (benchSettings, churnSettings, error) {
	cfg, err := benchConfig()
	if err != nil {
		return cfg, churnSettings{}, err
	}
	if strings.TrimSpace(os.Getenv("FIBGATE_SCALE_MODES")) == "" {
		cfg.modes = nil
		for _, k := range []string{"ext", "ext-copy", "sidecar", "gobgpd"} {
			m, _ := modeByKey(k)
			cfg.modes = append(cfg.modes, m)
		}
	}
	cfg.modes = slices.DeleteFunc(cfg.modes, func(m mode) bool { return m.originated })
	if len(cfg.modes) == 0 {
		return cfg, churnSettings{}, fmt.Errorf("FIBGATE_SCALE_MODES=%q: the originating leaf has no source to churn; name another mode", os.Getenv("FIBGATE_SCALE_MODES"))
	}
	if os.Getenv("FIBGATE_SCALE_COMMAND") == "" {
		cfg.command = "go test -tags scale -run TestSteadyChurn ./e2e/scale/"
	}
	cc := churnSettings{rate: 1000, duration: 30 * time.Second, pprof: os.Getenv("FIBGATE_SCALE_PPROF"), data: os.Getenv("FIBGATE_SCALE_CHURN_CSV")}
	if s := strings.TrimSpace(os.Getenv("FIBGATE_SCALE_CHURN")); s != "" {
		v, err := strconv.Atoi(strings.TrimSuffix(s, "/s"))
		if err != nil || v < 2 {
			return cfg, cc, fmt.Errorf("FIBGATE_SCALE_CHURN=%q: want changes per second such as 1000 or 1000/s (at least 2)", s)
		}
		cc.rate = v
	}
	if s := strings.TrimSpace(os.Getenv("FIBGATE_SCALE_CHURN_AUDIT")); s != "" {
		if d, err := time.ParseDuration(s); err != nil || d < 0 {
			return cfg, cc, fmt.Errorf("FIBGATE_SCALE_CHURN_AUDIT=%q: want the gated leaves' audit interval, such as 0s (off) or 5m", s)
		}
		cc.audit = s
	}
	switch s := strings.TrimSpace(os.Getenv("FIBGATE_SCALE_CHURN_MOVES")); s {
	case "", "0":
	case "1":
		cc.moves = true
	default:
		return cfg, cc, fmt.Errorf("FIBGATE_SCALE_CHURN_MOVES=%q: want 1 (best paths move to a backup source and back) or 0", s)
	}
	if s := strings.TrimSpace(os.Getenv("FIBGATE_SCALE_CHURN_FOR")); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Second {
			return cfg, cc, fmt.Errorf("FIBGATE_SCALE_CHURN_FOR=%q: want a duration of 1s or more, such as 30s", s)
		}
		cc.duration = d
	}
	return cfg, cc, nil
}

// change is one change the source makes: a withdrawal or an
// announcement of p, due at offset at from the churn's start.
type change struct {
	p        netip.Prefix
	announce bool
	at       time.Duration
}

// churnPlan lays out rate×d changes over the table, in the order they
// are due: withdrawals of distinct prefixes (an even spread of the table
// in a fixed random order, both families mixed) at rate/2 for d, and the
// announcement of each again churnLag after its withdrawal. So from
// churnLag to d the rate is steady; in the first and the last churnLag it
// is half that.
func churnPlan(tab table, rate int, d time.Duration) []change {
	all := append(slices.Clone(tab.v4), tab.v6...)
	k := min(int(float64(rate)*d.Seconds())/2, len(all))
	ps := stride(all, k)
	rand.New(rand.NewPCG(10, 1000)).Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
	every := 2 * time.Second / time.Duration(rate)
	out := make([]change, 0, 2*k)
	for i, p := range ps {
		out = append(out, change{p: p, at: time.Duration(i) * every}, change{p: p, announce: true, at: time.Duration(i)*every + churnLag})
	}
	slices.SortStableFunc(out, func(a, b change) int { return int(a.at - b.at) })
	return out
}

// churnResult is one leaf's churn run.
type churnResult struct {
	size  string
	mode  mode
	round int
	// failure: the run has no churn figures (the table never got
	// through, a daemon died).
	failure string
	loaded  time.Duration // leaf start to the observer having the table
	quiet   bool          // the leaf was idle before the churn started
	load    float64       // 1-minute load average when the churn started
	foreign []string
	// The churn as sent: how many changes and over how long.
	sent       int
	sendIn     time.Duration
	steadyRate float64 // changes per second between the first and the last churnLag
	// End to end, the source's API to the observer, per change.
	announce, withdraw []time.Duration
	// Changes the observer never showed before the drain deadline, and
	// re-announcements it never lost in the first place (the withdrawal
	// and the announcement merged on the way).
	missing, merged int
	// The leaf's CPU over the churn and its drain.
	cpu time.Duration
	// Gated leaves: per re-announced prefix, from the gate's own
	// timestamps (seen in the FIB, confirmed, released to BGP) and the
	// observer's arrival.
	gated                                       bool
	toFIB, toHW, confirmToRelease, confirmToObs []time.Duration
	// Re-announcements the observer had before the leaf confirmed them
	// (or that the leaf has not confirmed since they were sent); prefixes
	// whose route never left the FIB; prefixes announced to the observer
	// while the leaf had no route for them (the leak).
	early, stayed, leaked int
	examples              []string
	// How long the observer held each leaked prefix while the leaf had
	// no route for it.
	leakedFor []time.Duration
	// Withdrawals that reached the observer after the gate saw the route
	// leave the FIB: how much later.
	lateWithdraw []time.Duration
	// The gate's histograms over the churn (the difference of two
	// scrapes).
	histConfirm, histHW histogram
	histCall            histogram // the speaker's advertise calls
	// histFence: the Speaker's fences, best-path change to held in GoBGP
	// (fibgate_gobgp_fence_seconds), and the part waiting for its lock.
	histFence, histFenceWait histogram
	// histWatch: WatchBest's heartbeat, GoBGP's main loop to WatchBest
	// reading the event (fibgate_gobgp_watch_delay_seconds), and the part
	// until GoBGP's watcher delivered it.
	histWatch, histDelivery histogram
	// The consistency audit's passes over the churn and its drain, and
	// how long the last one took.
	auditPasses int
	auditLast   time.Duration
	// speakerErrors counts the gate's failed Advertise and Withdraw calls
	// over the churn: each is retried after a back-off (100 ms first).
	speakerErrors int
	profiled      bool
	// gateErr: the gate's record could not be read (its figures are
	// partial).
	gateErr string
	// wire: the same figures from the leaf's UPDATEs as they reached the
	// observer's end of the link (lab.WireTap), without the observer's
	// own processing; nil if the tap failed (wireErr).
	wire    *churnResult
	wireErr string
	// moves: the figures of a churn that moves best paths (moves_test.go)
	// in place of announce, withdraw, missing and the gated judgement.
	moves *moveResult
}

// line is the run's summary for the log.
func (r churnResult) line() string {
	if r.failure != "" {
		return "failed: " + r.failure
	}
	if r.moves != nil {
		return r.movesLine()
	}
	s := fmt.Sprintf("%d changes in %.1f s; announce %s; withdraw %s; %d missing, %d merged; leaf CPU %.1f s",
		r.sent, r.sendIn.Seconds(), summary(r.announce), summary(r.withdraw), r.missing, r.merged, r.cpu.Seconds())
	if r.gated {
		s += fmt.Sprintf("; to FIB %s; to hardware %s; confirm to released %s (histogram p50 %s, p99 %s); confirm to observer %s; %d at the observer before the leaf confirmed them, %d whose route never left the FIB, %d announced to the observer while the leaf had no route (held there %s); withdrawals at the observer after the route left %s; %d audit passes (the last %v); %d failed speaker calls; fences p50 %s, p99 %s (%d; waiting for the lock p99 %s); watch delay p50 %s, p99 %s, max bucket %s (%d; GoBGP's delivery p99 %s)",
			summary(r.toFIB), summary(r.toHW), summary(r.confirmToRelease), ms(r.histConfirm.quantile(0.5)), ms(r.histConfirm.quantile(0.99)), summary(r.confirmToObs),
			r.early, r.stayed, r.leaked, summary(r.leakedFor), summary(r.lateWithdraw), r.auditPasses, r.auditLast.Round(time.Millisecond), r.speakerErrors,
			ms(r.histFence.quantile(0.5)), ms(r.histFence.quantile(0.99)), r.histFence.count, ms(r.histFenceWait.quantile(0.99)),
			ms(r.histWatch.quantile(0.5)), ms(r.histWatch.quantile(0.99)), ms(r.histWatch.quantile(1)), r.histWatch.count, ms(r.histDelivery.quantile(0.99)))
	}
	if w := r.wire; w != nil {
		s += fmt.Sprintf("; on the wire to the observer: announce %s; withdraw %s", summary(w.announce), summary(w.withdraw))
		if r.gated {
			s += fmt.Sprintf("; confirm to wire %s; %d on the wire before the leaf confirmed them, %d while the leaf had no route", summary(w.confirmToObs), w.early, w.leaked)
		}
	} else if r.wireErr != "" {
		s += "; wire tap failed: " + r.wireErr
	}
	if !r.quiet {
		s += " (the leaf was not idle when the churn began)"
	}
	return s
}

// churnLab is one source–leaf–observer lab with gobgpds at the edges.
type churnLab struct {
	leaf   *leafNS
	ds     []daemon
	src    api.GobgpApiClient
	watch  *lab.BestWatch
	obsNS  string
	routes pb.RouteServiceClient // gated leaves
}

// runChurn loads tab through a fresh leaf of mode m, waits until the leaf
// is idle, churns plan at cc.rate and measures every change.
// Profiles are named after tag.
func runChurn(t *testing.T, m mode, tab table, plan []change, cc churnSettings, timeout time.Duration, tag string) churnResult {
	t.Helper()
	if m.key == "frr" {
		lab.RequireFRR(t)
	}
	if m.fibgate {
		binaries(t)
	}
	lab.GobgpBinaries(t)
	r := churnResult{mode: m, gated: m.fibgate}
	leaf := &leafNS{ns: lab.NewNS(t, "leaf"), dir: t.TempDir(), tab: tab, transit: true, backup: cc.moves}
	if m.fibgate {
		leaf.metrics = "127.0.0.1:9464"
		if cc.audit != "" {
			leaf.extra = "audit:\n  interval: " + cc.audit + "\n"
		}
	}
	if cc.pprof != "" && (m.key == "ext" || m.key == "ext-copy" || m.key == "ext-toggle" || m.key == "sidecar") {
		leaf.pprof, r.profiled = "127.0.0.1:6060", true
		if m.key == "sidecar" {
			leaf.pprof = "127.0.0.1:6061" // fibgated's: gobgpd keeps 6060 for its metrics
		}
	}
	srcNS, obsNS := lab.NewNS(t, "src"), lab.NewNS(t, "obs")
	lab.Link(t, leaf.ns, "to-src", leafSrc4, leafSrc6, srcNS, "to-leaf", srcLeaf4, srcLeaf6)
	lab.Link(t, leaf.ns, "to-obs", leafObs4, leafObs6, obsNS, "to-leaf", obsLeaf4, obsLeaf6)
	edge := func(as uint32, id, peer4, peer6 string) string {
		c := lab.GobgpdConf{AS: as, RouterID: id, Active: true, Neighbours: []lab.Neighbour{{Address: peer4, AS: leafAS}}}
		if len(tab.v6) > 0 {
			c.Neighbours = append(c.Neighbours, lab.Neighbour{Address: peer6, AS: leafAS})
		}
		return c.String()
	}
	c := &churnLab{leaf: leaf, obsNS: obsNS}
	src := lab.StartGobgpd(t, srcNS, edge(sourceAS, srcLeaf4, leafSrc4, leafSrc6))
	c.src = api.NewGobgpApiClient(src.Dial(t))
	ctx := context.Background()
	if err := sendPaths(ctx, c.src, primary, tab.v4, false); err != nil {
		t.Fatalf("load the source: %v", err)
	}
	if err := sendPaths(ctx, c.src, primary, tab.v6, false); err != nil {
		t.Fatalf("load the source: %v", err)
	}
	if cc.moves {
		bakNS := lab.NewNS(t, "bak")
		lab.Link(t, leaf.ns, "to-bak", leafBak4, leafBak6, bakNS, "to-leaf", bakLeaf4, bakLeaf6)
		bak := api.NewGobgpApiClient(lab.StartGobgpd(t, bakNS, edge(sourceAS, bakLeaf4, leafBak4, leafBak6)).Dial(t))
		for _, ps := range [][]netip.Prefix{tab.v4, tab.v6} {
			if err := sendPaths(ctx, bak, backup, ps, false); err != nil {
				t.Fatalf("load the backup source: %v", err)
			}
		}
	}
	obs := lab.StartGobgpd(t, obsNS, edge(observerAS, obsLeaf4, leafObs4, leafObs6))
	if cc.moves {
		c.watch = lab.WatchBestASPaths(t, obs.Dial(t))
	} else {
		c.watch = lab.WatchBest(t, obs.Dial(t))
	}

	start := time.Now()
	c.ds = m.start(t, leaf)
	dead := func() string {
		for _, d := range c.ds {
			if d.done() {
				return d.name + " exited"
			}
		}
		return ""
	}
	for {
		k, err := c.watch.Count()
		if err != nil {
			t.Fatalf("observer: %v", err)
		}
		if k == tab.len() {
			break
		}
		if r.failure = dead(); r.failure == "" && time.Since(start) > timeout {
			r.failure = fmt.Sprintf("the observer had %d of %d prefixes after %v", k, tab.len(), timeout)
		}
		if r.failure != "" {
			logTails(t, leaf.dir)
			return r
		}
		time.Sleep(100 * time.Millisecond) // polling the observer's count
	}
	r.loaded = time.Since(start)
	if m.fibgate {
		conn, err := grpc.NewClient("unix://"+filepath.Join(leaf.dir, "fibgate.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		c.routes = pb.NewRouteServiceClient(conn)
	}
	r.quiet = c.settle(t, 3*time.Minute)
	var confirms *confirmLog
	if m.fibgate {
		confirms = followConfirms(t, c.routes)
	}

	var before, after map[string]histogram
	var gt map[netip.Prefix]gateTimes
	if m.fibgate {
		var err error
		if before, err = scrape(leaf.ns, leaf.metrics); err != nil {
			t.Fatalf("metrics before the churn: %v", err)
		}
	}
	if r.profiled {
		// Go's allocation profile counts up to the last collection, and an
		// idle leaf with a table in may not have had one since it learned
		// it: the churn's profile would count the table's tail, and the
		// first scrape's read of GoBGP's own collector (a ListPeer, 1 GB
		// at the full table). The heap after this collection is the table
		// at rest.
		if err := fetch(leaf.ns, "http://"+leaf.pprof+"/debug/pprof/heap?gc=1", filepath.Join(cc.pprof, "churn-"+tag+".heap-before.pprof"), 2*time.Minute); err != nil {
			t.Fatalf("heap before the churn: %v", err)
		}
	}
	cpu0 := c.cpu(t)
	var prof chan error
	if r.profiled {
		prof = make(chan error, 1)
		go func() {
			prof <- profile(leaf.ns, leaf.pprof, cc.duration+profileTail, filepath.Join(cc.pprof, "churn-"+tag))
		}()
	}
	// The leaf's UPDATEs to the observer, timed as they reach its end of
	// the link: its gobgpd shows them only after it processed them.
	tap := lab.TapBGP(t, c.obsNS, "to-leaf", netip.MustParseAddr(leafObs4), netip.MustParseAddr(leafObs6))
	r.load, r.foreign = loadAverage(), foreign()
	sent, err := c.churn(ctx, plan)
	if err != nil {
		t.Fatalf("churn: %v", err)
	}
	r.sent, r.sendIn = len(sent), sent[len(sent)-1].Sub(sent[0])
	// The CSV's times count from here; the daemons' logs have wall times.
	t.Logf("churn began at %s UTC", sent[0].UTC().Format("15:04:05.000"))
	// The steady part's rate as sent: from churnLag to the last
	// withdrawal's due time.
	var first, last time.Time
	steady := 0
	for i, ch := range plan {
		if ch.at >= churnLag && ch.at <= cc.duration-churnLag {
			if first.IsZero() {
				first = sent[i]
			}
			last = sent[i]
			steady++
		}
	}
	if last.After(first) {
		r.steadyRate = float64(steady-1) / last.Sub(first).Seconds()
	}

	// Drain: every change shown at the observer, or a minute more.
	churnStart := sent[0]
	deadline := time.Now().Add(time.Minute + time.Duration(len(plan))*time.Millisecond)
	for {
		if cc.moves {
			// A failover's window closes with its prefix's return, so
			// only the returns can still come.
			r.moves = judgeMoves(plan, sent, observedPaths(c.watch.ASPathsSince(churnStart)), nil)
			r.missing = r.moves.back.missing
		} else {
			r.measure(plan, sent, c.watch.Since(churnStart))
		}
		k, err := c.watch.Count()
		if err != nil {
			t.Fatalf("observer: %v", err)
		}
		if (r.missing == 0 && k == tab.len()) || time.Now().After(deadline) {
			break
		}
		if r.failure = dead(); r.failure != "" {
			return r
		}
		time.Sleep(200 * time.Millisecond) // polling the observer
	}
	r.cpu = c.cpu(t) - cpu0
	tap.Close()
	wire := tap.Since(churnStart)
	if err := tap.Err(); err != nil {
		t.Errorf("the wire tap: %v", err)
		r.wireErr = err.Error()
	} else {
		r.wire = &churnResult{}
		r.wire.measure(plan, sent, wire)
		if cc.moves {
			r.wire.moves = judgeMoves(plan, sent, wire, nil)
		}
	}
	if prof != nil {
		if err := <-prof; err != nil {
			t.Errorf("profile gobgpd-ext: %v", err)
		}
		// The live heap after the churn and its drain: what the
		// collector's marks walk while a table is steady.
		if err := fetch(leaf.ns, "http://"+leaf.pprof+"/debug/pprof/heap?gc=1", filepath.Join(cc.pprof, "churn-"+tag+".heap.pprof"), time.Minute); err != nil {
			t.Errorf("heap profile: %v", err)
		}
	}
	if m.fibgate {
		// A failure here costs the histograms or the gate's figures, not
		// the run's end-to-end figures.
		began := time.Now()
		if after, err = scrape(leaf.ns, leaf.metrics); err != nil {
			t.Errorf("metrics after the churn (%v): %v", time.Since(began).Round(time.Millisecond), err)
		} else {
			r.histConfirm = after["fibgate_confirm_to_advertise_seconds"].minus(before["fibgate_confirm_to_advertise_seconds"])
			r.histHW = after["fibgate_time_to_hardware_seconds"].minus(before["fibgate_time_to_hardware_seconds"])
			const call = `fibgate_speaker_call_seconds{call="advertise"}`
			r.histCall = after[call].minus(before[call])
			r.histFence = after["fibgate_gobgp_fence_seconds"].minus(before["fibgate_gobgp_fence_seconds"])
			r.histFenceWait = after["fibgate_gobgp_fence_wait_seconds"].minus(before["fibgate_gobgp_fence_wait_seconds"])
			r.histWatch = after["fibgate_gobgp_watch_delay_seconds"].minus(before["fibgate_gobgp_watch_delay_seconds"])
			r.histDelivery = after["fibgate_gobgp_watch_delivery_seconds"].minus(before["fibgate_gobgp_watch_delivery_seconds"])
			r.auditPasses = int(after["fibgate_audit_passes_total"].value - before["fibgate_audit_passes_total"].value)
			r.auditLast = time.Duration(after["fibgate_audit_pass_seconds"].value * float64(time.Second))
			r.speakerErrors = int(after["fibgate_speaker_errors_total"].value - before["fibgate_speaker_errors_total"].value)
		}
		if gt, err = readGate(ctx, c.routes, plan); err != nil {
			t.Errorf("the gate's record of the churned prefixes: %v", err)
			r.gateErr = err.Error()
		}
		confirms.into(gt)
		switch {
		case cc.moves:
			// The route never leaves the FIB: there is no leak to judge,
			// only new paths shown before their routes were confirmed.
			r.moves = judgeMoves(plan, sent, observedPaths(c.watch.ASPathsSince(churnStart)), gt)
			if r.wire != nil {
				r.wire.moves = judgeMoves(plan, sent, wire, gt)
			}
		default:
			r.judge(plan, sent, c.watch.Since(churnStart), gt)
			if r.leaked > 0 {
				t.Errorf("%d re-announced prefixes were announced to the observer while the leaf had no route for them (e.g. %s)", r.leaked, strings.Join(r.examples, "; "))
			}
			if r.wire != nil {
				r.wire.judge(plan, sent, wire, gt)
				if r.wire.leaked > 0 {
					t.Errorf("%d re-announced prefixes went on the wire to the observer while the leaf had no route for them (e.g. %s)", r.wire.leaked, strings.Join(r.wire.examples, "; "))
				}
			}
		}
	}
	if cc.data != "" {
		if err := writeChurnCSV(filepath.Join(cc.data, "churn-"+tag+".csv"), plan, sent, c.watch.Since(churnStart), wire, gt); err != nil {
			t.Errorf("write the churn's data: %v", err)
		}
	}
	return r
}

// cpu is the leaf's daemons' CPU time so far.
func (c *churnLab) cpu(t *testing.T) time.Duration {
	var d time.Duration
	for _, x := range c.ds {
		u, err := lab.ReadUsage(x.pid)
		if err != nil {
			t.Fatalf("%s: %v", x.name, err)
		}
		d += u.CPU
	}
	return d
}

// settle waits until the leaf's daemons used less than a fifth of a CPU
// over a second (the load's garbage collection and the gate's last
// releases are over), or timeout; it says whether they did.
func (c *churnLab) settle(t *testing.T, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	prev, at := c.cpu(t), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(time.Second) // the window the CPU time is measured over
		cur, now := c.cpu(t), time.Now()
		if float64(cur-prev) < 0.2*float64(now.Sub(at)) {
			return true
		}
		prev, at = cur, now
	}
	return false
}

// churn sends plan to the source as it falls due: every churnTick, the
// changes due by then in one AddPathStream message. It
// returns the time each change was handed to the stream.
func (c *churnLab) churn(ctx context.Context, plan []change) ([]time.Time, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := c.src.AddPathStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("add path stream: %w", err)
	}
	sent := make([]time.Time, len(plan))
	tick := time.NewTicker(churnTick)
	defer tick.Stop()
	start := time.Now()
	for next := 0; next < len(plan); {
		el, due := time.Since(start), next
		for due < len(plan) && plan[due].at <= el {
			due++
		}
		if due > next {
			paths := make([]*api.Path, 0, due-next)
			for _, ch := range plan[next:due] {
				p, err := primary.path(ch.p, !ch.announce)
				if err != nil {
					return nil, err
				}
				paths = append(paths, p)
			}
			now := time.Now()
			for i := next; i < due; i++ {
				sent[i] = now
			}
			if err := s.Send(&api.AddPathStreamRequest{TableType: api.TableType_GLOBAL, Paths: paths}); err != nil {
				_, rerr := s.CloseAndRecv()
				return nil, fmt.Errorf("send changes %d to %d: %v (%v)", next, due, err, rerr)
			}
			next = due
		}
		if next < len(plan) {
			<-tick.C
		}
	}
	if _, err := s.CloseAndRecv(); err != nil {
		return nil, fmt.Errorf("close the churn stream: %w", err)
	}
	return sent, nil
}

// profileTail runs the churn's profiles past its end, so that writing
// them out does not stall the leaf while the last changes are judged: in
// a session 17 run at the full table, all 387 releases that went out
// before their fences came in the churn's last second, when the profiles
// were written (docs/design-notes.md, "The window that remains").
const profileTail = 5 * time.Second

// measure times every change of plan from its sending to the first
// sighting at the observer that shows it, and counts those not shown
// yet. A re-announcement whose prefix the observer never lost is merged.
func (r *churnResult) measure(plan []change, sent []time.Time, seen []lab.Sighting) {
	by := lab.SightingsByPrefix(seen)
	r.announce, r.withdraw, r.missing, r.merged = r.announce[:0], r.withdraw[:0], 0, 0
	for i, ch := range plan {
		s, ok := firstAfter(by[ch.p], sent[i], ch.announce)
		switch {
		case ok && ch.announce:
			r.announce = append(r.announce, s.At.Sub(sent[i]))
		case ok:
			r.withdraw = append(r.withdraw, s.At.Sub(sent[i]))
		case ch.announce && !slices.ContainsFunc(by[ch.p], func(s lab.Sighting) bool { return !s.Present }):
			r.merged++
		default:
			r.missing++
		}
	}
}

func firstAfter(ss []lab.Sighting, t time.Time, present bool) (lab.Sighting, bool) {
	for _, s := range ss {
		if s.Present == present && !s.At.Before(t) {
			return s, true
		}
	}
	return lab.Sighting{}, false
}

// gateTimes is the gate's record of a re-announced prefix after the
// churn: when its route last left the FIB, entered it, was confirmed and
// was released (zero: never).
type gateTimes struct {
	withdrawn, seen, confirmed, released time.Time
	// confirms are every confirmation the gate's watch showed during the
	// churn, oldest first: confirmed is only the last, and a prefix
	// confirmed again after its route was replaced while out (FRR's
	// zebra writes an IPv6 route again after each release) has a last
	// confirmation later than the one it was released on.
	confirms []time.Time
	// releases are every release the watch showed, oldest first.
	releases []time.Time
}

// confirmedAfter is the gate's first confirmation of p at or after t, or
// its last one when the watch showed none.
func (g gateTimes) confirmedAfter(t time.Time) time.Time {
	for _, c := range g.confirms {
		if !c.Before(t) {
			return c
		}
	}
	return g.confirmed
}

// confirmLog keeps every confirmation and release time the gate's watch
// shows, per prefix of the main table.
type confirmLog struct {
	mu      sync.Mutex
	at, rel map[netip.Prefix][]time.Time
}

// addTime appends t to p's times in m unless it is the last one there: the
// watch repeats a prefix's times with every change of its state.
func addTime(m map[netip.Prefix][]time.Time, p netip.Prefix, t time.Time) {
	if ts := m[p]; len(ts) == 0 || !ts[len(ts)-1].Equal(t) {
		m[p] = append(ts, t)
	}
}

// followConfirms follows the gate's watch until the test ends.
func followConfirms(t *testing.T, rc pb.RouteServiceClient) *confirmLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := rc.WatchRoutes(ctx, &pb.WatchRoutesRequest{Table: 254, SkipSnapshot: true})
	if err != nil {
		cancel()
		t.Fatalf("watch the gate: %v", err)
	}
	l := &confirmLog{at: map[netip.Prefix][]time.Time{}, rel: map[netip.Prefix][]time.Time{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			resp, err := st.Recv()
			if err != nil {
				return
			}
			l.mu.Lock()
			for _, rt := range resp.GetRoutes() {
				p, err := netip.ParsePrefix(rt.GetPrefix())
				if err != nil {
					continue
				}
				if c := rt.GetConfirmedTime(); c != nil {
					addTime(l.at, p, c.AsTime())
				}
				if a := rt.GetAdvertisedTime(); a != nil {
					addTime(l.rel, p, a.AsTime())
				}
			}
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

// into adds the confirmations to the gate's record of each prefix.
func (l *confirmLog) into(gt map[netip.Prefix]gateTimes) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for p, g := range gt {
		g.confirms, g.releases = slices.Clone(l.at[p]), slices.Clone(l.rel[p])
		gt[p] = g
	}
}

// readGate reads the gate's record of every re-announced prefix.
func readGate(ctx context.Context, rc pb.RouteServiceClient, plan []change) (map[netip.Prefix]gateTimes, error) {
	out := map[netip.Prefix]gateTimes{}
	ts := func(t interface{ AsTime() time.Time }, set bool) time.Time {
		if !set {
			return time.Time{}
		}
		return t.AsTime()
	}
	for _, ch := range plan {
		if !ch.announce {
			continue
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := rc.GetRoute(ctx, &pb.GetRouteRequest{Table: 254, Prefix: ch.p.String()})
		cancel()
		if err != nil {
			return out, fmt.Errorf("get route %v from the gate: %w", ch.p, err)
		}
		rt := resp.GetRoute()
		g := gateTimes{withdrawn: ts(rt.GetWithdrawnTime(), rt.GetWithdrawnTime() != nil), seen: ts(rt.GetSeenTime(), rt.GetSeenTime() != nil),
			confirmed: ts(rt.GetConfirmedTime(), rt.GetConfirmedTime() != nil), released: ts(rt.GetAdvertisedTime(), rt.GetAdvertisedTime() != nil)}
		out[ch.p] = g
	}
	return out, nil
}

// judge times the steps of every re-announced prefix from the gate's
// record gt against the sending and the sightings seen: the observer's
// (what its daemon showed) or the wire's (when the leaf sent it). Each
// prefix is churned once, so a confirmation older than the
// re-announcement means the leaf has not confirmed it since.
//
// Early counts re-announcements the observer showed before the leaf
// confirmed them (the old route may still have been in the FIB: the
// installer had not removed it yet). Leaked counts prefixes announced to
// the observer while the leaf had no route for them: between the gate
// seeing the route leave the FIB after the withdrawal and its
// confirmation of the new one. A withdrawal that reaches the observer
// only after the route left is no leak (every router removes its route
// and tells its neighbours in parallel); lateWithdraw times it.
func (r *churnResult) judge(plan []change, sent []time.Time, seen []lab.Sighting, gt map[netip.Prefix]gateTimes) {
	by := lab.SightingsByPrefix(seen)
	withdrawnAt := map[netip.Prefix]time.Time{}
	for i, ch := range plan {
		if !ch.announce {
			withdrawnAt[ch.p] = sent[i]
			continue
		}
		g, ok := gt[ch.p]
		if !ok {
			continue // the gate's record was not read (gateErr)
		}
		g.confirmed = g.confirmedAfter(sent[i])
		confirmed := !g.confirmed.IsZero() && !g.confirmed.Before(sent[i])
		first, shown := firstAfter(by[ch.p], sent[i], true)
		if shown && (!confirmed || first.At.Before(g.confirmed)) {
			r.early++
		}
		left := !g.withdrawn.IsZero() && !g.withdrawn.Before(withdrawnAt[ch.p])
		until := g.confirmed
		if !confirmed {
			until = time.Now()
		}
		switch {
		case !left:
			r.stayed++ // the re-announcement reached the installer before the withdrawal
		case announcedWithin(by[ch.p], g.withdrawn, until):
			r.leaked++
			r.leakedFor = append(r.leakedFor, heldWithin(by[ch.p], g.withdrawn, until))
			if len(r.examples) < 3 {
				r.examples = append(r.examples, fmt.Sprintf("%v: withdrawal sent %s, route left the FIB %s, re-announcement sent %s, at the observer %s, confirmed %s",
					ch.p, clock(withdrawnAt[ch.p]), clock(g.withdrawn), clock(sent[i]), clock(first.At), clock(g.confirmed)))
			}
		case presentAt(by[ch.p], g.withdrawn):
			// The withdrawal reached the observer after the route left,
			// possibly after the new route's confirmation; never, if the
			// leaf's GoBGP merged it with the re-announcement (merged).
			if lost, ok := firstAfter(by[ch.p], g.withdrawn, false); ok {
				r.lateWithdraw = append(r.lateWithdraw, lost.At.Sub(g.withdrawn))
			}
		}
		if !confirmed {
			continue
		}
		if !g.seen.Before(sent[i]) {
			r.toFIB = append(r.toFIB, g.seen.Sub(sent[i]))
			r.toHW = append(r.toHW, g.confirmed.Sub(g.seen))
		}
		if !g.released.Before(g.confirmed) {
			r.confirmToRelease = append(r.confirmToRelease, g.released.Sub(g.confirmed))
		}
		if s, ok := firstAfter(by[ch.p], g.confirmed, true); ok {
			r.confirmToObs = append(r.confirmToObs, s.At.Sub(g.confirmed))
		}
	}
}

// heldWithin is how long the observer held a prefix between from and to,
// from its sightings since the churn began (it held the prefix before).
func heldWithin(ss []lab.Sighting, from, to time.Time) time.Duration {
	present, at := presentAt(ss, from), from
	var d time.Duration
	for _, s := range ss {
		if !s.At.After(from) {
			continue
		}
		if !s.At.Before(to) {
			break
		}
		if present {
			d += s.At.Sub(at)
		}
		present, at = s.Present, s.At
	}
	if present && to.After(at) {
		d += to.Sub(at)
	}
	return d
}

// presentAt says whether the observer held a prefix at t, from its
// sightings since the churn began (it held the prefix before).
func presentAt(ss []lab.Sighting, t time.Time) bool {
	present := true
	for _, s := range ss {
		if s.At.After(t) {
			break
		}
		present = s.Present
	}
	return present
}

// announcedWithin says whether the observer got the prefix after from and
// before to.
func announcedWithin(ss []lab.Sighting, from, to time.Time) bool {
	return slices.ContainsFunc(ss, func(s lab.Sighting) bool { return s.Present && s.At.After(from) && s.At.Before(to) })
}

func clock(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Format("15:04:05.000000")
}

// edgeSource is a source gobgpd of the churn lab: its addresses on the
// leaf's link, which are its paths' next hops, and the ASes its paths
// carry before its own (which it adds when it exports them).
type edgeSource struct {
	nh4, nh6 string
	prepend  []uint32
}

// primary is the source of every churn; backup, in a lab whose best paths
// move (FIBGATE_SCALE_CHURN_MOVES), holds the whole table too, one AS
// longer, so that the leaf's best path moves to it when the primary
// withdraws a prefix and back when the primary announces it again.
var (
	primary = edgeSource{nh4: srcLeaf4, nh6: srcLeaf6}
	backup  = edgeSource{nh4: bakLeaf4, nh6: bakLeaf6, prepend: []uint32{sourceAS}}
)

// path is p as a path of the source's global table, next hop the
// source's address on the leaf's link of its family, in binary form
// (gobgpd decodes it without protobuf Anys).
func (src edgeSource) path(p netip.Prefix, withdraw bool) (*api.Path, error) {
	origin, err := bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP).Serialize()
	if err != nil {
		return nil, fmt.Errorf("origin attribute: %w", err)
	}
	attrs := [][]byte{origin}
	if len(src.prepend) > 0 {
		asPath, err := bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, src.prepend)}).Serialize()
		if err != nil {
			return nil, fmt.Errorf("as path attribute: %w", err)
		}
		attrs = append(attrs, asPath)
	}
	a := p.Addr().AsSlice()
	nlri := append([]byte{byte(p.Bits())}, a[:(p.Bits()+7)/8]...)
	if p.Addr().Is4() {
		hop, err := bgp.NewPathAttributeNextHop(src.nh4).Serialize()
		if err != nil {
			return nil, fmt.Errorf("next hop attribute: %w", err)
		}
		return &api.Path{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST},
			NlriBinary: nlri, PattrsBinary: append(attrs, hop), IsWithdraw: withdraw}, nil
	}
	// GoBGP takes an IPv6 path's next hop from an MP_REACH_NLRI
	// attribute and builds the path's own from the NLRI.
	reach, err := bgp.NewPathAttributeMpReachNLRI(src.nh6, []bgp.AddrPrefixInterface{bgp.NewIPv6AddrPrefix(uint8(p.Bits()), p.Addr().String())}).Serialize()
	if err != nil {
		return nil, fmt.Errorf("mp_reach attribute of %v: %w", p, err)
	}
	return &api.Path{Family: &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST},
		NlriBinary: nlri, PattrsBinary: append(attrs, reach), IsWithdraw: withdraw}, nil
}

// sendPaths announces (or withdraws) ps at source src in messages of
// 1024 paths; it returns once gobgpd has taken them all.
func sendPaths(ctx context.Context, c api.GobgpApiClient, src edgeSource, ps []netip.Prefix, withdraw bool) error {
	if len(ps) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := c.AddPathStream(ctx)
	if err != nil {
		return fmt.Errorf("add path stream: %w", err)
	}
	for len(ps) > 0 {
		n := min(len(ps), 1024)
		paths := make([]*api.Path, n)
		for i, p := range ps[:n] {
			if paths[i], err = src.path(p, withdraw); err != nil {
				return err
			}
		}
		if err := s.Send(&api.AddPathStreamRequest{TableType: api.TableType_GLOBAL, Paths: paths}); err != nil {
			_, rerr := s.CloseAndRecv()
			return fmt.Errorf("send %d paths: %v (%v)", len(ps), err, rerr)
		}
		ps = ps[n:]
	}
	if _, err := s.CloseAndRecv(); err != nil {
		return fmt.Errorf("close the path stream: %w", err)
	}
	return nil
}

// scrape reads the histograms of a Prometheus endpoint in ns.
func scrape(ns, addr string) (map[string]histogram, error) {
	resp, err := httpIn(ns, 2*time.Minute).Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read %s/metrics: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: %s", addr, resp.Status)
	}
	return parseHistograms(string(b))
}

// writeChurnCSV writes one line per change: the prefix, withdraw or
// announce, when it was sent (seconds since the churn began), what the
// observer showed of the prefix from then on (+ present, - gone, in ms
// after the sending; a present path's AS path length after a colon, when
// known), the same of the leaf's UPDATEs on the wire to it, for a
// re-announcement the gate's last times in ms after the sending
// (withdrawn, seen, confirmed, released; empty: none), and every
// confirmation and release the gate's watch showed from the sending on.
func writeChurnCSV(file string, plan []change, sent []time.Time, seen, wire []lab.Sighting, gt map[netip.Prefix]gateTimes) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	byObs, byWire := lab.SightingsByPrefix(seen), lab.SightingsByPrefix(wire)
	var b strings.Builder
	b.WriteString("prefix,change,sent_s,observer,wire,withdrawn_ms,seen_ms,confirmed_ms,released_ms,confirms_ms,releases_ms\n")
	rel := func(t, from time.Time) string {
		if t.IsZero() {
			return ""
		}
		return strconv.FormatFloat(float64(t.Sub(from))/1e6, 'f', 3, 64)
	}
	for i, ch := range plan {
		kind := "withdraw"
		if ch.announce {
			kind = "announce"
		}
		shown := func(by map[netip.Prefix][]lab.Sighting) string {
			var obs []string
			for _, s := range by[ch.p] {
				if !s.At.Before(sent[i]) {
					o := map[bool]string{true: "+", false: "-"}[s.Present] + rel(s.At, sent[i])
					if s.Present && s.ASPath > 0 {
						o += ":" + strconv.Itoa(s.ASPath)
					}
					obs = append(obs, o)
				}
			}
			return strings.Join(obs, " ")
		}
		fmt.Fprintf(&b, "%v,%s,%.6f,%s,%s", ch.p, kind, sent[i].Sub(sent[0]).Seconds(), shown(byObs), shown(byWire))
		g, ok := gt[ch.p]
		if ok && ch.announce {
			fmt.Fprintf(&b, ",%s,%s,%s,%s", rel(g.withdrawn, sent[i]), rel(g.seen, sent[i]), rel(g.confirmed, sent[i]), rel(g.released, sent[i]))
		} else {
			b.WriteString(",,,,")
		}
		since := func(ts []time.Time) string {
			var out []string
			for _, t := range ts {
				if !t.Before(sent[i]) {
					out = append(out, rel(t, sent[i]))
				}
			}
			return strings.Join(out, " ")
		}
		fmt.Fprintf(&b, ",%s,%s\n", since(g.confirms), since(g.releases))
	}
	return os.WriteFile(file, []byte(b.String()), 0o644)
}

// logTails logs the end of the leaf's daemons' logs: a leaf that did not
// pass the table is a result, not a failure, so lab.Start prints nothing.
func logTails(t *testing.T, dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range logs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		t.Logf("--- %s (tail) ---\n%s", filepath.Base(f), strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}
}
