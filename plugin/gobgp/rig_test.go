//go:build linux

package gobgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/plugin/gate"
)

// TestMain proves the cleanup: after all tests, no namespace of this
// process is left and no daemon it started is still a child of it.
//
// FIBGATE_TEST_RELEASE=toggle (make test-toggle) runs the in-process
// Speakers on the HOLD toggle instead of the re-export.
func TestMain(m *testing.M) {
	toggleInProcess = os.Getenv("FIBGATE_TEST_RELEASE") == "toggle"
	code := m.Run()
	if lab.LeftBehind() {
		code = 1
	}
	if g := goroutinesLeft(); g != "" {
		fmt.Fprintf(os.Stderr, "cleanup: goroutines left:\n%s\n", g)
		code = 1
	}
	os.Exit(code)
}

// goroutinesLeft returns the stacks of goroutines still running code of
// this package or GoBGP, after a grace period for those on their way out.
func goroutinesLeft() string {
	var left []string
	for range 100 {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		left = left[:0]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "goroutinesLeft") {
				continue // this one
			}
			if strings.Contains(g, "fibgate/plugin/gobgp.") || strings.Contains(g, "github.com/osrg/gobgp/") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return ""
		}
		time.Sleep(20 * time.Millisecond)
	}
	return strings.Join(left, "\n\n")
}

// rig is a leaf speaker in a lab topology with a Speaker driving it,
// built by one adapter.
type rig struct {
	topo *lab.Topology
	sp   *Speaker
	api  gobgpAPI
	// reloads are the ways to reload GoBGP's policies, by name.
	reloads map[string]func(t *testing.T)
}

// gobgpAPI is the part of GoBGP's API the tests use directly, over either
// transport.
type gobgpAPI struct {
	setPolicies func(ctx context.Context, r *api.SetPoliciesRequest) error
	b           backend
}

// adapter builds a rig with one of the two implementations.
type adapter struct {
	name  string
	start func(t *testing.T, topo *lab.Topology, cfg Config, opts ...Option) *rig
	// reloads names the ways its rigs can reload GoBGP's policies.
	reloads []string
}

func adapters() []adapter {
	return []adapter{
		{"client", startClient, []string{"SetPolicies", "SIGHUP"}},
		// gobgpd-ext owns its reload path: only the API call applies.
		{"inprocess", startInProcess, []string{"SetPolicies"}},
	}
}

func userPolicies() *api.SetPoliciesRequest {
	return &api.SetPoliciesRequest{
		DefinedSets: []*api.DefinedSet{{DefinedType: api.DefinedType_PREFIX, Name: "user-no-10-99",
			Prefixes: []*api.Prefix{{IpPrefix: "10.99.0.0/16", MaskLengthMin: 16, MaskLengthMax: 32}}}},
		Policies: []*api.Policy{{Name: "user-export", Statements: []*api.Statement{{Name: "user-export-s",
			Conditions: &api.Conditions{PrefixSet: &api.MatchSet{Name: "user-no-10-99"}},
			Actions:    &api.Actions{RouteAction: api.RouteAction_REJECT}}}}},
	}
}

func startClient(t *testing.T, topo *lab.Topology, cfg Config, opts ...Option) *rig {
	conf := lab.GobgpdConf{AS: lab.LeafAS, RouterID: lab.LeafSpine4, Neighbours: topo.LeafNeighbours()}.String()
	g := lab.StartGobgpd(t, topo.Leaf, conf)
	conn := g.Dial(t)
	sp, err := NewClient(conn, cfg, append([]Option{WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{topo: topo, sp: sp}
	c := api.NewGobgpApiClient(conn)
	r.api = gobgpAPI{
		setPolicies: func(ctx context.Context, req *api.SetPoliciesRequest) error {
			_, err := c.SetPolicies(ctx, req)
			return err
		},
		b: grpcBackend{c},
	}
	r.reloads = map[string]func(t *testing.T){
		"SetPolicies": func(t *testing.T) { r.setPolicies(t) },
		// What an operator does: edit the policies in the config file and
		// send SIGHUP; gobgpd calls SetPolicies, then a soft reset in.
		"SIGHUP": func(t *testing.T) {
			g.Reload(t, conf+lab.UserPolicyTOML)
			lab.Eventually(t, 5*time.Second, "gobgpd reloaded the config file", func() error {
				ok := false
				if err := r.api.b.listPolicies(context.Background(), func(p *api.Policy) { ok = ok || p.Name == "user-export" }); err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("no policy user-export yet")
				}
				return nil
			})
		},
	}
	r.begin(t)
	return r
}

func startInProcess(t *testing.T, topo *lab.Topology, cfg Config, opts ...Option) *rig {
	s := lab.StartServer(t, topo.Leaf, &api.Global{Asn: lab.LeafAS, RouterId: lab.LeafSpine4})
	for _, n := range topo.LeafNeighbours() {
		fam := "ipv4"
		if netip.MustParseAddr(n.Address).Is6() {
			fam = "ipv6"
		}
		lab.AddPeer(t, s, lab.Peer{Address: n.Address, AS: n.AS, Families: []string{fam}})
	}
	sp, err := NewInProcess(s, cfg, append([]Option{WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{topo: topo, sp: sp, api: gobgpAPI{setPolicies: s.SetPolicies, b: serverBackend{s}}}
	r.reloads = map[string]func(t *testing.T){"SetPolicies": func(t *testing.T) { r.setPolicies(t) }}
	r.begin(t)
	return r
}

// begin bootstraps the Speaker, closes it when the test ends (before the
// speaker's process goes), and starts the FRRs now that the leaf listens.
func (r *rig) begin(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.sp.Close(ctx); err != nil {
			t.Errorf("close speaker: %v", err)
		}
	})
	if err := r.sp.Bootstrap(context.Background()); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	start := time.Now()
	r.topo.Routers(t)
	t.Logf("routers up after %v", time.Since(start))
}

// setPolicies does over the API what gobgpd does on SIGHUP when the
// policies in its config file changed: SetPolicies, then the global
// assignment of the file.
func (r *rig) setPolicies(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if err := r.api.setPolicies(ctx, userPolicies()); err != nil {
		t.Fatalf("SetPolicies: %v", err)
	}
	if err := r.api.b.setExportAssignment(ctx, []string{"user-export"}, api.RouteAction_ACCEPT); err != nil {
		t.Fatalf("SetPolicyAssignment: %v", err)
	}
}

// chain returns the global export chain.
func (r *rig) chain(t *testing.T) []string {
	t.Helper()
	a, err := r.api.b.exportAssignment(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range a.Policies {
		names = append(names, p.Name)
	}
	return names
}

// learned waits until the leaf's global RIB has a path for every prefix
// learned from a neighbour.
func (r *rig) learned(t *testing.T, ps ...netip.Prefix) {
	t.Helper()
	lab.Eventually(t, 10*time.Second, fmt.Sprintf("leaf learned %v", ps), func() error {
		have := make(map[netip.Prefix]bool)
		for _, fam := range []*api.Family{familyV4, familyV6} {
			err := r.api.b.listGlobal(context.Background(), fam, func(d *api.Destination) {
				for _, p := range d.Paths {
					if p.NeighborIp != "" && p.NeighborIp != "<nil>" {
						have[netip.MustParsePrefix(d.Prefix)] = true
					}
				}
			})
			if err != nil {
				return err
			}
		}
		for _, p := range ps {
			if !have[p] {
				return fmt.Errorf("%v not learned", p)
			}
		}
		return nil
	})
}

// spine returns what the spine has received, both families.
func (r *rig) spine() (map[netip.Prefix]lab.Route, error) {
	m, err := r.topo.SpineFRR.Routes("ipv4")
	if err != nil {
		return nil, err
	}
	m6, err := r.topo.SpineFRR.Routes("ipv6")
	if err != nil {
		return nil, err
	}
	for p, x := range m6 {
		m[p] = x
	}
	return m, nil
}

// atSpine waits until the spine has every prefix with AS path path.
func (r *rig) atSpine(t *testing.T, path string, ps ...netip.Prefix) map[netip.Prefix]lab.Route {
	t.Helper()
	var got map[netip.Prefix]lab.Route
	lab.Eventually(t, 10*time.Second, fmt.Sprintf("spine receives %v", ps), func() error {
		var err error
		if got, err = r.spine(); err != nil {
			return err
		}
		for _, p := range ps {
			x, ok := got[p]
			if !ok {
				return fmt.Errorf("%v missing", p)
			}
			if x.Path != path {
				return fmt.Errorf("%v has AS path %q, want %q", p, x.Path, path)
			}
		}
		return nil
	})
	return got
}

// goneFromSpine waits until the spine has none of ps.
func (r *rig) goneFromSpine(t *testing.T, ps ...netip.Prefix) {
	t.Helper()
	lab.Eventually(t, 10*time.Second, fmt.Sprintf("spine drops %v", ps), func() error {
		return r.noneAtSpine(ps...)
	})
}

func (r *rig) noneAtSpine(ps ...netip.Prefix) error {
	got, err := r.spine()
	if err != nil {
		return err
	}
	for _, p := range ps {
		if x, ok := got[p]; ok {
			return fmt.Errorf("spine has %v (AS path %q)", p, x.Path)
		}
	}
	return nil
}

func ads(o gate.Origin, ps ...netip.Prefix) []gate.Advertisement {
	out := make([]gate.Advertisement, len(ps))
	for i, p := range ps {
		out[i] = gate.Advertisement{Prefix: p, Origin: o}
	}
	return out
}

// holdPaths counts the paths in the leaf's RIB carrying the HOLD
// community (they must never outlive a call).
func (r *rig) holdPaths(t *testing.T) int {
	t.Helper()
	return countHold(t, r.api.b, r.sp.cfg.hold)
}

// countHold counts the paths in the global RIB carrying community hold.
func countHold(t *testing.T, b backend, hold uint32) int {
	t.Helper()
	n := 0
	for _, fam := range []*api.Family{familyV4, familyV6} {
		err := b.listGlobal(context.Background(), fam, func(d *api.Destination) {
			if p, err := netip.ParsePrefix(d.Prefix); err == nil && ownPrefix(p) {
				return // WatchBest's heartbeat (heartbeat.go)
			}
			for _, p := range d.Paths {
				for _, raw := range p.PattrsBinary {
					a, err := bgp.GetPathAttribute(raw)
					if err != nil || a.DecodeFromBytes(raw) != nil {
						continue
					}
					if c, ok := a.(*bgp.PathAttributeCommunities); ok && slices.Contains(c.Value, hold) {
						n++
					}
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// testLogger logs to the test log until the test ends.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct {
	t    *testing.T
	done atomic.Bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}
