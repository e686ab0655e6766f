package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/fibgate/fibgate/plugin/backoff"
	"github.com/fibgate/fibgate/plugin/gobgp"
	"github.com/fibgate/fibgate/plugin/kernel"
	"github.com/fibgate/fibgate/plugin/logdamp"
)

// retryEvery is how often routes the kernel refused (an unreachable next
// hop, a table full) are tried again.
const retryEvery = time.Second

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

	mu sync.Mutex // the installer is not safe for concurrent use
	// failed holds what is still to be done for routes the kernel
	// refused: next hops to install, or nil to remove.
	failed map[netip.Prefix][]netip.Addr
}

// run follows GoBGP until ctx ends; a broken watch (gobgpd restarted) is
// watched again, and its new snapshot reconciles the kernel.
func (f *feeder) run(ctx context.Context) error {
	f.ctx = ctx
	go f.retry(ctx)
	retry := backoff.Counter{Policy: gobgpdRetry}
	// gobgpd down: one line, then how long (logdamp).
	ended := logdamp.New(f.log, slog.LevelWarn, "best-path watch ended; watching again")
	for {
		start := time.Now()
		err := f.sp.WatchBest(ctx, f.apply)
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
		clear(f.failed)
		desired := make([]kernel.InstallRoute, 0, len(want))
		for p, nhs := range want {
			if len(nhs) > 0 {
				desired = append(desired, kernel.InstallRoute{Prefix: p, Nexthops: nhs})
			}
		}
		start := time.Now()
		installed, removed, err := f.inst.Reconcile(desired, func(changed []netip.Prefix) {
			// Routes a predecessor or an earlier watch left that now
			// change: held first, like every change (gobgp.Speaker.Fence).
			if err := f.sp.Fence(f.ctx, changed); err != nil {
				f.log.Warn("taking back prefixes whose routes change failed", "prefixes", len(changed), "err", err)
			}
		})
		f.note(err, want)
		f.log.Info("FIB reconciled with GoBGP's best paths", "best_paths", len(ps), "written", installed, "removed", removed, "took", time.Since(start))
		return
	}
	for p := range want {
		delete(f.failed, p)
	}
	f.write(want)
}

// write installs and removes routes (nil next hops: remove) and
// remembers the ones the kernel refused.
func (f *feeder) write(routes map[netip.Prefix][]netip.Addr) {
	var install []kernel.InstallRoute
	var remove []netip.Prefix
	for p, nhs := range routes {
		if len(nhs) == 0 {
			remove = append(remove, p)
		} else {
			install = append(install, kernel.InstallRoute{Prefix: p, Nexthops: nhs})
		}
	}
	f.note(f.inst.Remove(remove), routes)
	f.note(f.inst.Install(install), routes)
}

// note remembers the routes err says failed, with what is to be done for
// each (next hops, or nil to remove), for retry.
func (f *feeder) note(err error, want map[netip.Prefix][]netip.Addr) {
	if err == nil {
		return
	}
	failed := kernel.FailedPrefixes(err)
	for _, p := range failed {
		f.failed[p] = want[p]
	}
	f.log.Warn("kernel refused routes; retrying", "count", len(failed), "err", err)
}

func (f *feeder) retry(ctx context.Context) {
	t := time.NewTicker(retryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.mu.Lock()
		if len(f.failed) > 0 {
			todo := f.failed
			f.failed = map[netip.Prefix][]netip.Addr{}
			f.write(todo)
		}
		f.mu.Unlock()
	}
}
