package gobgp

import (
	"context"
	"net/netip"
	"testing"

	"github.com/fibgate/fibgate/plugin/gate"
)

// TestReleaseByReExportSendsNoHoldPath: in process (NewInProcess, the
// pinned GoBGP), a release of learned paths adds and deletes no
// HOLD path, the receiver gets the prefixes, the feeder no withdrawal
// (GoBGP does not send a path back to its neighbour), and a take-back
// still withdraws them.
func TestReleaseByReExportSendsNoHoldPath(t *testing.T) {
	x := newLoopLab(t)
	sp := x.speaker(t)
	if toggleInProcess {
		t.Skip("FIBGATE_TEST_RELEASE=toggle")
	}
	if _, ok := sp.b.(reExporter); !ok {
		t.Fatalf("the backend cannot re-export: %v", ReExportAvailable())
	}
	hc := &holdCounter{backend: sp.b, hold: sp.cfg.hold, sent: make(map[netip.Prefix]int)}
	sp.mu.Lock()
	sp.b = rxCounter{hc, rxBackend{serverBackend{x.leaf}}}
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
	if err := sp.Withdraw(ctx, ads(gate.Transit, p1)); err != nil {
		t.Fatal(err)
	}
	x.received(t, ps, p2)
}

// rxCounter is a holdCounter that re-exports.
type rxCounter struct {
	*holdCounter
	rx reExporter
}

func (c rxCounter) reExport(ctx context.Context, ps []netip.Prefix) error {
	return c.rx.reExport(ctx, ps)
}
