//go:build linux

package scale

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/lab"
)

// TestScaleRatio is the scale benchmark's CI check: 50k IPv4 prefixes of
// the Internet table through gobgpd-ext gated at level hardware (sim, no
// latency) and through a stock gobgpd, one after the other on fresh
// labs. The gated leaf may take at most FIBGATE_SCALE_RATIO_MAX times as
// long as stock gobgpd until the observer has every prefix: the gate must
// cost the time of the kernel install and the confirmation, not grow with
// the table. The default, 4, guards against regressions (the tracker's old
// per-batch scan made it quadratic: over 10x at 22k) with room for a
// busy CI machine; the target is 1.2, and the measured ratio is in
// docs/scale.md (1.46 at 50k by hand on 2026-12-06, 1.5 at 120k; about 4
// and 6 while a release was a HOLD toggle). A gobgpd-ext that falls back
// to the toggle is caught by TestChurn, not here.
// FIBGATE_SCALE_RATIO_N changes the size.
//
// The gated run is cut off at twice the allowed time (20 s to 45 s), so a
// slow gate fails with both times instead of hanging CI. A second round
// runs only when the first is over the limit, and each leaf counts with
// its best time: CI runs other test binaries on the same cores.
func TestScaleRatio(t *testing.T) {
	if testing.Short() {
		t.Skip("scale check with namespaces, BIRD and 50k prefixes: skipped in -short mode")
	}
	lab.RequireRoot(t)
	lab.RequireBird(t)
	limit := 4.0
	if s := os.Getenv("FIBGATE_SCALE_RATIO_MAX"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 {
			t.Fatalf("FIBGATE_SCALE_RATIO_MAX=%q: want a positive number", s)
		}
		limit = v
	}
	n := 50_000
	if s := os.Getenv("FIBGATE_SCALE_RATIO_N"); s != "" {
		v, err := parseSize(s)
		if err != nil {
			t.Fatalf("FIBGATE_SCALE_RATIO_N: %v", err)
		}
		n = v
	}
	tab, err := sample(n, false)
	if err != nil {
		t.Fatal(err)
	}
	stockMode, _ := modeByKey("gobgpd")
	gatedMode, _ := modeByKey("ext")

	// Up to two rounds, stock then gated in each: CI runs other test
	// binaries at the same time, so one slow run must not decide. Each
	// leaf counts with its best time.
	var stock, gated time.Duration
	for round := 1; round <= 2; round++ {
		var s, g result
		if !t.Run(fmt.Sprintf("stock gobgpd %d", round), func(t *testing.T) { s = run(t, stockMode, tab, 60*time.Second, profiling{}) }) {
			t.FailNow()
		}
		t.Logf("round %d, stock gobgpd: %s (listening after %.2f s, first prefix at %.2f s)", round, s.outcome(), s.listen.Seconds(), s.first.Seconds())
		if !s.full {
			t.Fatalf("stock gobgpd did not pass %d prefixes: %s; the lab, not the gate, is at fault", tab.len(), s.outcome())
		}
		if stock == 0 || s.elapsed < stock {
			stock = s.elapsed
		}
		bound := min(max(time.Duration(2*limit*float64(stock)), 20*time.Second), 45*time.Second)
		if !t.Run(fmt.Sprintf("gobgpd-ext gated %d", round), func(t *testing.T) { g = run(t, gatedMode, tab, bound, profiling{}) }) {
			t.FailNow()
		}
		t.Logf("round %d, gobgpd-ext gated: %s (listening after %.2f s, first prefix at %.2f s, %d kernel routes)", round, g.outcome(), g.listen.Seconds(), g.first.Seconds(), g.kernel)
		if !g.full {
			t.Fatalf("%d IPv4 prefixes: gated gobgpd-ext %s; stock gobgpd full in %.2f s: ratio > %.2f, limit %.2f (FIBGATE_SCALE_RATIO_MAX)",
				tab.len(), g.outcome(), stock.Seconds(), bound.Seconds()/stock.Seconds(), limit)
		}
		if gated == 0 || g.elapsed < gated {
			gated = g.elapsed
		}
		ratio := gated.Seconds() / stock.Seconds()
		t.Logf("%d IPv4 prefixes, best of %d: gated %.2f s, stock %.2f s, ratio %.2f (limit %.2f)", tab.len(), round, gated.Seconds(), stock.Seconds(), ratio, limit)
		if ratio <= limit {
			return
		}
	}
	t.Errorf("%d IPv4 prefixes: gated gobgpd-ext took %.2f s, stock gobgpd %.2f s (best of 2 each): ratio %.2f > limit %.2f (FIBGATE_SCALE_RATIO_MAX)",
		tab.len(), gated.Seconds(), stock.Seconds(), gated.Seconds()/stock.Seconds(), limit)
}
