//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/fibgate/fibgate/internal/lab"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// Issue 12 #3: a SIGHUP of a stock gobgpd that changes only a policy
// definition used to leave its global export chain empty with default
// ACCEPT (SetPolicies drops a chain that names a policy the file does not
// define, and the gate's was defined over the API), and new best paths went
// out until the guard re-installed the gate: 1-4 unconfirmed prefixes at a
// BIRD neighbour for 25-100 ms in most runs.
//
// Now, with the fallback policy in gobgpd's config (as deploy/ packages
// it), the gate lives in that policy: a reload puts back the file's
// version, which holds the whole scope, and the guard restores the
// releases. The documented reload path is therefore gobgpd's own: edit its
// config, SIGHUP (systemctl reload gobgpd, ExecReload=kill -HUP).
//
//	source (gobgpd 65003) ── leaf (stock gobgpd + fibgated, 65001) ── observer (gobgpd 65002)
//
// The source churns prefixes the leaf's sim never programs (latency 1 h)
// while gobgpd reloads 20 times with only a policy definition changed and
// 20 times with only its global apply-policy changed; the observer, which
// stamps every arrival, must never hold one of them. Prefixes confirmed
// before stay out throughout.
func TestReloadOfGobgpdLeaksNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("namespaces, gobgpd and 40 reloads: skipped in -short mode")
	}
	lab.RequireRoot(t)
	// FIBGATE_RELOAD_UNSAFE=1 runs the control: no fallback policy, so the
	// gate is a policy of its own that every reload drops (it leaks).
	unsafe := os.Getenv("FIBGATE_RELOAD_UNSAFE") == "1"
	reps := 20
	start := time.Now()
	r := newReloadLab(t, unsafe)

	stable := lab.HostPrefixes(netip.MustParseAddr("100.65.0.0"), 10)
	churn := lab.HostPrefixes(churnBase, 200)
	ctx := context.Background()
	if err := lab.AnnounceIPv4(ctx, r.srcAPI, stable, netip.MustParseAddr(churnSrcLeaf)); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 20*time.Second, "stable prefixes at the observer", func() error {
		for _, p := range stable {
			if !r.watch.Has(p) {
				return fmt.Errorf("%v not there", p)
			}
		}
		return nil
	})
	// From now on nothing new is programmed: a churned prefix at the
	// observer is one the hardware does not have.
	r.leaf.setLatency(t, time.Hour)

	churnFrom := time.Now()
	stop, churned := r.churn(t, churn)
	var took []time.Duration
	for i := range 2 * reps {
		definition := i < reps
		conf := r.conf(definition, i%2 == 0)
		t0 := time.Now()
		r.leaf.gobgpd.Reload(t, conf)
		r.waitReloaded(t, definition, i%2 == 0)
		took = append(took, time.Since(t0))
	}
	cycles := stop()
	t.Logf("%d definition-only and %d apply-policy reloads under churn (%d announce/withdraw cycles of %d prefixes); reload to gate back: %s",
		reps, reps, cycles, len(churn), spread(took))
	if cycles < 10 {
		t.Errorf("only %d churn cycles ran during the reloads: the test proves little", cycles)
	}

	var leaked []string
	flaps := 0
	for _, s := range r.watch.Since(churnFrom) {
		switch {
		case churned[s.P] && s.Present:
			leaked = append(leaked, fmt.Sprintf("%v at +%v", s.P, s.At.Sub(churnFrom).Round(time.Millisecond)))
		case !churned[s.P] && !s.Present:
			flaps++
		}
	}
	if len(leaked) > 0 {
		t.Errorf("%d unconfirmed prefixes reached the observer during the reloads: %s", len(leaked), strings.Join(leaked[:min(len(leaked), 10)], ", "))
	}
	for _, p := range stable {
		if !r.watch.Has(p) {
			t.Errorf("confirmed prefix %v is gone from the observer after the reloads", p)
		}
	}
	t.Logf("stable (confirmed) prefixes withdrawn at the observer meanwhile: %d", flaps)
	// The churned prefixes are all unconfirmed at the leaf.
	rs, err := r.leaf.churnRoutes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for p, rt := range rs {
		if churned[p] && rt.GetState() != pb.State_STATE_PENDING && rt.GetState() != pb.State_STATE_WITHDRAWN {
			t.Errorf("churned prefix %v is %s at the leaf: the test meant it unconfirmed", p, rt.GetState())
		}
	}
	log, _ := os.ReadFile(r.leaf.proc.Log)
	if n := strings.Count(string(log), "UNSAFE"); n > 0 && !unsafe {
		t.Errorf("fibgated called %d reloads unsafe", n)
	}
	t.Logf("whole test: %v", time.Since(start).Round(time.Millisecond))
}

// reloadLab is one source–leaf–observer lab whose leaf gobgpd reloads.
type reloadLab struct {
	leaf     *leaf
	srcAPI   api.GobgpApiClient
	leafAPI  api.GobgpApiClient
	watch    *lab.BestWatch
	base     string // the leaf's gobgpd config as started
	fallback string // the fallback policy's name, "" in the unsafe control
}

// reloadUser is the user's part of the leaf's gobgpd config: two export
// policies and a prefix set that the reloads change.
const reloadUser = `[[defined-sets.prefix-sets]]
  prefix-set-name = "user-nets"
  [[defined-sets.prefix-sets.prefix-list]]
    ip-prefix = "192.0.2.0/24"
[[policy-definitions]]
  name = "user-export"
  [[policy-definitions.statements]]
    name = "user-export-1"
    [policy-definitions.statements.conditions.match-prefix-set]
      prefix-set = "user-nets"
    [policy-definitions.statements.actions]
      route-disposition = "reject-route"
[[policy-definitions]]
  name = "user-extra"
  [[policy-definitions.statements]]
    name = "user-extra-1"
    [policy-definitions.statements.conditions.match-prefix-set]
      prefix-set = "user-nets"
    [policy-definitions.statements.actions]
      route-disposition = "reject-route"
[global.apply-policy.config]
  export-policy-list = [%s"user-export"]
  default-export-policy = "accept-route"
`

func newReloadLab(t *testing.T, unsafe bool) *reloadLab {
	t.Helper()
	src, obs := lab.NewNS(t, "src"), lab.NewNS(t, "obs")
	leafNS := lab.NewNS(t, "leaf")
	lab.Link(t, leafNS, "to-src", churnLeafSrc, "fd00:3::1", src, "to-leaf", churnSrcLeaf, "fd00:3::2")
	lab.Link(t, leafNS, "to-obs", churnLeafObs, "fd00:4::1", obs, "to-leaf", churnObsLeaf, "fd00:4::2")
	settings := churnSettings
	r := &reloadLab{fallback: "fibgate-fallback"}
	first := `"fibgate-fallback", `
	if unsafe {
		settings += "bgp:\n  fallback_policy: \"\"\n"
		r.fallback, first = "", ""
	}
	conf := lab.GobgpdConf{AS: churnLeafAS, RouterID: churnLeafSrc, Neighbours: []lab.Neighbour{
		{Address: churnSrcLeaf, AS: churnSourceAS}, {Address: churnObsLeaf, AS: churnObserverAS}},
		Extra: fmt.Sprintf(reloadUser, first)}
	if unsafe {
		r.leaf = plainSidecarLeaf(t, leafNS, conf, settings)
	} else {
		r.leaf = sidecarLeaf(t, "leaf", leafNS, conf, settings)
	}
	b, err := os.ReadFile(r.leaf.gobgpd.Conf)
	if err != nil {
		t.Fatal(err)
	}
	r.base = string(b)
	r.leafAPI = api.NewGobgpApiClient(r.leaf.gobgpd.Dial(t))

	source := lab.StartGobgpd(t, src, lab.ActiveSpeakerConf(churnSourceAS, churnSrcLeaf, lab.Neighbour{Address: churnLeafSrc, AS: churnLeafAS}))
	r.srcAPI = api.NewGobgpApiClient(source.Dial(t))
	observer := lab.StartGobgpd(t, obs, lab.ActiveSpeakerConf(churnObserverAS, churnObsLeaf, lab.Neighbour{Address: churnLeafObs, AS: churnLeafAS}))
	obsConn := observer.Dial(t)
	waitSession(t, r.srcAPI, churnLeafSrc)
	waitSession(t, api.NewGobgpApiClient(obsConn), churnLeafObs)
	r.watch = lab.WatchBest(t, obsConn)
	return r
}

// plainSidecarLeaf is sidecarLeaf without the fallback in gobgpd's config:
// the unsafe control.
func plainSidecarLeaf(t *testing.T, ns string, conf lab.GobgpdConf, settings string) *leaf {
	t.Helper()
	bin := binaries(t)
	l := &leaf{name: "leaf", ns: ns, as: conf.AS, dir: dir(t), owner: t}
	l.api = l.dir + "/fibgate.sock"
	file := l.dir + "/fibgate.yaml"
	if err := os.WriteFile(file, fmt.Appendf(nil, settings, l.api), 0o644); err != nil {
		t.Fatal(err)
	}
	l.gobgpd = lab.StartGobgpd(t, ns, conf.String())
	l.start = func(tb testing.TB) *lab.Process {
		return lab.Start(tb, l.ns, l.dir, fmt.Sprintf("fibgated.%d", l.starts), bin+"/fibgated", "--gobgpd", l.gobgpd.Target, "-c", file)
	}
	l.run(t)
	return l
}

// conf renders the leaf's gobgpd config for one reload: a definition-only
// reload moves user-nets between a /24 and a /25 (alt), an apply-policy
// reload adds user-extra to the global export chain (alt) or takes it out.
func (r *reloadLab) conf(definition, alt bool) string {
	c := r.base
	if definition && alt {
		c = strings.Replace(c, `ip-prefix = "192.0.2.0/24"`, `ip-prefix = "192.0.2.0/25"`, 1)
	}
	if !definition && alt {
		c = strings.Replace(c, `"user-export"]`, `"user-export", "user-extra"]`, 1)
	}
	return c
}

// waitReloaded waits until gobgpd has applied the config conf(definition,
// alt) rendered and the gate is back in place: first in the chain and, with
// the fallback, its sentinel set defined again (read after the change, so
// it was added after the reload replaced the policies).
func (r *reloadLab) waitReloaded(t *testing.T, definition, alt bool) {
	t.Helper()
	lab.Eventually(t, 10*time.Second, "gobgpd reloaded and the gate back", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if definition {
			want := map[bool]string{false: "192.0.2.0/24", true: "192.0.2.0/25"}[alt]
			var got []string
			if err := listSets(ctx, r.leafAPI, api.DefinedType_PREFIX, "user-nets", func(d *api.DefinedSet) {
				for _, p := range d.Prefixes {
					got = append(got, p.IpPrefix)
				}
			}); err != nil {
				return err
			}
			if len(got) != 1 || got[0] != want {
				return fmt.Errorf("user-nets %v, want %s", got, want)
			}
		}
		chain, err := exportChain(ctx, r.leafAPI)
		if err != nil {
			return err
		}
		extra := strings.Contains(strings.Join(chain, " "), "user-extra")
		if !definition && extra != alt {
			return fmt.Errorf("chain %v: the reload is not applied yet", chain)
		}
		if len(chain) == 0 || (r.fallback != "" && chain[0] != r.fallback) || (r.fallback == "" && !strings.HasPrefix(chain[0], "fibgate-gate-")) {
			return fmt.Errorf("chain %v: the gate is not first", chain)
		}
		if r.fallback == "" {
			return nil
		}
		sentinel := false
		if err := listSets(ctx, r.leafAPI, api.DefinedType_COMMUNITY, "", func(d *api.DefinedSet) {
			sentinel = sentinel || strings.HasPrefix(d.Name, "fibgate-installed-")
		}); err != nil {
			return err
		}
		if !sentinel {
			return fmt.Errorf("sentinel set missing: the guard has not restored the releases yet")
		}
		return nil
	})
}

// churn announces and withdraws ps at the source over and over until the
// returned stop is called, which returns the cycles done.
func (r *reloadLab) churn(t *testing.T, ps []netip.Prefix) (stop func() int, churned map[netip.Prefix]bool) {
	t.Helper()
	churned = make(map[netip.Prefix]bool, len(ps))
	for _, p := range ps {
		churned[p] = true
	}
	nh := netip.MustParseAddr(churnSrcLeaf)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var cycles int
	var err error
	wg.Go(func() {
		for ctx.Err() == nil {
			if err = lab.AnnounceIPv4(ctx, r.srcAPI, ps, nh); err == nil {
				err = lab.WithdrawIPv4(ctx, r.srcAPI, ps, nh)
			}
			if err != nil {
				return
			}
			cycles++
		}
	})
	return func() int {
		cancel()
		wg.Wait()
		if err != nil && ctx.Err() == nil {
			t.Errorf("churn: %v", err)
		}
		return cycles
	}, churned
}

func listSets(ctx context.Context, c api.GobgpApiClient, typ api.DefinedType, name string, fn func(*api.DefinedSet)) error {
	s, err := c.ListDefinedSet(ctx, &api.ListDefinedSetRequest{DefinedType: typ, Name: name})
	if err != nil {
		return err
	}
	for {
		r, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		fn(r.GetDefinedSet())
	}
}

func exportChain(ctx context.Context, c api.GobgpApiClient) ([]string, error) {
	s, err := c.ListPolicyAssignment(ctx, &api.ListPolicyAssignmentRequest{Name: "global", Direction: api.PolicyDirection_EXPORT})
	if err != nil {
		return nil, err
	}
	var chain []string
	for {
		r, err := s.Recv()
		if err == io.EOF {
			return chain, nil
		}
		if err != nil {
			return nil, err
		}
		for _, p := range r.GetAssignment().GetPolicies() {
			chain = append(chain, p.Name)
		}
	}
}

// spread summarises durations: min, median, max.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("min %v, median %v, max %v", r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]))
}
