package gobgp

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fibgate/fibgate/plugin/gobgp/internal/bestwatch"
	"github.com/fibgate/fibgate/plugin/internal/pkey"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"google.golang.org/grpc"
)

// BestPath is where GoBGP forwards a prefix, as the FIB installer needs
// it: the next hops of its learned best path (all paths of the multipath
// set when GoBGP's multipath is on). No next hops: GoBGP has no learned
// path to forward on (withdrawn, or a local path is best), so the
// installed route must go.
type BestPath struct {
	Prefix   netip.Prefix
	Nexthops []netip.Addr // sorted, unique
	// attrs fingerprints what neighbours receive of the best path besides
	// its next hop (exportKey); WatchBest fences on its change.
	attrs uint64
	// ases has the bits of the indexed neighbour ASes in the best path's
	// AS_PATH (notto.go).
	ases uint64
	// gone: GoBGP reported the prefix without a best path (its last path
	// went), so it exports nothing of it (apply's quiet take-back).
	gone bool
	// lost: read back under a copy (underCopies) that GoBGP no longer
	// has, a learned path best: another local path of the prefix
	// replaced it, and went. orphan: read back under a copy whose copied
	// path GoBGP no longer has.
	lost, orphan bool
	// unseen: gone, and the path that went last was one of the gate's
	// HOLD paths, which GoBGP's zebra client never hands to zebra
	// (fromElsewhere): zebra was told of no withdrawal (zebraGone).
	unseen bool
}

// ErrWatchEnded is returned by WatchBest when GoBGP ended the stream (gobgpd
// stopped or restarted); the caller watches again and gets a new snapshot.
var ErrWatchEnded = errors.New("gobgp: best-path watch ended")

// WatchBest follows GoBGP's best paths for the FIB installer. fn is called
// first once with initial set and the whole table (possibly empty), then
// with every change, in GoBGP's order, from one goroutine of its own:
// WatchBest goes on draining GoBGP's watch and fencing while fn writes
// routes, and what it reported meanwhile comes in fn's next call, one
// report after the other (a prefix may come more than once; the last one
// counts). A change is reported only when a prefix's next hops differ
// from what was last reported: a kernel route replaced by an identical one
// would lose its hardware flags and be programmed again. It returns when
// ctx ends (nil) or the watch breaks (ErrWatchEnded or the API's error),
// after fn's last call; a broken watch first delivers what it fenced.
//
// Before fn hears of a prefix whose best path goes, or changes what
// neighbours receive (its attributes besides the next hop), the prefix is
// fenced (Fence): taken back if released, so its new route is gated
// afresh. When the previous best path is still in GoBGP, a released
// prefix is kept out on a copy of it instead (keep.go): neighbours keep
// the previous attributes until the new route is released. A prefix whose
// next hops change under the same attributes (an ECMP member lost or
// added, a spine replaced by its twin) is not fenced: its neighbours see
// nothing new, and the gate keeps it advertised on the confirmed route
// until the new one is programmed (make-before-break,
// docs/design-notes.md).
//
// What it leaves out keeps the installer out of the gate's way:
//   - a prefix whose best path is a HOLD path is not reported at all: the
//     HOLD path is the gate's transient marker (this package's README.md,
//     "The steps"), and the route underneath must stay in the FIB and in
//     hardware, or the toggle that releases a prefix would make it flap;
//     nor is one whose best path is a kept copy (keep.go): the installer
//     was told of the new best path when the copy went in;
//   - local paths (originated by fibgate or added with the gobgp CLI) have
//     nothing to forward to; when one is best the prefix is reported
//     without next hops, since the kernel route it came from forwards it;
//   - next hops that are unspecified or link-local only (an interface
//     would be needed) are dropped.
func (s *Speaker) WatchBest(ctx context.Context, fn func(initial bool, paths []BestPath)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A kept copy hides the learned path under it from the table's
	// snapshot (keep.go), and the installer would remove its route: a
	// watch starts without copies, their prefixes held. With releases by
	// copy (copy.go) the copies stay, and the learned paths under them
	// are read into the snapshot instead; the learned-path watch, started
	// first, says what may change under them from then on (copyWatch).
	byCopy := s.cfg.ReleaseByCopy
	s.mu.Lock()
	if s.usable() == nil && !byCopy {
		if err := s.dropCopies(ctx, true); err != nil {
			s.opts.log.Warn("deleting kept copies before watching best paths failed", "err", err)
		}
	}
	s.mu.Unlock()
	var multipath bool
	under := newPrefixQueue()
	var cw *copyWatch // byCopy only
	if byCopy {
		var err error
		if multipath, err = s.b.multipath(ctx); err != nil {
			return fmt.Errorf("watch best paths: read gobgp's multipath setting: %w", err)
		}
		s.multipath.Store(multipath)
		if _, err := s.ourAS(ctx); err != nil {
			return fmt.Errorf("watch best paths: %w", err)
		}
		cw = newCopyWatch(s.cp, under, s.opts.log)
		err = s.b.watchLearned(ctx, cw.event)
		if err != nil {
			return fmt.Errorf("watch learned paths: %w", err)
		}
	}
	if err := s.refreshNeighbours(ctx); err != nil && ctx.Err() == nil {
		s.opts.log.Warn("reading gobgp's neighbours for the AS index failed; retried when a path comes from an unknown AS", "err", err)
	}
	// decode turns best-path events into BestPaths, reading GoBGP's
	// neighbours again first when a path came from an AS the not-to
	// index lacks (at most once a second: a neighbour GoBGP does not
	// list yet is asked about again then).
	var retried time.Time
	// The heartbeat (heartbeat.go), with a watch hook once the table is
	// read; GoBGP's goroutine reads it too.
	var beating atomic.Pointer[heartbeat]
	decode := func(ps []watched) []BestPath {
		bs, unknown, beat := s.bestPaths(ps)
		if beat {
			beating.Load().readNow()
		}
		if unknown && time.Since(retried) >= notToRefresh {
			retried = time.Now()
			if err := s.refreshNeighbours(ctx); err == nil {
				bs, _, _ = s.bestPaths(ps)
			}
		}
		return bs
	}
	events, errc := make(chan []watched, 64), make(chan error, 1)
	batched, err := s.b.watchBest(ctx, func(ps []watched) {
		beating.Load().deliver(ps)
		select {
		case events <- ps:
		case <-ctx.Done():
		}
	}, errc)
	if err != nil {
		return fmt.Errorf("watch best paths: %w", err)
	}
	// Over gRPC the initial table comes in batches (one message could pass
	// gobgpd's 256 MiB limit: ~1M paths). Its end is marked by a HOLD path
	// of our own on snapshotMarker, added once the first batch is here
	// (so the watch is registered): GoBGP queues its event after the whole
	// table. The HOLD community keeps it from ever being exported.
	initial, marked := true, !batched
	var snap []watched
	last := s.nt.last // written under s.nt.mu: releases read its AS masks
	// fn runs in a goroutine of its own, fed in order: this loop only
	// drains GoBGP's watch and fences. A fence must not wait for the
	// kernel writes of the batches before it: while it waits, GoBGP keeps
	// exporting paths learned again for prefixes still released.
	q := newBestQueue()
	// The heartbeat's goroutine deletes its path before WatchBest returns.
	var beats sync.WaitGroup
	defer func() {
		cancel()
		beats.Wait()
	}()
	delivered := make(chan struct{})
	go func() {
		defer close(delivered)
		q.deliver(fn)
	}()
	defer func() {
		// A broken watch delivers what it fenced (those routes must be
		// written, or their prefixes would wait for a new route that
		// never comes); a cancelled one, shutting down, does not.
		q.close(ctx.Err() != nil)
		<-delivered
	}()
	// report takes BestPaths of GoBGP's best-path watch (fromBest) or of
	// the paths read back under copies, read at since.
	report := func(bs []BestPath, initial, fromBest bool, since time.Time) {
		s.nt.mu.Lock()
		if initial {
			clear(last)
		}
		var ases []prefixMask // new AS masks, recorded after the fence
		kept := bs[:0]
		var moved []netip.Prefix       // had a route that is about to change
		var gone map[netip.Prefix]bool // of moved, those whose best path went
		var keep []keepReq             // the same, with new attributes: kept on a copy if it can (keep.go)
		// Copies to make anew (copy.go): new attributes on the same route,
		// or a copy GoBGP lost (its learned path is best).
		var again []netip.Prefix
		var unseen []netip.Prefix // gone, and zebra not told (zebraGone)
		// Kept on a copy of a path that went, the best path as it was:
		// taken back (takeBack), not fenced.
		var orphans []netip.Prefix
		// A route about to change keeps its previous path's record until
		// its fence: a release step in flight compares the path it copies
		// with it (planCopies' confirmedPath). later holds those changes;
		// a prefix twice in bs (coalesced events) sees its first one.
		var later map[pkey.Key]lastUpdate
		wait := func(k pkey.Key, u lastUpdate) {
			if later == nil {
				later = make(map[pkey.Key]lastUpdate)
			}
			later[k] = u
		}
		set := func(k pkey.Key, r reported) {
			if _, ok := later[k]; ok {
				wait(k, lastUpdate{r: r})
			} else {
				last[k] = r
			}
		}
		for _, b := range bs {
			if b.unseen {
				unseen = append(unseen, b.Prefix)
			}
			k := pkey.Of(b.Prefix)
			old, had := last[k]
			if u, ok := later[k]; ok {
				old, had = u.r, !u.gone
			}
			// The AS mask stays the previous path's until the fence.
			now := reported{nexthops: nexthopKey(b.Nexthops), attrs: b.attrs, ases: old.ases}
			if b.ases != old.ases {
				ases = append(ases, prefixMask{b.Prefix, b.ases})
			}
			switch {
			case len(b.Nexthops) == 0 && had:
				wait(k, lastUpdate{gone: true})
			case len(b.Nexthops) > 0 && !had:
				set(k, now)
			case len(b.Nexthops) > 0 && old.nexthops != now.nexthops:
				wait(k, lastUpdate{r: now})
			default:
				if had && b.orphan {
					orphans = append(orphans, b.Prefix)
				}
				if had {
					set(k, now) // new attributes on the same route: exported as they are
					// Under a copy, by a new copy; and GoBGP saying the
					// learned path is best means the copy is gone (another
					// local path took its place, and went).
					if byCopy && (old.attrs != now.attrs || fromBest || b.lost) && s.cp.has(b.Prefix) {
						again = append(again, b.Prefix)
					}
				}
				continue // nothing new to install
			}
			switch {
			case had && len(b.Nexthops) > 0 && old.attrs != now.attrs && !initial:
				keep = append(keep, keepReq{prefix: b.Prefix, was: old.attrs, now: now.attrs, nexthops: b.Nexthops})
			case had && (len(b.Nexthops) == 0 || old.attrs != now.attrs):
				moved = append(moved, b.Prefix)
				if b.gone {
					if gone == nil {
						gone = make(map[netip.Prefix]bool)
					}
					gone[b.Prefix] = true
				}
			}
			kept = append(kept, b)
		}
		s.nt.mu.Unlock()
		// Hold what changed before the installer touches its routes
		// (fence.go): nothing queues between the change and the hold.
		if err := s.fence(ctx, since, moved, keep, nil, func(p netip.Prefix) bool { return gone[p] }); err != nil && ctx.Err() == nil {
			s.opts.log.Warn("taking back prefixes whose best path changed failed; the gate withdraws them once it sees their routes change", "prefixes", len(moved)+len(keep), "err", err)
		}
		s.recordRoutes(later)
		if err := s.takeBack(ctx, orphans, func(p netip.Prefix) bool {
			st := s.rec.get(p) // fenceStep holds s.mu
			return st.kept && !st.transit
		}); err != nil && ctx.Err() == nil {
			s.opts.log.Warn("taking back prefixes kept on copies of paths that went failed; Check retries", "prefixes", len(orphans), "err", err)
		}
		if err := s.zebraGone(ctx, unseen); err != nil && ctx.Err() == nil {
			s.opts.log.Warn("telling GoBGP's zebra client of prefixes gone under a HOLD path failed; a route zebra installed for them may stay", "prefixes", len(unseen), "err", err)
		}
		if err := s.recopy(ctx, again); err != nil && ctx.Err() == nil {
			s.opts.log.Warn("making copies anew failed; Check retries", "prefixes", len(again), "err", err)
		}
		// The new paths' ASes count for their releases from now on: not
		// before their fences, or a release of the previous route would
		// take the prefix out of its previous path's not-to sets; and
		// before the installer hears of them, which their releases follow.
		changed := s.recordMasks(ases)
		if initial || len(kept) > 0 {
			q.push(initial, kept)
		}
		if err := s.retarget(ctx, changed); err != nil && ctx.Err() == nil {
			s.opts.log.Warn("not-to sets: following the ASes of released paths failed", "err", err)
		}
	}
	// redirect drops from a best-path event what it says of prefixes out
	// on a copy, and reads them back instead. GoBGP sends no best-path
	// event while a copy is best, so such an event is older than the
	// copy, or says the copy is gone; either way a read of the prefix's
	// paths now says what is true (underCopies, which also finds a copy
	// gone). The event may be older than a read back already reported:
	// under load the events queue behind fences, and a failover's event
	// (the backup best, before the backup's copy) took the installer back
	// to the backup after the primary's return (make bench-churn MOVES=1
	// on a loaded machine: 1,959 of 15,000 returns).
	redirect := func(bs []BestPath) []BestPath {
		return slices.DeleteFunc(bs, func(b BestPath) bool {
			if len(b.Nexthops) == 0 || !s.cp.has(b.Prefix) {
				return false
			}
			under.add(b.Prefix)
			return true
		})
	}
	marker := func(withdraw bool) error {
		return s.b.sendPaths(ctx, []*api.Path{s.pb.ownPath(snapshotMarker, withdraw)})
	}
	// The learned paths under kept copies are read back on a tick (keep.go).
	// The read-back takes at most a tenth of the loop's time: the fences
	// of other prefixes wait while it runs.
	// With releases by copy the learned-path watch says what to read back
	// instead (copyWatch), and every copied prefix is read back each
	// copySweep for what changes paths with no event.
	poll := time.NewTimer(keepPoll)
	defer poll.Stop()
	pollC := poll.C
	var sweep *time.Timer
	var sweepC <-chan time.Time
	var rereadC <-chan struct{}
	var reading time.Duration // reading copies back since the last sweep
	if byCopy {
		pollC = nil
		sweep = time.NewTimer(copySweep)
		defer sweep.Stop()
		sweepC, rereadC = sweep.C, s.reread
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-under.ready:
			// A slice at a time (a session with a full table going down
			// is a million prefixes): their fences go out as they are
			// read, and best-path events are not held up behind them.
			ps := under.take(underSlice)
			since := time.Now()
			bs, err := s.underCopies(ctx, ps, multipath)
			reading += time.Since(since)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				s.opts.log.Warn("reading the learned paths under copies failed; trying again", "prefixes", len(ps), "err", err)
				for _, p := range ps {
					under.add(p)
				}
				continue
			}
			report(bs, false, false, since)
		case <-sweepC:
			// At most a hundredth of the time in reads of copies: a sweep
			// of a million and the reads UPDATEs ask for under heavy
			// churn lengthen the next interval.
			cw.all(slog.LevelDebug, "sweep")
			sweep.Reset(max(copySweep, 100*reading))
			reading = 0
		case <-rereadC:
			cw.all(slog.LevelInfo, "asked (a soft reset in)")
		case <-pollC:
			start := time.Now()
			if err := s.checkCopies(ctx); err != nil && ctx.Err() == nil {
				s.opts.log.Warn("checking the paths under kept copies failed", "err", err)
			}
			poll.Reset(max(keepPoll, 10*time.Since(start)))
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case ps := <-events:
			since := time.Now()
			if !initial {
				// Take what else is queued too: one fence and one kernel
				// write for a burst (a session flap is thousands of events).
				bs := decode(ps)
			drain:
				for range maxCoalesce {
					select {
					case more := <-events:
						bs = append(bs, decode(more)...)
					default:
						break drain
					}
				}
				if byCopy {
					bs = redirect(bs)
				}
				// The marker's own withdrawal needs no filter: a prefix
				// never reported with next hops is not reported going.
				report(bs, false, true, since)
				continue
			}
			if !marked {
				if err := marker(false); err != nil {
					return fmt.Errorf("watch best paths: mark the end of the table: %w", err)
				}
				marked = true
			}
			if batched {
				// The marker's event comes after the table's, in a
				// message of its own (one event, one destination).
				if len(ps) != 1 || ps[0].prefix != snapshotMarker {
					snap = append(snap, ps...)
					continue
				}
				ps = snap
			}
			bs := decode(ps)
			if byCopy {
				extra, err := s.underCopies(ctx, nil, multipath)
				if err != nil {
					return fmt.Errorf("watch best paths: %w", err)
				}
				bs = append(bs, extra...)
			}
			report(bs, true, true, since)
			snap, initial = nil, false
			if batched {
				if err := marker(true); err != nil {
					return fmt.Errorf("watch best paths: remove the end-of-table mark: %w", err)
				}
			}
			if hook := s.opts.watchHook; hook != nil && beating.Load() == nil {
				hb := newHeartbeat()
				beating.Store(hb)
				beats.Add(1)
				go func() {
					defer beats.Done()
					hb.run(ctx, func(ctx context.Context, n uint32, withdraw bool) error {
						p, err := s.pb.beatPath(n, withdraw)
						if err != nil {
							return err
						}
						return s.b.sendPaths(ctx, []*api.Path{p})
					}, hook, s.opts.log.Warn)
				}()
			}
		}
	}
}

// underSlice is how many prefixes under copies WatchBest reads back in
// one ListPath (copy.go).
const underSlice = 8192

// prefixQueue gathers the prefixes the learned-path watch saw change
// under copies (copy.go), from GoBGP's goroutine, for WatchBest's loop:
// ready has a token while some wait.
type prefixQueue struct {
	mu sync.Mutex
	ps map[netip.Prefix]struct{}
	// bulk holds what addAll queued (every copy, after a session went
	// down or at a sweep: a million at the full table), in a slice, which
	// costs a third of the map's memory; a prefix in both is read twice.
	bulk  []netip.Prefix
	ready chan struct{}
}

func newPrefixQueue() *prefixQueue {
	return &prefixQueue{ps: make(map[netip.Prefix]struct{}), ready: make(chan struct{}, 1)}
}

func (q *prefixQueue) add(p netip.Prefix) {
	q.mu.Lock()
	q.ps[p] = struct{}{}
	q.mu.Unlock()
	q.signal()
}

func (q *prefixQueue) addAll(ps []netip.Prefix) {
	if len(ps) == 0 {
		return
	}
	q.mu.Lock()
	q.bulk = append(q.bulk, ps...)
	q.mu.Unlock()
	q.signal()
}

func (q *prefixQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take returns at most n of the waiting prefixes, leaving ready set if
// more wait.
func (q *prefixQueue) take(n int) []netip.Prefix {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]netip.Prefix, 0, min(n, len(q.ps)+len(q.bulk)))
	for p := range q.ps {
		if len(out) == n {
			break
		}
		out = append(out, p)
		delete(q.ps, p)
	}
	k := min(n-len(out), len(q.bulk))
	out = append(out, q.bulk[len(q.bulk)-k:]...)
	q.bulk = q.bulk[:len(q.bulk)-k]
	if len(q.bulk) == 0 {
		q.bulk = nil // its array, once a million long, goes
	}
	if len(q.ps)+len(q.bulk) > 0 {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return out
}

// bestQueue hands WatchBest's fenced reports to its caller's fn in a
// goroutine of their own, in order. Reports queued while fn is busy are
// delivered in one call (their paths one after the other; the caller
// takes the last word per prefix), except an initial one, always alone.
type bestQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	items  []bestItem
	closed bool
	drop   bool
}

type bestItem struct {
	initial bool
	paths   []BestPath
}

func newBestQueue() *bestQueue {
	q := &bestQueue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *bestQueue) push(initial bool, paths []BestPath) {
	q.mu.Lock()
	q.items = append(q.items, bestItem{initial, paths})
	q.mu.Unlock()
	q.cond.Signal()
}

// close ends deliver once what is queued is delivered, or at once when
// drop is set.
func (q *bestQueue) close(drop bool) {
	q.mu.Lock()
	q.closed, q.drop = true, drop
	q.mu.Unlock()
	q.cond.Signal()
}

// deliver calls fn for what is pushed until close.
func (q *bestQueue) deliver(fn func(initial bool, paths []BestPath)) {
	for {
		q.mu.Lock()
		for len(q.items) == 0 && !q.closed {
			q.cond.Wait()
		}
		if len(q.items) == 0 || q.drop {
			q.mu.Unlock()
			return
		}
		it, n := q.items[0], 1
		if !it.initial {
			total := len(it.paths)
			for n < len(q.items) && !q.items[n].initial {
				total += len(q.items[n].paths)
				n++
			}
			if n > 1 {
				merged := make([]BestPath, 0, total)
				for _, x := range q.items[:n] {
					merged = append(merged, x.paths...)
				}
				it.paths = merged
			}
		}
		clear(q.items[:n])
		q.items = q.items[n:]
		q.mu.Unlock()
		fn(it.initial, it.paths)
	}
}

// reported is what WatchBest last told the installer of a prefix, and the
// AS mask releases read (notto.go). nexthops and attrs are 64-bit hashes:
// a change that keeps both (a chance of one in 2^64) would go unseen.
type reported struct {
	nexthops uint64 // nexthopKey
	attrs    uint64 // exportKey of the best path
	ases     uint64 // asIndex.maskOf the best path's AS_PATH
}

// lastUpdate is a change of WatchBest's record of a prefix's best path
// that waits for the prefix's fence: the new path (its AS mask aside,
// which recordMasks follows), or gone.
type lastUpdate struct {
	r    reported
	gone bool
}

// recordRoutes applies WatchBest's record changes that waited for their
// fences.
func (s *Speaker) recordRoutes(us map[pkey.Key]lastUpdate) {
	if len(us) == 0 {
		return
	}
	s.nt.mu.Lock()
	defer s.nt.mu.Unlock()
	for k, u := range us {
		if u.gone {
			delete(s.nt.last, k)
			continue
		}
		r := u.r
		r.ases = s.nt.last[k].ases
		s.nt.last[k] = r
	}
}

// maxCoalesce bounds how many queued best-path events WatchBest folds
// into one report.
const maxCoalesce = 1024

// snapshotMarker is the prefix of the HOLD path that marks the end of the
// initial table over gRPC: 0.0.0.0/32 ("this host") is never a route.
var snapshotMarker = netip.MustParsePrefix("0.0.0.0/32")

// pathIs says whether p is a unicast path of prefix want (one of
// WatchBest's own: snapshotMarker, heartbeatPrefix).
func pathIs(p *api.Path, want netip.Prefix) bool {
	pfx, ok := pathPrefix(p)
	return ok && pfx == want
}

// bestPaths turns one best-path event into BestPaths. GoBGP sends the
// paths of one destination next to each other (its multipath set, or its
// single best path).
//
// unknown says a best path came from an eBGP neighbour whose AS the not-to
// index lacks (notto.go): the caller reads the neighbours again and asks
// once more.
//
// beat says the batch held the add of WatchBest's heartbeat (heartbeat.go).
func (s *Speaker) bestPaths(ps []watched) (out []BestPath, unknown, beat bool) {
	x, local := s.nt.idx.Load(), s.localAS.Load()
	for len(ps) > 0 {
		p := ps[0].prefix
		n := 1
		for n < len(ps) && ps[n].prefix == p {
			n++
		}
		group := ps[:n]
		ps = ps[n:]
		if !p.IsValid() {
			continue // not unicast IPv4/IPv6
		}
		if ownPrefix(p) {
			beat = beat || p == heartbeatPrefix && !group[0].withdraw
			continue // a HOLD path of WatchBest's own, never a route
		}
		b, report := s.bestOf(p, group, x)
		if report {
			out = append(out, b)
			if g := &group[0]; len(b.Nexthops) > 0 && g.sourceAS != 0 && g.sourceAS != local && !x.has(g.sourceAS) && (x == nil || !x.full) {
				unknown = true
			}
		}
	}
	return out, unknown, beat
}

func (s *Speaker) bestOf(p netip.Prefix, group []watched, x *asIndex) (BestPath, bool) {
	b := BestPath{Prefix: p, gone: !slices.ContainsFunc(group, func(p watched) bool { return !p.withdraw })}
	if b.gone && group[0].external {
		_, comms, _, err := group[0].decode(nil)
		b.unseen = err == nil && slices.Contains(comms, s.cfg.hold)
	}
	for i := range group {
		path := &group[i]
		if path.withdraw {
			continue
		}
		var ix *asIndex
		if i == 0 {
			b.attrs = path.key() // GoBGP puts the best path first
			ix = x               // and exports it: its ASes count
		}
		nh, comms, mask, err := path.decode(ix)
		b.ases |= mask
		if err != nil {
			s.opts.log.Warn("best path with undecodable attributes", "prefix", p, "err", err)
			continue
		}
		if slices.Contains(comms, s.cfg.hold) || slices.Contains(comms, s.cfg.keep) {
			if i == 0 {
				return BestPath{}, false // a HOLD path or a kept copy (keep.go) is best
			}
			continue
		}
		if !path.learned() {
			continue // local path
		}
		s.addNexthop(&b, nh, path.neighbor)
	}
	b.sortNexthops()
	return b, true
}

// errNoNexthop is why a learned path's next hop is dropped: what is logged
// for every such path, damped (a neighbour over IPv6 link-local sends a
// whole table of them).
var errNoNexthop = errors.New("a learned best path's next hop is unspecified or link-local (BGP unnumbered is not supported): its prefix is neither installed nor released")

// addNexthop adds a learned path's next hop to b unless it is unspecified
// or link-local (an interface would be needed), which is logged, the
// first path at once and then how many more (logdamp).
func (s *Speaker) addNexthop(b *BestPath, nh, neighbor netip.Addr) {
	if nh.IsValid() && !nh.IsUnspecified() && !nh.IsLinkLocalUnicast() {
		b.Nexthops = append(b.Nexthops, nh)
		return
	}
	s.noNexthop.Fail(errNoNexthop, "prefix", b.Prefix, "neighbor", neighbor, "next_hop", nh)
}

// sortNexthops sorts b's next hops and drops repeats.
func (b *BestPath) sortNexthops() {
	slices.SortFunc(b.Nexthops, netip.Addr.Compare)
	b.Nexthops = slices.Compact(b.Nexthops)
}

// exportSeed keys exportKey's hash for the life of the process.
var exportSeed = maphash.MakeSeed()

// exportKey fingerprints a path's attributes except its next hop: what a
// neighbour receives of it, next-hop-self aside. Equal keys mean the same
// attributes in the same order; a different order only makes WatchBest
// fence when it need not, which is safe.
func exportKey(p *api.Path) uint64 {
	var h maphash.Hash
	h.SetSeed(exportSeed)
	if len(p.PattrsBinary) > 0 {
		for _, a := range p.PattrsBinary {
			hashWireAttr(&h, a)
		}
		return h.Sum64()
	}
	for _, a := range p.Pattrs {
		if a.MessageIs((*api.NextHopAttribute)(nil)) || a.MessageIs((*api.MpReachNLRIAttribute)(nil)) {
			continue
		}
		h.WriteString(a.TypeUrl)
		h.Write(a.Value)
		h.WriteByte(0xff)
	}
	return h.Sum64()
}

// hashWireAttr adds an attribute in wire form to an exportKey hash,
// unless it is the next hop (NEXT_HOP, MP_REACH_NLRI): the one rule for
// the wire form, shared by API paths (PattrsBinary) and GoBGP's own
// (watched.key), whose keys must compare.
func hashWireAttr(h *maphash.Hash, a []byte) {
	if len(a) > 1 && (a[1] == byte(bgp.BGP_ATTR_TYPE_NEXT_HOP) || a[1] == byte(bgp.BGP_ATTR_TYPE_MP_REACH_NLRI)) {
		return
	}
	h.Write(a)
	h.WriteByte(0xff)
}

// nexthopKey fingerprints a best path's next hops, in order: a 64-bit
// hash like exportKey's, 8 bytes a prefix where the bytes themselves took
// a string (a header and an allocation: 150 bytes a route with the map
// slot, at 120k).
func nexthopKey(nhs []netip.Addr) uint64 {
	var h maphash.Hash
	h.SetSeed(exportSeed)
	for _, nh := range nhs {
		b := nh.As16()
		h.Write(b[:])
		h.WriteByte(byte(nh.BitLen()))
	}
	return h.Sum64()
}

// pathAttrs reads what the installer needs of a path: its next hop
// (NEXT_HOP, else MP_REACH's first global one) and its communities. It
// unpacks only those attributes: converting every attribute to GoBGP's
// native types cost half the start-up time of a large table.
func pathAttrs(p *api.Path) (netip.Addr, []uint32, error) {
	nh, comms, _, err := pathAttrsAS(p, nil)
	return nh, comms, err
}

// pathAttrsAS is pathAttrs that also returns the bits of x's ASes in the
// path's AS_PATH (notto.go); x nil: none, and AS_PATH is not read.
func pathAttrsAS(p *api.Path, x *asIndex) (netip.Addr, []uint32, uint64, error) {
	if len(p.PattrsBinary) > 0 {
		return pathAttrsNative(p, x)
	}
	var nh netip.Addr
	var comms []uint32
	var mask uint64
	for _, a := range p.Pattrs {
		// Read from the Any's bytes (wire.go): unmarshalling each
		// attribute was most of what WatchBest allocated.
		switch {
		case x != nil && a.MessageIs((*api.AsPathAttribute)(nil)):
			m, err := wireASMask(a.Value, x)
			if err != nil {
				return nh, nil, 0, fmt.Errorf("as path: %w", err)
			}
			mask |= m
		case a.MessageIs((*api.NextHopAttribute)(nil)):
			v, err := wireNextHop(a.Value)
			if err != nil {
				return nh, nil, 0, fmt.Errorf("next hop: %w", err)
			}
			if v.IsValid() {
				nh = v
			}
		case a.MessageIs((*api.MpReachNLRIAttribute)(nil)):
			v, err := wireMpNextHop(a.Value)
			if err != nil {
				return nh, nil, 0, fmt.Errorf("mp reach: %w", err)
			}
			if v.IsValid() {
				nh = v
			}
		case a.MessageIs((*api.CommunitiesAttribute)(nil)):
			var err error
			if comms, err = wireCommunities(a.Value, comms[:0]); err != nil {
				return nh, nil, 0, fmt.Errorf("communities: %w", err)
			}
		}
	}
	return nh, comms, mask, nil
}

// pathAttrsNative is pathAttrsAS for paths in wire format (PattrsBinary),
// read by the rules of the watch's (nativeAttrs).
func pathAttrsNative(p *api.Path, x *asIndex) (netip.Addr, []uint32, uint64, error) {
	attrs, err := apiutil.GetNativePathAttributes(p)
	if err != nil {
		return netip.Addr{}, nil, 0, err
	}
	return nativeAttrs(attrs, x)
}

// pathPrefix reads the unicast prefix of a path.
func pathPrefix(p *api.Path) (netip.Prefix, bool) {
	if p.Family == nil || p.Family.Safi != api.Family_SAFI_UNICAST {
		return netip.Prefix{}, false
	}
	if p.Nlri != nil && p.Nlri.MessageIs((*api.IPAddressPrefix)(nil)) {
		return wireIPPrefix(p.Nlri.Value)
	}
	n, err := apiutil.GetNativeNlri(p)
	if err != nil {
		return netip.Prefix{}, false
	}
	pfx, err := netip.ParsePrefix(n.String())
	if err != nil {
		return netip.Prefix{}, false
	}
	return pfx.Masked(), true
}

// maxWatchMessage is gobgpd's own message limit (cmd/gobgpd: 256 MiB).
const maxWatchMessage = 256 << 20

// watchBatch is how many paths one WatchEvent message carries over gRPC
// (~18 KB; a full table's first read is about 16,000 messages); a
// variable so tests can make the table span many messages. Small on
// purpose: gobgpd v3 allocates a slice of this capacity for every event,
// also for the one-path events of live changes. At 8192 that was 64 KB
// per event and a third of gobgpd's CPU (120k prefixes through fibgated);
// at 512, still 38% of what gobgpd allocated under steady churn (1,000
// changes/s at 120k). At 64 that is 6%, and gobgpd's CPU 17% less.
var watchBatch uint32 = 64

// bestWatchRequest asks for best-path events, the current table first
// (GoBGP sends it as a single event: in process one call, over gRPC
// batches followed by the end marker's event).
func bestWatchRequest() *api.WatchEventRequest {
	return &api.WatchEventRequest{Table: &api.WatchEventRequest_Table{
		Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_BEST, Init: true}},
	}}
}

func tablePaths(r *api.WatchEventResponse) ([]*api.Path, bool) {
	t := r.GetTable()
	if t == nil {
		return nil, false
	}
	return t.Paths, true
}

func (b grpcBackend) watchBest(ctx context.Context, fn func([]watched), errc chan<- error) (bool, error) {
	r := bestWatchRequest()
	r.BatchSize = watchBatch
	// A batch of paths is ~270 bytes each; allow gobgpd's own limit
	// whatever the connection's default is.
	st, err := b.c.WatchEvent(ctx, r, grpc.MaxCallRecvMsgSize(maxWatchMessage))
	if err != nil {
		return true, err
	}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				if ctx.Err() == nil {
					err = fmt.Errorf("%w: %v", ErrWatchEnded, err)
				}
				errc <- err
				return
			}
			if ps, ok := tablePaths(r); ok {
				fn(watchedAPI(ps))
			}
		}
	}()
	return true, nil
}

func (b serverBackend) watchBest(ctx context.Context, fn func([]watched), errc chan<- error) (bool, error) {
	// No message limit in process: the initial table is one call.
	if b.attrsBinary() {
		// GoBGP's own paths (bestwatch), read on a goroutine of ours: it
		// ends with ctx, or on an event it cannot read (errc; the next
		// watch then goes through WatchEvent).
		w, err := bestwatch.Start(b.s)
		if err != nil {
			return false, err
		}
		go func() {
			err := w.Run(ctx, func(ps []bestwatch.Path) { fn(watchedNative(ps)) })
			if err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%w: %v", ErrWatchEnded, err)
			}
		}()
		return false, nil
	}
	// The server calls back from its own goroutine until ctx ends; it has
	// no way to end the watch otherwise, so errc stays quiet.
	return false, b.s.WatchEvent(ctx, bestWatchRequest(), func(r *api.WatchEventResponse) {
		if ps, ok := tablePaths(r); ok {
			fn(watchedAPI(ps))
		}
	})
}
