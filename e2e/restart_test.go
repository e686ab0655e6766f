//go:build linux

package e2e

import (
	"context"
	"encoding/json"
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

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fibgate/fibgate/e2e/probe"
	"github.com/fibgate/fibgate/internal/lab"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// Graceful restart (issue 14 #2), with FRR on both sides of the leaf:
//
//	spine (FRR 65000) ── leaf (gobgpd-ext, sim 300 ms, warm, 65001) ── observer (FRR 65002)
//
// All three have graceful restart. The spine announces the prefixes, the
// observer sends probes to addresses in some of them across the leaf's
// simulated ASIC (its data port faces the observer), and the test polls
// the observer's table all along:
//   - gobgpd-ext restarts (SIGTERM with graceful_restart.restart_on_stop,
//     then -r). Its routes and its sim's table (warm) stay, so forwarding
//     goes on; the observer keeps its routes as stale; the leaf holds its
//     End-of-RIB until the table is confirmed in hardware, including
//     prefixes the spine announced while it was down (300 ms to program),
//     and routes of prefixes the spine withdrew meanwhile go after the sync;
//   - the spine's bgpd crashes and starts again. The leaf, a helper, keeps
//     the spine's routes in the kernel and the hardware (the gate never
//     judges them again) and sends the observer nothing (no withdrawal, no
//     new version).
const (
	grSpineAS, grLeafAS, grObsAS = 65000, 65001, 65002

	grLeafSp, grSpLeaf = "10.0.8.1", "10.0.8.2"
	grLeafOb, grObLeaf = "10.0.9.1", "10.0.9.2"

	grLatency = 300 * time.Millisecond
)

// grSettings is the leaf's fibgate settings: a warm sim whose data port
// faces the observer, and a stop that is a restart.
const grSettings = `log_level: info
notify_mode: "1"
backend:
  type: sim
  sim:
    latency: 300ms
    ports: [to-ob]
    warm: true
api:
  socket: %s
graceful_restart:
  restart_on_stop: true
  timeout: 60s
policy:
  scopes:
    - name: v4
      family: ipv4
`

// grNeighbour is one neighbour of the leaf's gobgpd config, with graceful
// restart for IPv4 unicast.
const grNeighbour = `
[[neighbors]]
  [neighbors.config]
    neighbor-address = %q
    peer-as = %d
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 60
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
`

type grLab struct {
	leaf           *leaf
	spine, obs     *lab.FRR
	spNS, obNS     string
	stable, gone   []netip.Prefix // announced all along; withdrawn while the leaf is down
	fresh          []netip.Prefix // announced while the leaf is down
	dsts           []netip.Addr   // probed, in stable prefixes
	probe          *probe.Probe
	gobgp          api.GobgpApiClient // the leaf's GoBGP
	leafRestartEnd time.Time
}

func TestGracefulRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end with namespaces, FRR and gobgpd-ext: skipped in -short mode")
	}
	lab.RequireRoot(t)
	lab.RequireFRR(t)
	binaries(t)
	g := newGRLab(t)
	if !t.Run("gobgpd-ext restarts", g.leafRestarts) {
		return
	}
	t.Run("the spine restarts", g.spineRestarts)
}

func grPrefixes(second byte, n int) []netip.Prefix {
	var out []netip.Prefix
	for i := range n {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{100, second, byte(i), 0}), 24))
	}
	return out
}

// grFRR is lab.BGPConfig with graceful restart (restarting and helper,
// forwarding state preserved) in the router bgp section.
func grFRR(conf string) string {
	return strings.Replace(conf, " no bgp ebgp-requires-policy\n",
		" no bgp ebgp-requires-policy\n bgp graceful-restart\n bgp graceful-restart preserve-fw-state\n", 1)
}

func newGRLab(t *testing.T) *grLab {
	g := &grLab{stable: grPrefixes(64, 40), gone: grPrefixes(65, 4), fresh: grPrefixes(66, 4)}
	for _, i := range []int{0, 13, 26, 39} {
		g.dsts = append(g.dsts, g.stable[i].Addr().Next())
	}
	g.spNS, g.obNS = lab.NewNS(t, "sp"), lab.NewNS(t, "ob")
	leafNS := lab.NewNS(t, "leaf")
	lab.Link(t, leafNS, "to-sp", grLeafSp, "fd00:8::1", g.spNS, "to-leaf", grSpLeaf, "fd00:8::2")
	lab.Link(t, leafNS, "to-ob", grLeafOb, "fd00:9::1", g.obNS, "to-leaf", grObLeaf, "fd00:9::2")
	if out, err := exec.Command("ip", "netns", "exec", leafNS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		t.Fatalf("ip_forward in the leaf: %v: %s", err, out)
	}
	for _, a := range g.dsts {
		lab.IP(t, g.spNS, "addr", "add", a.String()+"/32", "dev", "lo")
	}

	d := dir(t)
	l := &leaf{name: "leaf", ns: leafNS, as: grLeafAS, dir: d, owner: t, api: filepath.Join(d, "fibgate.sock")}
	settings, toml := filepath.Join(d, "fibgate.yaml"), filepath.Join(d, "gobgpd.toml")
	conf := fmt.Sprintf("[global.config]\n  as = %d\n  router-id = %q\n", grLeafAS, grLeafSp) +
		fmt.Sprintf(grNeighbour, grSpLeaf, grSpineAS) + fmt.Sprintf(grNeighbour, grObLeaf, grObsAS)
	if err := os.WriteFile(toml, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(settings, fmt.Appendf(nil, grSettings, l.api), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := binaries(t)
	l.start = func(tb testing.TB) *lab.Process {
		args := []string{"-f", toml, "--api-hosts", "unix://" + filepath.Join(d, "gobgp.sock"), "-p", "--pprof-disable", "--fibgate-config", settings}
		if l.starts > 1 {
			args = append(args, "-r") // a restart: graceful
		}
		return lab.Start(tb, l.ns, l.dir, fmt.Sprintf("gobgpd-ext.%d", l.starts), append([]string{filepath.Join(bin, "gobgpd-ext")}, args...)...)
	}
	l.run(t)
	g.leaf = l
	conn, err := grpcDial("unix://" + filepath.Join(d, "gobgp.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	g.gobgp = api.NewGobgpApiClient(conn)

	g.spine = lab.StartFRR(t, g.spNS, grSpineAS, grFRR(lab.BGPConfig(grSpineAS, grSpLeaf, []lab.Neighbour{{Address: grLeafSp, AS: grLeafAS}}, append(slices.Clone(g.stable), g.gone...))))
	g.obs = lab.StartFRR(t, g.obNS, grObsAS, grFRR(lab.BGPConfig(grObsAS, grObLeaf, []lab.Neighbour{{Address: grLeafOb, AS: grLeafAS}}, nil)))
	g.spine.WaitEstablished(grLeafSp, 30*time.Second)
	g.obs.WaitEstablished(grLeafOb, 30*time.Second)
	want := append(slices.Clone(g.stable), g.gone...)
	lab.Eventually(t, 60*time.Second, "every prefix released at the leaf and at the observer", func() error {
		if err := g.released(want); err != nil {
			return err
		}
		return g.observerHas(want, nil)
	})
	p, err := probe.Start(probe.Config{From: g.obNS, To: g.dsts, At: map[string]string{"spine": g.spNS}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	g.probe = p
	lab.Eventually(t, 20*time.Second, "probes through the leaf's ASIC", func() error {
		now := time.Now()
		for _, a := range g.dsts {
			if tl := p.Tally(a, now.Add(-300*time.Millisecond), now.Add(-50*time.Millisecond)); tl.Sent == 0 || tl.Lost > 0 {
				return fmt.Errorf("%v: %d sent, %d lost", a, tl.Sent, tl.Lost)
			}
		}
		return nil
	})
	return g
}

func (g *grLab) leafRestarts(t *testing.T) {
	l := g.leaf
	w := watchObserver(t, g.obs, grLeafOb, g.stable)
	start := time.Now()
	if code := l.proc.SignalAndWait(t, syscall.SIGTERM, 20*time.Second); code != 0 {
		t.Errorf("gobgpd-ext exited %d after SIGTERM, want 0", code)
	}
	if b, _ := os.ReadFile(l.proc.Log); !strings.Contains(string(b), "stopped for a restart") {
		t.Errorf("gobgpd-ext did not log a stop for a restart")
	}
	// Its routes stay in the kernel and in the (warm) hardware.
	kernel, mirror := strings.Join(l.kernelBGPRoutes(t), "\n"), ipOut(t, l.ns, "route", "show", "table", "4242")
	for _, p := range append(slices.Clone(g.stable), g.gone...) {
		if !strings.Contains(kernel, p.String()) || !strings.Contains(mirror, p.String()) {
			t.Fatalf("%v left the kernel or the hardware when gobgpd-ext stopped for a restart:\nkernel:\n%s\nhardware:\n%s", p, kernel, mirror)
		}
	}
	// While it is down the spine withdraws some prefixes and announces new ones.
	for _, p := range g.gone {
		g.spine.Announce(p, true)
	}
	for _, p := range g.fresh {
		g.spine.Announce(p, false)
	}
	lab.Eventually(t, 20*time.Second, "the observer sees the session down", func() error {
		if !w.sawDown() {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	l.run(t) // with -r
	back := time.Now()
	want := append(slices.Clone(g.stable), g.fresh...)
	lab.Eventually(t, 90*time.Second, "the table at the observer after the restart, the withdrawn prefixes gone from the leaf", func() error {
		if _, at := w.eor(); at.IsZero() {
			return fmt.Errorf("no End-of-RIB from the leaf yet")
		}
		if err := g.released(want); err != nil {
			return err
		}
		if err := g.observerHas(want, g.gone); err != nil {
			return err
		}
		kernel := strings.Join(l.kernelBGPRoutes(t), "\n")
		for _, p := range g.gone {
			if strings.Contains(kernel, p.String()) {
				return fmt.Errorf("%v is still in the leaf's kernel", p)
			}
		}
		return nil
	})
	end := time.Now()
	w.stop()
	g.leafRestartEnd = end

	if lost := w.lostPrefixes(); len(lost) > 0 {
		t.Errorf("the observer lost %d of %d prefixes during the restart (e.g. %s)", len(lost), len(g.stable), strings.Join(lost[:min(3, len(lost))], ", "))
	}
	if w.staleSeen() == 0 {
		t.Errorf("the observer never held the leaf's routes as stale: its graceful restart helper was not engaged")
	}
	table, eorAt := w.eor()
	var missing []string
	for _, p := range want {
		if !table[p] {
			missing = append(missing, p.String())
		}
	}
	if len(missing) > 0 {
		t.Errorf("End-of-RIB from the leaf came before %d prefixes it had to confirm first (e.g. %s): it was not held for the hardware", len(missing), strings.Join(missing[:min(3, len(missing))], ", "))
	}
	states, err := g.routes()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range g.fresh {
		if c := states[p].GetConfirmedTime().AsTime(); c.After(eorAt) {
			t.Errorf("%v confirmed at the leaf at %v, after the observer had its End-of-RIB (by %v)", p, c.Format(time.StampMilli), eorAt.Format(time.StampMilli))
		}
		if c := states[p].GetConfirmedTime().AsTime(); c.Sub(back) < grLatency-50*time.Millisecond {
			t.Errorf("%v confirmed %v after the restart, before the sim's %v: not programmed afresh", p, c.Sub(back), grLatency)
		}
	}
	lost, sent := g.lostProbes(start, end.Add(-100*time.Millisecond))
	if lost > 0 {
		t.Errorf("%d of %d probes lost across the leaf during its restart, want 0: forwarding must go on", lost, sent)
	}
	log, _ := os.ReadFile(l.proc.Log)
	if !strings.Contains(string(log), "table confirmed in hardware") {
		t.Errorf("the restarted gobgpd-ext did not log its End-of-RIB held until the table was confirmed")
	}
	t.Logf("gobgpd-ext down for %v; End-of-RIB at the observer by +%v after the restart; %d observer polls, %d prefixes lost there; %d of %d probes lost",
		back.Sub(start).Round(time.Millisecond), eorAt.Sub(back).Round(time.Millisecond), w.polls(), len(w.lostPrefixes()), lost, sent)
}

func (g *grLab) spineRestarts(t *testing.T) {
	ctx := context.Background()
	// Back to what the spine's config file says, which its bgpd reads
	// again when it starts.
	for _, p := range g.gone {
		g.spine.Announce(p, false)
	}
	for _, p := range g.fresh {
		g.spine.Announce(p, true)
	}
	all := append(slices.Clone(g.stable), g.gone...)
	lab.Eventually(t, 60*time.Second, "the spine's announcements as in its config file, at the leaf and the observer", func() error {
		if err := g.released(all); err != nil {
			return err
		}
		return g.observerHas(all, g.fresh)
	})
	before, err := g.routes()
	if err != nil {
		t.Fatal(err)
	}
	versions, err := g.obs.Routes("ipv4")
	if err != nil {
		t.Fatal(err)
	}
	updates, err := neighbourUpdates(g.obs, grLeafOb)
	if err != nil {
		t.Fatal(err)
	}
	w := watchObserver(t, g.obs, grLeafOb, all)
	start := time.Now()
	g.spine.KillBGPD()
	lab.Eventually(t, 30*time.Second, "the leaf helps the spine restart", func() error {
		p, err := gobgpPeer(ctx, g.gobgp, grSpLeaf)
		if err != nil {
			return err
		}
		if p.GetState().GetSessionState() == api.PeerState_ESTABLISHED || !p.GetGracefulRestart().GetPeerRestarting() {
			return fmt.Errorf("session %v, peer restarting %v", p.GetState().GetSessionState(), p.GetGracefulRestart().GetPeerRestarting())
		}
		return nil
	})
	kernel := strings.Join(g.leaf.kernelBGPRoutes(t), "\n")
	for _, p := range all {
		if !strings.Contains(kernel, p.String()) {
			t.Fatalf("%v left the leaf's kernel while the spine restarts:\n%s", p, kernel)
		}
	}
	g.spine.StartBGPD()
	lab.Eventually(t, 60*time.Second, "the spine back and its End-of-RIB in", func() error {
		p, err := gobgpPeer(ctx, g.gobgp, grSpLeaf)
		if err != nil {
			return err
		}
		if p.GetState().GetSessionState() != api.PeerState_ESTABLISHED || p.GetGracefulRestart().GetPeerRestarting() {
			return fmt.Errorf("session %v, peer restarting %v", p.GetState().GetSessionState(), p.GetGracefulRestart().GetPeerRestarting())
		}
		return nil
	})
	// Nothing more may happen: no withdrawal, no new version at the
	// observer, no route judged again at the leaf.
	unchanged := func() error {
		now, err := g.obs.Routes("ipv4")
		if err != nil {
			return nil // vtysh hiccup: not a change
		}
		for _, p := range all {
			if now[p].Version != versions[p].Version {
				return fmt.Errorf("%v changed at the observer (version %d -> %d): the leaf sent it again", p, versions[p].Version, now[p].Version)
			}
		}
		if n, err := neighbourUpdates(g.obs, grLeafOb); err == nil && n != updates {
			return fmt.Errorf("the observer received %d updates from the leaf", n-updates)
		}
		return nil
	}
	lab.Never(t, 2*time.Second, "churn towards the observer after the spine's restart", unchanged)
	end := time.Now()
	w.stop()
	after, err := g.routes()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range all {
		b, a := before[p], after[p]
		if a.GetState() != pb.State_STATE_RELEASED || !a.GetConfirmedTime().AsTime().Equal(b.GetConfirmedTime().AsTime()) {
			t.Errorf("%v at the leaf: %v confirmed %v, was released confirmed %v: the spine's restart made the gate judge it again",
				p, a.GetState(), a.GetConfirmedTime().AsTime().Format(time.StampMilli), b.GetConfirmedTime().AsTime().Format(time.StampMilli))
		}
	}
	if lost := w.lostPrefixes(); len(lost) > 0 {
		t.Errorf("the observer lost %d prefixes while the spine restarted (e.g. %s)", len(lost), strings.Join(lost[:min(3, len(lost))], ", "))
	}
	lost, sent := g.lostProbes(start, end.Add(-100*time.Millisecond))
	if lost > 0 {
		t.Errorf("%d of %d probes lost across the leaf while the spine restarted, want 0", lost, sent)
	}
	t.Logf("the spine's bgpd restarted in %v; the leaf kept %d routes as they were, the observer got no update; %d of %d probes lost",
		end.Sub(start).Round(time.Millisecond), len(all), lost, sent)
}

// released checks that the leaf's gate has every prefix of ps released.
func (g *grLab) released(ps []netip.Prefix) error {
	states, err := g.routes()
	if err != nil {
		return err
	}
	for _, p := range ps {
		if st := states[p]; st.GetState() != pb.State_STATE_RELEASED {
			return fmt.Errorf("%v at the leaf: %v (%s)", p, st.GetState(), st.GetReason())
		}
	}
	return nil
}

// routes lists the gate's states of the lab's prefixes (100.64.0.0/10).
func (g *grLab) routes() (map[netip.Prefix]*pb.Route, error) {
	out := map[netip.Prefix]*pb.Route{}
	req := &pb.ListRoutesRequest{Prefix: "100.64.0.0/10", IncludeCovered: true, Table: 254, PageSize: 1000}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := pb.NewRouteServiceClient(g.leaf.conn).ListRoutes(ctx, req)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("leaf: list routes: %w", err)
		}
		for _, r := range resp.GetRoutes() {
			if p, err := netip.ParsePrefix(r.GetPrefix()); err == nil {
				out[p] = r
			}
		}
		if resp.GetNextPageToken() == "" {
			return out, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// observerHas checks that the observer has every prefix of want and none
// of gone.
func (g *grLab) observerHas(want, gone []netip.Prefix) error {
	rs, err := g.obs.Routes("ipv4")
	if err != nil {
		return err
	}
	for _, p := range want {
		if _, ok := rs[p]; !ok {
			return fmt.Errorf("observer lacks %v", p)
		}
	}
	for _, p := range gone {
		if _, ok := rs[p]; ok {
			return fmt.Errorf("observer still has %v", p)
		}
	}
	return nil
}

// lostProbes counts the probes sent in [from, to) that arrived nowhere,
// and all that were sent.
func (g *grLab) lostProbes(from, to time.Time) (lost, sent int) {
	for _, a := range g.dsts {
		tl := g.probe.Tally(a, from, to)
		lost, sent = lost+tl.Lost, sent+tl.Sent
	}
	return lost, sent
}

// observerWatch polls the observer's table and its session with the leaf
// until stopped: which stable prefixes it ever lacked, whether it held the
// leaf's routes as stale, when the session went down, and the first
// End-of-RIB from the leaf after that, with the table right after it.
type observerWatch struct {
	f      *lab.FRR
	leaf   string
	stable []netip.Prefix
	done   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	lost    map[netip.Prefix]bool
	stale   int
	down    bool
	eorAt   time.Time
	atEOR   map[netip.Prefix]bool
	n       int
	lastErr error
}

func watchObserver(t *testing.T, f *lab.FRR, leaf string, stable []netip.Prefix) *observerWatch {
	w := &observerWatch{f: f, leaf: leaf, stable: stable, done: make(chan struct{}), lost: map[netip.Prefix]bool{}}
	w.wg.Add(1)
	go w.run()
	t.Cleanup(w.stop)
	return w
}

func (w *observerWatch) run() {
	defer w.wg.Done()
	for {
		select {
		case <-w.done:
			return
		default:
		}
		up, eor, err := neighbourState(w.f, w.leaf)
		rs, got, rerr := stalePaths(w.f)
		at := time.Now()
		w.mu.Lock()
		w.n++
		switch {
		case err != nil:
			w.lastErr = err
		case rerr != nil:
			w.lastErr = rerr
		default:
			for _, p := range w.stable {
				if _, ok := rs[p]; !ok {
					w.lost[p] = true
				}
			}
			for _, stale := range rs {
				if stale {
					w.stale++
				}
			}
			if !up {
				w.down = true
			}
			if w.down && up && eor && w.eorAt.IsZero() {
				w.eorAt = at
				// What FRR received, best or not yet: it marks the
				// End-of-RIB as it reads it, while best-path selection for
				// the UPDATEs read just before it runs later from bgpd's
				// work queue (CI saw the 4 new prefixes, sent in the same
				// burst, without a best path in the first poll after it).
				w.atEOR = got
			}
		}
		w.mu.Unlock()
		time.Sleep(20 * time.Millisecond) // the poll interval; each poll takes tens of ms more
	}
}

func (w *observerWatch) stop() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	w.wg.Wait()
}

func (w *observerWatch) sawDown() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.down
}

// eor returns the observer's table right after it first had the leaf's
// End-of-RIB, and when (zero: not yet).
func (w *observerWatch) eor() (map[netip.Prefix]bool, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.atEOR, w.eorAt
}

func (w *observerWatch) lostPrefixes() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for p := range w.lost {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return out
}

func (w *observerWatch) staleSeen() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stale
}

func (w *observerWatch) polls() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// stalePaths reads FRR's IPv4 table: every prefix with a valid best path,
// and whether that path is stale (kept for a neighbour that restarts); and
// every prefix with a path at all (received, its best path chosen or not).
func stalePaths(f *lab.FRR) (best, received map[netip.Prefix]bool, err error) {
	out, err := f.Vtysh("show bgp ipv4 unicast json")
	if err != nil {
		return nil, nil, err
	}
	var doc struct {
		Routes map[string][]struct {
			Valid    bool `json:"valid"`
			Bestpath bool `json:"bestpath"`
			Stale    bool `json:"stale"`
		} `json:"routes"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, nil, fmt.Errorf("parse FRR's table: %v: %.200s", err, out)
	}
	best, received = map[netip.Prefix]bool{}, map[netip.Prefix]bool{}
	for k, paths := range doc.Routes {
		p, err := netip.ParsePrefix(k)
		if err != nil {
			continue
		}
		for _, x := range paths {
			received[p] = true
			if x.Valid && x.Bestpath {
				best[p] = x.Stale
			}
		}
	}
	return best, received, nil
}

// neighbourJSON reads FRR's view of one neighbour.
func neighbourJSON(f *lab.FRR, addr string) (map[string]any, error) {
	out, err := f.Vtysh("show bgp neighbors " + addr + " json")
	if err != nil {
		return nil, err
	}
	var doc map[string]map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("parse FRR's neighbour %s: %v: %.200s", addr, err, out)
	}
	n, ok := doc[addr]
	if !ok {
		return nil, fmt.Errorf("FRR has no neighbour %s: %.200s", addr, out)
	}
	return n, nil
}

// neighbourState says whether FRR's session with addr is established and
// whether it has that neighbour's End-of-RIB for IPv4 unicast.
func neighbourState(f *lab.FRR, addr string) (up, eor bool, err error) {
	n, err := neighbourJSON(f, addr)
	if err != nil {
		return false, false, err
	}
	up = n["bgpState"] == "Established"
	gr, _ := n["gracefulRestartInfo"].(map[string]any)
	recv, _ := gr["endOfRibRecv"].(map[string]any)
	for k, v := range recv {
		if strings.EqualFold(strings.ReplaceAll(k, " ", ""), "ipv4unicast") && v == true {
			eor = true
		}
	}
	return up, eor, nil
}

// neighbourUpdates is how many UPDATEs FRR received from addr.
func neighbourUpdates(f *lab.FRR, addr string) (int, error) {
	n, err := neighbourJSON(f, addr)
	if err != nil {
		return 0, err
	}
	st, _ := n["messageStats"].(map[string]any)
	v, ok := st["updatesRecv"].(float64)
	if !ok {
		return 0, fmt.Errorf("FRR's neighbour %s has no messageStats.updatesRecv", addr)
	}
	return int(v), nil
}

// ipOut runs `ip -n ns args...` and returns its output.
func ipOut(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %v: %v: %s", ns, args, err, out)
	}
	return string(out)
}

// grpcDial connects to a gRPC API without TLS.
func grpcDial(target string) (*grpc.ClientConn, error) {
	return grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// gobgpPeer returns one neighbour of a GoBGP.
func gobgpPeer(ctx context.Context, c api.GobgpApiClient, addr string) (*api.Peer, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := c.ListPeer(ctx, &api.ListPeerRequest{Address: addr})
	if err != nil {
		return nil, err
	}
	r, err := s.Recv()
	if err != nil {
		return nil, err
	}
	return r.GetPeer(), nil
}
