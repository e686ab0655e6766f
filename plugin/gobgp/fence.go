package gobgp

import (
	"context"
	"net/netip"
	"time"

	"github.com/fibgate/fibgate/plugin/gate"
)

// Fences: why a Speaker takes prefixes back on its own.
//
// The gate releases a transit prefix once the kernel route of its best
// path is confirmed in hardware. When that best path is withdrawn or
// replaced, the installer removes or rewrites the route and the tracker
// will, in time, see the route go and withdraw the prefix. In time is the
// problem: with a backlog (a session flap of a full table) the prefix would
// stay released in GoBGP meanwhile, so a path learned again for it would be
// exported at once, before the new route reached the hardware. So the
// Speaker, which sees the best path change first (WatchBest), takes the
// prefix back itself before the route is touched: no queue sits between
// "best path changed" and "held".
//
// A fence also remembers the FIB's clock at that moment (WithFIBClock).
// The tracker may still be judging the old route, and an Advertise built
// on it would release the prefix again on a confirmation that no longer
// means anything. Advertise therefore refuses a transit prefix whose
// Version is not above its fence (gate.StaleError); the fence goes when a
// newer route is released, or when the gate reports the prefix gone at a
// later clock.

// WithFIBClock gives the Speaker the FIB model's clock (fib.FIB.Clock), read
// when it fences a prefix. Without it fences still take prefixes back, but
// cannot tell a stale confirmation from a fresh one.
func WithFIBClock(clock func() uint64) Option { return func(o *options) { o.clock = clock } }

// Fence takes back the transit releases of prefixes whose best path is
// about to change in the FIB (the installer calls it before it rewrites or
// removes their routes) and refuses releases confirmed on routes older than
// this call. Prefixes not released are only fenced. It is one round trip
// to GoBGP for the whole batch.
func (s *Speaker) Fence(ctx context.Context, prefixes []netip.Prefix) error {
	return s.fence(ctx, time.Now(), prefixes, nil, nil, nil)
}

// FenceEvent is a fence that took prefixes back (WithFenceHook). Until it
// ends, GoBGP exports a path learned again for one of them at once, so
// its length is the window a re-announcement can leak through.
type FenceEvent struct {
	// Prefixes is how many it took back or kept on copies.
	Prefixes int
	// Took runs from the change reaching the Speaker (WatchBest reading
	// GoBGP's best-path event, or the Fence call) until the prefixes are
	// held in GoBGP.
	Took time.Duration
	// Waited is the part of Took spent waiting for the Speaker's lock: a
	// release step or the guard in progress.
	Waited time.Duration
}

// WithFenceHook calls fn after every fence that took prefixes back (fn
// must not call the Speaker): the daemons' fibgate_gobgp_fence_seconds.
func WithFenceHook(fn func(FenceEvent)) Option { return func(o *options) { o.fenceHook = fn } }

// fence is Fence that first tries to keep the prefixes of keep out on
// copies of their previous best paths (keep.go), and fences only those of
// prefixes for which only says yes (nil: all). since is when the change
// reached the Speaker. gone says which prefixes' best path went (nil:
// none known): their take-back needs no HOLD path (apply).
func (s *Speaker) fence(ctx context.Context, since time.Time, prefixes []netip.Prefix, keep []keepReq, only, gone func(netip.Prefix) bool) error {
	if len(prefixes) == 0 && len(keep) == 0 {
		return nil
	}
	var clock uint64
	if s.opts.clock != nil {
		clock = s.opts.clock()
	}
	return s.fenceAt(ctx, since, clock, prefixes, keep, only, gone)
}

// takeBack takes back prefixes out on a copy whose copied path went while
// their best path, and so their route, stays (keep.go's checkCopies,
// copy.go's read-back): a fence that leaves their clocks alone. The route
// being programmed was written after their last fence and is still the
// one to release; a fence at the clock of now would refuse its
// confirmation as stale, and no newer route would come to release them.
func (s *Speaker) takeBack(ctx context.Context, prefixes []netip.Prefix, only func(netip.Prefix) bool) error {
	if len(prefixes) == 0 {
		return nil
	}
	return s.fenceAt(ctx, time.Now(), 0, prefixes, nil, only, nil)
}

// fenceAt is fence at a FIB clock (0: the prefixes' clocks stay).
func (s *Speaker) fenceAt(ctx context.Context, since time.Time, clock uint64, prefixes []netip.Prefix, keep []keepReq, only, gone func(netip.Prefix) bool) error {
	var ev FenceEvent
	defer func() {
		if ev.Prefixes > 0 && s.opts.fenceHook != nil {
			ev.Took = time.Since(since)
			s.opts.fenceHook(ev)
		}
	}()
	for len(keep) > 0 {
		n := min(len(keep), s.opts.batch)
		if err := s.fenceStep(ctx, nil, keep[:n], clock, only, gone, &ev); err != nil {
			return err
		}
		keep = keep[n:]
	}
	for len(prefixes) > 0 {
		n := min(len(prefixes), s.opts.batch)
		if err := s.fenceStep(ctx, prefixes[:n], nil, clock, only, gone, &ev); err != nil {
			return err
		}
		prefixes = prefixes[n:]
	}
	return nil
}

// fenceStep is one locked step of fence; it adds what it held and waited
// to ev.
func (s *Speaker) fenceStep(ctx context.Context, prefixes []netip.Prefix, keep []keepReq, clock uint64, only, gone func(netip.Prefix) bool, ev *FenceEvent) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	asked := time.Now()
	s.turn.Lock()
	defer s.turn.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	ev.Waited += time.Since(asked)
	before := ev.Prefixes
	if err := s.usable(); err != nil {
		return err
	}
	if len(keep) > 0 {
		rest, err := s.keep(ctx, keep, clock)
		if err != nil {
			return err
		}
		ev.Prefixes += len(keep) - len(rest)
		prefixes = rest
	}
	var changes []change
	for _, p := range prefixes {
		if !p.IsValid() || p != p.Masked() || (only != nil && !only(p)) {
			continue
		}
		st := s.rec.get(p)
		st.fence = max(st.fence, clock)
		s.rec.set(p, st)
		if st.transit || st.kept {
			c := s.current(p)
			c.transit = false
			c.gone = gone != nil && gone(p)
			changes = append(changes, c)
		}
	}
	if len(changes) > 0 {
		if err := s.apply(ctx, changes); err != nil {
			return err
		}
		ev.Prefixes += len(changes)
	}
	// Releases take short steps for a while: more fences of a burst may
	// follow this one. A fence that took nothing back (a prefix not
	// released, as while a table converges) leaves them as they are.
	if ev.Prefixes > before {
		s.steps.fence()
	}
	return nil
}

// stale reports whether an Advertise of a transit prefix is confirmed on a
// route older than the prefix's fence. Called with s.mu held.
func (s *Speaker) stale(ad gate.Advertisement) bool {
	st := s.rec.get(ad.Prefix)
	return st.fence != 0 && ad.Origin == gate.Transit && ad.Version != 0 && ad.Version <= st.fence
}

// settleFence drops a prefix's fence once an operation shows no older route
// can be released: a release of a newer route, or a withdrawal of a prefix
// gone at a later clock. Called with s.mu held.
func (s *Speaker) settleFence(ad gate.Advertisement) {
	if st := s.rec.get(ad.Prefix); st.fence != 0 && ad.Version > st.fence {
		st.fence = 0
		s.rec.set(ad.Prefix, st)
	}
}

// staleError reports the prefixes refused as stale, with err, the call's
// other failures.
func staleError(refused []netip.Prefix, err error) error {
	if len(refused) == 0 {
		return err
	}
	return &gate.StaleError{Prefixes: refused, Err: err}
}
