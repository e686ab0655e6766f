//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/lab"
)

// allAt says whether the observer's best paths hold every prefix of ps.
func allAt(watch *lab.BestWatch, ps []netip.Prefix) func() error {
	return func() error {
		for _, p := range ps {
			if !watch.Has(p) {
				return fmt.Errorf("%v not at the observer", p)
			}
		}
		return nil
	}
}

// noneAt is allAt's opposite: no prefix of ps at the observer.
func noneAt(watch *lab.BestWatch, ps []netip.Prefix) func() error {
	return func() error {
		for _, p := range ps {
			if watch.Has(p) {
				return fmt.Errorf("%v still at the observer", p)
			}
		}
		return nil
	}
}

// bgpRoutesByPrefix is the leaf's proto bgp routes, each `ip route` line
// by its prefix.
func (l *leaf) bgpRoutesByPrefix(tb testing.TB) map[netip.Prefix]string {
	tb.Helper()
	routes := map[netip.Prefix]string{}
	for _, line := range l.kernelBGPRoutes(tb) {
		if f := strings.Fields(line); len(f) > 0 {
			if p, err := netip.ParsePrefix(f[0]); err == nil {
				routes[p] = line
			}
		}
	}
	return routes
}

// notBeforeHardware fails the test for each prefix of ps the observer had
// (first sighting since start) before the leaf's simulated hardware did,
// by the kernel's own account watched from outside the daemons: the
// route in the main table and the sim's mirror table (what it forwards
// with) with the same next hop. The two records are stamped by two
// goroutines of the test, so an arrival may be stamped up to chaosSlack
// before the entry it followed; the tests that call it give the sim a
// latency far above that, so a release before programming still shows.
func notBeforeHardware(t *testing.T, kroutes *lab.RouteWatch, watch *lab.BestWatch, start time.Time, ps []netip.Prefix) {
	t.Helper()
	hw := hardwareSpans(kroutes.Events(), 254, mirrorTable)
	first := map[netip.Prefix]time.Time{}
	for _, s := range watch.Since(start) {
		if _, seen := first[s.P]; s.Present && !seen {
			first[s.P] = s.At
		}
	}
	for _, p := range ps {
		switch spans := hw[p]; {
		case len(spans) == 0:
			t.Errorf("%v at the observer, never in the leaf's hardware", p)
		case first[p].Before(spans[0].from.Add(-chaosSlack)):
			t.Errorf("%v at the observer at %s, before the leaf's hardware had it at %s", p, clock(first[p]), clock(spans[0].from))
		}
	}
	if err := kroutes.Err(); err != nil {
		t.Fatal(err)
	}
}

// auditClean fails the test unless `fibgate audit` finds nothing amiss.
func (l *leaf) auditClean(t *testing.T, when string) {
	t.Helper()
	if r, code := l.runAudit(t); code != 0 || len(r.Mismatches) > 0 {
		t.Errorf("fibgate audit %s: exit %d, mismatches %v", when, code, r.kinds())
	}
}
