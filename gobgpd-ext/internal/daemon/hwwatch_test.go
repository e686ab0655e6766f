package daemon

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/syncbuf"
	"github.com/fibgate/fibgate/plugin/gate"
)

// quietGate is a gate whose pending count and hardware flags a test sets
// (the real tracker and a silent driver: TestServeWarnsWhenNoDriverFlagsARoute
// in cmd/fibgate).
type quietGate struct {
	pending atomic.Int64
	seen    atomic.Bool
}

func (g *quietGate) HardwareSeen() bool { return g.seen.Load() }
func (g *quietGate) Stats() gate.TrackerStats {
	return gate.TrackerStats{ByState: map[gate.State]int{gate.Pending: int(g.pending.Load())}}
}

// TestWarnUnconfirmed: the warning comes once prefixes have waited the
// whole span with no flag, names the count and what to check, and comes
// only once; a flag seen, or nothing pending, keeps it quiet.
func TestWarnUnconfirmed(t *testing.T) {
	const after = 200 * time.Millisecond
	run := func(g *quietGate, ctx context.Context) (string, time.Duration) {
		var out syncbuf.Buffer
		start := time.Now()
		warnUnconfirmed(ctx, g, after, "kernel", slog.New(slog.NewTextHandler(&out, nil)))
		return out.String(), time.Since(start)
	}

	g := &quietGate{}
	g.pending.Store(3)
	out, took := run(g, context.Background())
	if strings.Count(out, "level=WARN") != 1 || !strings.Contains(out, "pending=3") || !strings.Contains(out, "switchdev driver") {
		t.Errorf("want one warning naming 3 pending prefixes and the driver:\n%s", out)
	}
	if took < after {
		t.Errorf("warned after %v, before the %v", took, after)
	}

	// A flag seen: it ends without a word.
	g = &quietGate{}
	g.pending.Store(3)
	g.seen.Store(true)
	if out, _ := run(g, context.Background()); out != "" {
		t.Errorf("warned with a flag seen:\n%s", out)
	}

	// Nothing pending: quiet until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 3*after)
	defer cancel()
	if out, _ := run(&quietGate{}, ctx); out != "" {
		t.Errorf("warned with nothing pending:\n%s", out)
	}
}
