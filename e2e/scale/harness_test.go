//go:build linux

package scale

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/internal/nsrun"
	"github.com/fibgate/fibgate/plugin/fib/fibtest"
)

// The topology of every run, built fresh for each leaf:
//
//	source (BIRD 65010) ── to-src | leaf (65001) | to-obs ── observer (BIRD 65020)
//
// One IPv4 and, with IPv6 in the table, one IPv6 session per link. The
// leaf is passive: the source and the observer connect to it the moment
// it listens (BIRD's connect delay, 0.75 to 1 s, is the same for every
// leaf), so no leaf pays for its own connect timer (GoBGP waits 1 to 2 s
// at random before its first connect).
const (
	sourceAS   = 65010
	leafAS     = 65001
	observerAS = 65020

	leafSrc4, srcLeaf4 = "10.0.1.1", "10.0.1.2"
	leafSrc6, srcLeaf6 = "fd00:1::1", "fd00:1::2"
	leafObs4, obsLeaf4 = "10.0.2.1", "10.0.2.2"
	leafObs6, obsLeaf6 = "fd00:2::1", "fd00:2::2"
	// The backup source of TestSteadyChurn's moves, in the primary's AS.
	leafBak4, bakLeaf4 = "10.0.3.1", "10.0.3.2"
	leafBak6, bakLeaf6 = "fd00:3::1", "fd00:3::2"

	// pollEvery is how often the observer's count is read.
	pollEvery = 150 * time.Millisecond
)

// labNets are the lab's own addresses; table prefixes that overlap them
// are left out, so no route of the table can capture a session.
var labNets = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}

// mode is one kind of leaf under test.
type mode struct {
	key   string // the name in MODES
	title string // the name in the report
	// originated: the table is static kernel routes in the leaf, no
	// source.
	originated bool
	// fibgate and stock: it runs fibgate's binaries, a stock gobgpd; they
	// are built before the clock starts.
	fibgate, stock bool
	// explicit: run only when asked for by key, not in "all" (a variant
	// for comparison, not a leaf a user would pick).
	explicit bool
	// start runs the leaf's daemons and returns them (the first is the
	// BGP speaker, whose namespace is checked for the listener).
	start func(t *testing.T, l *leafNS) []daemon
}

// daemon is one process of a leaf, for its resource figures.
type daemon struct {
	name string
	pid  int
	done func() bool // it exited
}

// modes are the leaves, in the order a round runs them.
var modes = []mode{
	{key: "ext", title: "gobgpd-ext gated (sim, level hardware)", fibgate: true, start: startExt("hardware", false)},
	{key: "ext-fib", title: "gobgpd-ext gated (sim, level fib)", fibgate: true, start: startExt("fib", false)},
	{key: "ext-kernel", title: "gobgpd-ext gated (no sim, level fib)", fibgate: true, start: startExt("kernel", false)},
	{key: "ext-copy", title: "gobgpd-ext gated, release by copy (sim, level hardware)", fibgate: true, start: startExtWith("hardware", false, "bgp:\n  release: copy\n")},
	{key: "ext-toggle", title: "gobgpd-ext gated, release by HOLD toggle (sim, level hardware)", fibgate: true, explicit: true, start: startExtWith("hardware", false, "bgp:\n  release: toggle\n")},
	{key: "ext-zebra", title: "gobgpd-ext gated, installing through FRR's zebra (sim, level hardware)", fibgate: true, start: startExtZebra},
	{key: "sidecar", title: "gobgpd + fibgated (sim, level hardware)", fibgate: true, stock: true, start: startSidecar("hardware")},
	{key: "sidecar-kernel", title: "gobgpd + fibgated (no sim, level fib)", fibgate: true, stock: true, start: startSidecar("kernel")},
	{key: "gobgpd", title: "stock gobgpd (no install, no gate)", stock: true, start: startGobgpd},
	{key: "gobgpd-zebra", title: "stock gobgpd installing through FRR's zebra (no gate)", stock: true, start: startGobgpdZebra},
	{key: "frr", title: "FRR bgpd+zebra, suppress-fib-pending", start: startFRR},
	{key: "originated", title: "gobgpd-ext originating static routes (sim, level hardware)", originated: true, fibgate: true, start: startExt("hardware", true)},
}

func modeByKey(key string) (mode, bool) {
	for _, m := range modes {
		if m.key == key {
			return m, true
		}
	}
	return mode{}, false
}

// table is the prefixes one run passes through the leaf.
type table struct {
	v4, v6 []netip.Prefix
}

func (tb table) len() int { return len(tb.v4) + len(tb.v6) }

// internet returns the Internet table's prefixes usable in the lab: all
// but the default routes and those overlapping the lab's addresses, IPv4
// and IPv6 apart, in file order.
var internet = sync.OnceValues(func() (table, error) {
	all, err := fibtest.InternetTable()
	if err != nil {
		return table{}, err
	}
	var t table
	for _, p := range all {
		if p.Bits() == 0 || labNets[0].Overlaps(p) || labNets[1].Overlaps(p) {
			continue
		}
		if p.Addr().Is4() {
			t.v4 = append(t.v4, p)
		} else {
			t.v6 = append(t.v6, p)
		}
	}
	return t, nil
})

// sample takes n prefixes of the Internet table, evenly spread over it (a
// deterministic stride, so the length mix stays the table's): IPv4 only,
// or with ipv6 the two families in the table's proportion. n <= 0 or
// beyond the table takes all of it.
func sample(n int, ipv6 bool) (table, error) {
	all, err := internet()
	if err != nil {
		return table{}, err
	}
	if !ipv6 {
		all.v6 = nil
	}
	total := all.len()
	if n <= 0 || n >= total {
		return all, nil
	}
	n6 := n * len(all.v6) / total
	return table{v4: stride(all.v4, n-n6), v6: stride(all.v6, n6)}, nil
}

func stride(ps []netip.Prefix, n int) []netip.Prefix {
	out := make([]netip.Prefix, 0, n)
	for i := range n {
		out = append(out, ps[i*len(ps)/n])
	}
	return out
}

// leafNS is the leaf's namespace and what its daemons need to start.
type leafNS struct {
	ns, dir string
	tab     table
	// transit: sessions with the source besides the observer.
	transit bool
	// backup: sessions with a second source in the first one's AS too
	// (TestSteadyChurn's moves).
	backup bool
	// metrics and pprof, when set, are the addresses in the leaf's
	// namespace of the gated daemon's Prometheus endpoint (the settings'
	// metrics) and of gobgpd-ext's pprof (--pprof-host); TestSteadyChurn
	// reads the gate's histograms and profiles the daemon there.
	metrics, pprof string
	// extra is appended to the gated leaves' settings.
	extra string
}

// neighbours are the leaf's BGP neighbours for its table's families.
func (l *leafNS) neighbours() []lab.Neighbour {
	var ns []lab.Neighbour
	if l.transit {
		ns = append(ns, lab.Neighbour{Address: srcLeaf4, AS: sourceAS})
		if len(l.tab.v6) > 0 {
			ns = append(ns, lab.Neighbour{Address: srcLeaf6, AS: sourceAS})
		}
	}
	if l.backup {
		ns = append(ns, lab.Neighbour{Address: bakLeaf4, AS: sourceAS})
		if len(l.tab.v6) > 0 {
			ns = append(ns, lab.Neighbour{Address: bakLeaf6, AS: sourceAS})
		}
	}
	ns = append(ns, lab.Neighbour{Address: obsLeaf4, AS: observerAS})
	if len(l.tab.v6) > 0 {
		ns = append(ns, lab.Neighbour{Address: obsLeaf6, AS: observerAS})
	}
	return ns
}

func (l *leafNS) gobgpdConf(extra string) string {
	return lab.GobgpdConf{AS: leafAS, RouterID: leafSrc4, Neighbours: l.neighbours(), Extra: extra}.String()
}

// settings is the fibgate settings file of the gated leaves: the sim with
// no latency and no rate limit, every prefix gated at level.
func (l *leafNS) settings(level string, originate bool) string {
	backend := "type: sim\n  sim:\n    latency: 0s\n    rate: 0"
	if level == "kernel" {
		// No simulated ASIC: the gate waits for the kernel FIB, which is
		// what FRR's suppress-fib-pending waits for.
		backend, level = "type: kernel", "fib"
	}
	s := fmt.Sprintf(`log_level: info
notify_mode: "1"
backend:
  %s
api:
  socket: %s
policy:
  scopes:
    - name: all
      level: %s
`, backend, filepath.Join(l.dir, "fibgate.sock"), level)
	if l.metrics != "" {
		s += "metrics: " + l.metrics + "\n"
	}
	if originate {
		s += "bgp:\n  originate_protocols: [static]\n"
	}
	s += l.extra + os.Getenv("FIBGATE_SCALE_SETTINGS")
	return s
}

func (l *leafNS) write(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(l.dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func procDaemon(name string, p *lab.Process) daemon {
	return daemon{name: name, pid: p.Cmd.Process.Pid, done: p.Exited}
}

// startExt runs gobgpd-ext with the gate inside, gating at level; with
// originate it announces the leaf's static routes itself.
func startExt(level string, originate bool) func(t *testing.T, l *leafNS) []daemon {
	return startExtWith(level, originate, "")
}

// startExtWith is startExt with settings of the mode's own appended.
func startExtWith(level string, originate bool, settings string) func(t *testing.T, l *leafNS) []daemon {
	return startExtOf("gobgpd-ext", level, originate, settings)
}

func startExtOf(name, level string, originate bool, settings string) func(t *testing.T, l *leafNS) []daemon {
	return func(t *testing.T, l *leafNS) []daemon {
		bin := binaries(t)
		conf := l.write(t, "gobgpd.toml", l.gobgpdConf(""))
		set := l.write(t, "fibgate.yaml", l.settings(level, originate)+settings)
		argv := []string{filepath.Join(bin, name), "-f", conf, "--api-hosts", "unix://" + filepath.Join(l.dir, "gobgp.sock"),
			"-l", "info", "--fibgate-config", set, "--pprof-disable"}
		if l.pprof != "" {
			argv[len(argv)-1] = "--pprof-host=" + l.pprof
		}
		p := lab.Start(t, l.ns, l.dir, "gobgpd-ext", argv...)
		return []daemon{procDaemon("gobgpd-ext", p)}
	}
}

// startExtZebra runs gobgpd-ext with GoBGP's own zebra client to a zebra
// of the leaf's (FRR's, started first) and fibgate's installer off, as
// deploy/examples/gobgpd-zebra.toml has it: zebra writes the routes the
// sim confirms.
func startExtZebra(t *testing.T, l *leafNS) []daemon {
	f := startZebra(t, l)
	bin := binaries(t)
	conf := l.write(t, "gobgpd.toml", l.gobgpdConf(zebraClient(f)))
	set := l.write(t, "fibgate.yaml", l.settings("hardware", false)+"install:\n  enabled: false\n")
	argv := []string{filepath.Join(bin, "gobgpd-ext"), "-f", conf, "--api-hosts", "unix://" + filepath.Join(l.dir, "gobgp.sock"),
		"-l", "info", "--fibgate-config", set, "--pprof-disable"}
	if l.pprof != "" {
		argv[len(argv)-1] = "--pprof-host=" + l.pprof
	}
	p := lab.Start(t, l.ns, l.dir, "gobgpd-ext", argv...)
	return []daemon{procDaemon("gobgpd-ext", p), pidDaemon(t, "zebra", filepath.Join(f.Dir, "zebra.pid"))}
}

// startGobgpdZebra runs a stock gobgpd with its zebra client to a zebra
// of the leaf's: GoBGP's own way into the kernel, without the gate, the
// baseline of ext-zebra.
func startGobgpdZebra(t *testing.T, l *leafNS) []daemon {
	f := startZebra(t, l)
	g, _ := stockGobgpd(t, l, zebraClient(f))
	return []daemon{procDaemon("gobgpd", g), pidDaemon(t, "zebra", filepath.Join(f.Dir, "zebra.pid"))}
}

// startZebra starts FRR's zebra in the leaf, before its BGP speaker.
func startZebra(t *testing.T, l *leafNS) *lab.FRR {
	lab.RequireFRR(t)
	return lab.StartZebra(t, l.ns, lab.FRRDir(t))
}

// zebraClient is GoBGP's [zebra] section for the zebra f, as
// deploy/examples/gobgpd-zebra.toml has it.
func zebraClient(f *lab.FRR) string {
	return fmt.Sprintf("[zebra.config]\n  enabled = true\n  url = \"unix:%s\"\n  version = 6\n  software-name = \"frr8.2\"\n", lab.ZservPath(f.Dir))
}

// startSidecar runs a stock gobgpd with the fallback policy in its file,
// then fibgated next to it once gobgpd's API socket exists, as leaf2 of
// the fabric tests.
func startSidecar(level string) func(t *testing.T, l *leafNS) []daemon {
	return func(t *testing.T, l *leafNS) []daemon { return sidecar(t, l, level) }
}

func sidecar(t *testing.T, l *leafNS, level string) []daemon {
	bin := binaries(t)
	set := l.write(t, "fibgate.yaml", l.settings(level, false))
	fallback, err := exec.Command(filepath.Join(bin, "fibgated"), "--print-fallback", "-c", set).Output()
	if err != nil {
		t.Fatalf("fibgated --print-fallback: %v", err)
	}
	// With PPROF the profile is fibgated's: gobgpd runs without one.
	prof := l.pprof
	l.pprof = ""
	defer func() { l.pprof = prof }()
	g, sock := stockGobgpd(t, l, string(fallback)+
		"[global.apply-policy.config]\n  export-policy-list = [\"fibgate-fallback\"]\n  default-export-policy = \"accept-route\"\n")
	lab.Eventually(t, 20*time.Second, "gobgpd's API socket", func() error {
		if g.Exited() {
			t.Fatalf("gobgpd exited")
		}
		_, err := os.Stat(sock)
		return err
	})
	argv := []string{filepath.Join(bin, "fibgated"), "--gobgpd", "unix://" + sock, "-c", set}
	if prof != "" {
		argv = append(argv, "--pprof", prof)
	}
	p := lab.Start(t, l.ns, l.dir, "fibgated", argv...)
	return []daemon{procDaemon("gobgpd", g), procDaemon("fibgated", p)}
}

// startGobgpd runs a stock gobgpd: it neither installs nor waits.
func startGobgpd(t *testing.T, l *leafNS) []daemon {
	g, _ := stockGobgpd(t, l, "")
	return []daemon{procDaemon("gobgpd", g)}
}

// stockGobgpd starts the stock gobgpd of lab.GobgpBinaries with the
// leaf's config plus extra, and returns it with its API socket. Unlike
// lab.StartGobgpd it does not wait for the API: a gRPC client that finds
// no socket yet backs off for a second, which the measurement would
// charge to gobgpd.
func stockGobgpd(t *testing.T, l *leafNS, extra string) (*lab.Process, string) {
	conf := l.write(t, "gobgpd.toml", l.gobgpdConf(extra))
	sock := filepath.Join(l.dir, "gobgp.sock")
	argv := []string{filepath.Join(lab.GobgpBinaries(t), "gobgpd"), "-f", conf, "--api-hosts", "unix://" + sock, "-l", "info", "--pprof-disable"}
	if l.pprof != "" {
		argv[len(argv)-1] = "--pprof-host=" + l.pprof
	}
	p := lab.Start(t, l.ns, l.dir, "gobgpd", argv...)
	return p, sock
}

// startFRR runs FRR's bgpd and zebra; with bgp suppress-fib-pending bgpd
// advertises a prefix only once zebra reports it installed in the kernel.
func startFRR(t *testing.T, l *leafNS) []daemon {
	var b strings.Builder
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n bgp suppress-fib-pending\n", leafAS, leafSrc4)
	ns := l.neighbours()
	for _, n := range ns {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s passive\n neighbor %s advertisement-interval 0\n", n.Address, n.AS, n.Address, n.Address)
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		fmt.Fprintf(&b, " address-family %s unicast\n", fam)
		for _, n := range ns {
			if netip.MustParseAddr(n.Address).Is4() == (fam == "ipv4") {
				fmt.Fprintf(&b, "  neighbor %s activate\n", n.Address)
			}
		}
		b.WriteString(" exit-address-family\n")
	}
	f := lab.StartFRR(t, l.ns, leafAS, b.String())
	var ds []daemon
	for _, name := range []string{"bgpd", "zebra"} { // bgpd first: it listens
		ds = append(ds, pidDaemon(t, name, filepath.Join(f.Dir, name+".pid")))
	}
	return ds
}

// pidDaemon is an FRR daemon by its pid file.
func pidDaemon(t *testing.T, name, pidFile string) daemon {
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("FRR %s pid: %v", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("FRR %s pid %q: %v", name, raw, err)
	}
	return daemon{name: name, pid: pid, done: func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return err != nil
	}}
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries returns the directory of gobgpd-ext and fibgated:
// $FIBGATE_SCALE_BIN when set (`make bench-scale` builds them into bin/
// first), else built once per test binary from this tree.
func binaries(tb testing.TB) string {
	tb.Helper()
	if d := os.Getenv("FIBGATE_SCALE_BIN"); d != "" {
		return d
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "fg-scale-bin-")
		if buildErr != nil {
			return
		}
		// go test puts its own GOROOT/bin first on the PATH: "go" is the
		// toolchain that built this test.
		cmd := exec.Command("go", "build", "-o", binDir+"/",
			"github.com/fibgate/fibgate/gobgpd-ext/cmd/gobgpd-ext", "github.com/fibgate/fibgate/gobgpd-ext/cmd/fibgated")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binDir
}

// birdSession renders one BGP protocol of a BIRD at the end of a link,
// disabled until the leaf listens.
func birdSession(name, local, neighbour string, as uint32, channel string) string {
	return fmt.Sprintf(`protocol bgp %s {
  disabled;
  local %s as %d;
  neighbor %s as %d;
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 2;
  %s
}
`, name, local, as, neighbour, leafAS, channel)
}

// sourceConf is the source's BIRD config: the table as blackhole static
// routes (BIRD keeps them out of the kernel: no kernel protocol), exported
// to the leaf.
func sourceConf(tab table) string {
	var b strings.Builder
	fmt.Fprintf(&b, "router id %s;\nprotocol device { scan time 10; }\n", srcLeaf4)
	for _, f := range []struct {
		name, ch, local, nb string
		ps                  []netip.Prefix
	}{{"4", "ipv4", srcLeaf4, leafSrc4, tab.v4}, {"6", "ipv6", srcLeaf6, leafSrc6, tab.v6}} {
		if len(f.ps) == 0 {
			continue
		}
		fmt.Fprintf(&b, "protocol static table%s {\n  %s;\n", f.name, f.ch)
		for _, p := range f.ps {
			fmt.Fprintf(&b, "  route %s blackhole;\n", p)
		}
		b.WriteString("}\n")
		b.WriteString(birdSession("leaf"+f.name, f.local, f.nb, sourceAS, f.ch+" { import none; export all; };"))
	}
	return b.String()
}

// observerConf is the observer's BIRD config: it takes everything the
// leaf sends and sends nothing back.
func observerConf(tab table) string {
	var b strings.Builder
	fmt.Fprintf(&b, "router id %s;\nprotocol device { scan time 10; }\n", obsLeaf4)
	b.WriteString(birdSession("leaf4", obsLeaf4, leafObs4, observerAS, "ipv4 { import all; export none; };"))
	if len(tab.v6) > 0 {
		b.WriteString(birdSession("leaf6", obsLeaf6, leafObs6, observerAS, "ipv6 { import all; export none; };"))
	}
	return b.String()
}

func (tb table) sessions() []string {
	if len(tb.v6) > 0 {
		return []string{"leaf4", "leaf6"}
	}
	return []string{"leaf4"}
}

// point is one reading of the observer: its count at At after the
// leaf's start (when the answer came).
type point struct {
	At    time.Duration
	Count int
}

// result is one leaf's run.
type result struct {
	size  string
	mode  mode
	round int
	n     int
	// full: the observer had every prefix, at elapsed after the leaf's
	// start; otherwise it had count when timeout passed (or the leaf
	// died: failure says so).
	full    bool
	elapsed time.Duration
	count   int
	timeout time.Duration
	failure string
	// listen: the leaf accepted BGP; first: the observer's first prefix.
	listen, first time.Duration
	// load is the 1-minute load average just before the leaf started,
	// and foreign the routing daemons and test binaries then running
	// that this run did not start: other work on the machine shows here.
	load    float64
	foreign []string
	peakRSS uint64
	cpu     time.Duration
	kernel  int
	points  []point
	// toSource and toObserver are the UPDATE messages the leaf's GoBGP
	// sent each neighbour (both families) by the time the observer was
	// full; zero for FRR.
	toSource, toObserver int
	// each is every daemon's own peak RSS and CPU, for the log: in the
	// sidecar leaves fibgated's alone is the gate's whole cost in memory.
	each []string
}

// updatesSent reads from a GoBGP's API how many UPDATE messages it has
// sent each neighbour (by address). It shows what a release costs beyond
// the prefix itself: GoBGP v3 sends the neighbour a path came from a
// withdrawal when the best path moves from a local path (the gate's HOLD
// path) back to that neighbour's, policy or not (docs/design-notes.md).
func updatesSent(sock string) (map[string]int, error) {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := api.NewGobgpApiClient(conn).ListPeer(ctx, &api.ListPeerRequest{})
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for {
		r, err := st.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		p := r.GetPeer()
		out[p.GetConf().GetNeighborAddress()] = int(p.GetState().GetMessages().GetSent().GetUpdate())
	}
}

// outcome is the run's line for a log or a table cell.
func (r result) outcome() string {
	switch {
	case r.failure != "":
		return fmt.Sprintf("failed: %s (%d of %d)", r.failure, r.count, r.n)
	case !r.full:
		return fmt.Sprintf("not full after %v: %d of %d", r.timeout, r.count, r.n)
	default:
		return fmt.Sprintf("full in %.2f s", r.elapsed.Seconds())
	}
}

// run measures one leaf of mode on a fresh topology with tab: from the
// leaf's start until the observer has every prefix, or timeout. Problems
// of the lab itself fail t; a leaf that is slow or dies is a result.
func run(t *testing.T, m mode, tab table, timeout time.Duration, prof profiling) result {
	t.Helper()
	lab.RequireRoot(t)
	lab.RequireBird(t)
	if m.key == "frr" {
		lab.RequireFRR(t)
	}
	if m.fibgate {
		binaries(t)
	}
	if m.stock {
		lab.GobgpBinaries(t)
	}
	r := result{mode: m, n: tab.len(), timeout: timeout}
	leaf := &leafNS{ns: lab.NewNS(t, "leaf"), dir: t.TempDir(), tab: tab, transit: !m.originated}
	obsNS := lab.NewNS(t, "obs")
	lab.Link(t, leaf.ns, "to-obs", leafObs4, leafObs6, obsNS, "to-leaf", obsLeaf4, obsLeaf6)
	obs := lab.StartBird(t, obsNS, observerConf(tab))
	var src *lab.Bird
	if m.originated {
		addStatic(t, leaf.ns, leaf.dir, tab)
	} else {
		srcNS := lab.NewNS(t, "src")
		lab.Link(t, leaf.ns, "to-src", leafSrc4, leafSrc6, srcNS, "to-leaf", srcLeaf4, srcLeaf6)
		src = lab.StartBird(t, srcNS, sourceConf(tab))
		lab.Eventually(t, 2*time.Minute, "the source loads the table", func() error {
			n := 0
			for _, s := range []string{"table4", "table6"} {
				if s == "table6" && len(tab.v6) == 0 {
					continue
				}
				k, err := src.Imported(s)
				if err != nil {
					return err
				}
				n += k
			}
			if n != tab.len() {
				return fmt.Errorf("%d of %d", n, tab.len())
			}
			return nil
		})
	}

	if prof.dir != "" && m.key != "frr" {
		leaf.pprof = "127.0.0.1:6060"
		if m.stock && m.fibgate {
			// fibgated's: gobgpd keeps 6060 for its metrics even with
			// --pprof-disable.
			leaf.pprof = "127.0.0.1:6061"
		}
	}
	r.load, r.foreign = loadAverage(), foreign()
	start := time.Now()
	ds := m.start(t, leaf)
	deadline := start.Add(timeout)
	dead := func() string {
		for _, d := range ds {
			if d.done() {
				return d.name + " exited"
			}
		}
		return ""
	}
	for !lab.Listening(ds[0].pid, 179) {
		if r.failure = dead(); r.failure != "" || time.Now().After(deadline) {
			if r.failure == "" {
				r.failure = "not listening"
			}
			return r
		}
		time.Sleep(10 * time.Millisecond) // polling /proc for the listener
	}
	r.listen = time.Since(start)
	base := filepath.Join(prof.dir, fmt.Sprintf("scale-%d-%s", tab.len(), m.key)) // the profiles' names
	if leaf.pprof != "" && prof.heaps > 0 {
		pid := ds[0].pid // the pprof's: gobgpd-ext's or gobgpd's, fibgated's in the sidecar leaves
		for _, d := range ds {
			if d.name == "fibgated" {
				pid = d.pid
			}
		}
		stop := sampleHeaps(leaf.ns, leaf.pprof, prof.heaps, base, pid, start)
		defer func() {
			curve, err := stop()
			if err != nil {
				t.Errorf("heap samples: %v", err)
			}
			t.Logf("%s: heap while converging (%s.heap-<ms>.pprof): %s", m.key, base, curve)
		}()
	}
	if leaf.pprof != "" {
		done := make(chan error, 1)
		go func() { done <- profile(leaf.ns, leaf.pprof, prof.span, base) }()
		defer func() {
			if err := <-done; err != nil {
				t.Errorf("profile: %v", err)
			} else {
				t.Logf("profiles: %s.cpu.pprof, %s.trace", base, base)
			}
		}()
	}
	for _, s := range tab.sessions() {
		if src != nil {
			if err := src.Enable(s); err != nil {
				t.Fatal(err)
			}
		}
		if err := obs.Enable(s); err != nil {
			t.Fatal(err)
		}
	}

	for {
		if src != nil {
			if err := src.Wake(); err != nil {
				t.Fatalf("source: %v", err)
			}
		}
		n := 0
		var err error
		for _, s := range tab.sessions() {
			k, e := obs.Imported(s)
			n, err = n+k, e
			if err != nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("observer: %v", err)
		}
		at := time.Since(start)
		r.points = append(r.points, point{At: at, Count: n})
		r.count = n
		if n > 0 && r.first == 0 {
			r.first = at
		}
		if n >= r.n {
			r.full, r.elapsed = true, at
			break
		}
		if r.failure = dead(); r.failure != "" || at > timeout {
			break
		}
		time.Sleep(pollEvery - time.Since(start.Add(at))) // the observer's poll period
	}
	if leaf.pprof != "" && r.full {
		// What the leaf holds once the neighbour has the table: the live
		// heap after a collection, to set beside stock gobgpd's.
		if err := fetch(leaf.ns, "http://"+leaf.pprof+"/debug/pprof/heap?gc=1", base+".heap.pprof", 2*time.Minute); err != nil {
			t.Errorf("heap profile: %v", err)
		}
	}
	if m.key != "frr" {
		if up, err := updatesSent(filepath.Join(leaf.dir, "gobgp.sock")); err != nil {
			t.Logf("UPDATEs the leaf sent: %v", err)
		} else {
			r.toSource, r.toObserver = up[srcLeaf4]+up[srcLeaf6], up[obsLeaf4]+up[obsLeaf6]
		}
	}
	for _, d := range ds {
		u, err := lab.ReadUsage(d.pid)
		if err != nil {
			t.Logf("%s: %v", d.name, err)
			continue
		}
		r.peakRSS += u.PeakRSS
		r.cpu += u.CPU
		r.each = append(r.each, fmt.Sprintf("%s %.0f MiB, %.1f s", d.name, mib(u.PeakRSS), u.CPU.Seconds()))
	}
	if testing.Verbose() {
		t.Logf("%s: %s; observer %s", m.key, r.outcome(), pointsLine(r.points))
	}
	if prof.after > 0 && r.full {
		// Observed over a set span, not waited for: what the daemons do
		// once the table is in (the audit's pass among it) shows in VmHWM.
		time.Sleep(prof.after)
		var peak uint64
		for _, d := range ds {
			if u, err := lab.ReadUsage(d.pid); err == nil {
				peak += u.PeakRSS
			}
		}
		t.Logf("%s: peak RSS %.0f MiB when the observer was full, %.0f MiB %v later", m.key, mib(r.peakRSS), mib(peak), prof.after)
		if m.fibgate {
			auditFoundNothing(t, leaf.dir)
		}
	}
	k, err := lab.KernelRoutes(leaf.ns)
	if err != nil {
		t.Errorf("kernel routes of the leaf: %v", err)
	}
	r.kernel = k
	return r
}

// dialIn connects to addr from inside network namespace ns: the socket
// keeps the namespace it was made in.
func dialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := nsrun.Do(ns, func() (err error) {
		var d net.Dialer
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// httpIn is an HTTP client whose connections are made inside ns.
func httpIn(ns string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, ns, network, addr)
		},
	}}
}

// sampleHeaps fetches the heap profile of the pprof at addr in ns every
// interval (as of the last collection: none is forced, so the run is not
// slowed) into base.heap-<ms since start>.pprof, with the runtime's
// HeapAlloc and NextGC and the peak RSS of pid so far, until stop; stop
// returns the curve as one line. Where peak RSS comes from while a table
// goes in: the queues between the stages (docs/design-notes.md, "A stall
// in the middle of the load").
func sampleHeaps(ns, addr string, every time.Duration, base string, pid int, start time.Time) (stop func() (string, error)) {
	quit, done := make(chan struct{}), make(chan struct{})
	var curve []string
	var firstErr error
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			at := time.Since(start)
			err := fetch(ns, fmt.Sprintf("http://%s/debug/pprof/heap", addr), fmt.Sprintf("%s.heap-%d.pprof", base, at.Milliseconds()), every)
			var alloc, next uint64
			if err == nil {
				alloc, next, err = memStats(ns, addr, every)
			}
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			u, _ := lab.ReadUsage(pid)
			curve = append(curve, fmt.Sprintf("%.1fs: HeapAlloc %.0f, NextGC %.0f, peak RSS %.0f MiB", at.Seconds(), mib(alloc), mib(next), mib(u.PeakRSS)))
		}
	}()
	return func() (string, error) {
		close(quit)
		<-done
		return strings.Join(curve, "; "), firstErr
	}
}

// memStats reads HeapAlloc and NextGC from the heap profile's text form.
func memStats(ns, addr string, timeout time.Duration) (alloc, next uint64, err error) {
	resp, err := httpIn(ns, timeout).Get(fmt.Sprintf("http://%s/debug/pprof/heap?debug=1", addr))
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(b)) {
		var v uint64
		if _, err := fmt.Sscanf(line, "# HeapAlloc = %d", &v); err == nil {
			alloc = v
		} else if _, err := fmt.Sscanf(line, "# NextGC = %d", &v); err == nil {
			next = v
		}
	}
	if alloc == 0 || next == 0 {
		return 0, 0, fmt.Errorf("heap?debug=1 of %s: no HeapAlloc and NextGC", addr)
	}
	return alloc, next, nil
}

// profile takes a CPU profile of gobgpd-ext's pprof at addr in ns for d,
// the allocations made meanwhile, and a 5 s execution trace in its middle,
// into base.cpu.pprof, base.allocs.pprof and base.trace.
func profile(ns, addr string, d time.Duration, base string) error {
	// fibgated, in the sidecar leaves, listens a moment after gobgpd.
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := httpIn(ns, time.Second).Get("http://" + addr + "/debug/pprof/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond) // polling for the profiler to listen
	}
	errs := make(chan error, 2)
	go func() {
		time.Sleep(max(0, d/2-2500*time.Millisecond)) // the trace's place in the churn
		errs <- fetch(ns, fmt.Sprintf("http://%s/debug/pprof/trace?seconds=5", addr), base+".trace", 30*time.Second)
	}()
	go func() {
		errs <- fetch(ns, fmt.Sprintf("http://%s/debug/pprof/allocs?seconds=%d", addr, int(d.Seconds())), base+".allocs.pprof", d+time.Minute)
	}()
	err := fetch(ns, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds())), base+".cpu.pprof", d+time.Minute)
	for range 2 {
		if e := <-errs; err == nil {
			err = e
		}
	}
	return err
}

// auditFoundNothing fails the test if the gated leaf's periodic audit
// reported a mismatch (its log's "audit: mismatch" and "audit: more
// mismatches" lines) while the table was in and steady: the gate, or the
// audit's own reading of a table this large (in parts above 100k prefixes:
// plugin/audit part.go), is wrong then.
func auditFoundNothing(t *testing.T, dir string) {
	t.Helper()
	for _, name := range []string{"gobgpd-ext", "fibgated"} {
		b, err := os.ReadFile(filepath.Join(dir, name+".log"))
		if err != nil {
			continue
		}
		var found []string
		for line := range strings.Lines(string(b)) {
			if strings.Contains(line, "audit: mismatch") && !strings.Contains(line, "resolved") || strings.Contains(line, "audit: more mismatches") {
				found = append(found, strings.TrimSpace(line))
			}
		}
		if len(found) > 0 {
			t.Errorf("%s's audit reported %d mismatch lines with the table in; the first: %s", name, len(found), found[0])
		}
	}
}

func fetch(ns, url, file string, timeout time.Duration) error {
	resp, err := httpIn(ns, timeout).Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", url, err)
	}
	return f.Close()
}

// profiling says where TestScaleBench puts gobgpd-ext's profiles of the
// convergence and its heap once the observer is full (dir; "" for none) and how long the CPU profile runs from
// the moment the leaf listens (span).
type profiling struct {
	dir  string
	span time.Duration
	// after: how long the leaf keeps running once the observer is full,
	// its daemons' peak RSS then logged (FIBGATE_SCALE_AFTER).
	after time.Duration
	// heaps: how often to sample the heap while the table goes in (with
	// dir; FIBGATE_SCALE_HEAPS); 0 for never.
	heaps time.Duration
}

// addStatic writes the table into the leaf's kernel as static routes on a
// link of its own, with one `ip -batch`, for the leaf to originate.
func addStatic(t *testing.T, ns, dir string, tab table) {
	t.Helper()
	// A veth pair, not a dummy: some kernels are built without dummy.
	lab.IP(t, ns, "link", "add", "orig0", "type", "veth", "peer", "name", "orig1")
	lab.IP(t, ns, "link", "set", "orig1", "up")
	lab.IP(t, ns, "link", "set", "orig0", "up")
	var b strings.Builder
	for _, ps := range [][]netip.Prefix{tab.v4, tab.v6} {
		for _, p := range ps {
			fmt.Fprintf(&b, "route add %s dev orig0 proto static\n", p)
		}
	}
	f := filepath.Join(dir, "static.batch")
	if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	lab.IP(t, ns, "-batch", f)
}

// parseSize reads a table size: a count (20000, 120k, 1.5m) or "full"
// (0: the whole table).
func parseSize(s string) (int, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	mult := 1
	switch {
	case s == "full":
		return 0, nil
	case strings.HasSuffix(s, "k"):
		s, mult = strings.TrimSuffix(s, "k"), 1000
	case strings.HasSuffix(s, "m"):
		s, mult = strings.TrimSuffix(s, "m"), 1000_000
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("size %q: want a count such as 20000, 120k, 1m or full", s)
	}
	return int(f * float64(mult)), nil
}

// pointsLine abbreviates the observer's readings for a verbose log: at
// most 12, evenly spread, and the last.
func pointsLine(ps []point) string {
	var b strings.Builder
	step := max(1, len(ps)/12)
	for i, p := range ps {
		if i%step == 0 || i == len(ps)-1 {
			fmt.Fprintf(&b, " %.1fs:%d", p.At.Seconds(), p.Count)
		}
	}
	return b.String()
}

// loadAverage is the machine's 1-minute load average, 0 if unknown.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	fmt.Sscan(string(b), &l)
	return l
}

// foreign lists the processes that would compete with a leaf for the
// CPUs but were not started by this test binary: other test binaries of
// fibgate's labs and routing daemons (as "name pid").
func foreign() []string {
	self := os.Getpid()
	names := map[string]bool{"scale.test": true, "e2e.test": true, "gobgp.test": true, "gobgpd": true, "gobgpd-ext": true,
		"gobgpd-ext-reex": true, "fibgated": true, "fibgate": true, "bird": true, "bgpd": true, "zebra": true}
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		st := string(b)
		i, j := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(st[j+1:])
		if len(f) < 2 || !names[st[i+1:j]] || f[1] == strconv.Itoa(self) {
			continue
		}
		out = append(out, fmt.Sprintf("%s %d", st[i+1:j], pid))
	}
	return out
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
