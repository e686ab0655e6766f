package gobgp

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/gobgp/internal/reexport"
)

// TestReleaseByReExportSendsNoHoldPath: in process (NewInProcess, the
// pinned GoBGP), a release of learned paths adds and deletes no
// HOLD path and makes no set edit of its own (the held set's edit is part
// of the one GoBGP operation that re-exports), the receiver gets the
// prefixes, the feeder no withdrawal (GoBGP does not send a path back to
// its neighbour), and a take-back still withdraws them.
func TestReleaseByReExportSendsNoHoldPath(t *testing.T) {
	x := newLoopLab(t)
	sp := x.speaker(t)
	if toggleInProcess {
		t.Skip("FIBGATE_TEST_RELEASE=toggle")
	}
	if _, ok := sp.b.(reExporter); !ok {
		_, why := sp.cfg.InProcessRelease()
		t.Fatalf("the backend cannot re-export: %v", why)
	}
	hc := &holdCounter{backend: sp.b, hold: sp.cfg.hold, sent: make(map[netip.Prefix]int)}
	sp.mu.Lock()
	rc := rxCounter{holdCounter: hc, rx: rxBackend{serverBackend{x.leaf}}, calls: new(rxCalls)}
	sp.b = rc
	sp.mu.Unlock()
	ctx := context.Background()
	ps := []netip.Prefix{p1, p2}
	x.announce(t, false, ps...)
	x.learned(t, ps...)
	if err := sp.Advertise(ctx, ads(gate.Transit, ps...)); err != nil {
		t.Fatal(err)
	}
	x.received(t, ps, ps...)
	for _, p := range ps {
		if n := hc.of(p); n != 0 {
			t.Errorf("%v: %d HOLD paths sent for the release, want none", p, n)
		}
	}
	if c := rc.calls.load(); c.sets != 0 || c.merged != 1 {
		t.Errorf("the release made %d set edits of its own and %d releases with re-export, want 0 and 1", c.sets, c.merged)
	}
	if err := sp.Withdraw(ctx, ads(gate.Transit, p1)); err != nil {
		t.Fatal(err)
	}
	x.received(t, ps, p2)
}

// rxCounter is a holdCounter that re-exports, counting its set edits
// and its releases with re-export.
type rxCounter struct {
	*holdCounter
	rx    reExporter
	calls *rxCalls
}

type rxCalls struct {
	mu           sync.Mutex
	sets, merged int
}

func (c *rxCalls) load() rxCalls {
	c.mu.Lock()
	defer c.mu.Unlock()
	return rxCalls{sets: c.sets, merged: c.merged}
}

func (c *rxCalls) add(sets, merged int) {
	c.mu.Lock()
	c.sets += sets
	c.merged += merged
	c.mu.Unlock()
}

func (c rxCounter) addDefinedSet(ctx context.Context, d *api.DefinedSet) error {
	c.calls.add(1, 0)
	return c.holdCounter.addDefinedSet(ctx, d)
}

func (c rxCounter) deleteDefinedSet(ctx context.Context, d *api.DefinedSet, all bool) error {
	c.calls.add(1, 0)
	return c.holdCounter.deleteDefinedSet(ctx, d, all)
}

func (c rxCounter) releaseAndReExport(ctx context.Context, edits []reexport.Edit, ps []netip.Prefix) error {
	c.calls.add(0, 1)
	return c.rx.releaseAndReExport(ctx, edits, ps)
}
