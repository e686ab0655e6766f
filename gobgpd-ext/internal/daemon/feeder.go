package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fibgate/fibgate/plugin/backoff"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/gobgp"
	"github.com/fibgate/fibgate/plugin/kernel"
	"github.com/fibgate/fibgate/plugin/logdamp"
)

// refusedRetry is how route writes the kernel refused (a driver's veto, a
// table full, an unreachable next hop) are made again: from 1 s, doubling
// to 5 min, with jitter, since a full table refuses thousands at once and
// they must not all come back at once, every time.
var refusedRetry = backoff.Policy{Initial: time.Second, Max: 5 * time.Minute}

// gobgpdRetry is how the daemon waits for gobgpd while it cannot reach it
// (not up yet, restarting): before bootstrapping the gate again and before
// watching the best paths again. From 100 ms to 5 s, so a restart of
// gobgpd is followed within seconds and a long outage costs little.
var gobgpdRetry = backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// feeder writes GoBGP's learned best paths into the kernel: the FIB
// installer's input. The hardware picks the routes up from there, the gate
// sees their flags and releases the prefixes in GoBGP.
type feeder struct {
	sp   *gobgp.Speaker
	inst *kernel.Installer
	log  *slog.Logger

	ctx context.Context // run's: bounds calls made from the watch callback
	// restartTimeout bounds how long routes of a previous instance stay
	// while GoBGP restarts gracefully (restart.go).
	restartTimeout time.Duration

	// gate shows the refused routes (a *gate.Tracker; nil: nobody);
	// table is the installer's.
	gate  refusalSink
	table uint32

	mu sync.Mutex // the installer is not safe for concurrent use
	// failed holds the route writes the kernel refused, with what is
	// still to be done and when to try again.
	failed map[netip.Prefix]*refusedWrite
	wake   chan struct{} // the retry loop looks again
	// refused says how many writes are refused and since when (logdamp:
	// one line, then summaries at growing intervals).
	refused *logdamp.Line

	// res resolves next hops that are not directly connected (nil: they
	// are written as they are); rec is what was written through them
	// (resolve.go).
	res *resolver
	rec recursion
}

// refusalSink is what the feeder tells the gate about refused writes (a
// *gate.Tracker): refused routes show as refused until they are installed
// or no longer wanted.
type refusalSink interface {
	Refused(rs []gate.Refusal)
	Installed(table uint32, ps []netip.Prefix)
	Abandoned(table uint32, ps []netip.Prefix)
}

// refusedWrite is one route write the kernel refused: what is still to be
// done (next hops to install, or nil to remove), why it was refused, since
// when, how often, and when to try again.
type refusedWrite struct {
	nhs      []netip.Addr
	err      error
	since    time.Time
	attempts int
	next     time.Time
}

func newFeeder(sp *gobgp.Speaker, inst *kernel.Installer, table uint32, g refusalSink, log *slog.Logger) *feeder {
	f := &feeder{sp: sp, inst: inst, table: table, gate: g, log: log, failed: map[netip.Prefix]*refusedWrite{},
		wake: make(chan struct{}, 1), refused: logdamp.New(log, slog.LevelWarn, "kernel refused routes; writing them again with back-off")}
	f.rec.kept = make(chan struct{}, 1)
	return f
}

// run follows GoBGP until ctx ends; a broken watch (gobgpd restarted) is
// watched again, and its new snapshot reconciles the kernel.
func (f *feeder) run(ctx context.Context) error {
	f.ctx = ctx
	go f.retry(ctx)
	go f.watchResolutions(ctx)
	return watchBest(ctx, f.sp, f.apply, f.log)
}

// watchBest runs sp.WatchBest with fn until ctx ends, watching again
// after gobgpd ended the watch (it restarted), with back-off.
func watchBest(ctx context.Context, sp *gobgp.Speaker, fn func(bool, []gobgp.BestPath), log *slog.Logger) error {
	retry := backoff.Counter{Policy: gobgpdRetry}
	// gobgpd down: one line, then how long (logdamp).
	ended := logdamp.New(log, slog.LevelWarn, "best-path watch ended; watching again")
	for {
		start := time.Now()
		err := sp.WatchBest(ctx, fn)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > 10*time.Second {
			// The watch ran: whatever ends it now is news.
			retry.Reset()
			ended.OK()
		}
		wait := retry.Next()
		ended.Fail(err, "in", wait.Round(time.Millisecond))
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
}

func (f *feeder) apply(initial bool, ps []gobgp.BestPath) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// The last word per prefix (nil: remove): a table read in batches, or
	// one event, may carry a prefix twice.
	want := make(map[netip.Prefix][]netip.Addr, len(ps))
	for _, b := range ps {
		want[b.Prefix] = b.Nexthops
	}
	if initial {
		// A fresh table: what was written through resolved next hops is
		// resolved again, all of it.
		f.rec.reset()
		desired := make([]kernel.InstallRoute, 0, len(want))
		for p, nhs := range f.resolveRoutes(want) {
			if len(nhs) > 0 {
				desired = append(desired, kernel.InstallRoute{Prefix: p, Nexthops: nhs})
			}
		}
		start := time.Now()
		installed, removed, err := f.reconcileInitial(desired, func(changed []netip.Prefix) {
			// Routes a predecessor or an earlier watch left that now
			// change: held first, like every change (gobgp.Speaker.Fence).
			if err := f.sp.Fence(f.ctx, changed); err != nil {
				f.log.Warn("taking back prefixes whose routes change failed", "prefixes", len(changed), "err", err)
			}
		})
		// A fresh table: what was refused before is refused again (err
		// says so), in the kernel now, or not wanted any more.
		attempted := make(map[netip.Prefix][]netip.Addr, len(f.failed))
		for p := range f.failed {
			attempted[p] = want[p]
		}
		for _, re := range kernel.RouteErrors(err) {
			attempted[re.Prefix] = want[re.Prefix]
		}
		f.settle(attempted, err, time.Now())
		f.log.Info("FIB reconciled with GoBGP's best paths", "best_paths", len(ps), "written", installed, "removed", removed, "took", time.Since(start))
		return
	}
	f.write(want, time.Now())
}

// write installs and removes routes (nil next hops: remove) and settles
// what the kernel refused and what it took.
func (f *feeder) write(routes map[netip.Prefix][]netip.Addr, now time.Time) {
	resolved := f.resolveRoutes(routes)
	// Sized for the common case, all installs: grown, the slice was a
	// sixtieth of all gobgpd-ext allocated while a table went in.
	install := make([]kernel.InstallRoute, 0, len(resolved))
	var remove []netip.Prefix
	for p, nhs := range resolved {
		if len(nhs) == 0 {
			remove = append(remove, p)
		} else {
			install = append(install, kernel.InstallRoute{Prefix: p, Nexthops: nhs})
		}
	}
	f.settle(routes, errors.Join(f.inst.Remove(remove), f.inst.Install(install)), now)
}

// settle records the outcome of writing routes (prefix -> next hops, nil:
// removed): the refused ones (err's RouteErrors) are kept to be written
// again with back-off and shown refused; a refused one that now went
// through is shown installed, or abandoned when it was a removal. Called
// with f.mu held.
func (f *feeder) settle(routes map[netip.Prefix][]netip.Addr, err error, now time.Time) {
	why := map[netip.Prefix]error{}
	for _, re := range kernel.RouteErrors(err) {
		why[re.Prefix] = re.Err
	}
	var refused []gate.Refusal
	var installed, abandoned []netip.Prefix
	for p, nhs := range routes {
		rw := f.failed[p]
		e, bad := why[p]
		if !bad {
			if rw != nil {
				delete(f.failed, p)
				if len(nhs) > 0 {
					installed = append(installed, p)
				} else if len(rw.nhs) > 0 {
					abandoned = append(abandoned, p)
				}
			}
			continue
		}
		if rw == nil {
			rw = &refusedWrite{since: now}
			f.failed[p] = rw
		} else if len(rw.nhs) > 0 && len(nhs) == 0 {
			abandoned = append(abandoned, p) // its removal is refused now
		}
		rw.nhs, rw.err = nhs, e
		rw.next = now.Add(refusedRetry.Delay(rw.attempts))
		rw.attempts++
		if len(nhs) > 0 {
			refused = append(refused, gate.Refusal{Table: f.table, Prefix: p, Err: kernelError(e),
				Attempts: rw.attempts, NextRetry: rw.next})
		}
	}
	if f.gate != nil {
		f.gate.Refused(refused)
		if len(installed) > 0 {
			f.gate.Installed(f.table, installed)
		}
		if len(abandoned) > 0 {
			f.gate.Abandoned(f.table, abandoned)
		}
	}
	f.logRefused()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// kernelError is the part of a refusal people need: the kernel's errno and
// message, without the installer's "install PREFIX via ..." in front, and
// what to do when the kernel refused the next hop itself.
func kernelError(err error) string {
	var ae *kernel.AckError
	var errno syscall.Errno
	var s string
	switch {
	case errors.As(err, &ae):
		s = ae.Error()
	case errors.As(err, &errno):
		s = errno.Error()
	default:
		return err.Error()
	}
	if unconnected(err, s) {
		s += unconnectedHint
	}
	return s
}

// unconnectedHint follows a refusal of a next hop the kernel cannot reach
// directly. The feeder writes a connected next hop as the gateway and
// resolves one behind another route (static, an IGP) to that route's
// gateways (resolve.go), as zebra does; what is left is a next hop no
// such route leads to: its link is down, the route to it is missing, or
// only the default route or one of BGP's own covers it, which zebra does
// not resolve over either.
const unconnectedHint = " (the next hop is on no connected network and no route resolves it: its link is down, or the route to it is missing; next hops resolve through static and IGP routes, not through BGP's own routes or the default route)"

// unconnected says whether the kernel refused a route for its gateway: IPv4
// answers "Nexthop has invalid gateway" with ENETUNREACH (EINVAL in older
// kernels), IPv6 EHOSTUNREACH.
func unconnected(err error, text string) bool {
	return errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, syscall.EINVAL) && strings.Contains(text, "invalid gateway")
}

// logRefused says how many writes are refused and since when: one line,
// then summaries at growing intervals while it lasts (not the whole list
// every second), and a line when none is left. Called with f.mu held.
func (f *feeder) logRefused() {
	if len(f.failed) == 0 {
		if f.refused.OK() {
			f.log.Info("refused routes written: the kernel took them (or they are not wanted any more)")
		}
		return
	}
	var oldest time.Time
	var first netip.Prefix
	var cause error
	for p, rw := range f.failed {
		if oldest.IsZero() || rw.since.Before(oldest) || rw.since.Equal(oldest) && p.Addr().Less(first.Addr()) {
			oldest, first, cause = rw.since, p, rw.err
		}
	}
	f.refused.Ongoing(errors.New(kernelError(cause)), "refused", len(f.failed), "since", oldest.UTC().Format(time.RFC3339),
		"oldest", first.String())
}

// retry writes refused routes again when their back-off is over, until
// ctx ends.
func (f *feeder) retry(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		f.mu.Lock()
		now := time.Now()
		todo := map[netip.Prefix][]netip.Addr{}
		next := now.Add(time.Hour)
		for p, rw := range f.failed {
			if !now.Before(rw.next) {
				todo[p] = rw.nhs
			} else if rw.next.Before(next) {
				next = rw.next
			}
		}
		if len(todo) > 0 {
			f.write(todo, now)
			f.mu.Unlock()
			continue // write may have scheduled sooner ones
		}
		f.mu.Unlock()
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-timer.C:
		}
	}
}

// retryNow writes refused routes again at once: every one, or prefix's
// when it is valid. It returns how many it wrote and the ones the kernel
// refused again.
func (f *feeder) retryNow(prefix netip.Prefix) (int, []error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	todo := map[netip.Prefix][]netip.Addr{}
	for p, rw := range f.failed {
		if !prefix.IsValid() || p == prefix.Masked() {
			todo[p] = rw.nhs
		}
	}
	if len(todo) == 0 {
		return 0, nil
	}
	f.write(todo, time.Now())
	var errs []error
	for p := range todo {
		if rw := f.failed[p]; rw != nil {
			errs = append(errs, fmt.Errorf("%s: refused again: %s", p, kernelError(rw.err)))
		}
	}
	return len(todo), errs
}

// rewrite writes some of the installer's routes again for the gate's
// retries (gate.Rewriter), under the feeder's lock so that a rewrite never
// crosses one of its own writes. A route deleted and not added back (the
// kernel refused it meanwhile) becomes a refused write.
func (f *feeder) rewrite(routes []fib.Route) []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	irs := make([]kernel.InstallRoute, len(routes))
	for i, r := range routes {
		irs[i] = kernel.InstallRoute{Prefix: r.Prefix}
		for _, nh := range r.Nexthops {
			irs[i].Nexthops = append(irs[i].Nexthops, fib.ZonedHop(nh))
		}
		slices.SortFunc(irs[i].Nexthops, netip.Addr.Compare)
	}
	err := f.inst.Rewrite(irs)
	errs := make([]error, len(routes))
	gone := map[netip.Prefix][]netip.Addr{}
	var goneErrs []error
	for _, re := range kernel.RouteErrors(err) {
		for i := range routes {
			if routes[i].Prefix == re.Prefix {
				errs[i] = re.Err
				if errors.Is(re.Err, kernel.ErrNotAddedBack) {
					gone[re.Prefix] = irs[i].Nexthops
					if nhs, ok := f.rec.bgp[re.Prefix]; ok {
						gone[re.Prefix] = nhs // GoBGP's, resolved again when written
					}
					goneErrs = append(goneErrs, re)
				}
			}
		}
	}
	if len(gone) > 0 {
		f.settle(gone, errors.Join(goneErrs...), time.Now())
	}
	return errs
}
