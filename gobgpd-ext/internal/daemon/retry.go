package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/kernel"
)

// rewriter is the gate's gate.Rewriter: it writes failed routes again so
// that their driver tries again, whatever the backend (a kernel driver, the
// sim or external agents all learn of routes from the kernel). The FIB
// installer's routes go through the feeder, under its lock, so a retry
// never crosses a write of the installer's own; the others through a
// RouteWriter of the rewriter's.
type rewriter struct {
	f  *feeder // nil without a FIB installer
	mu sync.Mutex
	w  *kernel.RouteWriter
}

func newRewriter(ns string, f *feeder, v kernel.Vetoer) (*rewriter, error) {
	var opts []kernel.WriterOption
	if v != nil {
		opts = append(opts, kernel.WithVetoer(v))
	}
	w, err := kernel.NewRouteWriter(ns, opts...)
	if err != nil {
		return nil, fmt.Errorf("route writer for retries in netns %q: %w", ns, err)
	}
	return &rewriter{f: f, w: w}, nil
}

// Rewrite implements gate.Rewriter.
func (r *rewriter) Rewrite(_ context.Context, routes []fib.Route) []error {
	errs := make([]error, len(routes))
	var mine, other []fib.Route
	var mineIdx, otherIdx []int
	for i := range routes {
		if r.f != nil && r.f.inst.Owns(&routes[i]) {
			mine, mineIdx = append(mine, routes[i]), append(mineIdx, i)
		} else {
			other, otherIdx = append(other, routes[i]), append(otherIdx, i)
		}
	}
	if len(mine) > 0 {
		for j, err := range r.f.rewrite(mine) {
			errs[mineIdx[j]] = err
		}
	}
	if len(other) > 0 {
		r.mu.Lock()
		res := r.w.Rewrite(other)
		r.mu.Unlock()
		for j, err := range res {
			errs[otherIdx[j]] = err
		}
	}
	return errs
}

func (r *rewriter) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.w.Close()
}

// vetoer is the sim when the daemon runs one: with capacity_mode refuse it
// refuses routes before they reach the kernel, as netdevsim's FIB does.
func (d *Daemon) vetoer() kernel.Vetoer {
	if d.asic == nil {
		return nil
	}
	return d.asic
}

// RetryNow implements api.Retrier (`fibgate hw retry`): failed routes are
// written again (the gate's RetryNow) and refused writes made again (the
// FIB installer's), whatever their back-off.
func (d *Daemon) RetryNow(ctx context.Context, table uint32, prefix netip.Prefix) (api.RetryResult, error) {
	var res api.RetryResult
	n, err := d.tracker.RetryNow(ctx, table, prefix)
	res.Rewritten = n
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		res.Errors = append(res.Errors, j.Unwrap()...)
	} else if err != nil && !errors.Is(err, gate.ErrNoRewriter) {
		res.Errors = append(res.Errors, err)
	}
	if d.feeder != nil && (table == 0 || table == d.feeder.table) {
		m, errs := d.feeder.retryNow(prefix)
		res.RefusedWritten = m
		res.Errors = append(res.Errors, errs...)
	}
	return res, nil
}
