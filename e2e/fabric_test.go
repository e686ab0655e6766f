//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fibgate/fibgate/internal/lab"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// The fabric of the end-to-end tests:
//
//	host1 (FRR 65101) ── leaf1 (gobgpd-ext, sim 300 ms, 65001) ──┐
//	                                                               spine (FRR 65000)
//	host2 (FRR 65102) ── leaf2 (gobgpd + fibgated, sim 300 ms, 65002) ┘
//
// Every link carries an IPv4 and an IPv6 session. The hosts announce the
// transit prefixes (BGP to the host, as Kubernetes nodes do); each leaf
// originates a static route of its own. The spine is the neighbour that
// must not see a prefix before the leaf's hardware has it.
const (
	spineAS = 65000
	leaf1AS = 65001
	leaf2AS = 65002
	host1AS = 65101
	host2AS = 65102

	simLatency = 300 * time.Millisecond
)

var (
	orig1 = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:100::/48")}
	orig2 = []netip.Prefix{netip.MustParsePrefix("198.51.102.0/24"), netip.MustParsePrefix("2001:db8:102::/48")}
	tran1 = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:113::/48")}
	tran2 = []netip.Prefix{netip.MustParsePrefix("203.0.114.0/24"), netip.MustParsePrefix("2001:db8:114::/48")}
)

// settings is the fibgate settings file of both leaves: the sim with the
// lab's latency, static routes originated, metrics on the leaf's loopback,
// the consistency audit every second, and two scopes with a short pending
// timeout, fail-open and fail-closed, before the catch-all ones.
const settings = `log_level: info
notify_mode: "1"
backend:
  type: sim
  sim:
    latency: 300ms
api:
  socket: %s
metrics: 127.0.0.1:9431
audit:
  interval: 1s
bgp:
  originate_protocols: [static]
policy:
  scopes:
    - name: open
      family: ipv4
      prefixes: [{prefix: 198.18.0.0/16, max_len: 32}]
      pending_timeout: 1s
      fail_open: true
    - name: closed
      family: ipv4
      prefixes: [{prefix: 198.19.0.0/16, max_len: 32}]
      pending_timeout: 1s
    - name: v4
      family: ipv4
    - name: v6
      family: ipv6
`

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds gobgpd-ext, fibgated and fibgate once per test binary.
// FIBGATE_E2E_GOBGPD_EXT names another gobgpd-ext to run instead.
func binaries(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "fg-e2e-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/", "../gobgpd-ext/cmd/gobgpd-ext", "../gobgpd-ext/cmd/fibgated", "../gobgpd-ext/cmd/fibgate")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		if other := os.Getenv("FIBGATE_E2E_GOBGPD_EXT"); other != "" {
			b, err := os.ReadFile(other)
			if err == nil {
				err = os.WriteFile(filepath.Join(binDir, "gobgpd-ext"), b, 0o755)
			}
			if err != nil {
				buildErr = fmt.Errorf("FIBGATE_E2E_GOBGPD_EXT: %w", err)
			}
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binDir
}

// leaf is one leaf router and its fibgate.
type leaf struct {
	name, ns string
	as       uint32
	dir      string // settings, API sockets, logs
	api      string // fibgate API socket
	gobgpd   *lab.Gobgpd
	proc     *lab.Process // gobgpd-ext or fibgated
	starts   int
	start    func(tb testing.TB) *lab.Process
	owner    testing.TB // the fabric's test: daemons live as long as it
	conn     *grpc.ClientConn
	// orig and tran are the prefixes it originates and learns from its
	// host, IPv4 then IPv6; host is that host's FRR.
	orig, tran []netip.Prefix
	host       *lab.FRR
}

type fabric struct {
	spine, host1, host2 string
	spineFRR            *lab.FRR
	host1FRR, host2FRR  *lab.FRR
	leaf1, leaf2        *leaf // leaf1 is nil in a sidecar-only fabric
	watch               *spineWatch
}

// fabricOptions choose the leaves of a fabric.
type fabricOptions struct {
	// sidecarOnly leaves leaf1 (gobgpd-ext) and host1 out: the tests of
	// another gobgpd need only leaf2.
	sidecarOnly bool
	// gobgpd is the path of leaf2's gobgpd; "" is the one built from the
	// GoBGP module in go.mod (lab.GobgpBinaries).
	gobgpd string
	// leaf1BGP are lines added to the bgp section of leaf1's settings.
	leaf1BGP string
}

// leaves returns the fabric's leaves, leaf1 first when it has one.
func (f *fabric) leaves() []*leaf {
	if f.leaf1 == nil {
		return []*leaf{f.leaf2}
	}
	return []*leaf{f.leaf1, f.leaf2}
}

func newFabric(t *testing.T, opts fabricOptions) *fabric {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end fabric with namespaces and FRR: skipped in -short mode")
	}
	lab.RequireRoot(t)
	lab.RequireFRR(t)
	bin := binaries(t)
	f := &fabric{spine: lab.NewNS(t, "spine"), host2: lab.NewNS(t, "host2")}
	f.leaf2 = &leaf{name: "leaf2", ns: lab.NewNS(t, "leaf2"), as: leaf2AS, dir: dir(t), owner: t, orig: orig2, tran: tran2}
	lab.Link(t, f.leaf2.ns, "to-spine", "10.0.2.1", "fd00:2::1", f.spine, "to-leaf2", "10.0.2.2", "fd00:2::2")
	lab.Link(t, f.leaf2.ns, "to-host", "10.1.2.1", "fd01:2::1", f.host2, "to-leaf", "10.1.2.2", "fd01:2::2")
	if !opts.sidecarOnly {
		f.host1 = lab.NewNS(t, "host1")
		f.leaf1 = &leaf{name: "leaf1", ns: lab.NewNS(t, "leaf1"), as: leaf1AS, dir: dir(t), owner: t, orig: orig1, tran: tran1}
		lab.Link(t, f.leaf1.ns, "to-spine", "10.0.1.1", "fd00:1::1", f.spine, "to-leaf1", "10.0.1.2", "fd00:1::2")
		lab.Link(t, f.leaf1.ns, "to-host", "10.1.1.1", "fd01:1::1", f.host1, "to-leaf", "10.1.1.2", "fd01:1::2")
	}

	// The spine first, and its watcher, so that nothing a leaf sends can
	// be missed. A missing leaf1 is a neighbour that never comes up.
	f.spineFRR = lab.StartFRR(t, f.spine, spineAS, lab.BGPConfig(spineAS, "10.0.0.100", []lab.Neighbour{
		{Address: "10.0.1.1", AS: leaf1AS}, {Address: "fd00:1::1", AS: leaf1AS},
		{Address: "10.0.2.1", AS: leaf2AS}, {Address: "fd00:2::1", AS: leaf2AS}}, nil))
	f.watch = watchSpine(t, f.spineFRR)

	for _, l := range f.leaves() {
		l.api = filepath.Join(l.dir, "fibgate.sock")
		text := fmt.Sprintf(settings, l.api)
		if l == f.leaf1 {
			text = strings.Replace(text, "bgp:\n", "bgp:\n"+opts.leaf1BGP, 1)
		}
		if err := os.WriteFile(filepath.Join(l.dir, "fibgate.yaml"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if f.leaf1 != nil {
		// leaf1: gobgpd-ext with the gate inside.
		conf1 := lab.GobgpdConf{AS: leaf1AS, RouterID: "10.0.1.1", Neighbours: []lab.Neighbour{
			{Address: "10.0.1.2", AS: spineAS}, {Address: "fd00:1::2", AS: spineAS},
			{Address: "10.1.1.2", AS: host1AS}, {Address: "fd01:1::2", AS: host1AS}}}.String()
		if err := os.WriteFile(filepath.Join(f.leaf1.dir, "gobgpd.toml"), []byte(conf1), 0o644); err != nil {
			t.Fatal(err)
		}
		f.leaf1.start = func(tb testing.TB) *lab.Process {
			l := f.leaf1
			_ = os.Remove(filepath.Join(l.dir, "gobgp.sock")) // left by a killed predecessor
			return lab.Start(tb, l.ns, l.dir, fmt.Sprintf("gobgpd-ext.%d", l.starts), filepath.Join(bin, "gobgpd-ext"),
				"-f", filepath.Join(l.dir, "gobgpd.toml"), "--api-hosts", "unix://"+filepath.Join(l.dir, "gobgp.sock"),
				"-p", "--pprof-disable", "--fibgate-config", filepath.Join(l.dir, "fibgate.yaml"))
		}
	}
	// leaf2: a stock gobgpd with the fallback policy in its file, and
	// fibgated next to it.
	fallback, err := exec.Command(filepath.Join(bin, "fibgated"), "--print-fallback", "-c", filepath.Join(f.leaf2.dir, "fibgate.yaml")).Output()
	if err != nil {
		t.Fatalf("fibgated --print-fallback: %v", err)
	}
	conf2 := lab.GobgpdConf{AS: leaf2AS, RouterID: "10.0.2.1", Neighbours: []lab.Neighbour{
		{Address: "10.0.2.2", AS: spineAS}, {Address: "fd00:2::2", AS: spineAS},
		{Address: "10.1.2.2", AS: host2AS}, {Address: "fd01:2::2", AS: host2AS}},
		Extra: string(fallback) + "[global.apply-policy.config]\n  export-policy-list = [\"fibgate-fallback\"]\n  default-export-policy = \"accept-route\"\n"}.String()
	gobgpd := opts.gobgpd
	if gobgpd == "" {
		gobgpd = filepath.Join(lab.GobgpBinaries(t), "gobgpd")
	}
	f.leaf2.gobgpd = lab.StartGobgpdFrom(t, gobgpd, f.leaf2.ns, conf2)
	f.leaf2.start = func(tb testing.TB) *lab.Process {
		l := f.leaf2
		return lab.Start(tb, l.ns, l.dir, fmt.Sprintf("fibgated.%d", l.starts), filepath.Join(bin, "fibgated"),
			"--gobgpd", l.gobgpd.Target, "-c", filepath.Join(l.dir, "fibgate.yaml"))
	}
	for _, l := range f.leaves() {
		l.run(t)
	}
	if f.leaf1 != nil {
		f.host1FRR = lab.StartFRR(t, f.host1, host1AS, lab.BGPConfig(host1AS, "10.1.1.2", []lab.Neighbour{{Address: "10.1.1.1", AS: leaf1AS}, {Address: "fd01:1::1", AS: leaf1AS}}, tran1))
		f.leaf1.host = f.host1FRR
	}
	f.host2FRR = lab.StartFRR(t, f.host2, host2AS, lab.BGPConfig(host2AS, "10.1.2.2", []lab.Neighbour{{Address: "10.1.2.1", AS: leaf2AS}, {Address: "fd01:2::1", AS: leaf2AS}}, tran2))
	f.leaf2.host = f.host2FRR
	sessions := []string{"10.0.2.1", "fd00:2::1"}
	if f.leaf1 != nil {
		sessions = append(sessions, "10.0.1.1", "fd00:1::1")
	}
	for _, n := range sessions {
		f.spineFRR.WaitEstablished(n, 30*time.Second)
	}
	return f
}

// dir is a directory FRR-independent processes can use; removed at the end.
func dir(t *testing.T) string {
	d, err := os.MkdirTemp("", "fg-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// run starts the leaf's fibgate daemon and waits until its API answers.
func (l *leaf) run(tb testing.TB) {
	tb.Helper()
	l.starts++
	_ = os.Remove(l.api)
	l.proc = l.start(l.owner)
	if l.conn == nil {
		conn, err := grpc.NewClient("unix://"+l.api, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			tb.Fatal(err)
		}
		l.owner.Cleanup(func() { conn.Close() })
		l.conn = conn
	}
	lab.Eventually(tb, 20*time.Second, l.name+" fibgate API", func() error {
		if l.proc.Exited() {
			b, _ := os.ReadFile(l.proc.Log)
			tb.Fatalf("%s exited:\n%s", l.name, b)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := pb.NewStatsServiceClient(l.conn).GetStats(ctx, &pb.GetStatsRequest{})
		return err
	})
}

// kill ends the leaf's daemon with SIGKILL: no shutdown sequence at all.
func (l *leaf) kill(tb testing.TB) {
	tb.Helper()
	l.proc.SignalAndWait(tb, syscall.SIGKILL, 10*time.Second)
}

// gobgp runs the stock gobgp CLI against the leaf's GoBGP API.
func (l *leaf) gobgp(tb testing.TB, args ...string) string {
	tb.Helper()
	target := "unix://" + filepath.Join(l.dir, "gobgp.sock")
	if l.gobgpd != nil {
		target = l.gobgpd.Target
	}
	out, err := exec.Command(filepath.Join(lab.GobgpBinaries(tb), "gobgp"), append([]string{"--target", target}, args...)...).CombinedOutput()
	if err != nil {
		tb.Fatalf("gobgp %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// ip runs ip(8) in the leaf.
func (l *leaf) ip(tb testing.TB, args ...string) { lab.IP(tb, l.ns, args...) }

// route returns the gate's view of a main-table prefix.
func (l *leaf) route(p netip.Prefix) (*pb.Route, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := pb.NewRouteServiceClient(l.conn).GetRoute(ctx, &pb.GetRouteRequest{Table: 254, Prefix: p.String()})
	if err != nil {
		return nil, err
	}
	return r.GetRoute(), nil
}

// confirmedAt waits until the gate confirmed p and returns when.
func (l *leaf) confirmedAt(tb testing.TB, p netip.Prefix) time.Time {
	tb.Helper()
	var at time.Time
	lab.Eventually(tb, 20*time.Second, fmt.Sprintf("%s confirms %v", l.name, p), func() error {
		r, err := l.route(p)
		if err != nil {
			return err
		}
		if s := r.GetState(); s != pb.State_STATE_CONFIRMED && s != pb.State_STATE_RELEASED {
			return fmt.Errorf("state %s (%s)", s, r.GetReason())
		}
		at = r.GetConfirmedTime().AsTime()
		return nil
	})
	return at
}

// sim steers the leaf's simulated ASIC.
func (l *leaf) sim() pb.SimServiceClient { return pb.NewSimServiceClient(l.conn) }

func (l *leaf) setLatency(tb testing.TB, d time.Duration) {
	tb.Helper()
	if _, err := l.sim().SetSimLatency(context.Background(), &pb.SetSimLatencyRequest{Fixed: durationpb.New(d)}); err != nil {
		tb.Fatal(err)
	}
}

// kernelBGPRoutes lists the proto bgp routes of the leaf's main table,
// both families, as "prefix via nexthops" lines.
func (l *leaf) kernelBGPRoutes(tb testing.TB) []string {
	tb.Helper()
	var out []string
	for _, fam := range []string{"-4", "-6"} {
		o, err := exec.Command("ip", "-n", l.ns, fam, "route", "show", "proto", "bgp").CombinedOutput()
		if err != nil {
			tb.Fatalf("ip route: %v: %s", err, o)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(o)), "\n") {
			if line != "" {
				out = append(out, line)
			}
		}
	}
	return out
}

// sighting is one change at the spine: prefix p from a leaf appeared (or
// went) at a poll that ended at At; Before is when the poll before it
// started, so the change happened in (Before, At].
type sighting struct {
	P       netip.Prefix
	From    uint32 // first AS of the path: the leaf that sent it
	Path    string
	Present bool
	Before  time.Time
	At      time.Time
}

// spineWatch polls the spine's BGP table for the whole test and records
// every appearance and disappearance of a prefix.
type spineWatch struct {
	mu   sync.Mutex
	now  map[netip.Prefix]string // AS path present now
	log  []sighting
	errs int
}

func watchSpine(t *testing.T, frr *lab.FRR) *spineWatch {
	w := &spineWatch{now: map[netip.Prefix]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		prev := time.Now()
		for ctx.Err() == nil {
			start := time.Now()
			m4, err4 := frr.Routes("ipv4")
			m6, err6 := frr.Routes("ipv6")
			end := time.Now()
			if err4 != nil || err6 != nil {
				w.mu.Lock()
				w.errs++
				w.mu.Unlock()
				prev = start
				continue
			}
			for p, r := range m6 {
				m4[p] = r
			}
			w.mu.Lock()
			for p, r := range m4 {
				if old, ok := w.now[p]; !ok || old != r.Path {
					w.log = append(w.log, sighting{P: p, From: firstAS(r.Path), Path: r.Path, Present: true, Before: prev, At: end})
					w.now[p] = r.Path
				}
			}
			for p, path := range w.now {
				if _, ok := m4[p]; !ok {
					w.log = append(w.log, sighting{P: p, From: firstAS(path), Path: path, Before: prev, At: end})
					delete(w.now, p)
				}
			}
			w.mu.Unlock()
			prev = start
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func firstAS(path string) uint32 {
	var as uint32
	fmt.Sscan(path, &as)
	return as
}

// has reports whether the spine has p from leaf as now.
func (w *spineWatch) has(p netip.Prefix, as uint32) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	path, ok := w.now[p]
	return ok && firstAS(path) == as
}

// appearances returns the sightings of p arriving from leaf as.
func (w *spineWatch) appearances(p netip.Prefix, as uint32) []sighting {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []sighting
	for _, s := range w.log {
		if s.P == p && s.Present && s.From == as {
			out = append(out, s)
		}
	}
	return out
}

// waitPresent waits until the spine has every prefix from leaf l.
func (w *spineWatch) waitPresent(tb testing.TB, l *leaf, timeout time.Duration, ps ...netip.Prefix) {
	tb.Helper()
	lab.Eventually(tb, timeout, fmt.Sprintf("spine has %v from %s", ps, l.name), func() error {
		for _, p := range ps {
			if !w.has(p, l.as) {
				r, err := l.route(p)
				return fmt.Errorf("%v missing; %s's gate has it %s: %q (%v)", p, l.name, r.GetState(), r.GetReason(), err)
			}
		}
		return nil
	})
}

// waitAbsent waits until the spine has none of ps from leaf as.
func (w *spineWatch) waitAbsent(tb testing.TB, as uint32, timeout time.Duration, ps ...netip.Prefix) {
	tb.Helper()
	lab.Eventually(tb, timeout, fmt.Sprintf("spine drops %v from AS %d", ps, as), func() error {
		for _, p := range ps {
			if w.has(p, as) {
				return fmt.Errorf("%v still there", p)
			}
		}
		return nil
	})
}

// neverPresent fails at once if the spine gets any of ps from leaf as
// within d.
func (w *spineWatch) neverPresent(tb testing.TB, as uint32, d time.Duration, ps ...netip.Prefix) {
	tb.Helper()
	lab.Never(tb, d, fmt.Sprintf("spine never has %v from AS %d", ps, as), func() error {
		for _, p := range ps {
			if w.has(p, as) {
				return fmt.Errorf("%v leaked", p)
			}
		}
		return nil
	})
}

// notBefore checks that every appearance of p from leaf as since `since`
// was seen no earlier than `at` (a confirmation time): with the gate, the
// spine cannot have a prefix before the leaf's hardware does.
func (w *spineWatch) notBefore(tb testing.TB, p netip.Prefix, as uint32, since, at time.Time) {
	tb.Helper()
	for _, s := range w.appearances(p, as) {
		if s.At.Before(since) {
			continue
		}
		if s.At.Before(at) {
			tb.Errorf("%v reached the spine from AS %d by %s, before the leaf confirmed it at %s",
				p, as, s.At.Format("15:04:05.000"), at.Format("15:04:05.000"))
		}
	}
}

func sorted(ss []string) []string { slices.Sort(ss); return ss }

// quiet waits until no leaf's kernel has a route for ps and every leaf's
// sim has nothing queued: the fabric has settled after a subtest's routes
// went away.
func (f *fabric) quiet(t *testing.T, ps ...netip.Prefix) {
	t.Helper()
	for _, l := range f.leaves() {
		lab.Eventually(t, 20*time.Second, l.name+" settled", func() error {
			for _, p := range ps {
				out, err := exec.Command("ip", "-n", l.ns, "route", "show", "table", "main", p.String()).CombinedOutput()
				if err != nil {
					return fmt.Errorf("ip route show %v: %v: %s", p, err, out)
				}
				if s := strings.TrimSpace(string(out)); s != "" {
					return fmt.Errorf("kernel still has %s", s)
				}
			}
			st, err := l.sim().GetSimStats(context.Background(), &pb.GetSimStatsRequest{})
			if err != nil {
				return err
			}
			if st.GetQueue() != 0 {
				return fmt.Errorf("sim has %d queued", st.GetQueue())
			}
			return nil
		})
	}
}
