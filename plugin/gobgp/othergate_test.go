package gobgp

import (
	"context"
	"errors"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/fibgate/fibgate/internal/lab"
)

// TestASecondGateWaitsForTheFirst: a second Speaker on a GoBGP that a
// running one gates (its heartbeat replaced each second) refuses to
// bootstrap (ErrAnotherGate) and changes nothing there; once the first has
// stopped it bootstraps. A heartbeat left by a gate that was killed (never
// replaced) does not stop it.
func TestASecondGateWaitsForTheFirst(t *testing.T) {
	x := newLoopLab(t)
	ctx := context.Background()
	first := x.speaker(t, WithWatchHook(func(WatchBeat) {}))
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() { watched <- first.WatchBest(wctx, func(bool, []BestPath) {}) }()
	// Until its first heartbeat is in GoBGP.
	lab.Eventually(t, 10*time.Second, "the first gate's heartbeat in GoBGP", func() error {
		if _, ok, err := first.heartbeatAge(ctx); err != nil || ok {
			return err
		}
		return errors.New("none yet")
	})

	second, err := NewInProcess(x.leaf, Config{}, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close(ctx)
	if err := second.Bootstrap(ctx); !errors.Is(err, ErrAnotherGate) {
		t.Fatalf("Bootstrap beside a running gate: %v, want ErrAnotherGate", err)
	}

	// The first stops: its heartbeat goes with its watch.
	stopWatch()
	<-watched
	if err := second.Bootstrap(ctx); err != nil {
		t.Fatalf("Bootstrap after the first stopped: %v", err)
	}

	// A heartbeat left behind, as by a gate killed with SIGKILL: still.
	p, err := second.pb.beatPath(7, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.leaf.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p}); err != nil {
		t.Fatal(err)
	}
	third, err := NewInProcess(x.leaf, Config{}, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close(ctx)
	if err := third.Bootstrap(ctx); err != nil {
		t.Fatalf("Bootstrap beside a heartbeat left behind: %v", err)
	}
}
