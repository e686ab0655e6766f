package daemon

import (
	"context"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// resolver is where the feeder resolves next hops that are not directly
// connected, as zebra's next-hop tracking does (fib.FIB.Resolve over the
// listener's model), and the route events that may change a resolution.
// Without it next hops are written as GoBGP has them, and the kernel
// refuses the ones it cannot reach directly.
type resolver struct {
	view   func(func(*fib.FIB))                     // kernel.Listener.View
	events func(context.Context) <-chan []fib.Event // kernel.Listener.Events
	proto  fib.Protocol                             // the installer's: BGP does not resolve over itself
}

// recursion is what the feeder wrote through resolved next hops, so a
// change of a resolving route (an IGP path, a static route) rewrites the
// prefixes behind it. Only prefixes with a next hop that is not connected
// are kept: none in an eBGP fabric, every prefix of an iBGP one. Used
// under the feeder's lock.
type recursion struct {
	bgp  map[netip.Prefix][]netip.Addr            // GoBGP's next hops of such prefixes
	deps map[netip.Addr]map[netip.Prefix]struct{} // such a next hop -> its prefixes
	res  map[netip.Addr]fib.Resolution            // such a next hop -> where it led when written
	n    atomic.Int64                             // len(deps), for the event watch without the lock
	// kept wakes the event watch when the first next hop is kept: it
	// follows the FIB only then, so a fabric without such next hops does
	// not read every route event twice.
	kept chan struct{}
}

func (r *recursion) reset() {
	r.bgp, r.deps, r.res = map[netip.Prefix][]netip.Addr{}, map[netip.Addr]map[netip.Prefix]struct{}{}, map[netip.Addr]fib.Resolution{}
	r.n.Store(0)
}

// forget drops p.
func (r *recursion) forget(p netip.Prefix) {
	nhs, ok := r.bgp[p]
	if !ok {
		return
	}
	delete(r.bgp, p)
	for _, nh := range nhs {
		if d := r.deps[nh]; d != nil {
			delete(d, p)
			if len(d) == 0 {
				delete(r.deps, nh)
				delete(r.res, nh)
			}
		}
	}
	r.n.Store(int64(len(r.deps)))
}

// track keeps p, whose next hops nhs resolved as in res.
func (r *recursion) track(p netip.Prefix, nhs []netip.Addr, res map[netip.Addr]fib.Resolution) {
	r.bgp[p] = slices.Clone(nhs)
	for _, nh := range nhs {
		if res[nh].Connected {
			continue
		}
		d := r.deps[nh]
		if d == nil {
			d = map[netip.Prefix]struct{}{}
			r.deps[nh] = d
		}
		d[p] = struct{}{}
		r.res[nh] = res[nh]
	}
	if r.n.Swap(int64(len(r.deps))) == 0 && len(r.deps) > 0 && r.kept != nil {
		select {
		case r.kept <- struct{}{}:
		default:
		}
	}
}

// resolveRoutes returns routes (prefix -> GoBGP's next hops, nil: remove)
// as the kernel is to get them (gateways): each next hop that is not
// connected replaced by the gateways it resolves to, and keeps track of
// those prefixes. When every next hop is connected and nothing is kept,
// it returns routes itself. Called with f.mu held.
func (f *feeder) resolveRoutes(routes map[netip.Prefix][]netip.Addr) map[netip.Prefix][]netip.Addr {
	if f.res == nil {
		return routes
	}
	if f.rec.bgp == nil {
		f.rec.reset()
	}
	res := map[netip.Addr]fib.Resolution{}
	connected := true
	f.res.view(func(fb *fib.FIB) {
		for _, nhs := range routes {
			for _, nh := range nhs {
				if _, ok := res[nh]; !ok {
					r := fb.Resolve(f.table, nh, f.res.proto)
					res[nh] = r
					connected = connected && r.Connected
				}
			}
		}
	})
	if connected && len(f.rec.bgp) == 0 {
		return routes
	}
	out := make(map[netip.Prefix][]netip.Addr, len(routes))
	for p, nhs := range routes {
		f.rec.forget(p)
		if len(nhs) == 0 {
			out[p] = nil
			continue
		}
		gws, recursive := gateways(nhs, res)
		out[p] = gws
		if recursive {
			f.rec.track(p, nhs, res)
		}
	}
	return out
}

// gateways is what the kernel gets for next hops nhs that resolved as in
// res: the connected ones as they are and the gateways of the resolved
// ones, sorted; the ones nothing resolves are left out while another is
// usable (zebra installs a route over the next hops it can reach), and
// all of them are written when none is, for the kernel to refuse (shown
// refused, with the hint). recursive says one of nhs is not connected.
func gateways(nhs []netip.Addr, res map[netip.Addr]fib.Resolution) (gws []netip.Addr, recursive bool) {
	for _, nh := range nhs {
		r := res[nh]
		switch {
		case r.Connected:
			gws = append(gws, nh)
		case r.Resolved():
			recursive = true
			gws = append(gws, r.Gateways...)
		default:
			recursive = true
		}
	}
	if !recursive {
		return nhs, false
	}
	if len(gws) == 0 {
		return nhs, true
	}
	slices.SortFunc(gws, netip.Addr.Compare)
	return slices.Compact(gws), true
}

// watchResolutions follows the FIB while prefixes are written through
// next hops that are not connected, until ctx ends: when a route other
// than the installer's changes in its table, it resolves those next hops
// again and rewrites the prefixes of the ones that lead elsewhere now
// (reresolve). While none is kept it reads no route event at all.
func (f *feeder) watchResolutions(ctx context.Context) {
	if f.res == nil || f.res.events == nil || f.rec.kept == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.rec.kept:
		}
		sub, cancel := context.WithCancel(ctx)
		evs := f.res.events(sub)
		f.reresolve(ctx) // what changed before the subscription
		for batch := range evs {
			if f.rec.n.Load() == 0 {
				break // nothing kept: unsubscribe until something is
			}
			if f.touchesResolution(batch) {
				f.reresolve(ctx)
			}
		}
		cancel()
		for range evs { // closed once the subscription ends
		}
	}
}

// touchesResolution says whether evs change a route a next hop may
// resolve over: one of the installer's table that is not its own.
func (f *feeder) touchesResolution(evs []fib.Event) bool {
	for _, e := range evs {
		if r := e.Route(); r != nil && r.Table == f.table && r.Protocol != f.res.proto {
			return true
		}
	}
	return false
}

// reresolve rewrites the prefixes whose next hops resolve differently
// now. A prefix with a usable next hop left is rewritten in place: the
// hardware forwards with the old entry until it has the new one, and the
// gate keeps the prefix out meanwhile as for any next-hop change
// (make-before-break). One whose next hops all became unreachable is
// taken back from BGP first (gobgp.Speaker.Fence), as zebra invalidates a
// path whose next hop it cannot resolve: its write is then refused.
func (f *feeder) reresolve(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	changed := map[netip.Prefix][]netip.Addr{}
	now := map[netip.Addr]fib.Resolution{}
	f.res.view(func(fb *fib.FIB) {
		for nh, deps := range f.rec.deps {
			r := fb.Resolve(f.table, nh, f.res.proto)
			now[nh] = r
			if was := f.rec.res[nh]; slices.Equal(r.Gateways, was.Gateways) && r.Connected == was.Connected {
				continue
			}
			for p := range deps {
				changed[p] = f.rec.bgp[p]
			}
		}
	})
	if len(changed) == 0 {
		return
	}
	var lost []netip.Prefix
	for p, nhs := range changed {
		// A next hop not in now is not tracked: connected when written.
		if !slices.ContainsFunc(nhs, func(nh netip.Addr) bool {
			r, tracked := now[nh]
			return !tracked || r.Connected || r.Resolved()
		}) {
			lost = append(lost, p)
		}
	}
	f.log.Info("next hops resolve through other routes now; rewriting the routes behind them", "prefixes", len(changed), "unreachable", len(lost))
	if len(lost) > 0 && f.sp != nil {
		slices.SortFunc(lost, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		if err := f.sp.Fence(ctx, lost); err != nil {
			f.log.Warn("taking back prefixes whose next hops became unreachable failed", "prefixes", len(lost), "err", err)
		}
	}
	f.write(changed, time.Now())
}

// resolveIn is audit.Installer.Resolve: GoBGP's next hops of a prefix as
// the feeder writes them (gateways), resolved over the model view reads.
func resolveIn(view func(func(*fib.FIB)), table uint32, proto fib.Protocol) func([]netip.Addr) []netip.Addr {
	return func(nhs []netip.Addr) []netip.Addr {
		res := map[netip.Addr]fib.Resolution{}
		view(func(fb *fib.FIB) {
			for _, nh := range nhs {
				res[nh] = fb.Resolve(table, nh, proto)
			}
		})
		gws, _ := gateways(nhs, res)
		return gws
	}
}
