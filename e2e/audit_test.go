//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/fibgate/fibgate/internal/lab"
)

// auditResult is what `fibgate audit --json` prints.
type auditResult struct {
	Time       *time.Time        `json:"time"`
	Counts     map[string]uint64 `json:"counts"`
	Mismatches []struct {
		Kind       string   `json:"kind"`
		Prefix     string   `json:"prefix"`
		Table      uint32   `json:"table"`
		Neighbours []string `json:"neighbours"`
		Detail     string   `json:"detail"`
	} `json:"mismatches"`
}

// kinds lists the result as "kind prefix" lines, sorted.
func (r auditResult) kinds() []string {
	var out []string
	for _, m := range r.Mismatches {
		out = append(out, m.Kind+" "+m.Prefix)
	}
	slices.Sort(out)
	return out
}

// runAudit runs `fibgate audit --json` against the leaf's daemon: now
// (two passes a second apart), or its periodic result with --last.
func (l *leaf) runAudit(tb testing.TB, args ...string) (auditResult, int) {
	tb.Helper()
	cmd := exec.Command(filepath.Join(binaries(tb), "fibgate"), append([]string{"audit", "--json", "--socket", l.api}, args...)...)
	out, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		tb.Fatalf("fibgate audit: %v", err)
	}
	var r auditResult
	if code != 0 && code != 3 {
		tb.Fatalf("fibgate audit: exit %d: %s%s", code, out, err.(*exec.ExitError).Stderr)
	}
	if err := json.Unmarshal(out, &r); err != nil {
		tb.Fatalf("fibgate audit --json printed %q: %v", out, err)
	}
	return r, code
}

// auditLeaf makes every kind of disagreement by hand on one leaf, the way
// an operator or a bug could, checks that `fibgate audit`, the periodic
// audit, its log and its metric find exactly those, undoes them, and
// checks that the audit is clean again and the spine has every prefix
// back. f.other is the leaf whose transit prefix l learns from the spine.
func (f *fabric) auditLeaf(t *testing.T, l, other *leaf) {
	t.Helper()
	clean := func(what string) {
		t.Helper()
		lab.Eventually(t, 30*time.Second, l.name+": the audit finds nothing "+what, func() error {
			r, code := l.runAudit(t, "--recheck", "1s")
			if code != 0 || len(r.Mismatches) > 0 {
				return fmt.Errorf("exit %d: %v", code, r.Mismatches)
			}
			// It compared something: 4 sessions, the table; nothing is
			// unconfirmed, so no adj-out was read.
			if r.Counts["neighbours"] != 4 || r.Counts["destinations"] < 6 || r.Counts["installed_routes"] < 4 || r.Counts["gate_states"] < 4 || r.Counts["checked"] != 0 {
				return fmt.Errorf("counts %v: compared too little", r.Counts)
			}
			return nil
		})
	}
	clean("in a healthy fabric")

	spineAddr, hostAddr := netip.MustParseAddr("10.0.1.2"), netip.MustParseAddr("10.1.1.2")
	if l == f.leaf2 {
		spineAddr, hostAddr = netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("10.1.2.2")
	}
	held := heldSetV4(t, l)
	var (
		bypass   = netip.MustParsePrefix("198.51.200.0/24") // advertised by hand, no route
		stray    = netip.MustParsePrefix("203.0.200.0/24")  // a kernel route of proto bgp, no path
		rerouted = l.tran[0]                                // the installer's route rewritten
		heldBack = l.orig[0]                                // released, held again by hand
		holdOn   = other.tran[0]                            // learned via the spine, HOLD path by hand
	)
	// 1. Advertised without confirmation: released in the held set and
	// announced by hand, bypassing the gate.
	l.gobgp(t, "policy", "prefix", "add", held, bypass.String(), "0..0")
	l.gobgp(t, "global", "rib", "add", bypass.String(), "-a", "ipv4")
	f.watch.waitPresent(t, l, 10*time.Second, bypass)
	// 2. Released but held again: the held set holds it by hand.
	l.gobgp(t, "policy", "prefix", "add", held, heldBack.String(), fmt.Sprintf("%d..%d", heldBack.Bits(), heldBack.Bits()))
	// 3. The installer's route forwards elsewhere than the best path.
	l.ip(t, "route", "replace", rerouted.String(), "via", spineAddr.String(), "proto", "bgp", "metric", "20")
	// 4. and 2. A HOLD path by hand on a released prefix: it wins, so GoBGP
	// takes the prefix back from the host.
	l.gobgp(t, "global", "rib", "add", holdOn.String(), "community", "65534:4711", "local-pref", "4294967295", "-a", "ipv4")
	// 5. A route of the installer's protocol that BGP knows nothing of.
	l.ip(t, "route", "add", stray.String(), "via", spineAddr.String(), "proto", "bgp")

	want := []string{
		"advertised_unconfirmed " + bypass.String(),
		"confirmed_unadvertised " + heldBack.String(),
		"confirmed_unadvertised " + holdOn.String(),
		"hold_left " + holdOn.String(),
		"nexthops_differ " + rerouted.String(),
		"route_without_best " + stray.String(),
	}
	slices.Sort(want)
	var r auditResult
	lab.Eventually(t, 30*time.Second, l.name+": the audit finds each injected disagreement", func() error {
		var code int
		r, code = l.runAudit(t, "--recheck", "1s")
		if got := r.kinds(); code != 3 || !slices.Equal(got, want) {
			return fmt.Errorf("exit %d, found %q, want %q", code, got, want)
		}
		return nil
	})
	for _, m := range r.Mismatches {
		switch m.Kind {
		case "advertised_unconfirmed":
			if !slices.Contains(m.Neighbours, spineAddr.String()) || !slices.Contains(m.Neighbours, hostAddr.String()) {
				t.Errorf("%s: %s goes to %v, want the spine %s and the host %s", l.name, m.Prefix, m.Neighbours, spineAddr, hostAddr)
			}
		case "nexthops_differ":
			if wantDetail := fmt.Sprintf("installed via %s, GoBGP's best path is via %s", spineAddr, hostAddr); m.Detail != wantDetail {
				t.Errorf("%s: %s detail %q, want %q", l.name, m.Prefix, m.Detail, wantDetail)
			}
		}
	}
	// The periodic audit (every second in these settings) reports the
	// same, logs each once and counts them by kind.
	lab.Eventually(t, 20*time.Second, l.name+": the periodic audit reports them", func() error {
		last, _ := l.runAudit(t, "--last")
		if got := last.kinds(); !slices.Equal(got, want) {
			return fmt.Errorf("periodic audit found %q", got)
		}
		return nil
	})
	byKind := map[string]float64{"advertised_unconfirmed": 1, "confirmed_unadvertised": 2, "nexthops_differ": 1, "hold_left": 1, "route_without_best": 1}
	lab.Eventually(t, 10*time.Second, l.name+": fibgate_audit_mismatches counts them by kind", func() error {
		metrics, err := scrapeIn(l.ns, "127.0.0.1:9431")
		if err != nil {
			return err
		}
		for k, n := range byKind {
			if got := metrics[`fibgate_audit_mismatches{kind="`+k+`"}`]; got != n {
				return fmt.Errorf("fibgate_audit_mismatches{kind=%q} = %v, want %v", k, got, n)
			}
		}
		return nil
	})
	logged, err := os.ReadFile(l.proc.Log)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		kind, prefix, _ := strings.Cut(w, " ")
		if n := strings.Count(string(logged), `msg="audit: mismatch" kind=`+kind+" prefix="+prefix+" "); n != 1 {
			t.Errorf("%s logged %s %d times, want once", l.name, w, n)
		}
	}

	// Undo it all: the audit is clean again and the spine has it all.
	l.ip(t, "route", "del", stray.String(), "proto", "bgp")
	l.gobgp(t, "global", "rib", "del", holdOn.String(), "-a", "ipv4")
	l.ip(t, "route", "replace", rerouted.String(), "via", hostAddr.String(), "proto", "bgp", "metric", "20")
	l.gobgp(t, "policy", "prefix", "del", held, heldBack.String(), fmt.Sprintf("%d..%d", heldBack.Bits(), heldBack.Bits()))
	l.gobgp(t, "global", "rib", "del", bypass.String(), "-a", "ipv4")
	l.gobgp(t, "policy", "prefix", "del", held, bypass.String(), "0..0")
	f.watch.waitAbsent(t, l.as, 10*time.Second, bypass)
	f.watch.waitPresent(t, l, 10*time.Second, append(slices.Clone(l.orig), l.tran...)...)
	clean("once the hand edits are undone")
	lab.Eventually(t, 20*time.Second, l.name+": the periodic audit is clean again", func() error {
		if last, _ := l.runAudit(t, "--last"); len(last.Mismatches) > 0 {
			return fmt.Errorf("periodic audit still has %q", last.kinds())
		}
		metrics, err := scrapeIn(l.ns, "127.0.0.1:9431")
		if err != nil {
			return err
		}
		if got, ok := metrics[`fibgate_audit_mismatches{kind="hold_left"}`]; !ok || got != 0 {
			return fmt.Errorf("fibgate_audit_mismatches{kind=\"hold_left\"} = %v (exported: %v)", got, ok)
		}
		return nil
	})
}

// heldSetV4 finds the name of the gate's IPv4 held set in the leaf's
// GoBGP: fibgate-held-v4-HASH, or the fallback's IPv4 set, which the gate
// takes over when the settings name a fallback policy.
func heldSetV4(tb testing.TB, l *leaf) string {
	tb.Helper()
	for _, f := range strings.Fields(l.gobgp(tb, "policy", "prefix")) {
		if isHeldSet(f) && strings.Contains(f, "-v4") {
			return f
		}
	}
	tb.Fatalf("%s: no held set in gobgp policy prefix:\n%s", l.name, l.gobgp(tb, "policy", "prefix"))
	return ""
}

// isHeldSet says whether a GoBGP prefix set is one of the gate's held
// sets: fibgate-held-v{4,6}-HASH, or a fallback policy's fibgate-*-v{4,6},
// which the gate takes over.
func isHeldSet(name string) bool {
	return strings.HasPrefix(name, "fibgate-held-v") ||
		strings.HasPrefix(name, "fibgate-") && (strings.HasSuffix(name, "-v4") || strings.HasSuffix(name, "-v6"))
}

// waitHeld waits until no prefix of ps is released in the leaf's held
// sets. Each of ps must be a route below a scope prefix, not one itself:
// such a prefix is stored in its family's held set exactly while released
// (docs/design-notes.md, "The gate only rejects").
func (l *leaf) waitHeld(t *testing.T, ps []netip.Prefix) {
	t.Helper()
	want := map[netip.Prefix]bool{}
	for _, p := range ps {
		want[p] = true
	}
	lab.Eventually(t, 30*time.Second, l.name+": every prefix held in GoBGP's held sets", func() error {
		released := map[netip.Prefix]bool{} // in either set, when a fallback policy's are there too
		held := false                       // the rows are the gate's held set's
		for _, line := range strings.Split(l.gobgp(t, "policy", "prefix"), "\n") {
			f := strings.Fields(line)
			if len(f) == 3 { // a set's first row: NAME PREFIX MASK_RANGE
				held = isHeldSet(f[0])
				f = f[1:]
			}
			if len(f) == 0 || !held {
				continue
			}
			if p, err := netip.ParsePrefix(f[0]); err == nil && want[p] {
				released[p] = true
			}
		}
		for p := range released {
			return fmt.Errorf("%d still released, e.g. %v", len(released), p)
		}
		return nil
	})
}

// scrapeIn reads the Prometheus metrics at addr inside a network
// namespace: the socket is opened by a thread that joins the namespace and
// then goes back. The thread must not die there (the usual way to leave a
// foreign namespace behind): the daemons run with a parent-death signal,
// which the kernel sends when the thread that started them exits. It
// returns "name{labels}" to value.
func scrapeIn(ns, addr string) (map[string]float64, error) {
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			runtime.LockOSThread()
			home, err := netns.Get()
			if err != nil {
				runtime.UnlockOSThread()
				ch <- res{nil, fmt.Errorf("read this thread's netns: %w", err)}
				return
			}
			defer home.Close()
			h, err := netns.GetFromName(ns)
			if err == nil {
				defer h.Close()
				err = netns.Set(h)
			}
			if err != nil {
				runtime.UnlockOSThread()
				ch <- res{nil, fmt.Errorf("enter netns %s: %w", ns, err)}
				return
			}
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			back := netns.Set(home) == nil
			ch <- res{c, err}
			if !back {
				select {} // never let this thread run anything else, nor exit
			}
			runtime.UnlockOSThread() // back home: the thread may run anything again
		}()
		r := <-ch
		return r.c, r.err
	}
	client := &http.Client{Transport: &http.Transport{DialContext: dial}, Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape %s in %s: %w", addr, ns, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scrape %s in %s: %w", addr, ns, err)
	}
	return out, nil
}
