package gobgp

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"maps"
	"net/netip"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// Kept copies: make-before-break when the attributes change.
//
// When the best path of a released prefix changes what neighbours receive
// (another AS path, other communities), GoBGP exports the new path in the
// same main-loop pass that chose it, and a fence can only withdraw it: for
// the time the hardware takes to program the new route, neighbours lose a
// prefix the ASIC still forwards with its old entry (issue 14; FRR's
// suppress-fib-pending instead keeps the previous advertisement).
//
// So when the previous best path is still in GoBGP's RIB (another
// neighbour's, as when a primary path comes back), the Speaker adds a copy
// of it as a local path of its own: the same attributes, its next hop
// unspecified (GoBGP puts its session address, as it does for the learned
// path towards an eBGP neighbour), without a MED (GoBGP strips a learned
// path's MED towards eBGP neighbours, not a local path's), and marked with
// the keep community. A local path wins over learned paths of the same
// LOCAL_PREF, so the copy becomes the best path; the gate's policy lets it
// through the held sets and strips the mark. The prefix is held again
// under it, so the new learned path waits for its route as usual, and
// neighbours keep the previous attributes until the release deletes the
// copy and the new path goes out in its place: no withdrawal in between.
//
// While the copy is best, GoBGP's best-path watch says nothing of the
// learned paths under it. WatchBest therefore reads them back every
// keepPoll (one ListPath for the kept prefixes) and drops a copy as soon
// as they change: the prefix is then fenced as before (withdrawn until its
// new route is programmed), and the watch reports the new best path.
// With releases by copy (copy.go) the learned-path watch says when to
// read them instead, and a kept prefix stays on its copy until the release
// of its newest route replaces it.
//
// What is not kept, and is fenced as before:
//   - a previous best path that is gone from the RIB (the same neighbour
//     sent the new attributes, or withdrew it): there is nothing to copy;
//   - a previous path learned over iBGP: a local copy would go to iBGP
//     neighbours that never received the learned one;
//   - a neighbour's AS in one of the two paths only (strandedBy): GoBGP's
//     AS-loop filter would leave it holding the new path or the copy;
//   - a new best path with a higher LOCAL_PREF (an import policy prefers
//     it): it would beat the copy;
//   - prefixes beyond maxKept copies at a time;
//   - gobgpd's fallback rendered before kept copies (sameAsFallback).
//
// Neighbours still see the new attributes for the fence window (GoBGP
// exports them before WatchBest hears of them), then the previous ones
// again until the new route is programmed.

// keepPoll is how often WatchBest reads the learned paths under kept
// copies back (checkCopies), at most: a read that takes longer than a
// tenth of it spaces the next one out.
const keepPoll = 100 * time.Millisecond

// maxKept bounds the copies at a time, and with them the read-back: when
// a whole table changes attributes at once (a neighbour's new AS path
// prepend), the prefixes beyond it are fenced as before.
const maxKept = 16384

// keepCommunity is the community that marks kept copies: the HOLD
// community's neighbour in the same private range, so a network that
// keeps one value free for the gate keeps the pair.
func keepCommunity(hold uint32) uint32 {
	if hold&0xffff == 0xffff {
		return hold - 1
	}
	return hold + 1
}

// keepReq asks Fence to keep p out on a copy of its previous best path
// (whose attributes fingerprint to was) while its new one (now, over
// nexthops) waits for its route.
type keepReq struct {
	prefix   netip.Prefix
	was, now uint64
	nexthops []netip.Addr
}

// setKeeps records whether the gate's policy lets kept copies out; called
// with s.mu held.
func (s *Speaker) setKeeps(ok bool) {
	if s.keeps != ok && !ok {
		s.opts.log.Warn("gobgp gate: gobgpd's fallback predates kept copies: a prefix whose attributes change is withdrawn until its new route is programmed; render it again (fibgated --print-fallback) for make-before-break")
	}
	s.keeps = ok
}

// Kept reports how many prefixes the Speaker keeps out on a copy of a
// learned path (their previous best path, or released by copy), for
// metrics and tests.
func (s *Speaker) Kept() int {
	return s.cp.len()
}

// keep tries to keep the released prefixes of reqs out on copies; it
// returns the prefixes to fence as usual instead. Called with s.mu held.
func (s *Speaker) keep(ctx context.Context, reqs []keepReq, clock uint64) (fence []netip.Prefix, err error) {
	var try []keepReq
	var onCopy []netip.Prefix
	for _, r := range reqs {
		st := s.rec.get(r.prefix)
		if s.cfg.ReleaseByCopy && st.kept && s.cfg.scopeOf(r.prefix).contains(r.prefix) {
			onCopy = append(onCopy, r.prefix) // stays on it if it can (stayOnCopies)
			continue
		}
		if !s.keeps || !st.transit || st.originated || !s.cfg.scopeOf(r.prefix).contains(r.prefix) ||
			(!s.cfg.ReleaseByCopy && s.cp.len()+len(try) >= maxKept) {
			fence = append(fence, r.prefix)
			continue
		}
		try = append(try, r)
	}
	fence = append(fence, s.stayOnCopies(ctx, onCopy, clock)...)
	if len(try) == 0 {
		return fence, nil
	}
	as, err := s.ourAS(ctx)
	if err != nil {
		s.opts.log.Warn("cannot keep prefixes on copies; fencing instead", "prefixes", len(try), "err", err)
		return append(fence, prefixesOf(try)...), nil
	}
	var peers []peerBrief
	dests, err := s.lookup(ctx, prefixesOf(try))
	if err == nil {
		peers, err = s.establishedEBGP(ctx, as)
	}
	if err != nil {
		s.opts.log.Warn("reading the previous best paths to keep failed; fencing instead", "prefixes", len(try), "err", err)
		return append(fence, prefixesOf(try)...), nil
	}
	var copies []*api.Path
	var kept []netip.Prefix
	sigs := make(map[netip.Prefix]uint64, len(try))
	for _, r := range try {
		c, sig, ok := s.copyOf(r, dests[r.prefix], as, peers)
		if !ok {
			fence = append(fence, r.prefix)
			continue
		}
		copies, kept = append(copies, c), append(kept, r.prefix)
		sigs[r.prefix] = sig
	}
	if len(kept) == 0 {
		return fence, nil
	}
	// The copy first: it replaces the new path at the neighbours (an
	// update, no withdrawal); then the learned path is held under it. The
	// record says taken back from the start, so a failure midway ends
	// held (Check re-drives the suspect prefixes and drops the copies).
	// The copies are recorded first too: a failed stream may have added
	// some, and Check deletes what is recorded.
	for _, p := range kept {
		st := s.rec.get(p)
		st.transit, st.suspect, st.kept = false, true, true
		st.fence = max(st.fence, clock)
		s.rec.set(p, st)
		s.cp.set(p, sigs[p])
	}
	if err := s.b.sendPaths(ctx, copies); err != nil {
		s.dirty = true
		return fence, fmt.Errorf("add kept copies (%d prefixes): %w", len(kept), err)
	}
	if err := s.setReleased(ctx, kept, false); err != nil {
		s.dirty = true
		return fence, fmt.Errorf("hold kept prefixes in held set (%d prefixes): %w", len(kept), err)
	}
	for _, p := range kept {
		st := s.rec.get(p)
		st.released, st.suspect = false, false
		s.rec.set(p, st)
	}
	// A copy that is not best would leave GoBGP's export of the new path
	// as it was: unconfirmed, out. Nothing known makes it lose (the rules
	// above), but if one does, its prefix is taken back at once.
	after, err := s.lookup(ctx, kept)
	if err != nil {
		return fence, fmt.Errorf("read the kept copies back: %w", err)
	}
	var lost []change
	for _, p := range kept {
		if !s.copyIsBest(after[p]) {
			c := s.current(p)
			c.transit = false
			lost = append(lost, c)
		}
	}
	if len(lost) > 0 {
		s.opts.log.Warn("kept copies that are not the best path; taking their prefixes back", "prefixes", len(lost))
		if err := s.apply(ctx, lost); err != nil {
			return fence, err
		}
	}
	return fence, nil
}

// stayOnCopies keeps prefixes already out on a copy (released by copy,
// copy.go; or kept for an earlier change) on it while their new route is
// programmed, when the path the copy was made from is still in GoBGP: the
// release of the new route replaces the copy. They are taken back for the
// tracker, with a fence's clock, so that no release of an older route
// replaces the copy. When that path is gone (its neighbour withdrew it, or
// sent other attributes: the blackhole lab's "primary withdrawn"), the
// copy advertises a path nobody forwards on any more, so the prefix is
// returned to be fenced (withdrawn until the new route is programmed), as
// keep does when there is no previous path to copy. Called with s.mu held.
func (s *Speaker) stayOnCopies(ctx context.Context, ps []netip.Prefix, clock uint64) (fence []netip.Prefix) {
	if len(ps) == 0 {
		return nil
	}
	dests, err := s.lookup(ctx, ps)
	if err != nil {
		s.opts.log.Warn("reading the paths under copies failed; fencing instead", "prefixes", len(ps), "err", err)
		return ps
	}
	for _, p := range ps {
		key, _ := s.cp.get(p)
		if !copiedPathThere(dests[p], key) {
			fence = append(fence, p)
			continue
		}
		st := s.rec.get(p)
		st.transit = false
		st.fence = max(st.fence, clock)
		s.rec.set(p, st)
	}
	return fence
}

func prefixesOf(rs []keepReq) []netip.Prefix {
	out := make([]netip.Prefix, len(rs))
	for i, r := range rs {
		out[i] = r.prefix
	}
	return out
}

// ourAS returns GoBGP's own AS, read once.
func (s *Speaker) ourAS(ctx context.Context) (uint32, error) {
	if as := s.localAS.Load(); as != 0 {
		return as, nil
	}
	as, err := s.b.localAS(ctx)
	if err != nil {
		return 0, fmt.Errorf("read gobgp's AS: %w", err)
	}
	s.localAS.Store(as)
	return as, nil
}

// lookup reads the paths GoBGP holds for prefixes, in GoBGP's order (the
// best path first), with attributes in the best-path watch's form so that
// their fingerprints compare (exportKey, watched.key). In the wire form
// only, when the watch is native: every reader here prefers it, and
// GoBGP's API form (an Any per attribute and NLRI) was a seventh of what
// gobgpd-ext allocated while best paths moved (make bench-churn MOVES=1).
func (s *Speaker) lookup(ctx context.Context, ps []netip.Prefix) (map[netip.Prefix][]*api.Path, error) {
	out := make(map[netip.Prefix][]*api.Path, len(ps))
	binary := s.b.attrsBinary()
	for _, fam := range []*api.Family{familyV4, familyV6} {
		r := &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: fam, EnableAttributeBinary: binary, EnableOnlyBinary: binary}
		for _, p := range ps {
			if p.Addr().Is4() == (fam == familyV4) {
				r.Prefixes = append(r.Prefixes, &api.TableLookupPrefix{Prefix: p.String(), Type: api.TableLookupPrefix_EXACT})
			}
		}
		if len(r.Prefixes) == 0 {
			continue
		}
		err := s.b.listPath(ctx, r, func(d *api.Destination) {
			p, err := netip.ParsePrefix(d.Prefix)
			if err == nil {
				out[p.Masked()] = d.Paths
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// copyIsBest reports whether a destination's best path (first, and
// marked so by ListPath on the global table) is a kept copy.
func (s *Speaker) copyIsBest(paths []*api.Path) bool {
	if len(paths) == 0 || !paths[0].Best {
		return false
	}
	_, comms, err := pathAttrs(paths[0])
	return err == nil && slices.Contains(comms, s.cfg.keep)
}

// learnedPaths returns the paths of a destination that neighbours sent,
// in GoBGP's order.
func learnedPaths(paths []*api.Path) []*api.Path {
	var out []*api.Path
	for _, p := range paths {
		if learned(p) {
			out = append(out, p)
		}
	}
	return out
}

// learnedSig fingerprints the learned paths of a destination in GoBGP's
// order: any change under a copy (a path added, gone, or with other
// attributes or next hop) changes it.
func (s *Speaker) learnedSig(paths []*api.Path) uint64 {
	var h maphash.Hash
	h.SetSeed(exportSeed)
	for _, p := range learnedPaths(paths) {
		h.WriteString(p.NeighborIp)
		h.Write(binary.LittleEndian.AppendUint64(nil, exportKey(p)))
		nh, _, _ := pathAttrs(p)
		h.Write(nh.AsSlice())
		h.WriteByte(0xff)
	}
	return h.Sum64()
}

// copyOf builds the kept copy for r from the destination's paths, if the
// new best path is still GoBGP's learned best, the previous one is still
// there, learned over eBGP, and every neighbour that may have received the
// new path in the fence window receives the copy too (strandedBy).
func (s *Speaker) copyOf(r keepReq, paths []*api.Path, ourAS uint32, peers []peerBrief) (*api.Path, uint64, bool) {
	ls := learnedPaths(paths)
	if len(ls) == 0 || exportKey(ls[0]) != r.now {
		return nil, 0, false // moved on since the event: fence
	}
	if nh, _, err := pathAttrs(ls[0]); err != nil || !slices.Contains(r.nexthops, nh) {
		return nil, 0, false
	}
	var prev *api.Path
	for _, p := range ls[1:] {
		if exportKey(p) == r.was && p.SourceAsn != ourAS {
			prev = p
			break
		}
	}
	if prev == nil {
		return nil, 0, false
	}
	attrs, err := apiutil.GetNativePathAttributes(prev)
	if err != nil {
		s.opts.log.Warn("previous best path with undecodable attributes; fencing", "prefix", r.prefix, "err", err)
		return nil, 0, false
	}
	newAttrs, err := apiutil.GetNativePathAttributes(ls[0])
	if err != nil {
		return nil, 0, false
	}
	if localPref(newAttrs) > localPref(attrs) {
		return nil, 0, false // the copy would not be best: GoBGP picks LOCAL_PREF first
	}
	if n := strandedBy(peers, asesOf(attrs), asesOf(newAttrs), ls[0].NeighborIp, s.notToHas(r.prefix)); n != "" {
		s.opts.log.Debug("not keeping: a neighbour would keep the new path", "prefix", r.prefix, "neighbour", n)
		return nil, 0, false
	}
	c, ok := s.copyPath(r.prefix, attrs)
	if !ok {
		return nil, 0, false
	}
	return c, s.learnedSig(paths), true
}

// strandedBy names a neighbour that would be left holding a path it
// should not, or returns "". GoBGP sends no eBGP neighbour a path with the
// neighbour's AS in it, and when the best path is filtered so, it sends no
// withdrawal of the path it sent before either (filterpath in v3.37 stops
// before its withdrawal check). So a copy is safe only if every neighbour
// sees the previous and the new path alike:
//   - its AS in the previous path only: it got the new path in the fence
//     window and would never hear of the copy, keeping the new path,
//     unconfirmed, for the whole programming time. The blackhole lab's
//     "primary comes up" is that case: leaf1's previous path came through
//     the spine, the new one from host1. Unless the prefix is in the AS's
//     not-to set (protected; notto.go): then it got nothing in the window,
//     and gets the new path at the release;
//   - its AS in the new path only: it gets the copy, and the release (the
//     copy deleted, the new path filtered for it) would leave it holding
//     the copy for good.
//
// Such a prefix is fenced instead: a HOLD path is rejected by policy, not
// by that filter, so its withdrawal goes out. The new path's own
// neighbour is left out: GoBGP withdraws from it what it sent, instead of
// sending the path back.
func strandedBy(peers []peerBrief, prev, next map[uint32]bool, source string, protected func(as uint32) bool) string {
	for _, p := range peers {
		if prev[p.as] != next[p.as] && p.addr != source && !(prev[p.as] && protected(p.as)) {
			return p.addr
		}
	}
	return ""
}

// localPref returns a path's LOCAL_PREF as GoBGP compares it: 100 when
// the path has none.
func localPref(attrs []bgp.PathAttributeInterface) uint32 {
	for _, a := range attrs {
		if lp, ok := a.(*bgp.PathAttributeLocalPref); ok {
			return lp.Value
		}
	}
	return 100
}

// asesOf returns the ASes of a path's AS_PATH.
func asesOf(attrs []bgp.PathAttributeInterface) map[uint32]bool {
	out := map[uint32]bool{}
	for _, a := range attrs {
		if ap, ok := a.(*bgp.PathAttributeAsPath); ok {
			for _, seg := range ap.Value {
				for _, as := range seg.GetAS() {
					out[as] = true
				}
			}
		}
	}
	return out
}

// checkCopies reads the learned paths under the kept copies back and
// fences the prefixes whose learned paths changed (the copy goes, the
// prefix is withdrawn until its new route is programmed), since GoBGP's
// best-path watch does not report them while a copy is best.
func (s *Speaker) checkCopies(ctx context.Context) error {
	s.mu.Lock()
	if s.cp.len() == 0 || s.closed {
		s.mu.Unlock()
		return nil
	}
	snap := s.cp.snapshot()
	s.mu.Unlock()
	ps := slices.Collect(maps.Keys(snap))
	dests, err := s.lookup(ctx, ps)
	if err != nil {
		return fmt.Errorf("read the paths under kept copies: %w", err)
	}
	var changed []netip.Prefix
	for p, sig := range snap {
		if s.learnedSig(dests[p]) != sig || !s.copyIsBest(dests[p]) {
			changed = append(changed, p)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	s.opts.log.Debug("learned paths changed under kept copies; fencing", "prefixes", len(changed))
	// Only copies still as read: a release may have replaced one
	// meanwhile. The best path is GoBGP's business here: if it changed,
	// its event follows the take-back, and its fence moves the clock.
	return s.takeBack(ctx, changed, func(p netip.Prefix) bool {
		sig, ok := s.cp.get(p)
		return ok && sig == snap[p]
	})
}

// dropCopies deletes the kept copies (keep.go); their prefixes stay
// held. Copies that release a prefix (Config.ReleaseByCopy) stay unless
// all is set. Called with s.mu held.
func (s *Speaker) dropCopies(ctx context.Context, all bool) error {
	snap := s.cp.snapshot()
	var del []*api.Path
	var gone []netip.Prefix
	for p := range snap {
		if !all && s.rec.get(p).onCopy() {
			continue
		}
		hp, err := s.pb.holdPath(p, true)
		if err != nil {
			return err
		}
		del, gone = append(del, hp), append(gone, p)
	}
	if len(del) == 0 {
		return nil
	}
	if err := s.b.sendPaths(ctx, del); err != nil {
		return fmt.Errorf("delete %d kept copies: %w", len(del), err)
	}
	for _, p := range gone {
		st := s.rec.get(p)
		st.kept, st.transit = false, false // a release on the copy is taken back
		s.rec.set(p, st)
		s.cp.del(p)
	}
	return nil
}
