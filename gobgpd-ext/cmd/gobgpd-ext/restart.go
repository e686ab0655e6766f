package main

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/osrg/gobgp/v3/pkg/config"
	"github.com/osrg/gobgp/v3/pkg/config/oc"

	fgd "github.com/fibgate/fibgate/gobgpd-ext/internal/daemon"
	"github.com/fibgate/fibgate/gobgpd-ext/internal/eorhold"
)

// barrierWait bounds how long the start waits for GoBGP to connect to the
// End-of-RIB barrier (it dials after 1 to 2 s).
const barrierWait = 10 * time.Second

// initialConfig applies gobgpd's config file as gobgpd does. After a
// graceful restart (-r) with the gate on and a neighbour with graceful
// restart, it also holds GoBGP's End-of-RIB until the table is confirmed
// in hardware (issue 14, docs/design-notes.md "Graceful restart"): the
// global settings and policies first, then the End-of-RIB barrier
// (eorhold), and the neighbours only once the barrier is up, marked
// LocalRestarting as -r marks them. Without the barrier (it failed to come
// up) GoBGP ends its sync at its neighbours' End-of-RIBs, as stock gobgpd.
func (x *ext) initialConfig(ctx context.Context) (*oc.BgpConfigSet, error) {
	if !x.opts.GracefulRestart || x.opts.NoFibgate || !restarting(x.initial) {
		return config.InitialConfig(ctx, x.bgp, x.initial, x.opts.GracefulRestart)
	}
	base := *x.initial
	base.Neighbors, base.PeerGroups, base.DynamicNeighbors = nil, nil, nil
	cur, err := config.InitialConfig(ctx, x.bgp, &base, false)
	if err != nil {
		return nil, err
	}
	timeout := x.fcfg.RestartTimeout()
	if x.hold, err = eorhold.Start(ctx, x.bgp, timeout, barrierWait, x.log); err != nil {
		x.log.Warn("graceful restart: End-of-RIB not held for the hardware; GoBGP sends it once its neighbours' are in", "err", err)
	}
	for i, n := range x.initial.Neighbors {
		if !n.GracefulRestart.Config.Enabled {
			continue
		}
		x.initial.Neighbors[i].GracefulRestart.State.LocalRestarting = true // what InitialConfig does for -r
		if d := time.Duration(n.GracefulRestart.Config.DeferralTime) * time.Second; x.hold != nil && d < timeout {
			x.log.Warn("graceful restart: the neighbour's deferral-time is shorter than graceful_restart.timeout; when it expires GoBGP sends that neighbour the table and End-of-RIB, confirmed or not",
				"neighbor", n.Config.NeighborAddress, "deferral_time", d, "timeout", timeout)
		}
	}
	return config.UpdateConfig(ctx, x.bgp, cur, x.initial)
}

// restarting says whether some neighbour of c has graceful restart, so
// that -r marks it LocalRestarting.
func restarting(c *oc.BgpConfigSet) bool {
	for _, n := range c.Neighbors {
		if n.GracefulRestart.Config.Enabled {
			return true
		}
	}
	return false
}

// holdEOR lets the End-of-RIB barrier go once the gate has the table
// confirmed in hardware, or at graceful_restart.timeout.
func (x *ext) holdEOR(ctx context.Context) {
	if x.hold == nil || x.d == nil {
		return
	}
	go func() {
		w := x.d.AwaitTable(ctx, x.hold.Is, x.hold.EndOfRib, x.fcfg.RestartTimeout())
		if ctx.Err() != nil {
			return // stopping: the barrier goes with GoBGP
		}
		fgd.LogTableWait(x.log, w)
		rctx, cancel := context.WithTimeout(ctx, barrierWait)
		defer cancel()
		start := time.Now()
		synced, err := x.hold.Release(rctx)
		if err != nil || !synced {
			x.log.Warn("graceful restart: GoBGP's sync not seen after the End-of-RIB barrier let go; it ends at the neighbours' End-of-RIB or deferral timers", "err", err)
			return
		}
		x.log.Info("graceful restart: GoBGP sent its table and End-of-RIB to its neighbours", "took", time.Since(start).Round(time.Millisecond))
	}()
}

// restartStop says whether this stop is for a restart
// (graceful_restart.restart_on_stop): GoBGP is left alone, so the process
// exit closes its sessions without a NOTIFICATION and neighbours with
// graceful restart keep its routes until it is back.
func (x *ext) restartStop() bool { return x.d != nil && x.fcfg.GracefulRestart.RestartOnStop }

// leaveAPI removes the unix sockets of --api-hosts when GoBGP is left
// running to the process exit (a stop for a restart): BgpServer.Stop,
// which would close its gRPC listeners, also ends the sessions with a
// NOTIFICATION, and a socket left behind makes the next start fail.
func (x *ext) leaveAPI() {
	for _, h := range strings.Split(x.opts.GrpcHosts, ",") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(h), "unix://"); ok {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				x.log.Warn("remove the GoBGP API socket", "socket", p, "err", err)
			}
		}
	}
}
