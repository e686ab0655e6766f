package gobgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/fibgate/fibgate/plugin/internal/pkey"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// Release by copy (Config.ReleaseByCopy).
//
// A release by toggle lets the learned path through the held set, so
// GoBGP exports whatever becomes best for the prefix next, in the same
// main-loop pass that chooses it: a new path with new attributes reaches
// neighbours before its route is programmed (the fence window,
// docs/design-notes.md, "Make-before-break"). A release by copy never lets
// a learned path out. It adds a copy of the learned best path as a local
// path of the gate's (keep.go's form: the same attributes, the keep
// community, next hop unspecified, no MED); a local path wins over learned
// ones of the same LOCAL_PREF, so the copy is best and is what neighbours
// receive. The prefix stays in the held set.
//
// What a learned path then does under the copy, GoBGP's best-path watch
// does not say (the copy stays best). WatchBest reads the paths of a
// copied prefix back when something may have changed them (copyWatch: an
// UPDATE naming it; for every copied prefix, a session going down or an
// End-of-RIB after one, a soft reset in gobgpd-ext asked for, and every
// copySweep) and reports its learned best path (and the learned multipath
// set) as if GoBGP's best-path watch had:
//   - the same attributes on other next hops: the installer rewrites the
//     route; the copy stays (neighbours see nothing new), and the tracker
//     keeps the prefix out until the new route is programmed, as for any
//     next-hop change;
//   - new attributes: the prefix stays out on the copy, taken back from
//     the tracker's point of view (a fence's clock; no withdrawal), and
//     the release of its new route replaces the copy with one of the new
//     path: neighbours get the new attributes when the route is
//     programmed, and never lose the prefix meanwhile;
//   - new attributes on the same next hops: the copy is replaced at once
//     (the hardware forwards as before, so nothing waits);
//   - no learned path left: the prefix is taken back (a HOLD path
//     replaces the copy, so the withdrawal goes out).
//
// A replacement that brings a neighbour's AS into the path sends a HOLD
// path first: GoBGP filters the new copy towards that neighbour by its AS
// and would send it no withdrawal of the old one (filterpath in v3.37;
// keep.go's strandedBy), so the HOLD path withdraws it from everyone,
// and the new copy follows in the same call.
//
// Not by copy, released by toggle as before: a learned best path from an
// iBGP neighbour (a copy would go to iBGP neighbours that never got the
// learned path), one carrying the HOLD community, and prefixes entering the
// scope out on a learned path (Rescope).

// copySet holds the prefixes out on a copy (released by copy, or kept
// out on a copy of a previous best path), each with a fingerprint of what
// the copy was made from: the copied path's exportKey for a release by
// copy, the learned paths' learnedSig for a kept copy. Its own lock: the
// learned-path watch asks it from GoBGP's goroutine, without s.mu.
type copySet struct {
	mu sync.Mutex
	m  map[pkey.Key]uint64
}

func newCopySet() *copySet { return &copySet{m: make(map[pkey.Key]uint64)} }

func (c *copySet) get(p netip.Prefix) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[pkey.Of(p)]
	return v, ok
}

func (c *copySet) has(p netip.Prefix) bool {
	_, ok := c.get(p)
	return ok
}

func (c *copySet) set(p netip.Prefix, v uint64) {
	c.mu.Lock()
	c.m[pkey.Of(p)] = v
	c.mu.Unlock()
}

func (c *copySet) del(p netip.Prefix) {
	c.mu.Lock()
	delete(c.m, pkey.Of(p))
	c.mu.Unlock()
}

func (c *copySet) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// snapshot copies the set.
func (c *copySet) snapshot() map[netip.Prefix]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[netip.Prefix]uint64, len(c.m))
	for k, v := range c.m {
		out[k.Prefix()] = v
	}
	return out
}

// onCopy says the prefix is released on a copy of its learned best path.
func (st prefixState) onCopy() bool { return st.transit && st.kept }

// out says GoBGP may export a path of the prefix that the held set does
// not hold back: released in the held set, or out on a copy (a kept one,
// or a release by copy). The not-to sets' complement form carves out what
// is out (ntform.go).
func (st prefixState) out() bool { return st.released || st.kept }

// copyPlan is what apply does for a release by copy of one prefix.
type copyPlan struct {
	path      *api.Path // the copy; nil: the copy in place is of the same path
	key       uint64    // exportKey of the learned path copied
	holdFirst bool      // a HOLD path replaces the old copy first (a neighbour's AS joins the path)
}

// planCopies reads the learned best paths of the transit releases among
// changes that can go out by copy and builds their copies; the others are
// released by toggle, but for those behind: GoBGP's best path moved on
// from the route being released (confirmedPath), so they are not released
// at all. Called with s.mu held.
func (s *Speaker) planCopies(ctx context.Context, changes []change) (plans map[netip.Prefix]copyPlan, behind map[netip.Prefix]bool, err error) {
	if !s.cfg.ReleaseByCopy {
		return nil, nil, nil
	}
	var ps []netip.Prefix
	recopy := make(map[netip.Prefix]bool)
	for _, c := range changes {
		st := s.rec.get(c.p)
		if !c.transit || c.originated || !s.cfg.scopeOf(c.p).contains(c.p) {
			continue
		}
		if c.recopy {
			recopy[c.p] = true
		}
		if st.originated || st.transit && !st.kept {
			continue // out by toggle, or originated: nothing to copy
		}
		ps = append(ps, c.p)
	}
	if len(ps) == 0 {
		return nil, nil, nil
	}
	as, err := s.ourAS(ctx)
	if err != nil {
		return nil, nil, err
	}
	dests, err := s.lookup(ctx, ps)
	if err != nil {
		return nil, nil, fmt.Errorf("read the paths to copy: %w", err)
	}
	var peers []peerBrief
	out := make(map[netip.Prefix]copyPlan, len(ps))
	for _, p := range ps {
		paths := dests[p]
		ls := learnedPaths(paths)
		if len(ls) == 0 || ls[0].SourceAsn == as || ls[0].SourceAsn == 0 {
			continue // no learned path (the release fails as before), or iBGP: by toggle
		}
		l, key, ok := s.confirmedPath(p, paths, ls)
		if !ok {
			if behind == nil {
				behind = make(map[netip.Prefix]bool)
			}
			behind[p] = true
			continue
		}
		st := s.rec.get(p)
		if st.onCopy() && !recopy[p] {
			if have, _ := s.cp.get(p); have == key {
				out[p] = copyPlan{key: key} // the copy in place is of this path
				continue
			}
		}
		attrs, err := apiutil.GetNativePathAttributes(l)
		if err != nil {
			s.opts.log.Warn("learned path with undecodable attributes; releasing it by toggle", "prefix", p, "err", err)
			continue
		}
		c, ok := s.copyPath(p, attrs)
		if !ok {
			continue
		}
		plan := copyPlan{path: c, key: key}
		if st.kept {
			// Replacing a copy: a neighbour whose AS only the new path
			// carries has the old copy and would keep it.
			if peers == nil {
				if peers, err = s.establishedEBGP(ctx, as); err != nil {
					return nil, nil, err
				}
			}
			if old := copyIn(paths, s.cfg.keep); old != nil {
				if oldAttrs, err := apiutil.GetNativePathAttributes(old); err == nil {
					plan.holdFirst = joins(peers, asesOf(oldAttrs), asesOf(attrs))
				} else {
					plan.holdFirst = true
				}
			}
		}
		out[p] = plan
	}
	return out, behind, nil
}

// confirmedPath picks the learned path a release by copy of p copies, of
// its learned paths ls (GoBGP's order) among all its paths, with its
// exportKey; it reads WatchBest's record of p after the paths.
//
// GoBGP chooses a new best path before WatchBest hears of it, and the
// fence of the route it replaces waits for the Speaker's lock, which a
// release step holds: a step releasing the previous route can read the
// new best path, and its copy would let out a path whose route is not
// programmed (make bench-churn MOVES=1 on a loaded machine: the best
// path's return on the wire before its route was confirmed, for 2,059 of
// 15,000 returns). WatchBest's record keeps the path whose route is being
// released until the next path's fence (recordRoutes). So the learned
// best path is copied when it has the record's attributes, or its next
// hops (new attributes on the same route go out at once, as WatchBest
// sends them); else the recorded path, while GoBGP still has it (the
// hardware forwards on its route); else none (ok false): the new path's
// route, which WatchBest is about to install, is released in its turn.
func (s *Speaker) confirmedPath(p netip.Prefix, paths, ls []*api.Path) (*api.Path, uint64, bool) {
	key := exportKey(ls[0])
	r, had := s.bestRecord(p)
	if !had || key == r.attrs {
		return ls[0], key, true
	}
	if b := s.bestUnderCopy(p, paths, nil, s.multipath.Load()); nexthopKey(b.Nexthops) == r.nexthops {
		return ls[0], key, true
	}
	for _, l := range ls[1:] {
		if exportKey(l) == r.attrs && l.SourceAsn != 0 && l.SourceAsn != s.localAS.Load() {
			return l, r.attrs, true
		}
	}
	return nil, 0, false
}

// bestRecord is WatchBest's record of p's best path (the route's next
// hops and the attributes it was last fenced for), if it has one.
func (s *Speaker) bestRecord(p netip.Prefix) (reported, bool) {
	s.nt.mu.Lock()
	defer s.nt.mu.Unlock()
	r, ok := s.nt.last[pkey.Of(p)]
	return r, ok
}

// copiedPathThere says whether a learned path among paths is the one a
// copy fingerprinted key was made from (copySet).
func copiedPathThere(paths []*api.Path, key uint64) bool {
	return slices.ContainsFunc(learnedPaths(paths), func(l *api.Path) bool { return exportKey(l) == key })
}

// establishedEBGP lists GoBGP's established eBGP neighbours, never nil
// (planCopies reads nil as not listed yet).
func (s *Speaker) establishedEBGP(ctx context.Context, ourAS uint32) ([]peerBrief, error) {
	all, err := s.establishedPeers(ctx)
	if err != nil {
		return nil, err
	}
	peers := []peerBrief{}
	for _, p := range all {
		if p.as != ourAS {
			peers = append(peers, p)
		}
	}
	return peers, nil
}

// joins says whether a neighbour's AS is in next and not in prev: GoBGP
// filters the new copy towards it and leaves it the old one.
func joins(peers []peerBrief, prev, next map[uint32]bool) bool {
	for _, p := range peers {
		if next[p.as] && !prev[p.as] {
			return true
		}
	}
	return false
}

// copyIn returns the copy among a destination's paths, or nil.
func copyIn(paths []*api.Path, keep uint32) *api.Path {
	for _, p := range paths {
		if learned(p) {
			continue
		}
		if _, comms, err := pathAttrs(p); err == nil && slices.Contains(comms, keep) {
			return p
		}
	}
	return nil
}

// copyPath builds a copy of a path with attrs for p: the attributes
// except next hop and MED, the keep community added, next hop unspecified
// (GoBGP puts its session address towards eBGP neighbours, as for the
// learned path). ok is false for a path that carries the HOLD community
// or whose attributes do not serialize.
func (s *Speaker) copyPath(p netip.Prefix, attrs []bgp.PathAttributeInterface) (*api.Path, bool) {
	common := make([][]byte, 0, len(attrs)+1)
	marked := false
	for _, a := range attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeNextHop, *bgp.PathAttributeMpReachNLRI, *bgp.PathAttributeMultiExitDisc:
			continue
		case *bgp.PathAttributeCommunities:
			if slices.Contains(a.Value, s.cfg.hold) {
				return nil, false
			}
			marked = true
			b, err := bgp.NewPathAttributeCommunities(append(slices.Clone(a.Value), s.cfg.keep)).Serialize()
			if err != nil {
				return nil, false
			}
			common = append(common, b)
			continue
		}
		b, err := a.Serialize()
		if err != nil {
			return nil, false
		}
		common = append(common, b)
	}
	if !marked {
		b, err := bgp.NewPathAttributeCommunities([]uint32{s.cfg.keep}).Serialize()
		if err != nil {
			return nil, false
		}
		common = append(common, b)
	}
	nh := netip.IPv4Unspecified()
	if !p.Addr().Is4() {
		nh = netip.IPv6Unspecified()
	}
	c, err := s.pb.build(p, nh, common, false)
	if err != nil {
		return nil, false
	}
	return c, true
}

// rank is what GoBGP's multipath compares of a path (Path.Compare in
// v3.37): paths of equal rank to the best one are its multipath set.
type rank struct {
	ibgp      bool
	localPref uint32
	asLen     int
	origin    uint8
	med       uint32
}

func rankOf(p *api.Path, ourAS uint32) (rank, error) {
	attrs, err := apiutil.GetNativePathAttributes(p)
	if err != nil {
		return rank{}, err
	}
	r := rank{ibgp: p.SourceAsn == ourAS && ourAS != 0, localPref: 100}
	for _, a := range attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeLocalPref:
			r.localPref = a.Value
		case *bgp.PathAttributeAsPath:
			for _, seg := range a.Value {
				r.asLen += seg.ASLen()
			}
		case *bgp.PathAttributeOrigin:
			r.origin = a.Value
		case *bgp.PathAttributeMultiExitDisc:
			r.med = a.Value
		}
	}
	return r, nil
}

// learnedSet returns the learned paths GoBGP would choose if the copy on
// the destination were not there: its learned best path and, with
// multipath, the learned paths of the same rank, in GoBGP's order.
func (s *Speaker) learnedSet(p netip.Prefix, paths []*api.Path, multipath bool) []*api.Path {
	ls := learnedPaths(paths)
	if len(ls) == 0 || !multipath {
		return ls[:min(len(ls), 1)]
	}
	local := s.localAS.Load()
	first, err := rankOf(ls[0], local)
	if err != nil {
		s.opts.log.Warn("learned path with undecodable attributes", "prefix", p, "err", err)
		return ls[:1]
	}
	out := ls[:1:1]
	for _, l := range ls[1:] {
		if r, err := rankOf(l, local); err == nil && r == first {
			out = append(out, l)
		}
	}
	return out
}

// bestUnderCopy is what GoBGP's best-path watch would report of a
// destination if the copy on it were not there (learnedSet).
func (s *Speaker) bestUnderCopy(p netip.Prefix, paths []*api.Path, x *asIndex, multipath bool) BestPath {
	b := BestPath{Prefix: p}
	set := s.learnedSet(p, paths, multipath)
	if len(set) == 0 {
		return b
	}
	b.attrs = exportKey(set[0])
	for i, l := range set {
		var ix *asIndex
		if i == 0 {
			ix = x
		}
		nh, comms, mask, err := pathAttrsAS(l, ix)
		if err != nil {
			s.opts.log.Warn("learned path with undecodable attributes", "prefix", p, "err", err)
			continue
		}
		b.ases |= mask
		if slices.Contains(comms, s.cfg.hold) || slices.Contains(comms, s.cfg.keep) {
			continue
		}
		nb, _ := netip.ParseAddr(l.NeighborIp)
		s.addNexthop(&b, nh, nb)
	}
	b.sortNexthops()
	return b
}

// underCopies reads the paths of the copied prefixes among ps (all copied
// prefixes when ps is nil) and returns their learned best paths.
func (s *Speaker) underCopies(ctx context.Context, ps []netip.Prefix, multipath bool) ([]BestPath, error) {
	if ps == nil {
		for p := range s.cp.snapshot() {
			ps = append(ps, p)
		}
	} else {
		ps = slices.DeleteFunc(ps, func(p netip.Prefix) bool { return !s.cp.has(p) })
	}
	if len(ps) == 0 {
		return nil, nil
	}
	dests, err := s.lookup(ctx, ps)
	if err != nil {
		return nil, fmt.Errorf("read the paths under copies: %w", err)
	}
	x := s.nt.idx.Load()
	out := make([]BestPath, 0, len(ps))
	for _, p := range ps {
		b := s.bestUnderCopy(p, dests[p], x, multipath)
		// Lost: GoBGP's best path is learned, as its best-path event
		// would say. A local path of someone else's that replaced the
		// copy is left alone while it is there (the audit reports it).
		b.lost = len(dests[p]) > 0 && learned(dests[p][0]) && copyIn(dests[p], s.cfg.keep) == nil
		if key, ok := s.cp.get(p); ok {
			b.orphan = !copiedPathThere(dests[p], key)
		}
		out = append(out, b)
	}
	return out, nil
}

// recopy replaces the copies of prefixes released on one with new copies
// of their learned best path as it is now: its attributes changed on the
// same next hops (the route is the same, so they go out at once), or
// GoBGP lost the copy (another local path of the prefix replaced it; a
// failed call). It takes s.mu.
func (s *Speaker) recopy(ctx context.Context, ps []netip.Prefix) error {
	if len(ps) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.usable() != nil {
		return nil
	}
	return s.recopyLocked(ctx, ps)
}

// recopyLocked is recopy with s.mu held.
func (s *Speaker) recopyLocked(ctx context.Context, ps []netip.Prefix) error {
	changes := make([]change, 0, len(ps))
	for _, p := range ps {
		if st := s.rec.get(p); st.onCopy() {
			c := s.current(p)
			c.recopy = true
			changes = append(changes, c)
		}
	}
	return s.apply(ctx, changes)
}

// copySweep is how often WatchBest reads back every copied prefix, for
// what changes a neighbour's paths with no event GoBGP reports: a
// long-lived graceful restart's timer dropping stale paths, a soft reset
// in after an import policy changed. gobgpd-ext reads them back at once
// after a change of its own making (Speaker.ReadCopiesBack). The read is a
// slice of paths at a time, as after a session goes down. Sweeps are at
// least copySweep apart and a hundred times as long as WatchBest spent
// reading copies back since the last one, so they never take more than a
// hundredth of its time, however large the table or busy the churn. A
// variable only for this package's tests.
var copySweep = 10 * time.Minute

// ReadCopiesBack has WatchBest read back the learned paths under every
// copy (Config.ReleaseByCopy) soon, as it does when a session goes down.
// A soft reset in runs import policy over a neighbour's paths again and
// may change or refuse them, and GoBGP reports none of it to a watch:
// gobgpd-ext calls this after its own (a config reload) and after one
// asked over the API. Without copies, or without WatchBest running, it
// does nothing; it never blocks.
func (s *Speaker) ReadCopiesBack() {
	select {
	case s.reread <- struct{}{}:
	default:
	}
}

// copyWatch decides, from watchLearned's events, which copied prefixes to
// read back (WatchBest's under queue):
//   - an UPDATE: its prefixes that are out on copies;
//   - a neighbour's session leaving Established (GoBGP drops its paths,
//     or marks them stale for a graceful restart), or one that went down
//     entering Idle (a restart timer's end drops the stale paths; a
//     long-lived restart marks them): every copied prefix, since which of
//     them had a path from that neighbour is GoBGP's to know;
//   - an End-of-RIB from a neighbour that went down while watched (GoBGP
//     drops the stale paths it did not send again): every copied prefix;
//   - the UPDATE watch failing (lost): every copied prefix, with a warning,
//     since the UPDATEs until its replacement was in place went unseen.
//
// Its events come from two watches' goroutines.
type copyWatch struct {
	mu    sync.Mutex
	log   *slog.Logger
	cp    *copySet
	under *prefixQueue
	up    map[string]bool // last seen Established
	down  map[string]bool // went down while watched, no End-of-RIB since
}

func newCopyWatch(cp *copySet, under *prefixQueue, log *slog.Logger) *copyWatch {
	return &copyWatch{log: log, cp: cp, under: under, up: map[string]bool{}, down: map[string]bool{}}
}

func (w *copyWatch) event(ev learnedEvent) {
	if ev.lost != nil {
		w.all(slog.LevelWarn, "the watch of UPDATEs failed: what they changed until another took its place was not seen", "err", ev.lost)
		return
	}
	if ev.prefixes != nil {
		for _, p := range ev.prefixes {
			if w.cp.has(p) {
				w.under.add(p)
			}
		}
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case ev.eor:
		if w.down[ev.peer] {
			delete(w.down, ev.peer)
			w.all(slog.LevelInfo, "End-of-RIB after the session went down: its stale paths dropped", "neighbor", ev.peer)
		}
	case ev.state == api.PeerState_ESTABLISHED:
		w.up[ev.peer] = true
	case w.up[ev.peer]:
		delete(w.up, ev.peer)
		w.down[ev.peer] = true
		w.all(slog.LevelInfo, "session down: its paths dropped or marked stale", "neighbor", ev.peer)
	case ev.state == api.PeerState_IDLE && w.down[ev.peer]:
		w.all(slog.LevelInfo, "idle after going down: stale paths dropped or marked", "neighbor", ev.peer)
	}
}

// all queues every copied prefix, saying why at level when there are
// any (WatchBest's sweeps and ReadCopiesBack too).
func (w *copyWatch) all(level slog.Level, why string, attrs ...any) {
	ps := w.cp.prefixes()
	if len(ps) > 0 {
		w.log.Log(context.Background(), level, "reading the learned paths under every copy back",
			append(attrs, "why", why, "copies", len(ps))...)
	}
	w.under.addAll(ps)
}

// prefixes lists the set.
func (c *copySet) prefixes() []netip.Prefix {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]netip.Prefix, 0, len(c.m))
	for k := range c.m {
		out = append(out, k.Prefix())
	}
	return out
}
