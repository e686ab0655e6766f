//go:build linux

package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fibgate/fibgate/internal/lab"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// The faults of TestChaos. Each draws its parameters from the run's RNG
// when it is picked, so that the logged line says what it will do and a
// seed repeats the sequence, and does it when the step runs.

// fault is one step's fault: what it does (logged before it runs), its
// kind (counted), and the doing.
type fault struct {
	kind, what string
	do         func(t *testing.T)
}

// draw picks the next fault from those that apply now.
func (c *chaosLab) draw() fault {
	type option struct {
		weight int
		make   func() fault
	}
	opts := []option{
		{3, c.killLeaf},
		{3, func() fault { return c.stop(c.daemon(), func() *lab.Process { return c.leaf.proc }) }},
		{3, c.resetSession},
		{3, c.injectFailures},
		{2, c.changeLatency},
		{2, c.overrun},
		{2, c.churnOnly},
	}
	if len(c.injected) > 0 {
		opts = append(opts, option{2, c.clearSome})
	}
	if c.sidecar {
		opts = append(opts,
			option{2, c.killGobgpd},
			option{2, func() fault { return c.stop("gobgpd", func() *lab.Process { return c.leaf.gobgpd.Process }) }},
			option{2, c.reload},
		)
	}
	total := 0
	for _, o := range opts {
		total += o.weight
	}
	n := c.rng.IntN(total)
	for _, o := range opts {
		if n < o.weight {
			return o.make()
		}
		n -= o.weight
	}
	panic("unreachable")
}

// killLeaf kills the leaf's daemon with SIGKILL and starts it again after
// a pause. Its sim starts afresh: no injected failure, the first latency.
func (c *chaosLab) killLeaf() fault {
	pause := c.duration(0, 500)
	warm := c.sidecar || c.rng.IntN(2) == 0
	sim := map[bool]string{false: "cold", true: "warm"}[warm]
	return fault{kind: "kill -9 " + c.daemon(), what: fmt.Sprintf("kill -9 %s, restart after %v (%s sim)", c.daemon(), pause, sim), do: func(t *testing.T) {
		c.leaf.kill(t)
		time.Sleep(pause)
		c.warm = warm
		c.leaf.run(t)
		clear(c.injected)
	}}
}

// killGobgpd kills the sidecar's gobgpd with SIGKILL and starts it again
// with its config file as it is now.
func (c *chaosLab) killGobgpd() fault {
	pause := c.duration(0, 500)
	return fault{kind: "kill -9 gobgpd", what: fmt.Sprintf("kill -9 gobgpd, restart after %v", pause), do: func(t *testing.T) {
		g := c.leaf.gobgpd
		g.SignalAndWait(t, syscall.SIGKILL, 10*time.Second)
		time.Sleep(pause)
		g.Restart(t)
	}}
}

// stop freezes a daemon with SIGSTOP and thaws it with SIGCONT, also if
// the test fails meanwhile.
func (c *chaosLab) stop(name string, proc func() *lab.Process) fault {
	d := c.duration(200, 2000)
	return fault{kind: "SIGSTOP " + name, what: fmt.Sprintf("SIGSTOP %s for %v", name, d), do: func(t *testing.T) {
		p := proc()
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP %s: %v", name, err)
		}
		defer func() {
			if err := p.Signal(syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT %s: %v", name, err)
			}
		}()
		time.Sleep(d)
	}}
}

// reload changes the sidecar gobgpd's config (a policy definition, or its
// export chain after the gate) and sends SIGHUP, as reload_test.go does.
func (c *chaosLab) reload() fault {
	definition, alt := c.rng.IntN(2) == 0, c.rng.IntN(2) == 0
	conf := (&reloadLab{base: c.leafConf}).conf(definition, alt)
	what := map[bool]string{true: "a policy definition", false: "the export chain"}[definition]
	return fault{kind: "reload gobgpd", what: "SIGHUP gobgpd with " + what + " changed", do: func(t *testing.T) {
		c.leaf.gobgpd.Reload(t, conf)
	}}
}

// resetSession takes a BGP session down at the source or the observer:
// administratively for a while, or a hard reset that reconnects at once.
func (c *chaosLab) resetSession() fault {
	client, peer, who := c.srcAPI, churnLeafSrc, "source"
	if c.rng.IntN(2) == 0 {
		client, peer, who = c.obsAPI, churnLeafObs, "observer"
	}
	if c.rng.IntN(2) == 0 {
		return fault{kind: "reset session", what: "hard reset of the " + who + "'s session", do: func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := client.ResetPeer(ctx, &api.ResetPeerRequest{Address: peer, Communication: "chaos"}); err != nil {
				t.Fatalf("reset %s's session: %v", who, err)
			}
		}}
	}
	down := c.duration(0, 1500)
	return fault{kind: "reset session", what: fmt.Sprintf("the %s's session disabled for %v", who, down), do: func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := client.DisablePeer(ctx, &api.DisablePeerRequest{Address: peer, Communication: "chaos"}); err != nil {
			t.Fatalf("disable %s's session: %v", who, err)
		}
		time.Sleep(down)
		if _, err := client.EnablePeer(ctx, &api.EnablePeerRequest{Address: peer}); err != nil {
			t.Fatalf("enable %s's session: %v", who, err)
		}
	}}
}

// injectFailures makes the sim fail the programming of a few prefixes,
// most of them announced.
func (c *chaosLab) injectFailures() fault {
	var ps []netip.Prefix
	for range 1 + c.rng.IntN(4) {
		p := c.universe[c.rng.IntN(len(c.universe))]
		if c.rng.IntN(4) > 0 {
			if a := c.pick(slices.SortedFunc(maps.Keys(c.announced), netip.Prefix.Compare), 1); len(a) > 0 {
				p = a[0]
			}
		}
		if !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	return fault{kind: "sim failure", what: fmt.Sprintf("sim fails %v", ps), do: func(t *testing.T) {
		for _, p := range ps {
			c.simCall(t, "inject failure "+p.String(), func(ctx context.Context, s pb.SimServiceClient) error {
				_, err := s.InjectFailure(ctx, &pb.InjectFailureRequest{Prefix: p.String()})
				return err
			})
			c.injected[p] = true
		}
	}}
}

// clearSome clears some of the injected failures.
func (c *chaosLab) clearSome() fault {
	all := slices.SortedFunc(maps.Keys(c.injected), netip.Prefix.Compare)
	ps := c.pick(all, 1+c.rng.IntN(len(all)))
	return fault{kind: "sim failure cleared", what: fmt.Sprintf("sim clears %v", ps), do: func(t *testing.T) {
		c.clearFailures(t, ps)
	}}
}

func (c *chaosLab) clearFailures(t *testing.T, ps []netip.Prefix) {
	for _, p := range ps {
		c.simCall(t, "clear failure "+p.String(), func(ctx context.Context, s pb.SimServiceClient) error {
			_, err := s.ClearFailure(ctx, &pb.ClearFailureRequest{Prefix: p.String()})
			return err
		})
		delete(c.injected, p)
	}
}

// changeLatency sets the sim's programming latency and jitter.
func (c *chaosLab) changeLatency() fault {
	fixed := []time.Duration{50, 100, 200, 400, 800}[c.rng.IntN(5)] * time.Millisecond
	jitter := time.Duration(c.rng.IntN(2)) * fixed / 2
	return fault{kind: "sim latency", what: fmt.Sprintf("sim latency %v + up to %v", fixed, jitter), do: func(t *testing.T) {
		c.latency(t, fixed, jitter)
	}}
}

func (c *chaosLab) latency(t *testing.T, fixed, jitter time.Duration) {
	c.simCall(t, "set latency", func(ctx context.Context, s pb.SimServiceClient) error {
		_, err := s.SetSimLatency(ctx, &pb.SetSimLatencyRequest{Fixed: durationpb.New(fixed), Jitter: durationpb.New(jitter)})
		return err
	})
}

// overrun writes a burst of kernel routes into the leaf while its daemon
// is frozen (SIGSTOP), as a busy daemon would be, so that its listener's
// notification socket (chaosRcvBuf) overruns and it must resynchronise,
// and deletes them again a moment later.
func (c *chaosLab) overrun() fault {
	n := 2000 + c.rng.IntN(2001)
	hold := c.duration(100, 600)
	return fault{kind: "netlink overrun", what: fmt.Sprintf("netlink burst: %d kernel routes added at once under a frozen %s, deleted %v later", n, c.daemon(), hold), do: func(t *testing.T) {
		before := c.listenerOverruns(t)
		ps := lab.HostPrefixes(chaosBurstBase, n)
		p := c.leaf.proc
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP %s: %v", c.daemon(), err)
		}
		thawed := false
		thaw := func() {
			if !thawed {
				thawed = true
				if err := p.Signal(syscall.SIGCONT); err != nil {
					t.Errorf("SIGCONT %s: %v", c.daemon(), err)
				}
			}
		}
		defer thaw()
		c.ipBatch(t, "add", ps)
		thaw()
		time.Sleep(hold)
		c.ipBatch(t, "del", ps)
		c.overrunSteps++
		// The listener counts the overrun when it reads again.
		lab.Eventually(t, 10*time.Second, c.daemon()+"'s listener overruns", func() error {
			got := c.listenerOverruns(t)
			if got == before {
				return fmt.Errorf("no overrun counted (%d before the burst)", before)
			}
			c.overruns += got - before
			return nil
		})
	}}
}

// churnOnly is a step of source changes alone.
func (c *chaosLab) churnOnly() fault {
	announce, withdraw := c.drawChange(1)
	return fault{kind: "source change", what: fmt.Sprintf("the source announces %d and withdraws %d", len(announce), len(withdraw)), do: func(t *testing.T) {
		c.sourceChange(t, announce, withdraw)
	}}
}

// drawChange draws, with probability prob, a change of the source's
// prefixes: some of those it announces to withdraw, some others to
// announce. The bookkeeping changes at once.
func (c *chaosLab) drawChange(prob float64) (announce, withdraw []netip.Prefix) {
	if c.rng.Float64() >= prob {
		return nil, nil
	}
	var in, out []netip.Prefix
	for _, p := range c.universe {
		if c.announced[p] {
			in = append(in, p)
		} else {
			out = append(out, p)
		}
	}
	withdraw = c.pick(in, c.rng.IntN(min(len(in), 40)+1))
	announce = c.pick(out, c.rng.IntN(min(len(out), 40)+1))
	for _, p := range withdraw {
		delete(c.announced, p)
	}
	for _, p := range announce {
		c.announced[p] = true
	}
	return announce, withdraw
}

// sourceChange makes the source withdraw and announce prefixes; the
// bookkeeping (announced) is the caller's.
func (c *chaosLab) sourceChange(t *testing.T, announce, withdraw []netip.Prefix) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nh := netip.MustParseAddr(churnSrcLeaf)
	if len(withdraw) > 0 {
		if err := lab.WithdrawIPv4(ctx, c.srcAPI, withdraw, nh); err != nil {
			t.Errorf("source withdraws: %v", err)
		}
	}
	if len(announce) > 0 {
		if err := lab.AnnounceIPv4(ctx, c.srcAPI, announce, nh); err != nil {
			t.Errorf("source announces: %v", err)
		}
	}
}

// simCall calls the leaf's sim, which may be busy resynchronising.
func (c *chaosLab) simCall(t *testing.T, what string, call func(context.Context, pb.SimServiceClient) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := call(ctx, c.leaf.sim()); err != nil {
		t.Fatalf("%s: sim: %s: %v", c.name, what, err)
	}
}

func (c *chaosLab) listenerOverruns(t *testing.T) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := pb.NewStatsServiceClient(c.leaf.conn).GetStats(ctx, &pb.GetStatsRequest{})
	if err != nil {
		t.Fatalf("%s: stats: %v", c.name, err)
	}
	return st.GetListener().GetOverruns()
}

// ipBatch adds or deletes routes for ps in the leaf with one `ip -batch`.
func (c *chaosLab) ipBatch(t *testing.T, verb string, ps []netip.Prefix) {
	t.Helper()
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "route %s %s via %s proto static\n", verb, p, churnSrcLeaf)
	}
	cmd := exec.Command("ip", "-n", c.leaf.ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip -batch (%d routes %s): %v\n%s", len(ps), verb, err, out)
	}
}

// pick returns n of ps drawn at random, in ps's order.
func (c *chaosLab) pick(ps []netip.Prefix, n int) []netip.Prefix {
	if n >= len(ps) {
		return slices.Clone(ps)
	}
	idx := c.rng.Perm(len(ps))[:n]
	slices.Sort(idx)
	out := make([]netip.Prefix, n)
	for i, j := range idx {
		out[i] = ps[j]
	}
	return out
}

// duration draws a duration from lo to hi milliseconds.
func (c *chaosLab) duration(lo, hi int) time.Duration {
	return time.Duration(lo+c.rng.IntN(hi-lo+1)) * time.Millisecond
}
