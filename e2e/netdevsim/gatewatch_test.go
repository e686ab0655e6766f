//go:build linux

package netdevsim

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// gateWatch follows the gate's own states over its watch API, with the
// hardware flags the gate judged each one on. It shows, without comparing
// the clocks of two processes, whether the gate ever released a prefix
// whose route it did not see trapped.
type gateWatch struct {
	mu     sync.Mutex
	states map[netip.Prefix][]gateState
}

// gateState is one state of a prefix as the watch delivered it.
type gateState struct {
	At    time.Time
	State pb.State
	Flags []string
}

func (s gateState) String() string {
	return fmt.Sprintf("%s %s %v", s.At.Format("05.000000"), stateName(s.State), s.Flags)
}

// follow follows the daemon behind conn until its stream ends (the
// daemon stops) or the test does; a restarted daemon needs another call.
func (w *gateWatch) follow(tb testing.TB, conn *grpc.ClientConn) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := pb.NewRouteServiceClient(conn).WatchRoutes(ctx, &pb.WatchRoutesRequest{})
	if err != nil {
		cancel()
		tb.Fatalf("watch the gate: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			resp, err := st.Recv()
			at := time.Now()
			if err != nil {
				return
			}
			w.mu.Lock()
			for _, r := range resp.GetRoutes() {
				p, err := netip.ParsePrefix(r.GetPrefix())
				if err != nil || r.GetTable() != 254 {
					continue
				}
				var flags []string
				if r.GetFlags().GetTrap() {
					flags = append(flags, "trap")
				}
				if r.GetFlags().GetOffloadFailed() {
					flags = append(flags, "offload_failed")
				}
				w.states[p] = append(w.states[p], gateState{At: at, State: r.GetState(), Flags: flags})
			}
			w.mu.Unlock()
		}
	}()
	tb.Cleanup(func() { cancel(); <-done })
}

// of returns p's states, oldest first.
func (w *gateWatch) of(p netip.Prefix) []gateState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.states[p])
}

// releasedUntrapped returns p's released states without trap.
func (w *gateWatch) releasedUntrapped(p netip.Prefix) []gateState {
	var bad []gateState
	for _, s := range w.of(p) {
		if s.State == pb.State_STATE_RELEASED && !slices.Contains(s.Flags, "trap") {
			bad = append(bad, s)
		}
	}
	return bad
}
