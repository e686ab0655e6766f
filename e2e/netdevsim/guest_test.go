//go:build linux

package netdevsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/kernel"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// The guest side: everything below runs inside the VM, as root, in the
// kernel with netdevsim. Each rig is one leaf and its two neighbours:
//
//	peer (gobgpd, AS 65010) ── leaf (AS 65001, netdevsim) ── observer (gobgpd, AS 65020)
//
// The leaf is gobgpd-ext, or a stock gobgpd with fibgated (the sidecar),
// both with backend kernel: only netdevsim sets the hardware flags. The
// peer announces transit prefixes; the leaf originates static routes; the
// observer is the neighbour that must not have a prefix before the
// driver has trapped its route. `fibgate monitor` follows the leaf's FIB
// beside the daemon, so the flag's time comes from the kernel, not from
// the daemon under test.

const (
	leafAS = 65001
	peerAS = 65010
	obsAS  = 65020
)

// leafSettings is the fibgate settings file of both leaves: the kernel
// backend, flag changes announced, static routes originated, and one
// scope for every main-table prefix, waiting for hardware, whose failed
// routes are written again after 1 s, then every 2 s (the default backs
// off to 5 min: a check would wait longer).
const leafSettings = `log_level: info
notify_mode: "1"
backend:
  type: kernel
api:
  socket: %s
bgp:
  originate_protocols: [static]
policy:
  scopes:
    - name: all
      retry: {initial: 1s, max: 2s}
`

// capacitySlack is how many more routes than the leaf has at the start
// its netdevsim FIB takes, per family: the checks before the capacity one
// add four, so it finds a few places left.
const capacitySlack = 8

// family holds one address family's addresses and prefixes.
type family struct {
	name             string
	leafPeer, peer   string // the leaf-peer link
	leafObs, obs     string // the leaf-observer link
	transit, origin  netip.Prefix
	failT, failO     netip.Prefix // announced and added while the driver fails
	whileDown, after netip.Prefix // announced while fibgated is down, and after its restart
	overObject       netip.Prefix // originated over a nexthop group
	ipFlag           string
	resource         string // netdevsim's devlink resource of the family's FIB
}

// capacityPrefix is the i-th prefix of the capacity check.
func (f family) capacityPrefix(i int) netip.Prefix {
	if f.name == "ipv4" {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, byte(130 + i), 0}), 24)
	}
	return pfx(fmt.Sprintf("2001:db8:%x::/48", 0x130+i))
}

var families = []family{
	{name: "ipv4", leafPeer: "10.0.1.1", peer: "10.0.1.2", leafObs: "10.0.2.1", obs: "10.0.2.2",
		transit: pfx("203.0.113.0/24"), origin: pfx("198.51.100.0/24"),
		failT: pfx("203.0.120.0/24"), failO: pfx("198.51.120.0/24"),
		whileDown: pfx("203.0.115.0/24"), after: pfx("203.0.116.0/24"), overObject: pfx("198.51.110.0/24"),
		ipFlag: "-4", resource: "/IPv4/fib"},
	{name: "ipv6", leafPeer: "fd00:1::1", peer: "fd00:1::2", leafObs: "fd00:2::1", obs: "fd00:2::2",
		transit: pfx("2001:db8:113::/48"), origin: pfx("2001:db8:100::/48"),
		failT: pfx("2001:db8:120::/48"), failO: pfx("2001:db8:1120::/48"),
		whileDown: pfx("2001:db8:115::/48"), after: pfx("2001:db8:116::/48"), overObject: pfx("2001:db8:110::/48"),
		ipFlag: "-6", resource: "/IPv6/fib"},
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// rig is one leaf with its neighbours and the tools that watch them.
type rig struct {
	name             string
	sidecar          bool
	fams             []family // the families of the links and sessions
	leaf, peer, obs  string   // namespaces
	dev              int      // netdevsim device id
	dir              string
	api, settings    string
	gobgpd           *speaker // the sidecar's stock gobgpd
	start            func(tb testing.TB) *lab.Process
	daemon           *lab.Process
	starts           int
	owner            testing.TB // the rig's test: daemons live as long as it
	peerSp, obsSp    *speaker
	watch            *lab.BestWatch
	mon              *monitor
	conn             *grpc.ClientConn // the fibgate API
	announcedByPeer  []netip.Prefix
	originatedByLeaf []netip.Prefix
	clearedAt        time.Time // when fail_route_offload was last cleared
	gw               gateWatch
}

// bin is the path of one of the binaries the host put in the image.
func bin(name string) string { return filepath.Join(guestBinDir, name) }

// TestInsideVM runs every scenario, for gobgpd-ext and for the sidecar, in
// the VM TestNetdevsim boots. On the host it skips.
func TestInsideVM(t *testing.T) {
	if !inGuest() {
		t.Skip("runs inside the VM that TestNetdevsim boots")
	}
	clock, _ := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
	t.Logf("%d CPUs, clock source %s", runtime.NumCPU(), bytes.TrimSpace(clock))
	for i, sidecar := range []bool{false, true} {
		name := map[bool]string{false: "gobgpd-ext", true: "sidecar"}[sidecar]
		t.Run(name, func(t *testing.T) {
			r := newRig(t, name, sidecar, 10+i, families)
			t.Run("trapped routes reach the observer only after the trap flag", func(t *testing.T) {
				for _, f := range r.fams {
					t.Run(f.name, func(t *testing.T) { r.trappedFirst(t, f) })
				}
			})
			t.Run("a route written again unchanged stays out", func(t *testing.T) {
				for _, f := range r.fams {
					t.Run(f.name, func(t *testing.T) { r.writtenAgain(t, f) })
				}
			})
			t.Run("a route over a nexthop group: released once trapped, withdrawn when the group goes", func(t *testing.T) {
				for i, f := range r.fams {
					t.Run(f.name, func(t *testing.T) { r.overObject(t, f, 100+i) })
				}
			})
			t.Run("offload failure before arrival holds the prefix, shown failed", func(t *testing.T) {
				r.failedHeld(t)
			})
			t.Run("failed routes recover once the driver accepts again", func(t *testing.T) {
				r.recovered(t)
			})
			t.Run("devlink FIB capacity: what fits is advertised, the rest shown refused", func(t *testing.T) {
				r.capacity(t)
			})
			if sidecar {
				t.Run("fibgated killed and restarted: no withdrawal, new prefixes gated", func(t *testing.T) {
					r.killed(t)
				})
			}
			t.Run("SIGTERM exits 0 and leaves nothing behind", func(t *testing.T) {
				r.terminated(t)
			})
		})
	}
}

// TestInsideVMWithoutIPv6 runs in the VM TestNetdevsimWithoutIPv6 boots
// with IPv6 disabled: the IPv4 fabric is gated as in TestInsideVM, by
// gobgpd-ext and by the sidecar, though the kernel has no IPv6 sysctls,
// routes or sockets at all.
func TestInsideVMWithoutIPv6(t *testing.T) {
	if !inGuest() {
		t.Skip("runs inside the VM that TestNetdevsimWithoutIPv6 boots")
	}
	if _, err := os.Stat("/proc/sys/net/ipv6"); err == nil {
		t.Fatal("this kernel has IPv6: boot it with ipv6.disable=1")
	}
	t.Run("the simulated ASIC confirms a route", simWithoutIPv6)
	for i, sidecar := range []bool{false, true} {
		name := map[bool]string{false: "gobgpd-ext", true: "sidecar"}[sidecar]
		t.Run(name, func(t *testing.T) {
			r := newRig(t, name, sidecar, 20+i, families[:1])
			t.Run("an IPv6 dump holds no route", func(t *testing.T) {
				// The kernel answers a dump of a family it runs without
				// with every family's routes (rtnl_dump_all).
				opts := kernel.Options{NetNS: r.leaf}
				v4, err := kernel.DumpRoutes(opts, fib.IPv4)
				if err != nil || len(v4) == 0 {
					t.Fatalf("IPv4 dump: %d routes, %v", len(v4), err)
				}
				v6, err := kernel.DumpRoutes(opts, fib.IPv6)
				if err != nil || len(v6) != 0 {
					t.Errorf("IPv6 dump: %d routes, %v; want none", len(v6), err)
				}
			})
			t.Run("trapped routes reach the observer only after the trap flag", func(t *testing.T) {
				r.trappedFirst(t, r.fams[0])
			})
			t.Run("offload failure before arrival holds the prefix, shown failed", func(t *testing.T) {
				r.failedHeld(t)
			})
			t.Run("SIGTERM exits 0 and leaves nothing behind", func(t *testing.T) {
				r.terminated(t)
			})
		})
	}
}

// simWithoutIPv6 runs `fibgate serve` with the simulated ASIC, which
// forwards through a table and rules of its own in both families: on a
// kernel without IPv6 it must keep to IPv4 and still confirm a route.
func simWithoutIPv6(t *testing.T) {
	ns, dir := lab.NewNS(t, "sim"), t.TempDir()
	lab.IP(t, ns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
	lab.IP(t, ns, "addr", "add", "10.9.0.1/24", "dev", "eth1")
	lab.IP(t, ns, "link", "set", "eth1", "up")
	lab.IP(t, ns, "link", "set", "eth1p", "up")
	sock := filepath.Join(dir, "fibgate.sock")
	p := lab.Start(t, ns, dir, "fibgate-serve", bin("fibgate"), "serve", "--socket", sock, "--backend", "sim",
		"--sim-ports", "eth1", "--set-notify", "1")
	lab.IP(t, ns, "route", "add", "192.0.2.0/24", "via", "10.9.0.2")
	lab.Eventually(t, 30*time.Second, "192.0.2.0/24 confirmed by the simulated ASIC", func() error {
		if p.Exited() {
			b, _ := os.ReadFile(p.Log)
			t.Fatalf("fibgate serve exited:\n%s", b)
		}
		out, err := exec.Command(bin("fibgate"), "routes", "--socket", sock, "--prefix", "192.0.2.0/24", "--json").CombinedOutput()
		if err != nil {
			return fmt.Errorf("fibgate routes: %v: %s", err, out)
		}
		if !bytes.Contains(out, []byte(`"state":"confirmed"`)) {
			return fmt.Errorf("not confirmed: %s", out)
		}
		return nil
	})
}

// newRig builds the namespaces, the netdevsim device, the neighbours and
// the leaf's daemon, and waits until every session is up.
func newRig(t *testing.T, name string, sidecar bool, dev int, fams []family) *rig {
	t.Helper()
	r := &rig{name: name, sidecar: sidecar, dev: dev, fams: fams, dir: t.TempDir(), owner: t, gw: gateWatch{states: map[netip.Prefix][]gateState{}},
		leaf: lab.NewNS(t, "leaf"), peer: lab.NewNS(t, "peer"), obs: lab.NewNS(t, "obs")}
	// The device belongs to the namespace that creates it; its FIB model
	// then traps every route of that namespace. It goes before the
	// namespace does, after the daemons (cleanups run last first).
	sh(t, "ip", "netns", "exec", r.leaf, "sh", "-c", fmt.Sprintf("echo '%d 1' > /sys/bus/netdevsim/new_device", dev))
	t.Cleanup(func() {
		if err := os.WriteFile("/sys/bus/netdevsim/del_device", fmt.Appendf(nil, "%d", dev), 0); err != nil {
			t.Errorf("delete netdevsim%d: %v", dev, err)
		}
	})
	sysctl := []string{"ip", "netns", "exec", r.leaf, "sysctl", "-q", "-w"}
	for _, f := range fams {
		sysctl = append(sysctl, "net."+f.name+".fib_notify_on_flag_change=1")
	}
	sh(t, sysctl...)
	// Without IPv6 the links have no IPv6 address, and every gobgpd
	// listens on IPv4 only (GoBGP's default includes "::").
	f4, f6, listen := fams[0], family{}, "0.0.0.0"
	if len(fams) > 1 {
		f6, listen = fams[1], ""
	}
	lab.Link(t, r.leaf, "to-peer", f4.leafPeer, f6.leafPeer, r.peer, "to-leaf", f4.peer, f6.peer)
	lab.Link(t, r.leaf, "to-obs", f4.leafObs, f6.leafObs, r.obs, "to-leaf", f4.obs, f6.obs)
	neighbours := func(as uint32, addr func(f family) string) []lab.Neighbour {
		var ns []lab.Neighbour
		for _, f := range fams {
			ns = append(ns, lab.Neighbour{Address: addr(f), AS: as})
		}
		return ns
	}
	// A FIB of limited size, set now: it takes effect with a reload of
	// the device, which takes the flags off every route and puts them
	// back (a flap of everything, for a gate that runs).
	for _, f := range fams {
		_, occ := r.fibResource(t, f)
		r.devlink(t, "resource", "set", r.devName(), "path", f.resource, "size", fmt.Sprint(occ+capacitySlack))
	}
	r.devlink(t, "dev", "reload", r.devName())
	r.mon = startMonitor(t, r.leaf, r.dir)

	r.api = filepath.Join(r.dir, "fibgate.sock")
	r.settings = filepath.Join(r.dir, "fibgate.yaml")
	if err := os.WriteFile(r.settings, fmt.Appendf(nil, leafSettings, r.api), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := lab.GobgpdConf{AS: leafAS, RouterID: f4.leafPeer, Listen: listen, Neighbours: append(
		neighbours(peerAS, func(f family) string { return f.peer }),
		neighbours(obsAS, func(f family) string { return f.obs })...)}
	if !sidecar {
		toml := filepath.Join(r.dir, "gobgpd.toml")
		if err := os.WriteFile(toml, []byte(conf.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(r.dir, "gobgp.sock")
		r.start = func(tb testing.TB) *lab.Process {
			_ = os.Remove(sock) // left by a killed predecessor
			return lab.Start(tb, r.leaf, r.dir, fmt.Sprintf("gobgpd-ext.%d", r.starts), bin("gobgpd-ext"),
				"-f", toml, "--api-hosts", "unix://"+sock, "--pprof-disable", "--fibgate-config", r.settings)
		}
	} else {
		fallback, err := exec.Command(bin("fibgated"), "--print-fallback", "-c", r.settings).Output()
		if err != nil {
			t.Fatalf("fibgated --print-fallback: %v", err)
		}
		conf.Extra = string(fallback) + "[global.apply-policy.config]\n  export-policy-list = [\"fibgate-fallback\"]\n  default-export-policy = \"accept-route\"\n"
		r.gobgpd = startSpeaker(t, r.leaf, "gobgpd", conf.String())
		r.gobgpd.waitAPI(t) // fibgated's bootstrap needs it
		r.start = func(tb testing.TB) *lab.Process {
			return lab.Start(tb, r.leaf, r.dir, fmt.Sprintf("fibgated.%d", r.starts), bin("fibgated"),
				"--gobgpd", r.gobgpd.target, "-c", r.settings)
		}
	}
	r.peerSp = startSpeaker(t, r.peer, "peer", lab.GobgpdConf{AS: peerAS, RouterID: f4.peer, Active: true, Listen: listen,
		Neighbours: neighbours(leafAS, func(f family) string { return f.leafPeer })}.String())
	r.obsSp = startSpeaker(t, r.obs, "observer", lab.GobgpdConf{AS: obsAS, RouterID: f4.obs, Active: true, Listen: listen,
		Neighbours: neighbours(leafAS, func(f family) string { return f.leafObs })}.String())
	r.run(t)
	r.mon.waitReady(t)
	r.peerSp.waitAPI(t)
	r.obsSp.waitAPI(t)
	for _, f := range fams {
		r.peerSp.waitEstablished(t, f.leafPeer)
		r.obsSp.waitEstablished(t, f.leafObs)
	}
	r.watch = lab.WatchBest(t, r.obsSp.conn)
	return r
}

// run starts the leaf's daemon and waits until its API answers.
func (r *rig) run(tb testing.TB) {
	tb.Helper()
	r.starts++
	_ = os.Remove(r.api)
	r.daemon = r.start(r.owner)
	if r.conn == nil {
		conn, err := grpc.NewClient("unix://"+r.api, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			tb.Fatal(err)
		}
		r.owner.Cleanup(func() { conn.Close() })
		r.conn = conn
	}
	lab.Eventually(tb, 60*time.Second, r.name+"'s fibgate API", func() error {
		if r.daemon.Exited() {
			b, _ := os.ReadFile(r.daemon.Log)
			tb.Fatalf("%s exited:\n%s", r.name, b)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := pb.NewStatsServiceClient(r.conn).GetStats(ctx, &pb.GetStatsRequest{})
		return err
	})
	r.gw.follow(r.owner, r.conn)
}

// ip runs iproute2's ip in the leaf.
func (r *rig) ip(tb testing.TB, args ...string) { tb.Helper(); lab.IP(tb, r.leaf, args...) }

// announce makes the peer announce p.
func (r *rig) announce(tb testing.TB, p netip.Prefix) {
	tb.Helper()
	r.peerSp.announce(tb, p)
	r.announcedByPeer = append(r.announcedByPeer, p)
}

// originate adds a static route for p in the leaf, via the peer.
func (r *rig) originate(tb testing.TB, f family, p netip.Prefix) {
	tb.Helper()
	r.ip(tb, f.ipFlag, "route", "add", p.String(), "via", f.peer, "proto", "static")
	r.originatedByLeaf = append(r.originatedByLeaf, p)
}

// devName is the devlink name of the rig's netdevsim device.
func (r *rig) devName() string { return fmt.Sprintf("netdevsim/netdevsim%d", r.dev) }

// devlink runs iproute2's devlink in the leaf, where the device is.
func (r *rig) devlink(tb testing.TB, args ...string) []byte {
	tb.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", r.leaf, "devlink"}, args...)...).CombinedOutput()
	if err != nil {
		tb.Fatalf("devlink %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// fibResource reads the size and occupancy of the family's FIB resource
// (size -1: unlimited).
func (r *rig) fibResource(tb testing.TB, f family) (size, occ int) {
	tb.Helper()
	out := r.devlink(tb, "-j", "resource", "show", r.devName())
	type resource struct {
		Name      string          `json:"name"`
		Size      json.RawMessage `json:"size"`
		Occ       int             `json:"occ"`
		Resources []resource      `json:"resources"`
	}
	var doc struct {
		Resources map[string][]resource `json:"resources"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		tb.Fatalf("devlink resource show: %v: %s", err, out)
	}
	parts := strings.Split(strings.Trim(f.resource, "/"), "/")
	level := doc.Resources[r.devName()]
	for i, name := range parts {
		j := slices.IndexFunc(level, func(x resource) bool { return x.Name == name })
		if j < 0 {
			tb.Fatalf("devlink resource %s not in %s", f.resource, out)
		}
		if i < len(parts)-1 {
			level = level[j].Resources
			continue
		}
		size = -1
		if err := json.Unmarshal(level[j].Size, &size); err != nil {
			size = -1 // "unlimited"
		}
		return size, level[j].Occ
	}
	return -1, 0
}

// setFailOffload sets netdevsim's fail_route_offload knob: while it is
// set, new routes get offload_failed instead of trap.
func (r *rig) setFailOffload(tb testing.TB, fail bool) {
	tb.Helper()
	v := map[bool]string{false: "0", true: "1"}[fail]
	knob := fmt.Sprintf("/sys/kernel/debug/netdevsim/netdevsim%d/fib/fail_route_offload", r.dev)
	if err := os.WriteFile(knob, []byte(v), 0); err != nil {
		tb.Fatalf("write %s: %v", knob, err)
	}
}

// gate returns the gate's view of p through the CLI, as an operator
// sees it: `fibgate routes --json --prefix P`.
func (r *rig) gate(tb testing.TB, p netip.Prefix) (gateRoute, error) {
	tb.Helper()
	out, err := exec.Command(bin("fibgate"), "routes", "--socket", r.api, "--json", "--prefix", p.String()).CombinedOutput()
	if err != nil {
		return gateRoute{}, fmt.Errorf("fibgate routes --prefix %v: %v: %s", p, err, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var g gateRoute
		if json.Unmarshal([]byte(l), &g) == nil && g.Prefix == p.String() && g.Table == 254 {
			return g, nil
		}
	}
	return gateRoute{}, fmt.Errorf("fibgate routes --prefix %v: not there (%q)", p, out)
}

// route returns the gate's view of p over the API: what the checks poll
// (a `fibgate routes` process per poll would cost the VM's one CPU a
// second each). gate returns the same through the CLI.
func (r *rig) route(p netip.Prefix) (gateRoute, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := pb.NewRouteServiceClient(r.conn).GetRoute(ctx, &pb.GetRouteRequest{Table: 254, Prefix: p.String()})
	if err != nil {
		return gateRoute{}, fmt.Errorf("get route %v: %w", p, err)
	}
	g := resp.GetRoute()
	out := gateRoute{Table: g.GetTable(), Prefix: g.GetPrefix(), State: stateName(g.GetState()), Reason: g.GetReason(),
		Retries: int(g.GetRetries()), Flags: []string{}}
	for _, f := range []struct {
		on   bool
		name string
	}{{g.GetFlags().GetOffload(), "offload"}, {g.GetFlags().GetTrap(), "trap"}, {g.GetFlags().GetOffloadFailed(), "offload_failed"}} {
		if f.on {
			out.Flags = append(out.Flags, f.name)
		}
	}
	return out, nil
}

// stateName is how `fibgate routes` names a state.
func stateName(s pb.State) string { return strings.ToLower(strings.TrimPrefix(s.String(), "STATE_")) }

// gateRoute is a line of `fibgate routes --json`.
type gateRoute struct {
	Table   uint32   `json:"table"`
	Prefix  string   `json:"prefix"`
	State   string   `json:"state"`
	Reason  string   `json:"reason"`
	Flags   []string `json:"flags"`
	Retries int      `json:"retries"`
}

func (g gateRoute) String() string {
	return fmt.Sprintf("%s %v (%s)", g.State, g.Flags, g.Reason)
}

// kernelRoutes lists the leaf's proto bgp routes (the installer's), in
// the rig's families.
func (r *rig) kernelRoutes(tb testing.TB) []string {
	tb.Helper()
	var out []string
	for _, f := range r.fams {
		o, err := exec.Command("ip", "-n", r.leaf, f.ipFlag, "route", "show", "proto", "bgp").CombinedOutput()
		if err != nil {
			tb.Fatalf("ip route show proto bgp: %v: %s", err, o)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(o)), "\n") {
			if l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}

// sighting returns when the observer first got p from `since` on.
func (r *rig) sighting(p netip.Prefix, since time.Time) (time.Time, bool) {
	for _, s := range r.watch.Since(since) {
		if s.P == p && s.Present {
			return s.At, true
		}
	}
	return time.Time{}, false
}

// waitObserved waits until the observer has every prefix.
func (r *rig) waitObserved(tb testing.TB, timeout time.Duration, ps ...netip.Prefix) {
	tb.Helper()
	lab.Eventually(tb, timeout, fmt.Sprintf("the observer has %v", ps), func() error {
		for _, p := range ps {
			if !r.watch.Has(p) {
				g, err := r.route(p)
				return fmt.Errorf("%v missing; the gate has it %v (%v)", p, g, err)
			}
		}
		return nil
	})
}

// kill ends the leaf's daemon with SIGKILL: no shutdown sequence at all.
func (r *rig) kill(tb testing.TB) {
	tb.Helper()
	r.daemon.SignalAndWait(tb, syscall.SIGKILL, 10*time.Second)
}

// sh runs a command and fails the test with its output if it fails.
func sh(tb testing.TB, argv ...string) {
	tb.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}
