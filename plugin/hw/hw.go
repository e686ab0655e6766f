// Package hw is where the hardware backends of the data plane meet the gate.
//
// Whatever programs the routes (a switchdev driver in the kernel, or a
// driver outside it such as the simulated ASIC in hw/sim, a SAI or P4 agent)
// reports hardware state the same way: as rtm_flags on the routes of a
// kernel FIB model, announced per the namespace's fib_notify_on_flag_change.
// The gate therefore consumes one small interface, Source, and never learns
// which backend set a flag. A *kernel.Listener is a Source as it is: with a
// kernel driver the flags come from the kernel's notifications, with a
// driver attached by kernel.WithDriver they come from that driver's
// Listener.SetFlags calls.
package hw

import (
	"context"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/kernel"
)

// Source is a stream of route events carrying hardware state. It is what
// the gate needs from a backend and nothing more: a start signal, an event
// stream that can begin with a consistent snapshot, and read access to the
// current model for decisions that need more than one route.
type Source interface {
	// Ready is closed once the model holds the first complete view, so
	// nothing is decided from a partial table.
	Ready() <-chan struct{}
	// Events streams batches of route changes until ctx ends or the source
	// stops; with snapshot set the first batch lists every route, taken
	// atomically with the subscription so no change is missed or doubled.
	Events(ctx context.Context, snapshot bool) <-chan []kernel.Event
	// View calls fn with the current model under the source's lock; fn
	// must not keep the FIB or its routes past its return.
	View(fn func(*fib.FIB))
}

// The kernel backend is the listener itself: a real switchdev driver sets
// the flags and the listener reads them from netlink.
var _ Source = (*kernel.Listener)(nil)
