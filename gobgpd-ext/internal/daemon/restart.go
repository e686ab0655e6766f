package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/gobgp"
	"github.com/fibgate/fibgate/plugin/kernel"
)

// GracefulRestart is the settings' graceful_restart: how the daemons stop
// for a restart, and how long a restart may hold things back (issue 14;
// docs/design-notes.md, "Graceful restart").
type GracefulRestart struct {
	// RestartOnStop makes SIGTERM and SIGINT a stop for a restart: the
	// daemon withdraws nothing, deletes nothing in GoBGP and leaves the
	// installed routes, so the hardware keeps forwarding. gobgpd-ext also
	// ends its BGP sessions without a NOTIFICATION, so neighbours with
	// graceful restart keep its routes for the restart time; start it
	// again with -r. Default false: a stop is for good.
	RestartOnStop bool `yaml:"restart_on_stop"`
	// Timeout bounds what a restart holds back: how long gobgpd-ext
	// started with -r holds its End-of-RIB for the table to be confirmed
	// in hardware, and how long the FIB installer keeps the routes of the
	// previous instance that GoBGP has not learned again while GoBGP
	// restarts. Keep it below the neighbours' stale-path time (FRR: 360
	// s) and GoBGP's deferral-time (default 360 s).
	Timeout Duration `yaml:"timeout"`
}

// DefaultRestartTimeout is graceful_restart.timeout's default.
const DefaultRestartTimeout = 2 * time.Minute

func (g GracefulRestart) check() error {
	if g.Timeout < 0 {
		return fmt.Errorf("graceful_restart.timeout %s: want a positive duration (default %s)", time.Duration(g.Timeout), DefaultRestartTimeout)
	}
	return nil
}

// RestartTimeout is graceful_restart.timeout, its default when unset.
func (c Config) RestartTimeout() time.Duration {
	if c.GracefulRestart.Timeout <= 0 {
		return DefaultRestartTimeout
	}
	return time.Duration(c.GracefulRestart.Timeout)
}

// restartStop says whether this stop leaves BGP and the routes as they
// are for the next instance (graceful_restart.restart_on_stop).
func (d *Daemon) restartStop() bool { return d.bgp != nil && d.cfg.GracefulRestart.RestartOnStop }

// TableWait is what AwaitTable found.
type TableWait struct {
	Took time.Duration
	// TimedOut: the timeout ended the wait, not the table.
	TimedOut bool
	// Learned counts the prefixes in a gated scope that GoBGP held a
	// learned path for at the last look.
	Learned int
	// Waiting counts the prefixes not decided at the end, Examples names
	// a few; AwaitingEOR lists the neighbours whose End-of-RIB was still
	// owed.
	Waiting     int
	Examples    []netip.Prefix
	AwaitingEOR []string
}

// awaitPoll is how often AwaitTable looks again.
const awaitPoll = 100 * time.Millisecond

// AwaitTable waits after a graceful restart until the table is whole and
// confirmed in hardware, or timeout passes, or ctx ends:
//  1. GoBGP's table is whole: a neighbour (skip aside: gobgpd-ext's
//     End-of-RIB barrier) is established and every established one with
//     graceful restart has sent its End-of-RIB (eor says which arrived,
//     gobgp.Speaker.Restart);
//  2. every prefix in a gated scope that GoBGP then holds a learned path
//     for is decided: released, failed, refused, held down or withdrawn;
//     not pending, not confirmed and still to be released, not unknown
//     (its route not installed yet); and no prefix the gate follows is
//     pending (originated ones among them).
//
// gobgpd-ext lets its End-of-RIB go when it returns (eorhold).
func (d *Daemon) AwaitTable(ctx context.Context, skip func(addr string) bool, eor gobgp.EORSeen, timeout time.Duration) TableWait {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var w TableWait
	done := func() TableWait {
		w.Took, w.TimedOut = time.Since(start), ctx.Err() != nil
		return w
	}
	tick := time.NewTicker(awaitPoll)
	defer tick.Stop()
	wait := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
			return true
		}
	}
	for {
		st, err := d.sp.Restart(ctx, skip, eor)
		w.AwaitingEOR = st.AwaitingEOR
		if err == nil && st.Established > 0 && len(st.AwaitingEOR) == 0 {
			break
		}
		if !wait() {
			return done()
		}
	}
	// The learned table is read again on every look, and the wait ends
	// only after two looks in a row found everything decided: updates
	// that arrive after the End-of-RIBs were seen (or that GoBGP had not
	// processed yet when it reported them) are waited for too.
	table := d.installTable()
	quiet := 0
	for {
		learned, err := d.sp.Learned(ctx)
		if err != nil {
			quiet = 0
			if !wait() {
				return done()
			}
			continue
		}
		pol := d.tracker.Policy()
		var todo []netip.Prefix
		inScope := 0
		for _, p := range learned {
			if _, in := pol.Match(table, p); !in {
				continue
			}
			inScope++
			if st, ok := d.tracker.Get(table, p); !ok || !decided(st.State) {
				todo = append(todo, p)
			}
		}
		w.Learned = inScope
		// Pending prefixes of any kind; a confirmed one that is neither
		// transit nor originated stays confirmed (nothing to release).
		open := d.tracker.Stats().ByState[gate.Pending]
		w.Waiting, w.Examples = len(todo), todo[:min(3, len(todo))]
		if open > len(todo) {
			w.Waiting = open
		}
		if len(todo) == 0 && open == 0 {
			if quiet++; quiet == 2 {
				return done()
			}
		} else {
			quiet = 0
		}
		if !wait() {
			return done()
		}
	}
}

// decided says whether a prefix in state s needs no more waiting for: out,
// or not going out until something changes.
func decided(s gate.State) bool {
	switch s {
	case gate.Released, gate.Failed, gate.Refused, gate.HeldDown, gate.Withdrawn:
		return true
	}
	return false
}

// installTable is the FIB installer's table, where learned prefixes are.
func (d *Daemon) installTable() uint32 {
	if t := d.cfg.Install.Table; t != 0 {
		return t
	}
	return 254
}

// LogTableWait logs AwaitTable's result: at info when the table was
// confirmed, a warning naming what was still waited for at the timeout.
func LogTableWait(log *slog.Logger, w TableWait) {
	if !w.TimedOut {
		log.Info("graceful restart: table confirmed in hardware, End-of-RIB goes out", "learned", w.Learned, "took", w.Took.Round(time.Millisecond))
		return
	}
	log.Warn("graceful restart: End-of-RIB goes out at the timeout with the table not all confirmed", "learned", w.Learned,
		"waiting", w.Waiting, "examples", w.Examples, "awaiting_eor", w.AwaitingEOR, "took", w.Took.Round(time.Millisecond))
}

// reconcileInitial is the FIB installer's reconcile of a fresh best-path
// table. While GoBGP restarts gracefully (some neighbour still
// LocalRestarting: gobgpd started with -r, its neighbours' tables not all
// in), or has no neighbour yet (a gobgpd that has just started serves its
// API before it reads its config file), the table is partial, so routes
// of the previous instance that are not in it stay, forwarding with their
// hardware flags; once GoBGP's sync is over, or after the restart timeout,
// the ones GoBGP has still not learned a path for go (sweepStale).
// Otherwise it is Reconcile. Called with f.mu held.
func (f *feeder) reconcileInitial(desired []kernel.InstallRoute, before func(changed []netip.Prefix)) (installed, removed int, err error) {
	st, rerr := f.sp.Restart(f.ctx, nil, nil)
	if rerr != nil || !partial(st) {
		return f.inst.Reconcile(desired, before)
	}
	n, kept, err := f.inst.ReconcileKeepingStale(desired, before)
	if len(kept) > 0 {
		go f.sweepStale(f.ctx, kept)
	}
	return n, 0, err
}

// partial says whether GoBGP's table is still partial after a restart:
// it restarts gracefully, or has no neighbour yet.
func partial(st gobgp.RestartState) bool { return st.Restarting || st.Neighbours == 0 }

// sweepStale waits until GoBGP's graceful restart is over (no neighbour
// LocalRestarting, some neighbour configured) or the restart timeout passes, then removes the routes
// of kept for which GoBGP holds no learned path, taking them back from BGP
// first like every change.
func (f *feeder) sweepStale(ctx context.Context, kept []netip.Prefix) {
	timeout := f.restartTimeout
	if timeout <= 0 {
		timeout = DefaultRestartTimeout
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(awaitPoll)
	defer tick.Stop()
	for {
		if st, err := f.sp.Restart(wctx, nil, nil); err == nil && !partial(st) {
			break
		}
		select {
		case <-wctx.Done():
		case <-tick.C:
			continue
		}
		break
	}
	if ctx.Err() != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	learned, err := f.sp.Learned(ctx)
	if err != nil {
		f.log.Warn("graceful restart: reading GoBGP's table failed; routes of the previous instance stay until the next reconcile", "routes", len(kept), "err", err)
		return
	}
	have := make(map[netip.Prefix]bool, len(learned))
	for _, p := range learned {
		have[p] = true
	}
	gone := slices.DeleteFunc(kept, func(p netip.Prefix) bool { return have[p] })
	if len(gone) > 0 {
		if err := f.sp.Fence(ctx, gone); err != nil {
			f.log.Warn("taking back prefixes whose routes go failed", "prefixes", len(gone), "err", err)
		}
		if err := f.inst.Remove(gone); err != nil {
			f.log.Warn("graceful restart: removing routes of the previous instance failed", "routes", len(gone), "err", err)
		}
	}
	f.log.Info("graceful restart: routes of the previous instance that GoBGP did not learn again removed", "removed", len(gone),
		"kept_relearned", len(kept)-len(gone), "waited", time.Since(start).Round(time.Millisecond), "timed_out", wctx.Err() != nil)
}
