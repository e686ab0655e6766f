//go:build linux

package scale

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/lab"
)

// TestScaleRatio is the scale benchmark's CI check: 50k IPv4 prefixes of
// the Internet table through gobgpd-ext gated at level hardware (sim, no
// latency) and through a stock gobgpd, one after the other on fresh
// labs. The gated leaf may take at most FIBGATE_SCALE_RATIO_MAX (default
// 1.5) times as long as stock gobgpd until the observer has every prefix:
// the gate must cost the time of the kernel install and the confirmation,
// not grow with the table. FIBGATE_SCALE_RATIO_N changes the size.
//
// The gated run is cut off at twice the allowed time (20 s to 60 s), so a
// slow gate fails with both times instead of hanging CI.
func TestScaleRatio(t *testing.T) {
	if testing.Short() {
		t.Skip("scale check with namespaces, BIRD and 50k prefixes: skipped in -short mode")
	}
	lab.RequireRoot(t)
	lab.RequireBird(t)
	limit := 1.5
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

	var stock, gated result
	if !t.Run("stock gobgpd", func(t *testing.T) { stock = run(t, stockMode, tab, 60*time.Second) }) {
		t.FailNow()
	}
	t.Logf("stock gobgpd:  %s (listening after %.2f s, first prefix at %.2f s)", stock.outcome(), stock.listen.Seconds(), stock.first.Seconds())
	if !stock.full {
		t.Fatalf("stock gobgpd did not pass %d prefixes: %s; the lab, not the gate, is at fault", tab.len(), stock.outcome())
	}
	bound := min(max(time.Duration(2*limit*float64(stock.elapsed)), 20*time.Second), 60*time.Second)
	if !t.Run("gobgpd-ext gated", func(t *testing.T) { gated = run(t, gatedMode, tab, bound) }) {
		t.FailNow()
	}
	t.Logf("gobgpd-ext gated: %s (listening after %.2f s, first prefix at %.2f s, %d kernel routes)", gated.outcome(), gated.listen.Seconds(), gated.first.Seconds(), gated.kernel)
	if !gated.full {
		t.Fatalf("%d IPv4 prefixes: gated gobgpd-ext %s; stock gobgpd full in %.2f s: ratio > %.2f, limit %.2f",
			tab.len(), gated.outcome(), stock.elapsed.Seconds(), bound.Seconds()/stock.elapsed.Seconds(), limit)
	}
	ratio := gated.elapsed.Seconds() / stock.elapsed.Seconds()
	t.Logf("%d IPv4 prefixes: gated %.2f s, stock %.2f s, ratio %.2f (limit %.2f)", tab.len(), gated.elapsed.Seconds(), stock.elapsed.Seconds(), ratio, limit)
	if ratio > limit {
		t.Errorf("%d IPv4 prefixes: gated gobgpd-ext took %.2f s, stock gobgpd %.2f s: ratio %.2f > limit %.2f (FIBGATE_SCALE_RATIO_MAX)",
			tab.len(), gated.elapsed.Seconds(), stock.elapsed.Seconds(), ratio, limit)
	}
}
