//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/fibgate/fibgate/internal/lab"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// The churn of issue 10: a bulk withdrawal followed at once by a bulk
// re-announcement while the leaf's hardware is slow.
//
//	source (gobgpd 65003) ── leaf (the gate under test, 65001) ── observer (gobgpd 65002)
//
// The source announces N prefixes (FIBGATE_CHURN_PREFIXES, default
// 10,000) and the observer gets them all; the source withdraws them all,
// the observer loses them all and the leaf's sim drops them all; the sim
// is set to a programming latency of 12 s (FIBGATE_CHURN_LATENCY; the
// user's report had 30 s) and the source announces them again. Until the
// sim programs them, the observer must hold none: a prefix there is one
// its neighbours send traffic for into an ASIC that does not have it.
// Then every prefix must come back, none before the leaf confirmed it.
//
// The source and the observer are stock gobgpds driven over their API:
// FRR takes minutes for 10,000 `network` statements and seconds to print
// them back, while gobgpd takes them in one stream and pushes every
// best-path change to the test as it happens (lab.BestWatch), stamped on
// this machine's clock like the leaf's own confirmation times.
const (
	churnLeafAS     = 65001
	churnObserverAS = 65002
	churnSourceAS   = 65003

	churnLeafSrc = "10.0.3.1"
	churnSrcLeaf = "10.0.3.2"
	churnLeafObs = "10.0.4.1"
	churnObsLeaf = "10.0.4.2"

	// churnWindow is how long the observer is watched while nothing can
	// be programmed: the user saw 7,952 of 10,000 prefixes there within
	// about 8 s.
	churnWindow = 8 * time.Second
	// churnClock allows for the two processes reading the same wall
	// clock at slightly different moments.
	churnClock = 10 * time.Millisecond
)

// churnBase is the first of the churned /32s; 100.64.0.0/10 has room for
// 4M of them and no link of the lab is in it.
var churnBase = netip.MustParseAddr("100.64.0.0")

// churnSettings is the leaf's fibgate settings: the sim, and every IPv4
// prefix of the main table gated on hardware with the default policy.
const churnSettings = `log_level: info
notify_mode: "1"
backend:
  type: sim
  sim:
    latency: 1ms
api:
  socket: %s
policy:
  scopes:
    - name: v4
      family: ipv4
`

// TestChurn is issue 10's leak: after a bulk withdrawal the gate's tracker
// was behind and still counted the prefixes as released, so GoBGP
// exported the re-learned paths at once, long before the (slow) hardware
// had them (7,952 of 10,000 at the neighbour within 8 s). Now the Speaker
// fences a prefix as soon as its best path goes (plugin/gobgp/fence.go).
// It runs for gobgpd-ext and for a stock gobgpd with fibgated.
func TestChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end churn with namespaces and 10k prefixes: skipped in -short mode")
	}
	lab.RequireRoot(t)
	n := 10000
	if s := os.Getenv("FIBGATE_CHURN_PREFIXES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("FIBGATE_CHURN_PREFIXES=%q: want a positive number", s)
		}
		n = v
	}
	// The user's report had 30 s. Any latency longer than the window
	// shows the bug; it is shorter here because ops already queued keep
	// their due time when the latency goes back to 0, so every run waits
	// it out once per mode.
	latency := 12 * time.Second
	if s := os.Getenv("FIBGATE_CHURN_LATENCY"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= churnWindow {
			t.Fatalf("FIBGATE_CHURN_LATENCY=%q: want a duration longer than the %v window", s, churnWindow)
		}
		latency = d
	}
	binaries(t)
	lab.GobgpBinaries(t)
	for _, m := range leafModes {
		t.Run(m.name, func(t *testing.T) {
			c := newChurnLab(t, m)
			c.leaf.waitRelease(t, m.release())
			r := c.run(t, n, latency)
			t.Logf("%s, %d prefixes, sim latency %v: %s", m.name, n, latency, r)
		})
	}
}

// churnLab is one source–leaf–observer lab.
type churnLab struct {
	leaf     *leaf
	source   *lab.Gobgpd
	srcAPI   api.GobgpApiClient
	observer *lab.Gobgpd
	watch    *lab.BestWatch
	obsNS    string
}

func newChurnLab(t *testing.T, m leafMode) *churnLab {
	t.Helper()
	src, obs := lab.NewNS(t, "src"), lab.NewNS(t, "obs")
	conf := lab.GobgpdConf{AS: churnLeafAS, RouterID: churnLeafSrc, Neighbours: []lab.Neighbour{
		{Address: churnSrcLeaf, AS: churnSourceAS}, {Address: churnObsLeaf, AS: churnObserverAS}}}
	l := newGatedLeaf(t, m, conf, func(ns string) {
		lab.Link(t, ns, "to-src", churnLeafSrc, "fd00:3::1", src, "to-leaf", churnSrcLeaf, "fd00:3::2")
		lab.Link(t, ns, "to-obs", churnLeafObs, "fd00:4::1", obs, "to-leaf", churnObsLeaf, "fd00:4::2")
	})
	c := &churnLab{leaf: l, obsNS: obs}
	c.source = lab.StartGobgpd(t, src, lab.ActiveSpeakerConf(churnSourceAS, churnSrcLeaf, lab.Neighbour{Address: churnLeafSrc, AS: churnLeafAS}))
	c.srcAPI = api.NewGobgpApiClient(c.source.Dial(t))
	c.observer = lab.StartGobgpd(t, obs, lab.ActiveSpeakerConf(churnObserverAS, churnObsLeaf, lab.Neighbour{Address: churnLeafObs, AS: churnLeafAS}))
	obsConn := c.observer.Dial(t)
	waitSession(t, c.srcAPI, churnLeafSrc)
	waitSession(t, api.NewGobgpApiClient(obsConn), churnLeafObs)
	c.watch = lab.WatchBest(t, obsConn)
	return c
}

// leafMode is one way to run a gated leaf: gobgpd-ext, or a stock gobgpd
// with fibgated (sidecar); settings go at the end of its fibgate settings.
type leafMode struct {
	name     string
	sidecar  bool
	settings string
}

// leafModes are the gated leaves the end-to-end tests of the gate's
// promise run against: both daemons, and gobgpd-ext releasing by copy.
var leafModes = []leafMode{
	{name: "gobgpd-ext"},
	{name: "gobgpd+fibgated", sidecar: true},
	{name: "gobgpd-ext-copy", settings: "bgp:\n  release: copy\n"},
}

// byCopy says the leaf releases by copy (plugin/gobgp/copy.go).
func (m leafMode) byCopy() bool { return strings.Contains(m.settings, "release: copy") }

// release is how the leaf's gate releases a learned path, as its log
// says: gobgpd-ext re-exports by default (plugin/gobgp/internal/reexport,
// which checks the binary's GoBGP), fibgated toggles.
func (m leafMode) release() string {
	switch {
	case m.byCopy():
		return "copy"
	case m.sidecar:
		return "toggle"
	}
	return "reexport"
}

// waitRelease waits for the leaf's gate to be installed and fails unless
// its log says it releases by want.
func (l *leaf) waitRelease(t *testing.T, want string) {
	t.Helper()
	lab.Eventually(t, 20*time.Second, "gate installed", func() error {
		for line := range strings.SplitSeq(readLog(t, l.proc.Log, 0), "\n") {
			if !strings.Contains(line, "gobgp gate installed") {
				continue
			}
			if !strings.Contains(line, "release="+want+" ") && !strings.HasSuffix(line, "release="+want) {
				t.Fatalf("the gate releases otherwise than by %s: %s", want, line)
			}
			return nil
		}
		return fmt.Errorf("not yet")
	})
}

// newGatedLeaf starts a leaf gating IPv4 on the sim (churnSettings and the
// mode's) with the BGP config conf: gobgpd-ext, or a stock gobgpd with
// fibgated. link wires its namespace to its neighbours' before it starts.
func newGatedLeaf(t *testing.T, m leafMode, conf lab.GobgpdConf, link func(ns string)) *leaf {
	t.Helper()
	return newGatedLeafWith(t, m, churnSettings, conf, link)
}

// newGatedLeafWith is newGatedLeaf with other fibgate settings: a format
// with one %s, the API socket, to which the mode's settings are added.
func newGatedLeafWith(t *testing.T, m leafMode, settingsFormat string, conf lab.GobgpdConf, link func(ns string)) *leaf {
	t.Helper()
	bin := binaries(t)
	l := &leaf{name: m.name, ns: lab.NewNS(t, "leaf"), as: conf.AS, dir: dir(t), owner: t}
	link(l.ns)
	l.api = filepath.Join(l.dir, "fibgate.sock")
	settings := filepath.Join(l.dir, "fibgate.yaml")
	if err := os.WriteFile(settings, append(fmt.Appendf(nil, settingsFormat, l.api), m.settings...), 0o644); err != nil {
		t.Fatal(err)
	}
	if !m.sidecar {
		if err := os.WriteFile(filepath.Join(l.dir, "gobgpd.toml"), []byte(conf.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		l.start = func(tb testing.TB) *lab.Process {
			return lab.Start(tb, l.ns, l.dir, fmt.Sprintf("gobgpd-ext.%d", l.starts), filepath.Join(bin, "gobgpd-ext"),
				"-f", filepath.Join(l.dir, "gobgpd.toml"), "--api-hosts", "unix://"+filepath.Join(l.dir, "gobgp.sock"),
				"-p", "--pprof-disable", "--fibgate-config", settings)
		}
	} else {
		fallback, err := exec.Command(filepath.Join(bin, "fibgated"), "--print-fallback", "-c", settings).Output()
		if err != nil {
			t.Fatalf("fibgated --print-fallback: %v", err)
		}
		conf.Extra += string(fallback) + "[global.apply-policy.config]\n  export-policy-list = [\"fibgate-fallback\"]\n  default-export-policy = \"accept-route\"\n"
		l.gobgpd = lab.StartGobgpd(t, l.ns, conf.String())
		l.start = func(tb testing.TB) *lab.Process {
			return lab.Start(tb, l.ns, l.dir, fmt.Sprintf("fibgated.%d", l.starts), filepath.Join(bin, "fibgated"),
				"--gobgpd", l.gobgpd.Target, "-c", settings)
		}
	}
	l.run(t)
	return l
}

// waitSession waits until a gobgpd's session with neighbour is up.
func waitSession(t *testing.T, c api.GobgpApiClient, neighbour string) {
	t.Helper()
	lab.Eventually(t, 30*time.Second, "session with "+neighbour, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := c.ListPeer(ctx, &api.ListPeerRequest{Address: neighbour})
		if err != nil {
			return err
		}
		var state api.PeerState_SessionState
		for {
			r, err := s.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			state = r.GetPeer().GetState().GetSessionState()
		}
		if state != api.PeerState_ESTABLISHED {
			return fmt.Errorf("state %v", state)
		}
		return nil
	})
}

// churnResult is what one churn run measured.
type churnResult struct {
	n int
	// The first announcement and the bulk withdrawal, as the observer saw
	// them complete.
	announced, withdrawn time.Duration
	// During the window with nothing programmable: when the first prefix
	// reached the observer (after the re-announcement), the most it held
	// and when, and what it held at the window's end.
	firstLeak           time.Duration // 0: none
	peak                int
	peakAt              time.Duration
	atWindowEnd         int
	simProgrammed, simQ int
	gateStates          string
	// Routes the sim held before the first announcement (the links'),
	// and when the latency went up (the same: the test waits), and how
	// long after the observer had none the sim took to get there.
	simBaseline, simAtRaise int
	drained                 time.Duration
	// After the window: the prefixes seen at the observer before the
	// leaf confirmed them, and the earliest and latest such sighting
	// after the re-announcement.
	leakedBeforeConfirm    int
	earliestLeak, lastLeak time.Duration
	back                   time.Duration // all prefixes at the observer again
	examples               []string
	unconfirmedAtTheLeaf   int
	// The same judged on the wire (lab.WireTap): the leaf's UPDATEs as
	// they reached the observer's end of the link, before the observer
	// processed them.
	wireBeforeConfirm int
	wireExamples      []string
}

func (r churnResult) String() string {
	s := fmt.Sprintf("first announce %v, withdraw %v (sim empty %v later); with the sim at the high latency the observer got",
		r.announced.Round(time.Millisecond), r.withdrawn.Round(time.Millisecond), r.drained.Round(time.Millisecond))
	if r.peak == 0 {
		s += fmt.Sprintf(" nothing in %v", churnWindow)
	} else {
		s += fmt.Sprintf(" its first prefix %v after the re-announcement, up to %d of %d (at +%v), %d at +%v",
			r.firstLeak.Round(time.Millisecond), r.peak, r.n, r.peakAt.Round(time.Millisecond), r.atWindowEnd, churnWindow)
	}
	s += fmt.Sprintf(" (sim: %d programmed before the test, %d when the latency went up, %d and %d queued at the window's end; gate then: %s)",
		r.simBaseline, r.simAtRaise, r.simProgrammed, r.simQ, r.gateStates)
	s += fmt.Sprintf("; all back at +%v; %d of %d reached the observer before the leaf confirmed them, %d went on the wire before", r.back.Round(time.Millisecond), r.leakedBeforeConfirm, r.n, r.wireBeforeConfirm)
	if r.leakedBeforeConfirm > 0 {
		s += fmt.Sprintf(" (from +%v to +%v; e.g. %s)", r.earliestLeak.Round(time.Millisecond), r.lastLeak.Round(time.Millisecond), strings.Join(r.examples, "; "))
	}
	return s
}

func (c *churnLab) run(t *testing.T, n int, latency time.Duration) churnResult {
	t.Helper()
	ctx := context.Background()
	ps := lab.HostPrefixes(churnBase, n)
	nh := netip.MustParseAddr(churnSrcLeaf)
	r := churnResult{n: n}
	// Generous for 100k prefixes on a busy 2-core machine.
	bulk := 60*time.Second + time.Duration(n)*time.Millisecond

	r.simBaseline = c.leaf.simProgrammed(t)
	start := time.Now()
	if err := lab.AnnounceIPv4(ctx, c.srcAPI, ps, nh); err != nil {
		t.Fatal(err)
	}
	c.waitCount(t, bulk, "the observer has all prefixes", func(k int) bool { return k == n })
	r.announced = time.Since(start)

	start = time.Now()
	if err := lab.WithdrawAllIPv4(ctx, c.srcAPI); err != nil {
		t.Fatal(err)
	}
	c.waitCount(t, bulk, "the observer has none", func(k int) bool { return k == 0 })
	r.withdrawn = time.Since(start)

	// The withdrawal done in hardware too: the sim holds only what it
	// held before and has nothing queued. Otherwise a prefix whose route
	// the FIB installer had not yet taken out (it may never, if the
	// re-announcement comes first) would still be programmed, and
	// advertising it would be right.
	start = time.Now()
	lab.Eventually(t, bulk, c.leaf.name+"'s sim holds none of the prefixes", func() error {
		st, err := c.leaf.sim().GetSimStats(ctx, &pb.GetSimStatsRequest{})
		if err != nil {
			return err
		}
		if int(st.GetProgrammed()) != r.simBaseline || st.GetQueue() != 0 {
			return fmt.Errorf("%d programmed (%d before the test), %d queued", st.GetProgrammed(), r.simBaseline, st.GetQueue())
		}
		return nil
	})
	r.drained = time.Since(start)
	c.leaf.setLatency(t, latency)
	r.simAtRaise = c.leaf.simProgrammed(t)
	// The observer shows an UPDATE only after it processed it; the wire
	// has it first, so an early one cannot hide behind the observer.
	tap := lab.TapBGP(t, c.obsNS, "to-leaf", netip.MustParseAddr(churnLeafObs), netip.MustParseAddr("fd00:4::1"))
	again := time.Now()
	if err := lab.AnnounceIPv4(ctx, c.srcAPI, ps, nh); err != nil {
		t.Fatal(err)
	}
	// The window: nothing can be programmed before again+latency, so the
	// observer must hold nothing. Polled every 100 ms for the peak; the
	// sightings themselves carry the exact times. It is watched from the
	// end of the announcement (a million prefixes take the source's API
	// seconds), so the latency must leave room for both.
	sent := time.Since(again)
	if sent+churnWindow >= latency {
		t.Fatalf("announcing %d prefixes took %v: with the sim at %v the %v window would reach past the time the sim may program them; set FIBGATE_CHURN_LATENCY above %v",
			n, sent.Round(time.Millisecond), latency, churnWindow, (sent + churnWindow + time.Second).Round(time.Second))
	}
	for end := time.Now().Add(churnWindow); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		k, err := c.watch.Count()
		if err != nil {
			t.Fatal(err)
		}
		if k > r.peak {
			r.peak, r.peakAt = k, time.Since(again)
		}
	}
	r.atWindowEnd, _ = c.watch.Count()
	for _, s := range c.watch.Since(again) {
		if s.Present {
			r.firstLeak = s.At.Sub(again)
			break
		}
	}
	st, err := c.leaf.sim().GetSimStats(ctx, &pb.GetSimStatsRequest{})
	if err != nil {
		t.Fatalf("sim stats: %v", err)
	}
	r.simProgrammed, r.simQ = int(st.GetProgrammed()), int(st.GetQueue())
	// The leak is judged from the observer alone: a listing of the
	// gate's states that fails only costs the message its counts.
	if states, err := c.leaf.churnRoutes(ctx); err != nil {
		t.Errorf("the gate's states at the window's end: %v", err)
	} else {
		r.gateStates = stateCounts(states)
	}
	if r.peak > 0 {
		t.Errorf("while the leaf's sim could program nothing (latency %v), the observer got prefixes: the first %v after the re-announcement, up to %d of %d (at +%v), %d still there at +%v (sim: %d programmed before the test, %d when the latency went up, %d and %d queued at the window's end; gate then: %s)",
			latency, r.firstLeak.Round(time.Millisecond), r.peak, n, r.peakAt.Round(time.Millisecond), r.atWindowEnd, churnWindow,
			r.simBaseline, r.simAtRaise, r.simProgrammed, r.simQ, r.gateStates)
	}

	// Hardware at full speed again. What is queued keeps its due time
	// (again+latency); nothing may reach the observer before it.
	c.leaf.setLatency(t, 0)
	c.waitCount(t, latency+bulk, "every prefix back at the observer", func(k int) bool { return k == n })
	r.back = time.Since(again)
	states, err := c.leaf.churnRoutes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	firstOf := func(ss []lab.Sighting) map[netip.Prefix]time.Time {
		first := map[netip.Prefix]time.Time{}
		for _, s := range ss {
			if _, ok := first[s.P]; s.Present && !ok {
				first[s.P] = s.At
			}
		}
		return first
	}
	first := firstOf(c.watch.Since(again))
	tap.Close()
	// A capture with a hole (seen twice in CI under the race detector's
	// load: one segment of the leaf's stream never read) holds everything
	// before the hole: what it has is still checked for early
	// announcements; only "never on the wire" cannot be told then.
	tapErr := tap.Err()
	incomplete := errors.Is(tapErr, lab.ErrIncomplete)
	if tapErr != nil && !incomplete {
		t.Errorf("wire tap: %v", tapErr)
	} else {
		if incomplete {
			t.Logf("wire tap: %v; checking what it captured", tapErr)
		}
		onWire := firstOf(tap.Since(again))
		var never []netip.Prefix
		for _, p := range ps {
			at, ok := onWire[p]
			if !ok {
				if !incomplete {
					never = append(never, p)
				}
				continue
			}
			conf := states[p].GetConfirmedTime()
			if conf == nil || at.Before(conf.AsTime().Add(-churnClock)) || conf.AsTime().Before(again) {
				r.wireBeforeConfirm++
				if len(r.wireExamples) < 3 {
					r.wireExamples = append(r.wireExamples, fmt.Sprintf("%v on the wire %s, confirmed %s", p, at.Format("15:04:05.000"), conf.AsTime().Format("15:04:05.000")))
				}
			}
		}
		if len(never) > 0 {
			t.Errorf("%d of %d prefixes at the observer were never on the wire after the re-announcement (e.g. %v)", len(never), n, never[:min(3, len(never))])
		}
		if r.wireBeforeConfirm > 0 {
			t.Errorf("%d of %d prefixes went on the wire to the observer before the leaf confirmed them (e.g. %s)", r.wireBeforeConfirm, n, strings.Join(r.wireExamples, "; "))
		}
	}
	for _, p := range ps {
		seen, ok := first[p]
		if !ok {
			t.Errorf("%v at the observer, but never seen arriving after the re-announcement", p)
			continue
		}
		// The leaf's confirmation of this announcement: one from before
		// it does not count.
		st := states[p]
		conf := st.GetConfirmedTime().AsTime()
		confirmed := st.GetConfirmedTime() != nil && !conf.Before(again)
		if confirmed && !seen.Before(conf.Add(-churnClock)) {
			continue
		}
		if !confirmed {
			r.unconfirmedAtTheLeaf++
		}
		d := seen.Sub(again)
		if r.leakedBeforeConfirm == 0 || d < r.earliestLeak {
			r.earliestLeak = d
		}
		r.lastLeak = max(r.lastLeak, d)
		r.leakedBeforeConfirm++
		if len(r.examples) < 3 {
			when := "not since the re-announcement"
			if confirmed {
				when = conf.Format("15:04:05.000")
			}
			r.examples = append(r.examples, fmt.Sprintf("%v seen %s, confirmed %s", p, seen.Format("15:04:05.000"), when))
		}
	}
	if r.leakedBeforeConfirm > 0 {
		t.Errorf("%d of %d prefixes reached the observer before the leaf's sim programmed them: the first %v, the last %v after the re-announcement (%d of them the leaf has not confirmed since at all; e.g. %s)",
			r.leakedBeforeConfirm, n, r.earliestLeak.Round(time.Millisecond), r.lastLeak.Round(time.Millisecond), r.unconfirmedAtTheLeaf, strings.Join(r.examples, "; "))
	}
	return r
}

// waitCount waits until the observer's number of prefixes satisfies ok.
func (c *churnLab) waitCount(t *testing.T, timeout time.Duration, what string, ok func(int) bool) {
	t.Helper()
	lab.Eventually(t, timeout, what, func() error {
		k, err := c.watch.Count()
		if err != nil {
			t.Fatal(err)
		}
		if !ok(k) {
			return fmt.Errorf("it has %d", k)
		}
		return nil
	})
}

// churnRoutes lists the gate's state of every churned prefix.
func (l *leaf) churnRoutes(ctx context.Context) (map[netip.Prefix]*pb.Route, error) {
	return l.routesIn(ctx, netip.PrefixFrom(churnBase, 10))
}

// routesIn lists the gate's state of every prefix of the main table inside
// within.
func (l *leaf) routesIn(ctx context.Context, within netip.Prefix) (map[netip.Prefix]*pb.Route, error) {
	out := map[netip.Prefix]*pb.Route{}
	req := &pb.ListRoutesRequest{Prefix: within.String(), IncludeCovered: true, Table: 254, PageSize: 1000}
	for {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := pb.NewRouteServiceClient(l.conn).ListRoutes(ctx, req)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: list routes: %w", l.name, err)
		}
		for _, r := range resp.GetRoutes() {
			p, err := netip.ParsePrefix(r.GetPrefix())
			if err != nil {
				return nil, fmt.Errorf("%s: route %q: %w", l.name, r.GetPrefix(), err)
			}
			out[p] = r
		}
		if resp.GetNextPageToken() == "" {
			return out, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// stateCounts summarises the gate's states: "pending 9990, advertised 10".
func stateCounts(rs map[netip.Prefix]*pb.Route) string {
	m := map[string]int{}
	for _, r := range rs {
		m[strings.ToLower(strings.TrimPrefix(r.GetState().String(), "STATE_"))]++
	}
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(out)
	if len(out) == 0 {
		return "no routes"
	}
	return strings.Join(out, ", ")
}

// simProgrammed returns how many routes the leaf's sim holds in hardware.
func (l *leaf) simProgrammed(t *testing.T) int {
	t.Helper()
	st, err := l.sim().GetSimStats(context.Background(), &pb.GetSimStatsRequest{})
	if err != nil {
		t.Fatalf("%s: sim stats: %v", l.name, err)
	}
	return int(st.GetProgrammed())
}
