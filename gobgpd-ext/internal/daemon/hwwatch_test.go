package daemon

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/syncbuf"
	"github.com/fibgate/fibgate/plugin/fib"
)

// quietGate is a gate whose pending counts and hardware flags a test sets
// per family, IPv4 at index 0 (the real tracker and a silent driver:
// TestServeWarnsWhenNoDriverFlagsARoute and
// TestServeWarnsOfAFamilyTheDriverNeverFlags in cmd/fibgate).
type quietGate struct {
	pending      [2]atomic.Int64
	seen, marked [2]atomic.Bool
}

func (g *quietGate) HardwareSeenIn(f fib.Family) bool     { return g.seen[f.Index()].Load() }
func (g *quietGate) NexthopMarksSeenIn(f fib.Family) bool { return g.marked[f.Index()].Load() }
func (g *quietGate) PendingIn(f fib.Family) int           { return int(g.pending[f.Index()].Load()) }

// TestWarnUnconfirmed: the warning comes once a family's prefixes have
// waited the whole span with none of its routes flagged, names the family,
// the count and what to check, and comes once; when the other family's
// routes are flagged it says the driver offloads that family only. A flag
// seen, or nothing pending, keeps it quiet.
func TestWarnUnconfirmed(t *testing.T) {
	const after = 200 * time.Millisecond
	both := []fib.Family{fib.IPv4, fib.IPv6}
	// run watches g until every family is done or 5 spans have passed.
	run := func(g *quietGate) (string, time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*after)
		defer cancel()
		var out syncbuf.Buffer
		start := time.Now()
		warnUnconfirmed(ctx, g, both, after, "kernel", slog.New(slog.NewTextHandler(&out, nil)))
		return out.String(), time.Since(start)
	}

	g := &quietGate{}
	g.pending[0].Store(3)
	out, took := run(g)
	if strings.Count(out, "level=WARN") != 1 || !strings.Contains(out, "pending=3") || !strings.Contains(out, "family=ipv4") ||
		!strings.Contains(out, "switchdev driver") {
		t.Errorf("want one warning naming 3 pending IPv4 prefixes and the driver:\n%s", out)
	}
	if took < after {
		t.Errorf("warned after %v, before the %v", took, after)
	}

	// IPv4 flagged, IPv6 never: the driver offloads one family.
	g = &quietGate{}
	g.pending[0].Store(5)
	g.pending[1].Store(2)
	g.seen[0].Store(true)
	out, _ = run(g)
	if strings.Count(out, "level=WARN") != 1 || !strings.Contains(out, "family=ipv6") || !strings.Contains(out, "pending=2") ||
		!strings.Contains(out, "while ipv4 routes have") || !strings.Contains(out, "level fib") {
		t.Errorf("want one warning that IPv6 is never flagged while IPv4 is:\n%s", out)
	}

	// IPv4 next hops marked, no route flagged (rocker): the warning says
	// the marks confirm nothing, not that a driver is missing.
	g = &quietGate{}
	g.pending[0].Store(4)
	g.marked[0].Store(true)
	if out, _ := run(g); strings.Count(out, "level=WARN") != 1 || !strings.Contains(out, "family=ipv4") ||
		!strings.Contains(out, "marks next hops and not routes") || !strings.Contains(out, "gate ipv4 at level fib") ||
		strings.Contains(out, "is there a switchdev driver") {
		t.Errorf("want one warning that IPv4 next hops are marked and routes never flagged:\n%s", out)
	}

	// Neither flagged: one warning for both.
	g = &quietGate{}
	g.pending[0].Store(1)
	g.pending[1].Store(1)
	if out, _ := run(g); strings.Count(out, "level=WARN") != 1 || !strings.Contains(out, "family=ipv4,ipv6") || !strings.Contains(out, "pending=2") ||
		strings.Contains(out, "while") {
		t.Errorf("want one warning for both families, neither said to be flagged:\n%s", out)
	}

	// Flags seen: it ends without a word.
	g = &quietGate{}
	g.pending[0].Store(3)
	g.seen[0].Store(true)
	g.seen[1].Store(true)
	if out, took := run(g); out != "" || took >= 5*after {
		t.Errorf("warned with flags seen, or did not end (%v):\n%s", took, out)
	}

	// Nothing pending: quiet until ctx ends.
	if out, _ := run(&quietGate{}); out != "" {
		t.Errorf("warned with nothing pending:\n%s", out)
	}
}
