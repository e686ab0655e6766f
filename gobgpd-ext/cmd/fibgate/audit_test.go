//go:build linux

package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/api/apitest"
	"github.com/fibgate/fibgate/plugin/audit"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
)

// TestAuditListsMismatchesAndExits3 runs fibgate audit against a daemon
// whose audit sees a pending route advertised to a neighbour (GoBGP's side
// is given here; e2e reads real GoBGPs): one line per mismatch, exit 3,
// the same in JSON; --last before the periodic audit has run says so.
func TestAuditListsMismatchesAndExits3(t *testing.T) {
	pending := netip.MustParsePrefix("203.0.113.0/26")
	nb := netip.MustParseAddr("192.0.2.1")
	var d *apitest.Daemon
	a, err := audit.New(audit.Sources{
		Gate: func() []gate.Brief { return d.Tracker.Briefs() },
		FIB: func(audit.Part) (f audit.FIB) {
			d.Listener.View(func(m *fib.FIB) { f = audit.ReadFIB(m, d.Tracker.Policy(), nil, nil) })
			return f
		},
		BGP: func(context.Context, audit.Ask) (*audit.BGP, error) {
			return &audit.BGP{At: time.Now(), Neighbours: []netip.Addr{nb}, Out: map[netip.Prefix][]netip.Addr{pending: {nb}},
				InScope: func(netip.Prefix) bool { return true }, Holds: func(netip.Prefix) bool { return false }}, nil
		},
	}, audit.WithInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	d = apitest.Start(t, apitest.Options{Policy: cliPolicy(), Server: []api.Option{api.WithAuditor(a)}})
	kerneltest.Batch(t, d.NS, []string{"route add " + pending.String() + " dev eth1", "route add 198.51.100.1/32 dev eth1"})
	d.WaitState(t, fib.TableMain, pending.String(), gate.Pending)

	code, out, stderr := cli(t, d, "audit", "--recheck", "10ms")
	if code != exitMismatch || stderr != "" {
		t.Fatalf("exit %d, stderr %q, want %d and nothing", code, stderr, exitMismatch)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "checked against the adj-out of 1 neighbours, 1 advertised") ||
		!strings.HasPrefix(lines[1], "advertised_unconfirmed 203.0.113.0/26 table 254 to 192.0.2.1: GoBGP advertises it, but its route is not confirmed") {
		t.Errorf("output:\n%s", out)
	}

	code, out, _ = cli(t, d, "audit", "--recheck", "10ms", "--json")
	var j auditLine
	if err := json.Unmarshal([]byte(out), &j); err != nil || code != exitMismatch {
		t.Fatalf("exit %d, %v:\n%s", code, err, out)
	}
	if len(j.Mismatches) != 1 || j.Mismatches[0].Kind != "advertised_unconfirmed" || j.Mismatches[0].Table != 254 ||
		j.Time == nil || j.Interval != "1h0m0s" || j.Counts["gated_routes"] != float64(2) {
		t.Errorf("json %+v", j)
	}

	code, out, _ = cli(t, d, "audit", "--last")
	if code != 0 || !strings.Contains(out, "has not finished two passes yet (every 1h00m)") {
		t.Errorf("--last before the periodic audit: exit %d:\n%s", code, out)
	}
	code, _, stderr = cli(t, d, "audit", "--recheck", "-1s")
	if code != exitUsage {
		t.Errorf("--recheck -1s: exit %d, want %d", code, exitUsage)
	}
	oneLine(t, stderr, "--recheck")
}

func TestAuditWithoutBGPSaysSo(t *testing.T) {
	d := apitest.Start(t, apitest.Options{Policy: cliPolicy()})
	code, _, stderr := cli(t, d, "audit")
	if code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	oneLine(t, stderr, "no BGP in this daemon")
}
