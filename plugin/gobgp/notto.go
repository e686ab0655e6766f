package gobgp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fibgate/fibgate/plugin/internal/pkey"
	api "github.com/osrg/gobgp/v3/api"
)

// Not-to sets: the part of the fence window that blackholes.
//
// GoBGP sends no eBGP neighbour a path with the neighbour's AS in it
// (isASLoop), and when a prefix's new best path lacks that AS, it exports
// the new path to that neighbour in the same main-loop pass that chose it:
// before WatchBest can fence the prefix. A neighbour that had a path from
// us and now gets the new attributes early still sends its traffic where
// the ASIC forwards it with the old entry. A neighbour that had nothing
// from us (its AS was in the previous path: typically the spine the
// previous path came through) is attracted to a route the ASIC does not
// have yet, and its traffic loops back to it on the old entry: the
// blackhole of docs/blackhole.md's "primary comes up".
//
// So, per eBGP neighbour AS X, a prefix set "notTo X" holds every released
// prefix whose released path carries X, and a statement of the gate's
// policy rejects it towards X's neighbours (match-neighbor-set). For the
// released path that changes nothing (GoBGP filters it anyway); when the
// best path changes, the new one does not reach X until the release of
// the new route takes the prefix out of the set. GoBGP then sends X no
// withdrawal either: the previous path, judged by the same policy, is
// rejected too, so X is not told of a path it never had.
//
// Bookkeeping: WatchBest records for each learned best path which indexed
// ASes its AS_PATH carries, as a bit mask (at most maxNotTo ASes, bits
// assigned in the order the ASes are met); a release puts the prefix in
// the sets of its mask before the held set lets it out (apply's phase A),
// a take-back takes it out once it is held (phase C). The index follows
// GoBGP's neighbours: read at install, when a best path comes from an AS
// it does not know, and at most every notToRefresh by Check. A set whose
// AS is in most released paths is kept in GoBGP as its complement
// (ntform.go); the record's bits mean the same in both forms.

// maxNotTo bounds the indexed neighbour ASes (one bit each). A neighbour of
// a further AS gets the fence window as before; it is logged once.
const maxNotTo = 64

// notToRefresh is how soon Check reads GoBGP's neighbours again once a
// session came up (followSessions), and how often it reads them while it
// cannot follow GoBGP's sessions: for ASes that appear in paths before any
// path comes from them.
const notToRefresh = time.Second

// notToBackstop is how often Check looks at GoBGP's neighbours while it
// follows GoBGP's sessions and none came up: for a change of a neighbour
// that no session event shows (a watch that missed one while it started).
// A read walks every neighbour's adj-in in GoBGP's main loop, which every
// release and fence waits for: at a full table from two upstreams 0.6 s
// (make bench-churn MOVES=1), a stall of every move in flight. So the
// backstop first fingerprints the neighbours from a peer watch's dump
// (about 100 µs of the loop) and reads them only when that differs from
// the last read's, or the last read is notToFullBackstop old.
const notToBackstop = 30 * time.Second

// notToFullBackstop is how old the last read may get while the dump's
// fingerprint stays the same: for what the dump does not show (a
// neighbour's route-server or ADD-PATH setting, which GoBGP v3.37 changes
// only by deleting and adding the neighbour, a session event).
const notToFullBackstop = 10 * time.Minute

// refreshDuty spaces Check's reads of GoBGP's neighbours at least this many
// times the last read's duration apart. GoBGP counts every neighbour's
// adj-in for a listing, in its main loop: at a full table about 50 ms a
// read, and read every second that was a ninth of the main loop's work
// while the table's releases went out.
const refreshDuty = 100

// asIndex maps eBGP neighbour ASes to bits. It is replaced, never changed:
// WatchBest reads it without a lock.
type asIndex struct {
	ases  []uint32         // bit i is ases[i]
	bit   map[uint32]uint8 // the reverse
	addrs map[uint32][]string
	full  bool // an AS found no bit
}

func (x *asIndex) maskOf(asPath []uint32) uint64 {
	if x == nil {
		return 0
	}
	var m uint64
	for _, as := range asPath {
		if b, ok := x.bit[as]; ok {
			m |= 1 << b
		}
	}
	return m
}

func (x *asIndex) has(as uint32) bool {
	if x == nil {
		return false
	}
	_, ok := x.bit[as]
	return ok
}

// notTo is a Speaker's not-to state.
type notTo struct {
	idx       atomic.Pointer[asIndex]
	refreshMu sync.Mutex    // one refresh at a time
	refreshed time.Time     // under refreshMu: when the last read (or a look, below) ended
	took      time.Duration // under refreshMu: how long the last read took
	// Under refreshMu: the neighbours' fingerprint taken with the last
	// read (sigOK: one was), and when that read ended.
	sig      uint64
	sigOK    bool
	lastRead time.Time
	// following says followSessions watches GoBGP's sessions; sessionUp
	// that one came up (or the watch started) since the last read began.
	following, sessionUp atomic.Bool

	// mu guards last: what WatchBest last reported of each prefix with a
	// route, the AS mask of its best path among it (set after the
	// prefix's fence). WatchBest writes it; releases read the masks. One
	// map for both: a second one keyed by prefix cost about 100 bytes a
	// prefix (12 MB at 120k prefixes).
	mu   sync.Mutex
	last map[pkey.Key]reported // pointer-free: never scanned by the GC

	// Under Speaker.mu: what is in GoBGP. stmts: ASes whose statements
	// are in the gate's policy (and whose sets exist); addrs: the
	// neighbour addresses in each AS's neighbour set.
	stmts  map[uint32]bool
	addrs  map[uint32][]string
	synced *asIndex // the index Check last synced

	// Under Speaker.mu: members counts the record's prefixes per bit (the
	// member form's entries); comp holds, for each AS whose set is in
	// complement form (ntform.go), the prefixes carved out of it.
	members [maxNotTo]int64
	comp    map[uint32]map[pkey.Key]struct{}
	// minComplement is the members an AS needs before the complement
	// form is worth it.
	minComplement int64

	// entries counts the entries the sets hold in GoBGP (members of the
	// member form, carve-outs of the complement form), for NotToEntries.
	entries atomic.Int64
}

func newNotTo() *notTo {
	return &notTo{last: make(map[pkey.Key]reported), stmts: make(map[uint32]bool), addrs: make(map[uint32][]string),
		comp: make(map[uint32]map[pkey.Key]struct{}), minComplement: defaultMinComplement}
}

// ntName is the prefix of a not-to set's name: "<Name>-nt-<AS>".
func (n *normalized) ntName(as uint32) string {
	return n.Name + "-nt-" + strconv.FormatUint(uint64(as), 10)
}

// ntSet names AS as's prefix set of p's family.
func (n *normalized) ntSet(as uint32, v4 bool) string {
	if v4 {
		return n.ntName(as) + "-v4"
	}
	return n.ntName(as) + "-v6"
}

// ntStmt names the gate policy's statement for as and a family. Named
// after the policy too: statement names are global in GoBGP.
func (n *normalized) ntStmt(as uint32, v4 bool) string {
	f := "-v4"
	if !v4 {
		f = "-v6"
	}
	return n.policy + "-nt-" + strconv.FormatUint(uint64(as), 10) + f
}

// ntAS reads the AS back from a not-to set's or statement's name.
func (n *normalized) ntAS(name string, prefix string) (uint32, bool) {
	rest, ok := strings.CutPrefix(name, prefix+"-nt-")
	if !ok {
		return 0, false
	}
	rest, ok = strings.CutSuffix(rest, "-v4")
	if !ok {
		if rest, ok = strings.CutSuffix(rest, "-v6"); !ok {
			return 0, false
		}
	}
	as, err := strconv.ParseUint(rest, 10, 32)
	return uint32(as), err == nil
}

// refreshNeighbours reads GoBGP's eBGP neighbours into the index: new ASes
// get the next free bits, addresses are the current ones. iBGP neighbours
// and route-server clients (GoBGP does not filter AS loops towards them)
// are left out.
func (s *Speaker) refreshNeighbours(ctx context.Context) error {
	s.nt.refreshMu.Lock()
	defer s.nt.refreshMu.Unlock()
	return s.refreshNeighboursLocked(ctx, nil)
}

func (s *Speaker) refreshNeighboursLocked(ctx context.Context, also []uint32) error {
	local, err := s.ourAS(ctx)
	if err != nil {
		return err
	}
	addrs := make(map[uint32][]string)
	var order []uint32
	start := time.Now()
	// A session that comes up from here on is read again next time.
	s.nt.sessionUp.Store(false)
	// The fingerprint first: a neighbour that changes during the read is
	// read again at the next backstop.
	sig, sigErr := s.neighbourSig(ctx)
	var ap addPathSenders
	cfg := s.scoped.Load()
	err = s.b.listPeers(ctx, func(p *api.Peer) {
		ap.note(p, cfg)
		as := p.GetConf().GetPeerAsn()
		if as == 0 {
			as = p.GetState().GetPeerAsn()
		}
		if as == 0 || as == local || p.GetRouteServer().GetRouteServerClient() {
			return
		}
		a := p.GetState().GetNeighborAddress()
		if a == "" {
			a = p.GetConf().GetNeighborAddress()
		}
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return // a dynamic range's template; its peers are listed once up
		}
		ip = ip.WithZone("").Unmap() // GoBGP matches the session's address, zoneless
		if _, ok := addrs[as]; !ok {
			order = append(order, as)
		}
		// As GoBGP lists a neighbour set's members back.
		addrs[as] = append(addrs[as], netip.PrefixFrom(ip, ip.BitLen()).String())
	})
	if err != nil {
		s.nt.sessionUp.Store(true) // read again at the next chance
		return fmt.Errorf("list neighbours: %w", err)
	}
	s.reportAddPathSend(ap)
	s.nt.refreshed = time.Now()
	s.nt.took = s.nt.refreshed.Sub(start)
	s.nt.lastRead = s.nt.refreshed
	s.nt.sig, s.nt.sigOK = sig, sigErr == nil
	old := s.nt.idx.Load()
	x := &asIndex{bit: make(map[uint32]uint8), addrs: addrs}
	if old != nil {
		x.ases = slices.Clone(old.ases)
		for as, b := range old.bit {
			x.bit[as] = b
		}
		x.full = old.full
	}
	for _, as := range append(order, also...) {
		if _, ok := x.bit[as]; ok {
			continue
		}
		if len(x.ases) == maxNotTo {
			if !x.full {
				s.opts.log.Warn("more eBGP neighbour ASes than the gate indexes; neighbours of the others keep the fence window (docs/design-notes.md, \"Make-before-break\")",
					"indexed", maxNotTo, "first_left_out", as)
			}
			x.full = true
			continue
		}
		x.bit[as] = uint8(len(x.ases))
		x.ases = append(x.ases, as)
	}
	if old != nil && slices.Equal(old.ases, x.ases) && maps.EqualFunc(old.addrs, x.addrs, slices.Equal) {
		return nil // the same: Check has nothing to sync
	}
	s.nt.idx.Store(x)
	return nil
}

// maybeRefresh refreshes the index when it is older than notToRefresh
// (notToBackstop while followSessions sees no session come up) and
// refreshDuty times the last read's duration.
func (s *Speaker) maybeRefresh(ctx context.Context) {
	every := notToRefresh
	backstop := s.nt.following.Load() && !s.nt.sessionUp.Load()
	if backstop {
		every = notToBackstop
	}
	s.nt.refreshMu.Lock()
	due := time.Since(s.nt.refreshed) >= max(every, refreshDuty*s.nt.took)
	s.nt.refreshMu.Unlock()
	if !due || backstop && s.neighboursUnchanged(ctx) {
		return
	}
	if err := s.refreshNeighbours(ctx); err != nil && ctx.Err() == nil {
		s.opts.log.Debug("reading gobgp's neighbours for the not-to sets failed", "err", err)
	}
}

// neighbourSig fingerprints every neighbour of a peer watch's dump, up or
// not: its address, AS and session state (neighboursUnchanged), where the
// backend can (peerLister).
func (s *Speaker) neighbourSig(ctx context.Context) (uint64, error) {
	l, ok := s.b.(peerLister)
	if !ok {
		return 0, errors.New("the backend has no peer watch's dump")
	}
	var g signed
	err := l.dumpPeers(ctx, g.add)
	return g.sum, err
}

// neighboursUnchanged says whether the backstop may skip its read: the
// neighbours' fingerprint is the last read's, and that read is younger
// than notToFullBackstop. It then counts as a read for the spacing.
func (s *Speaker) neighboursUnchanged(ctx context.Context) bool {
	sig, err := s.neighbourSig(ctx)
	s.nt.refreshMu.Lock()
	defer s.nt.refreshMu.Unlock()
	if err != nil || !s.nt.sigOK || sig != s.nt.sig || time.Since(s.nt.lastRead) >= notToFullBackstop || s.nt.sessionUp.Load() {
		return false
	}
	s.nt.refreshed = time.Now()
	return true
}

// followSessions tells Check when GoBGP's neighbours are worth reading
// again: when a session comes up, which is when a new neighbour, or one
// whose AS or ADD-PATH setting changed, starts to receive paths. Polling
// them every second instead held GoBGP's main loop for a listing that
// counts every neighbour's adj-in (ListPeer in v3.37), about 1% of the
// loop's time whatever the table's size (at a full table 50 ms every 5
// s), and releases and fences waited behind it. While the watch is broken
// Check polls as before; it is tried again every notToBackstop until ctx
// ends.
func (s *Speaker) followSessions(ctx context.Context) {
	defer s.nt.following.Store(false)
	for {
		// Whatever happened while nobody watched is read once.
		s.nt.sessionUp.Store(true)
		s.nt.following.Store(true)
		err := s.b.watchPeers(ctx, func(p *api.Peer) {
			if p.GetState().GetSessionState() == api.PeerState_ESTABLISHED {
				s.nt.sessionUp.Store(true)
			}
		})
		s.nt.following.Store(false)
		if ctx.Err() != nil {
			return
		}
		s.opts.log.Debug("watching gobgp's sessions failed; reading its neighbours every second meanwhile", "err", err)
		t := time.NewTimer(notToBackstop)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// prefixMask is a prefix with bits of the AS index: its best path's ASes
// (recordMasks), or the not-to sets it enters or leaves (editNotTo).
type prefixMask struct {
	p    netip.Prefix
	mask uint64
}

// releaseMasks returns the AS masks of the transit releases among the
// changes of an apply: their best paths' as WatchBest last reported them.
func (s *Speaker) releaseMasks(changes []change) map[netip.Prefix]uint64 {
	var ps []netip.Prefix
	for _, c := range changes {
		if c.transit && !c.originated && s.cfg.scopeOf(c.p).contains(c.p) {
			ps = append(ps, c.p)
		}
	}
	return s.masksOf(ps)
}

// masksOf returns the non-zero AS masks of prefixes' best paths as
// WatchBest last reported them.
func (s *Speaker) masksOf(ps []netip.Prefix) map[netip.Prefix]uint64 {
	out := make(map[netip.Prefix]uint64, len(ps))
	s.nt.mu.Lock()
	defer s.nt.mu.Unlock()
	for _, p := range ps {
		if m := s.nt.last[pkey.Of(p)].ases; m != 0 {
			out[p] = m
		}
	}
	return out
}

// ntTargets returns the not-to masks the prefixes of an apply must have
// once applied: a transit release's mask (releaseMasks), limited to the
// ASes whose statements are in GoBGP (syncNotTo puts in those of new ASes
// first), anything else none. s.mu is held.
func (s *Speaker) ntTargets(ctx context.Context, masks map[netip.Prefix]uint64) (map[netip.Prefix]uint64, error) {
	out := make(map[netip.Prefix]uint64, len(masks))
	x := s.nt.idx.Load()
	if s.cfg.NoNotTo || len(masks) == 0 || x == nil {
		return out, nil
	}
	var need uint64
	for _, m := range masks {
		need |= m
	}
	if err := s.syncNotTo(ctx, x, need); err != nil {
		return nil, err
	}
	ready := s.readyMask(x)
	for p, m := range masks {
		if m &= ready; m != 0 {
			out[p] = m
		}
	}
	return out, nil
}

// readyMask has the bits of the ASes whose statements and sets are in
// GoBGP. s.mu is held.
func (s *Speaker) readyMask(x *asIndex) uint64 {
	var ready uint64
	for b, as := range x.ases {
		if s.nt.stmts[as] {
			ready |= 1 << b
		}
	}
	return ready
}

// editNotTo adds (or deletes) prefixes to (from) the not-to sets of their
// masks' ASes and, once GoBGP has them so, sets the record's bits (a
// prefix the record lacks has none to set). For an AS whose set is in
// complement form only the bits change: the caller carves (ntform.go).
// s.mu is held.
func (s *Speaker) editNotTo(ctx context.Context, es []prefixMask, del bool) error {
	if len(es) == 0 {
		return nil
	}
	x := s.nt.idx.Load()
	if x == nil {
		return errors.New("not-to sets: no neighbour index")
	}
	byName := make(map[string][]setEntry)
	for _, e := range es {
		for m := e.mask; m != 0; m &= m - 1 {
			as := x.ases[bits.TrailingZeros64(m)]
			if s.nt.comp[as] != nil {
				continue
			}
			name := s.cfg.ntSet(as, e.p.Addr().Is4())
			byName[name] = append(byName[name], exactEntry(e.p))
		}
	}
	if err := s.editNamedSets(ctx, byName, del); err != nil {
		return err
	}
	for _, e := range es {
		st, ok := s.rec.lookup(e.p)
		if !ok {
			continue
		}
		if del {
			s.setNotTo(&st, st.notTo&^e.mask)
		} else {
			s.setNotTo(&st, st.notTo|e.mask)
		}
		s.rec.set(e.p, st)
	}
	return nil
}

// syncNotTo puts in GoBGP what the index has and GoBGP lacks: for an AS
// of need without statements, its neighbour set, its two prefix sets
// (seeded with nullPrefix: GoBGP takes a prefix set's family from its
// first entry) and its statements, appended to the gate's policy; for an
// AS with statements, new neighbour addresses. s.mu is held.
func (s *Speaker) syncNotTo(ctx context.Context, x *asIndex, need uint64) error {
	for b, as := range x.ases {
		if !s.nt.stmts[as] && need&(1<<b) == 0 {
			// Not needed yet: an AS no released path carries costs GoBGP
			// no statements to evaluate on every export.
			continue
		}
		have := s.nt.addrs[as]
		var add []string
		for _, a := range x.addrs[as] {
			if !slices.Contains(have, a) {
				add = append(add, a)
			}
		}
		if !s.nt.stmts[as] && len(have)+len(add) == 0 {
			// No address yet (the AS appears in paths only): a neighbour
			// set needs one. The statement comes once a neighbour does.
			continue
		}
		if len(add) > 0 {
			d := &api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: s.cfg.ntName(as), List: add}
			if err := s.b.addDefinedSet(ctx, d); err != nil {
				return fmt.Errorf("not-to sets: neighbour set %s: %w", d.Name, err)
			}
			s.nt.addrs[as] = append(have, add...)
		}
		if s.nt.stmts[as] {
			continue
		}
		var stmts []*api.Statement
		for _, v4 := range []bool{true, false} {
			null := nullPrefix(128)
			if v4 {
				null = nullPrefix(32)
			}
			d := prefixSet(s.cfg.ntSet(as, v4), []setEntry{exactEntry(null)})
			if err := s.b.addDefinedSet(ctx, d); err != nil {
				return fmt.Errorf("not-to sets: prefix set %s: %w", d.Name, err)
			}
			stmts = append(stmts, &api.Statement{Name: s.cfg.ntStmt(as, v4),
				Conditions: &api.Conditions{
					PrefixSet:   &api.MatchSet{Type: api.MatchSet_ANY, Name: d.Name},
					NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: s.cfg.ntName(as)},
					// Unicast only, as the held sets (policyDef).
					AfiSafiIn: []*api.Family{unicastOf(v4)},
				},
				Actions: &api.Actions{RouteAction: api.RouteAction_REJECT}})
		}
		// GoBGP appends the statements of a policy added under a name in
		// use to that policy.
		if err := s.b.addPolicy(ctx, &api.Policy{Name: s.cfg.policy, Statements: stmts}); err != nil {
			return fmt.Errorf("not-to sets: statements for AS %d: %w", as, err)
		}
		s.nt.stmts[as] = true
	}
	return nil
}

// installNotTo brings the not-to sets in line with the record during
// install, after the policy is in place and before the releases: it reads
// what GoBGP has (a reload of gobgpd's policies deletes all of it), puts
// back the statements and memberships of released prefixes, adopts the
// memberships of prefixes adopted as released, and deletes the rest (an
// earlier instance's). Whatever form a set is in, it ends in the member
// form (ntform.go): entries that are no member (a complement form's
// coverage and carve-outs) are deleted as found, after the members are in.
// s.mu is held.
func (s *Speaker) installNotTo(ctx context.Context, have *api.Policy, sets *ourSets) error {
	clear(s.nt.comp)
	s.countEntries()
	// Entries that stay no one's: their sets stay, emptied.
	orphans := make(map[string][]setEntry)
	orphan := func(as uint32, p netip.Prefix, iv interval) {
		name := s.cfg.ntSet(as, p.Addr().Is4())
		orphans[name] = append(orphans[name], setEntry{p, iv})
	}
	if s.cfg.NoNotTo {
		// Turned off: what an earlier configuration put in the sets goes
		// (its statements stay, rejecting nothing).
		for as, nodes := range sets.nt {
			for p, ls := range nodes {
				for _, iv := range ls {
					orphan(as, p, iv)
				}
			}
		}
		if err := s.editNamedSets(ctx, orphans, true); err != nil {
			return fmt.Errorf("not-to sets: %w", err)
		}
		for p, st := range s.rec.all() {
			s.setNotTo(&st, 0)
			s.rec.set(p, st)
		}
		return nil
	}
	// The neighbours, once: ASes found in GoBGP's sets keep (or get)
	// bits, so their memberships can be read.
	found := slices.Sorted(maps.Keys(sets.nt))
	s.nt.refreshMu.Lock()
	err := s.refreshNeighboursLocked(ctx, found)
	s.nt.refreshMu.Unlock()
	if err != nil {
		// Without the index no release joins a not-to set: the fence
		// window stays, as before them.
		s.opts.log.Warn("not-to sets: reading gobgp's neighbours failed; neighbours whose AS was in a prefix's previous path may see its new path before it is programmed", "err", err)
	}
	clear(s.nt.stmts)
	clear(s.nt.addrs)
	if have != nil {
		for _, st := range have.Statements {
			if as, ok := s.cfg.ntAS(st.Name, s.cfg.policy); ok {
				s.nt.stmts[as] = true
			}
		}
	}
	err = s.b.listDefinedSets(ctx, api.DefinedType_NEIGHBOR, "", func(d *api.DefinedSet) {
		if rest, ok := strings.CutPrefix(d.Name, s.cfg.Name+"-nt-"); ok {
			if as, err := strconv.ParseUint(rest, 10, 32); err == nil {
				s.nt.addrs[uint32(as)] = slices.Clone(d.List)
			}
		}
	})
	if err != nil {
		return fmt.Errorf("not-to sets: list neighbour sets: %w", err)
	}
	x := s.nt.idx.Load()
	if x == nil {
		return nil
	}
	for as := range s.nt.stmts {
		if s.nt.addrs[as] == nil {
			delete(s.nt.stmts, as) // a statement without its sets: added again
		}
	}
	var need uint64
	for _, st := range s.rec.all() {
		need |= st.notTo
	}
	if err := s.syncNotTo(ctx, x, need); err != nil {
		return err
	}
	var adds, dels []prefixMask
	for as, nodes := range sets.nt {
		b, ok := x.bit[as]
		for p, ls := range nodes {
			for _, iv := range ls {
				if iv != exactEntry(p).iv {
					orphan(as, p, iv) // the complement form's: no member
					continue
				}
				st := s.rec.get(p)
				switch {
				case ok && st.notTo&(1<<b) != 0:
					// present, as recorded
				case ok && !s.bootstrapped && st.transit && !st.originated && st.released:
					s.setNotTo(&st, st.notTo|1<<b) // adopted with its release (WithAdopt)
					s.rec.set(p, st)
				case ok:
					dels = append(dels, prefixMask{p, 1 << b})
				default:
					orphan(as, p, iv) // an AS with no bit
				}
			}
		}
	}
	// What the first Bootstrap adopted (adoptReleases) keeps the not-to
	// memberships an earlier instance gave it, in either form: a member
	// where GoBGP's set matches it (heldBy: GoBGP's longest match; a
	// complement-form set's entries are deleted below, its members added).
	if !s.bootstrapped {
		for as, nodes := range sets.nt {
			b, ok := x.bit[as]
			if !ok {
				continue
			}
			for p, st := range s.rec.all() {
				if st.transit && !st.originated && st.released && st.notTo&(1<<b) == 0 && heldBy(nodes, p) {
					s.setNotTo(&st, st.notTo|1<<b)
					s.rec.set(p, st)
				}
			}
		}
	}
	for p, st := range s.rec.all() {
		missing := st.notTo
		for m := st.notTo; m != 0; m &= m - 1 {
			b := bits.TrailingZeros64(m)
			if b < len(x.ases) && slices.Contains(sets.nt[x.ases[b]][p], exactEntry(p).iv) {
				missing &^= 1 << b
			}
		}
		if missing &= s.readyMask(x); missing != 0 {
			adds = append(adds, prefixMask{p, missing})
		}
	}
	// Members first: until the rest goes, a set holds both forms, which
	// rejects at least what the member form does.
	if err := s.editNotTo(ctx, adds, false); err != nil {
		return err
	}
	if err := s.editNamedSets(ctx, orphans, true); err != nil {
		return fmt.Errorf("not-to sets: %w", err)
	}
	return s.editNotTo(ctx, dels, true)
}

// clearNotTo takes prefixes out of all their not-to sets (they left the
// scope: ungated now). s.mu is held.
func (s *Speaker) clearNotTo(ctx context.Context, ps []netip.Prefix) error {
	var dels []prefixMask
	for _, p := range ps {
		if m := s.rec.get(p).notTo; m != 0 {
			dels = append(dels, prefixMask{p, m})
		}
	}
	// editNotTo drops the states it leaves zero.
	return s.editNotTo(ctx, dels, true)
}

// enteringNotTo returns the not-to sets that prefixes entering the scope
// out on a learned path must join: those of its ASes that have
// statements (made now for an AS that has none yet). s.mu is held.
func (s *Speaker) enteringNotTo(ctx context.Context, enter []netip.Prefix) ([]prefixMask, error) {
	targets, err := s.ntTargets(ctx, s.masksOf(enter))
	if err != nil {
		return nil, fmt.Errorf("not-to sets: %w", err)
	}
	var out []prefixMask
	for p, m := range targets {
		if add := m &^ s.rec.get(p).notTo; add != 0 {
			out = append(out, prefixMask{p, add})
		}
	}
	return out, nil
}

// notToHas says whether p is in AS as's not-to set. s.mu is held.
func (s *Speaker) notToHas(p netip.Prefix) func(as uint32) bool {
	return func(as uint32) bool {
		x := s.nt.idx.Load()
		if x == nil {
			return false
		}
		b, ok := x.bit[as]
		return ok && s.rec.get(p).notTo&(1<<b) != 0
	}
}

// asesOf lists the ASes of a mask's bits.
func (s *Speaker) asesOf(mask uint64) []uint32 {
	x := s.nt.idx.Load()
	if mask == 0 || x == nil {
		return nil
	}
	var out []uint32
	for m := mask; m != 0; m &= m - 1 {
		if b := bits.TrailingZeros64(m); b < len(x.ases) {
			out = append(out, x.ases[b])
		}
	}
	return out
}

// setNotTo sets a prefix's not-to bits, keeping the counts: a member of
// a set in member form is an entry in GoBGP, one of a set in complement
// form is not. s.mu is held.
func (s *Speaker) setNotTo(st *prefixState, bits64 uint64) {
	x := s.nt.idx.Load()
	for m := bits64 ^ st.notTo; m != 0; m &= m - 1 {
		b := bits.TrailingZeros64(m)
		d := int64(-1)
		if bits64&(1<<b) != 0 {
			d = 1
		}
		s.nt.members[b] += d
		if x == nil || b >= len(x.ases) || s.nt.comp[x.ases[b]] == nil {
			s.nt.entries.Add(d)
		}
	}
	st.notTo = bits64
}

// countEntries sets what NotToEntries reports from the per-AS counts,
// after a set changed form or its carve-outs changed. s.mu is held.
func (s *Speaker) countEntries() {
	x := s.nt.idx.Load()
	var n int64
	for b, m := range s.nt.members {
		if m == 0 {
			continue
		}
		if x != nil && b < len(x.ases) && s.nt.comp[x.ases[b]] != nil {
			continue // counted below, by its carve-outs
		}
		n += m
	}
	for _, carved := range s.nt.comp {
		n += int64(len(carved))
	}
	s.nt.entries.Store(n)
}

// NotToEntries is how many per-prefix entries the not-to sets hold in
// GoBGP (fibgate_gobgp_not_to_entries): the members of sets in member
// form, the carve-outs of sets in complement form. GoBGP keeps a critbit
// entry of a few hundred bytes for each, so it shows what the sets cost.
func (s *Speaker) NotToEntries() int { return int(s.nt.entries.Load()) }

// NotToASes lists the neighbour ASes the gate keeps not-to sets for, in
// bit order: for the audit and tests, which want to know which neighbours
// are protected from a path change's fence window.
func (s *Speaker) NotToASes() []uint32 {
	x := s.nt.idx.Load()
	if x == nil || s.cfg.NoNotTo {
		return nil
	}
	return slices.Clone(x.ases)
}

// exactEntry is a set entry that matches p alone: under GoBGP's longest
// match, a prefix not in the set finds a shorter entry whose length range
// excludes it.
func exactEntry(p netip.Prefix) setEntry {
	return setEntry{p, interval{uint8(p.Bits()), uint8(p.Bits())}}
}

// recordMasks records the AS masks of reported best paths (after their
// fences) and returns those that changed; retarget then makes the not-to
// sets of prefixes that stay released follow them: their attributes
// changed on the same route (WatchBest neither fences nor keeps those: the
// hardware forwards them as before), so
// GoBGP exported the new path at once, except to neighbours whose AS was
// in the previous path only, which the previous not-to sets rejected.
// Those prefixes leave those sets and have their export run again with
// the release's HOLD toggle, held meanwhile so that nobody is sent a
// withdrawal; joining a set needs nothing more (GoBGP does not send a path
// to an AS in it).
func (s *Speaker) recordMasks(ms []prefixMask) (changed []prefixMask) {
	// Only a prefix whose mask changed can be out in the wrong sets. One
	// that had none (no indexed AS in its path, or new: the common case
	// while a table is learned) is left to its next release, which reads
	// the mask: its path may then reach a new AS's neighbours in a later
	// fence window, as before the sets, but never too few neighbours. A
	// prefix without a route has no entry: it has nothing to release.
	s.nt.mu.Lock()
	defer s.nt.mu.Unlock()
	for _, m := range ms {
		k := pkey.Of(m.p)
		r, ok := s.nt.last[k]
		if !ok || r.ases == m.mask {
			continue
		}
		if r.ases != 0 {
			changed = append(changed, m)
		}
		r.ases = m.mask
		s.nt.last[k] = r
	}
	return changed
}

// retarget is recordMasks' second half, for the prefixes it found
// changed; it takes s.mu.
func (s *Speaker) retarget(ctx context.Context, ms []prefixMask) error {
	if len(ms) == 0 || s.cfg.NoNotTo {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.usable() != nil {
		return nil
	}
	x := s.nt.idx.Load()
	if x == nil {
		return nil
	}
	var need uint64
	for _, m := range ms {
		need |= m.mask
	}
	if err := s.syncNotTo(ctx, x, need); err != nil {
		return err
	}
	ready := s.readyMask(x)
	var adds, dels []prefixMask
	var rerun []netip.Prefix
	for _, m := range ms {
		st := s.rec.get(m.p)
		if !st.transit || st.originated || !st.released || st.kept {
			continue // not out on a learned path: its next release sets it
		}
		want := m.mask & ready
		if add := want &^ st.notTo; add != 0 {
			adds = append(adds, prefixMask{m.p, add})
		}
		if del := st.notTo &^ want; del != 0 {
			dels = append(dels, prefixMask{m.p, del})
			rerun = append(rerun, m.p)
		}
	}
	if err := s.editNotTo(ctx, adds, false); err != nil {
		s.dirty = true
		return err
	}
	joined := make([]netip.Prefix, len(adds))
	for i, a := range adds {
		joined[i] = a.p
	}
	if err := s.carve(ctx, joined, s.out); err != nil {
		s.dirty = true
		return err
	}
	if len(dels) == 0 {
		return nil
	}
	var in, out []*api.Path
	for _, p := range rerun {
		a, err1 := s.pb.holdBeside(p, false)
		b, err2 := s.pb.holdBeside(p, true)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		in, out = append(in, a), append(out, b)
		st := s.rec.get(p)
		st.held, st.suspect = true, true
		s.rec.set(p, st)
	}
	fail := func(what string, err error) error {
		s.dirty = true
		return fmt.Errorf("not-to sets: %s (%d prefixes): %w", what, len(rerun), err)
	}
	if err := s.setReleased(ctx, rerun, false); err != nil {
		return fail("hold", err)
	}
	if err := s.b.sendPaths(ctx, in); err != nil {
		return fail("add hold paths", err)
	}
	if err := s.editNotTo(ctx, dels, true); err != nil {
		return fail("delete", err)
	}
	if err := s.carve(ctx, rerun, s.out); err != nil {
		return fail("carve out", err)
	}
	if err := s.setReleased(ctx, rerun, true); err != nil {
		return fail("release", err)
	}
	if err := s.b.sendPaths(ctx, out); err != nil {
		return fail("delete hold paths", err)
	}
	for _, p := range rerun {
		st := s.rec.get(p)
		st.held, st.suspect = false, false
		s.rec.set(p, st)
	}
	return nil
}

// checkNotTo is Check's part: what a new neighbour needs goes in (a second
// neighbour of an indexed AS joins its neighbour set), from GoBGP's
// neighbours as Check read them again beforehand (maybeRefresh, at most
// every notToRefresh, without the lock), and the sets' forms are weighed.
// s.mu is held.
func (s *Speaker) checkNotTo(ctx context.Context) {
	if s.cfg.NoNotTo {
		return // the index serves the release's HOLD path only
	}
	x := s.nt.idx.Load()
	if x == nil {
		return
	}
	if x != s.nt.synced {
		if err := s.syncNotTo(ctx, x, 0); err != nil {
			s.opts.log.Debug("not-to sets: adding new neighbours failed; trying again", "err", err)
			return
		}
		s.nt.synced = x
	}
	if err := s.weighForms(ctx); err != nil && ctx.Err() == nil {
		s.opts.log.Warn("not-to sets: switching a set's form failed; the gate re-installs them", "err", err)
	}
}
