//go:build linux

package e2e

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/fibgate/fibgate/internal/lab"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// TestChaos is issue 12's chaos test: a bounded random sequence of faults
// against a gated leaf, with the safety invariant checked at an observer
// all along (chaos_check_test.go), liveness once the faults are cleared,
// and nothing left behind.
//
//	source (gobgpd 65003) ── leaf (gate under test, 65001) ── observer (gobgpd 65002)
//
// The source announces some of 200 /32s. Every step draws one fault from a
// seeded RNG and, half the time, a change of the source's prefixes that
// runs at the same moment:
//   - both daemons: kill -9 of the leaf's daemon and a restart (gobgpd-ext
//     with its simulated ASIC warm or cold at random; fibgated's always
//     warm, as an ASIC outlives its control plane), SIGSTOP then SIGCONT,
//     session resets at the source or the observer, sim failures injected
//     and cleared, sim latency changes, and netlink overruns (thousands of
//     kernel routes written into the leaf at once while its daemon is
//     frozen, against a 128 KiB notification buffer);
//   - gobgpd + fibgated also: kill -9 and SIGSTOP of gobgpd, and its reload
//     (SIGHUP) with a policy definition or the export chain changed.
//
// FIBGATE_CHAOS_SEED repeats a run's sequence of faults (timing differs)
// and FIBGATE_CHAOS_STEPS sets the number of steps per daemon.
// FIBGATE_CHAOS_CONTROL=1 runs the control: the gate waits for the kernel
// FIB only (level fib), not the hardware, and the check must fail.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("namespaces, three gobgpds and random faults: skipped in -short mode")
	}
	lab.RequireRoot(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FIBGATE_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FIBGATE_CHAOS_SEED=%q: want an unsigned number", s)
		}
		seed = v
	}
	steps := 16
	if s := os.Getenv("FIBGATE_CHAOS_STEPS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("FIBGATE_CHAOS_STEPS=%q: want a positive number", s)
		}
		steps = v
	}
	level := "hardware"
	if os.Getenv("FIBGATE_CHAOS_CONTROL") == "1" {
		level = "fib"
	}
	t.Logf("seed %d, %d steps per daemon, gate level %s (repeat: FIBGATE_CHAOS_SEED=%d FIBGATE_CHAOS_STEPS=%d)", seed, steps, level, seed, steps)
	binaries(t)
	lab.GobgpBinaries(t)
	for i, name := range []string{"gobgpd-ext", "gobgpd+fibgated"} {
		t.Run(name, func(t *testing.T) {
			c := newChaosLab(t, name, i == 1, level, rand.New(rand.NewPCG(seed, uint64(i))))
			control := map[string]string{"fib": "FIBGATE_CHAOS_CONTROL=1 "}[level]
			c.repeat = fmt.Sprintf("the same faults again: %sFIBGATE_CHAOS_SEED=%d FIBGATE_CHAOS_STEPS=%d go test -run 'TestChaos/%s' -v ./e2e/", control, seed, steps, regexp.QuoteMeta(name))
			c.run(t, steps)
		})
	}
	// The subtests' cleanups have run: nothing of theirs may be left.
	if left, err := lab.Leftovers(); err != nil || len(left) > 0 {
		t.Errorf("namespaces left behind: %v %v", left, err)
	}
	if c := lab.Children(); len(c) > 0 {
		t.Errorf("processes left behind: %v", c)
	}
}

const (
	// chaosPrefixes is how many /32s the source may announce, from
	// churnBase on: at most 256, the route watch's /24.
	chaosPrefixes = 200
	// chaosLatency is the sim's programming latency at start, after a
	// restart of the leaf's daemon and once the faults are cleared.
	chaosLatency = 100 * time.Millisecond
	// chaosRcvBuf is the leaf daemons' notification socket buffer: about
	// 150 queued notifications, so a burst of thousands overruns it while
	// the source's changes (tens of prefixes, two notifications each, the
	// route and its mirror entry) mostly do not.
	chaosRcvBuf = 128 << 10
	// chaosSlack is how much earlier than the hardware's record an arrival
	// at the observer may be stamped: the two records are read by two
	// goroutines of a test process on a loaded machine. The sim's latency
	// stays at 50 ms or more, so a release before programming still shows.
	chaosSlack = 25 * time.Millisecond
	// mirrorTable is the sim's mirror table (sim.Config.MirrorTable's
	// default): what the simulated hardware forwards.
	mirrorTable = 4242
)

// chaosBurstBase starts the routes of a netlink burst, away from the
// source's prefixes (100.64.0.0/24).
var chaosBurstBase = netip.MustParseAddr("100.96.0.0")

// chaosSettings is the leaf's fibgate settings: the sim with warm or cold
// hardware, a small notification buffer, and every IPv4 prefix gated at
// level (hardware; fib in the control) with a short hold-down so that the
// end of the run converges in seconds.
func chaosSettings(api string, warm bool, level string) string {
	return fmt.Sprintf(`log_level: info
notify_mode: "1"
rcvbuf: %d
backend:
  type: sim
  sim:
    latency: %s
    warm: %t
api:
  socket: %s
policy:
  scopes:
    - name: v4
      family: ipv4
      level: %s
      hold_down: {initial: 200ms, max: 2s, multiplier: 2}
`, chaosRcvBuf, chaosLatency, warm, api, level)
}

// chaosLab is the source–leaf–observer lab of one TestChaos run, and the
// run's bookkeeping.
type chaosLab struct {
	name     string
	repeat   string // how to run the same faults again
	sidecar  bool
	rng      *rand.Rand
	leaf     *leaf
	srcAPI   api.GobgpApiClient
	obsAPI   api.GobgpApiClient
	watch    *lab.BestWatch
	hw       *lab.RouteWatch
	check    hwCheck
	universe []netip.Prefix
	// announced is what the source announces now; injected the prefixes
	// whose programming the sim fails now.
	announced map[netip.Prefix]bool
	injected  map[netip.Prefix]bool
	// leafConf is the leaf gobgpd's config as started (sidecar), which the
	// reloads vary.
	leafConf string
	// warm says whether gobgpd-ext's next start keeps the simulated
	// hardware of the one before (fibgated's always does).
	warm   bool
	start  time.Time
	steps  []string // the fault sequence, as logged
	stepAt []time.Time
	// reported: a violation or a blind record was reported.
	reported bool
	faults   map[string]int
	// overrunSteps and overruns: bursts written, and the overruns the
	// leaf's listener counted during them.
	overrunSteps int
	overruns     uint64
}

func newChaosLab(t *testing.T, name string, sidecar bool, level string, rng *rand.Rand) *chaosLab {
	t.Helper()
	c := &chaosLab{name: name, sidecar: sidecar, rng: rng, announced: map[netip.Prefix]bool{}, injected: map[netip.Prefix]bool{}, faults: map[string]int{}}
	c.universe = lab.HostPrefixes(churnBase, chaosPrefixes)
	c.check = hwCheck{universe: map[netip.Prefix]bool{}, slack: chaosSlack, inflight: time.Second, reaction: 5 * time.Second}
	for _, p := range c.universe {
		c.check.universe[p] = true
	}
	src, obs, leafNS := lab.NewNS(t, "src"), lab.NewNS(t, "obs"), lab.NewNS(t, "leaf")
	lab.Link(t, leafNS, "to-src", churnLeafSrc, "fd00:3::1", src, "to-leaf", churnSrcLeaf, "fd00:3::2")
	lab.Link(t, leafNS, "to-obs", churnLeafObs, "fd00:4::1", obs, "to-leaf", churnObsLeaf, "fd00:4::2")
	// The hardware's record of the source's prefixes (100.64.0.0/24; the
	// bursts are elsewhere) starts before any route can exist.
	c.hw = lab.WatchRoutes(t, leafNS, netip.PrefixFrom(churnBase, 24), 254, mirrorTable)
	conf := lab.GobgpdConf{AS: churnLeafAS, RouterID: churnLeafSrc, Neighbours: []lab.Neighbour{
		{Address: churnSrcLeaf, AS: churnSourceAS}, {Address: churnObsLeaf, AS: churnObserverAS}}}
	if sidecar {
		// The user's export policy after the gate, so that reloads have
		// something to change (reload_test.go).
		conf.Extra = fmt.Sprintf(reloadUser, `"fibgate-fallback", `)
		c.leaf = sidecarLeaf(t, "leaf", leafNS, conf, chaosSettings("%s", true, level))
		b, err := os.ReadFile(c.leaf.gobgpd.Conf)
		if err != nil {
			t.Fatal(err)
		}
		c.leafConf = string(b)
	} else {
		c.warm = c.rng.IntN(2) == 0
		c.leaf = extLeaf(t, leafNS, conf, level, func() bool { return c.warm })
	}
	// The source and the observer reset their sessions with the leaf; they
	// try again after a second instead of GoBGP's 30. (The leaf, after a
	// session went down, accepts none for GoBGP's fixed 5 s.)
	speaker := func(as uint32, id string, n lab.Neighbour) string {
		return lab.GobgpdConf{AS: as, RouterID: id, Neighbours: []lab.Neighbour{n}, Active: true, IdleHoldAfterReset: 1}.String()
	}
	source := lab.StartGobgpd(t, src, speaker(churnSourceAS, churnSrcLeaf, lab.Neighbour{Address: churnLeafSrc, AS: churnLeafAS}))
	c.srcAPI = api.NewGobgpApiClient(source.Dial(t))
	observer := lab.StartGobgpd(t, obs, speaker(churnObserverAS, churnObsLeaf, lab.Neighbour{Address: churnLeafObs, AS: churnLeafAS}))
	obsConn := observer.Dial(t)
	c.obsAPI = api.NewGobgpApiClient(obsConn)
	c.watch = lab.WatchBest(t, obsConn)
	waitSession(t, c.srcAPI, churnLeafSrc)
	waitSession(t, c.obsAPI, churnLeafObs)
	return c
}

// extLeaf starts gobgpd-ext as the leaf, with chaosSettings at level; warm
// says, at every start, whether its simulated hardware outlives it.
func extLeaf(t *testing.T, ns string, conf lab.GobgpdConf, level string, warm func() bool) *leaf {
	t.Helper()
	bin := binaries(t)
	l := &leaf{name: "gobgpd-ext", ns: ns, as: conf.AS, dir: dir(t), owner: t}
	l.api = filepath.Join(l.dir, "fibgate.sock")
	toml, settings := filepath.Join(l.dir, "gobgpd.toml"), filepath.Join(l.dir, "fibgate.yaml")
	if err := os.WriteFile(toml, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	l.start = func(tb testing.TB) *lab.Process {
		if err := os.WriteFile(settings, []byte(chaosSettings(l.api, warm(), level)), 0o644); err != nil {
			tb.Fatal(err)
		}
		_ = os.Remove(filepath.Join(l.dir, "gobgp.sock")) // left by a killed predecessor
		return lab.Start(tb, l.ns, l.dir, fmt.Sprintf("gobgpd-ext.%d", l.starts), filepath.Join(bin, "gobgpd-ext"),
			"-f", toml, "--api-hosts", "unix://"+filepath.Join(l.dir, "gobgp.sock"),
			"-p", "--pprof-disable", "--fibgate-config", settings)
	}
	l.run(t)
	return l
}

// daemon names the leaf's fibgate daemon.
func (c *chaosLab) daemon() string {
	if c.sidecar {
		return "fibgated"
	}
	return "gobgpd-ext"
}

// run is the experiment: the source's first announcement, the steps, the
// faults cleared, liveness, the judgement, and a clean stop.
func (c *chaosLab) run(t *testing.T, steps int) {
	defer func() {
		if !t.Failed() {
			return
		}
		// Also when liveness or a fault failed: what did the observer
		// get meanwhile?
		if !c.reported {
			c.report(t, c.judgement(false), false)
		}
		t.Log(c.repeat)
	}()
	c.start = time.Now()
	first := c.pick(c.universe, 3*len(c.universe)/4)
	for _, p := range first {
		c.announced[p] = true
	}
	c.sourceChange(t, first, nil)
	c.waitConverged(t, 60*time.Second, "the first announcement")
	t.Logf("%s: %d prefixes at the observer after %v", c.name, len(first), time.Since(c.start).Round(time.Millisecond))

	chaosStart := time.Now()
	for i := range steps {
		f := c.draw()
		var announce, withdraw []netip.Prefix
		if f.kind != "source change" {
			// Disjoint from the fault's own change, if it has one.
			announce, withdraw = c.drawChange(0.5)
		}
		what := f.what
		if len(announce)+len(withdraw) > 0 {
			what += fmt.Sprintf("; meanwhile the source announces %d and withdraws %d", len(announce), len(withdraw))
		}
		line := fmt.Sprintf("step %2d at %s (+%6.3fs): %s", i+1, clock(time.Now()), time.Since(c.start).Seconds(), what)
		c.steps, c.stepAt = append(c.steps, line), append(c.stepAt, time.Now())
		t.Log(line)
		c.faults[f.kind]++
		var wg sync.WaitGroup
		if len(announce)+len(withdraw) > 0 {
			wg.Go(func() { c.sourceChange(t, announce, withdraw) })
		}
		f.do(t)
		wg.Wait()
		if t.Failed() {
			break
		}
		// The experiment's pacing, not a synchronisation.
		time.Sleep(time.Duration(50+c.rng.IntN(250)) * time.Millisecond)
		if c.judge(t, false) {
			break
		}
	}
	if t.Failed() {
		return
	}
	chaosTook := time.Since(chaosStart)

	// Faults cleared: no injected failure, the first latency. Every fault
	// step ended with its daemons running and sessions enabled.
	cleared := time.Now()
	c.clearFailures(t, slices.SortedFunc(maps.Keys(c.injected), netip.Prefix.Compare))
	c.latency(t, chaosLatency, 0)
	c.waitConverged(t, 60*time.Second, "liveness after the faults")
	converged := time.Since(cleared)
	c.gateReleasedAll(t)
	v := c.judgement(true)
	c.report(t, v, true)
	var kinds []string
	for k, n := range c.faults {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(kinds)
	t.Logf("%s: %d steps in %v (%s); %d bursts, %d listener overruns; converged %v after the faults were cleared; %d arrivals at the observer, %d with the route in hardware (closest %v after it), %d in flight when the hardware lost the route; longest time the observer held a prefix the hardware had lost: %v (%s)",
		c.name, len(c.steps), chaosTook.Round(time.Millisecond), strings.Join(kinds, ", "), c.overrunSteps, c.overruns,
		converged.Round(time.Millisecond), v.arrivals, v.covered, v.minMargin.Round(time.Millisecond), v.inFlight,
		v.exposure.Round(time.Millisecond), v.exposureOf)
	if t.Failed() {
		return
	}
	c.stopCleanly(t)
}

// judgement judges every arrival at the observer so far.
func (c *chaosLab) judgement(final bool) verdict {
	// Arrivals of the last second are left for later: the route watch
	// may not have read the hardware's side of them yet.
	upTo := time.Now().Add(-time.Second)
	if final {
		upTo = time.Now()
	}
	return c.check.judge(c.watch.Since(c.start), hardwareSpans(c.hw.Events(), 254, mirrorTable), upTo, final)
}

// during names the step that was running at t.
func (c *chaosLab) during(t time.Time) string {
	i, _ := slices.BinarySearchFunc(c.stepAt, t, time.Time.Compare)
	if i == 0 {
		return "during the first announcement"
	}
	return "during step " + strconv.Itoa(i)
}

// judge checks the invariant now and reports whether it was broken.
func (c *chaosLab) judge(t *testing.T, final bool) bool {
	return c.report(t, c.judgement(final), final)
}

// report fails the test on a broken invariant or a blind record, saying
// which step was running at each violation.
func (c *chaosLab) report(t *testing.T, v verdict, final bool) bool {
	t.Helper()
	bad := false
	if _, err := c.watch.Count(); err != nil {
		t.Errorf("the observer's watch ended: %v", err)
		bad = true
	}
	if err := c.hw.Err(); err != nil {
		t.Errorf("the leaf's route watch missed changes: %v", err)
		bad = true
	}
	if len(v.violations) > 0 {
		var lines []string
		for _, x := range v.violations[:min(len(v.violations), 20)] {
			lines = append(lines, fmt.Sprintf("%v (%s)", x, c.during(x.at)))
		}
		t.Errorf("%s: %d of %d arrivals at the observer without the route in the leaf's hardware (the first ones):\n%s",
			c.name, len(v.violations), v.arrivals, strings.Join(lines, "\n"))
		bad = true
	}
	c.reported = c.reported || bad
	if final && v.undecided > 0 {
		t.Errorf("%d arrivals left undecided at the end", v.undecided)
		bad = true
	}
	return bad
}

// waitConverged waits until the observer holds exactly what the source
// announces, each with its route in the leaf's hardware, and the leaf's
// kernel has no route the source does not announce.
func (c *chaosLab) waitConverged(t *testing.T, timeout time.Duration, what string) {
	t.Helper()
	start := time.Now()
	slow := false
	lab.Eventually(t, timeout, c.name+": "+what, func() error {
		err := c.converged()
		if err != nil && !slow && time.Since(start) > 10*time.Second {
			// Say what is slow while it is, not only when it fails.
			t.Logf("%s: %s still not there after 10s: %v", c.name, what, err)
			slow = true
		}
		return err
	})
}

// converged says how the observer and the leaf's kernel differ from what
// the source announces, or nil.
func (c *chaosLab) converged() error {
	n, err := c.watch.Count()
	if err != nil {
		return err
	}
	main, mirror := c.hw.Routes(254), c.hw.Routes(mirrorTable)
	var missing, unprogrammed, extra []string
	for _, p := range c.universe {
		switch {
		case c.announced[p] && !c.watch.Has(p):
			missing = append(missing, p.String())
		case c.announced[p] && (main[p] == "" || main[p] != mirror[p]):
			unprogrammed = append(unprogrammed, p.String())
		case !c.announced[p] && (c.watch.Has(p) || main[p] != ""):
			extra = append(extra, p.String())
		}
	}
	if len(missing)+len(unprogrammed)+len(extra) > 0 || n != len(c.announced) {
		gate := ""
		if len(missing) > 0 {
			// The gate's view of the first one, when the daemon answers.
			if r, err := c.leaf.route(netip.MustParsePrefix(missing[0])); err == nil {
				gate = fmt.Sprintf(" (the gate has %s %s: %s)", missing[0], r.GetState(), r.GetReason())
			}
		}
		return fmt.Errorf("the observer holds %d of %d announced; missing at the observer %s%s; not in hardware %s; withdrawn but still at the observer or in the kernel %s",
			n, len(c.announced), few(missing), gate, few(unprogrammed), few(extra))
	}
	return nil
}

// gateReleasedAll checks the gate's own view once converged: every
// announced prefix released.
func (c *chaosLab) gateReleasedAll(t *testing.T) {
	t.Helper()
	rs, err := c.leaf.churnRoutes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var wrong []string
	for p := range c.announced {
		if r := rs[p]; r.GetState() != pb.State_STATE_RELEASED {
			wrong = append(wrong, fmt.Sprintf("%v %s (%s)", p, r.GetState(), r.GetReason()))
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%s: the observer has every announced prefix, but the gate says otherwise for %d: %s", c.name, len(wrong), few(wrong))
	}
}

// stopCleanly ends the leaf's daemon with SIGTERM: exit status 0, its
// installed routes removed, and the observer left with nothing.
func (c *chaosLab) stopCleanly(t *testing.T) {
	t.Helper()
	l := c.leaf
	if code := l.proc.SignalAndWait(t, syscall.SIGTERM, 40*time.Second); code != 0 {
		t.Errorf("%s exit status %d after SIGTERM, want 0", c.daemon(), code)
	}
	lab.Eventually(t, 20*time.Second, "the observer empty and no installed route left", func() error {
		if n, _ := c.watch.Count(); n > 0 {
			return fmt.Errorf("the observer holds %d prefixes", n)
		}
		if left := l.kernelBGPRoutes(t); len(left) > 0 {
			return fmt.Errorf("installed routes left: %s", few(left))
		}
		return nil
	})
}

// few joins the first few of ss, saying how many there are in all.
func few(ss []string) string {
	if len(ss) == 0 {
		return "none"
	}
	if len(ss) <= 5 {
		return strings.Join(ss, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ss[:5], ", "), len(ss)-5)
}
