package gobgp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math/bits"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/gobgp/internal/reexport"
	"github.com/fibgate/fibgate/plugin/internal/pkey"
	"github.com/fibgate/fibgate/plugin/logdamp"
)

// Errors a Speaker returns; match them with errors.Is.
var (
	// ErrClosed: the Speaker was closed.
	ErrClosed = errors.New("gobgp speaker closed")
	// ErrNotBootstrapped: Advertise, Withdraw or Check came before
	// Bootstrap, so there is no gate to release prefixes through.
	ErrNotBootstrapped = errors.New("gobgp speaker not bootstrapped")
	// ErrInvalid: an advertisement is malformed (bad prefix, unknown
	// origin). The valid advertisements of the same call are still done.
	ErrInvalid = errors.New("invalid advertisement")
	// ErrOutOfScope: Advertise of a transit prefix outside the gated
	// scope. GoBGP exports it without the gate, so there is nothing to
	// release; the gate's scope and this Speaker's Config disagree.
	// Withdraw of one does nothing: it left the scope (Rescope).
	ErrOutOfScope = errors.New("transit prefix outside the gated scope")
	// ErrCopyNeedsInProcess: Config.ReleaseByCopy over gobgpd's API. A
	// copy is a path the sidecar adds to gobgpd, and gobgpd would go on
	// advertising it after the sidecar died and its learned path was
	// withdrawn; gobgpd-ext's copies die with it.
	ErrCopyNeedsInProcess = errors.New("gobgp speaker: release by copy works in process only (gobgpd-ext), not over gobgpd's API")
)

// Speaker is the gate's BGP side on GoBGP: it satisfies gate.Speaker over
// either GoBGP's gRPC API (NewClient: a stock gobgpd as a sidecar) or a
// BgpServer in the same process (NewInProcess: gobgpd-ext). Both share all
// logic; only the transport differs, so they behave the same.
//
// Bootstrap installs the gate: a global export policy placed first in the
// chain that rejects HOLD paths and every prefix of the scope that is not
// released. Advertise and Withdraw release and take back prefixes; Guard
// keeps the gate installed across policy reloads; Close cleans up.
//
// A Speaker keeps its own record of what it released. That record is the
// truth it re-installs from; it is not persisted, so a new Speaker
// withdraws what an earlier one released (fail-closed) and the gate
// releases it again once confirmed.
type Speaker struct {
	b     backend
	cfg   *normalized
	pb    *pathBuilder
	opts  options
	owned *grpc.ClientConn // closed by Close (DialClient)

	mu sync.Mutex // serializes every change to GoBGP and to rec
	// turn puts a fence ahead of release steps: a step read-locks it
	// around taking mu, a fence write-locks it, and Go's RWMutex lets no
	// new reader in once a writer waits. With mu alone, the release's
	// goroutine took mu back right after its step while the woken fence
	// was still waiting for a CPU, and a fence waited for two steps.
	turn sync.RWMutex
	rec  record
	// onh holds the next hops of originated paths (prefixState.originated),
	// a few prefixes, apart from the record of every prefix: there a
	// netip.Addr took 24 of the state's 56 bytes and made it an object the
	// collector scans.
	onh          map[netip.Prefix]netip.Addr
	bootstrapped bool
	dirty        bool // an operation failed midway: the next Check reconciles
	closed       bool
	// userChain and userDefault are the user's part of the global export
	// chain and its default action, as last seen with the gate in place:
	// what a policy reload wrongly drops (see restoreUser).
	userChain   []string
	userDefault api.RouteAction

	// rescopedOnce: Rescope changed the scope; the sentinel set then
	// names the scope in either mode (install.go).
	rescopedOnce bool

	// keeps: the gate's policy lets kept copies out (keep.go); cp: the
	// prefixes out on a copy, kept or released by copy (copy.go);
	// localAS: GoBGP's AS, read once (also by WatchBest's goroutine,
	// hence atomic); multipath: GoBGP's multipath setting as WatchBest
	// read it, releasing by copy.
	keeps     bool
	cp        *copySet
	localAS   atomic.Uint32
	multipath atomic.Bool
	// reread asks WatchBest to read every copy back (ReadCopiesBack).
	reread chan struct{}

	// nt: the not-to sets (notto.go).
	nt *notTo

	// scoped is cfg for readers without mu (the neighbour read of
	// refreshNeighbours); addPathSeen, under nt.refreshMu, is what that
	// read last reported of ADD-PATH senders (addpath.go).
	scoped      atomic.Pointer[normalized]
	addPathSeen string

	// noNexthop logs learned best paths WatchBest cannot install.
	noNexthop *logdamp.Line

	// steps sizes the locked steps of Advertise and Withdraw (run).
	steps stepSizer

	done   chan struct{}  // closed by Close; ends Guard loops
	guards sync.WaitGroup // running Guard loops
}

// prefixState is what the Speaker knows about one prefix.
type prefixState struct {
	transit    bool   // released as transit
	originated bool   // our local path is in GoBGP, its next hop in Speaker.onh
	released   bool   // the held set releases it (as far as we know)
	held       bool   // a HOLD path of ours may be in GoBGP
	suspect    bool   // an operation on it failed midway
	kept       bool   // out on a copy: of its previous best path (keep.go), or released by copy with transit (copy.go); in Speaker.cp
	fence      uint64 // FIB clock of the last Fence; 0: none (fence.go)
	notTo      uint64 // the not-to sets it is in, as bits of the AS index (notto.go)
}

func (st prefixState) zero() bool {
	return st == prefixState{}
}

// record is the Speaker's prefixState of every prefix it knows something
// of; a prefix it lacks is in the zero state, and a state that becomes
// zero leaves it. A gated table puts every route in it (1.06M at a full
// table): keyed by pkey.Key, with values that hold no pointers, the
// collector never scans it and it makes no object a prefix, where a map
// of pointers to states made a million objects and two million pointers
// for every mark (docs/design-notes.md, "The live heap with the table
// steady").
//
// It counts its out prefixes, in all and per not-to bit, as set changes
// them: weighing the not-to sets' forms needs those counts, and a walk of
// a million records to take them held the Speaker's lock, and so any
// fence, for about 190 ms (ntform.go).
type record struct {
	m        map[pkey.Key]prefixState
	out      int64           // prefixes with out()
	outNotTo [maxNotTo]int64 // out prefixes with each not-to bit set
}

func newRecord() record { return record{m: make(map[pkey.Key]prefixState)} }

func (r *record) get(p netip.Prefix) prefixState { return r.m[pkey.Of(p)] }

// lookup is get that also says whether p has a state.
func (r *record) lookup(p netip.Prefix) (prefixState, bool) {
	st, ok := r.m[pkey.Of(p)]
	return st, ok
}

func (r *record) has(p netip.Prefix) bool {
	_, ok := r.lookup(p)
	return ok
}

// set stores p's state; the zero state is stored by deleting p.
func (r *record) set(p netip.Prefix, st prefixState) {
	k := pkey.Of(p)
	r.count(r.m[k], -1)
	r.count(st, 1)
	if st.zero() {
		delete(r.m, k)
	} else {
		r.m[k] = st
	}
}

// count adds d to the counts st is in.
func (r *record) count(st prefixState, d int64) {
	if !st.out() {
		return
	}
	r.out += d
	for m := st.notTo; m != 0; m &= m - 1 {
		if b := bits.TrailingZeros64(m); b < maxNotTo {
			r.outNotTo[b] += d
		}
	}
}

// lacking is how many out prefixes lack not-to bit b: the carve-outs
// its AS's set has in complement form.
func (r *record) lacking(b int) int64 { return r.out - r.outNotTo[b] }

// all yields every prefix with its state. The loop's body may set the
// state of the prefix it was given (a map's own entries may change while
// it is ranged over).
func (r *record) all() iter.Seq2[netip.Prefix, prefixState] {
	return func(yield func(netip.Prefix, prefixState) bool) {
		for k, st := range r.m {
			if !yield(k.Prefix(), st) {
				return
			}
		}
	}
}

var _ gate.Speaker = (*Speaker)(nil)

// NewClient returns a Speaker that drives a stock gobgpd over conn (the
// sidecar mode). The caller keeps ownership of conn.
func NewClient(conn grpc.ClientConnInterface, cfg Config, opts ...Option) (*Speaker, error) {
	if cfg.ReleaseByCopy {
		return nil, ErrCopyNeedsInProcess
	}
	return newSpeaker(grpcBackend{api.NewGobgpApiClient(conn)}, cfg, opts)
}

// DialClient connects to gobgpd's API at target ("127.0.0.1:50051",
// "unix:///run/gobgpd.sock") without TLS, like the gobgp CLI, and returns a
// Speaker that owns the connection and closes it in Close.
func DialClient(target string, cfg Config, opts ...Option) (*Speaker, error) {
	return DialClientWithCredentials(target, insecure.NewCredentials(), cfg, opts...)
}

// DialClientWithCredentials is DialClient over creds: TLS for a gobgpd
// that serves its API with --tls (and a client certificate when it checks
// them, --tls-client-ca-file), as an API on a TCP port should be.
func DialClientWithCredentials(target string, creds credentials.TransportCredentials, cfg Config, opts ...Option) (*Speaker, error) {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("gobgpd api %s: %w", target, err)
	}
	s, err := NewClient(conn, cfg, opts...)
	if err != nil {
		conn.Close()
		return nil, err
	}
	s.owned = conn
	return s, nil
}

// NewInProcess returns a Speaker that calls s directly (gobgpd-ext). The
// server must have been started (StartBgp) before Bootstrap.
func NewInProcess(s *server.BgpServer, cfg Config, opts ...Option) (*Speaker, error) {
	if s == nil {
		return nil, errors.New("gobgp speaker: nil BgpServer")
	}
	var b backend = serverBackend{s}
	if how, _ := cfg.InProcessRelease(); how == "reexport" && !toggleInProcess {
		b = rxBackend{serverBackend{s}}
	}
	return newSpeaker(b, cfg, opts)
}

// reExporter is a backend whose GoBGP runs a prefix's export again on
// request: the in-process one (rxBackend, NewInProcess) when
// Config.InProcessRelease says "reexport". A
// release of a learned path is then its held-set edits and its export in
// one GoBGP operation for the whole step, where the HOLD toggle is two
// GoBGP operations and two best-path events a prefix (docs/design-notes.md,
// "Release by re-export").
type reExporter interface {
	// releaseAndReExport makes the held-set edits, then the re-export,
	// in one GoBGP operation: a release waits for GoBGP's main loop once.
	releaseAndReExport(ctx context.Context, edits []reexport.Edit, ps []netip.Prefix) error
}

func newSpeaker(b backend, cfg Config, opts []Option) (*Speaker, error) {
	n, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	pb, err := newPathBuilder(n)
	if err != nil {
		return nil, err
	}
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	if o.interval <= 0 || o.batch <= 0 {
		return nil, fmt.Errorf("gobgp speaker: guard interval %v and batch size %d must be positive", o.interval, o.batch)
	}
	s := &Speaker{
		b: b, cfg: n, pb: pb, opts: o,
		rec:    newRecord(),
		onh:    make(map[netip.Prefix]netip.Addr),
		cp:     newCopySet(),
		reread: make(chan struct{}, 1),
		nt:     newNotTo(),
		done:   make(chan struct{}),
	}
	s.scoped.Store(n)
	s.noNexthop = logdamp.New(o.log, slog.LevelWarn, "best path without a usable next hop")
	return s, nil
}

// Advertise releases prefixes: an originated prefix gets its local path
// (AddPath), a transit prefix is released in the held set and its export
// re-run with a HOLD toggle so peers receive it with its learned
// attributes. Releasing what is released changes nothing.
func (s *Speaker) Advertise(ctx context.Context, ads []gate.Advertisement) error {
	return s.run(ctx, ads, true)
}

// Withdraw takes prefixes back: peers receive a withdraw, and the prefix
// stays held until the next Advertise. Taking back what is not out
// changes nothing.
func (s *Speaker) Withdraw(ctx context.Context, ads []gate.Advertisement) error {
	return s.run(ctx, ads, false)
}

// op is one validated advertisement.
type op struct {
	ad        gate.Advertisement
	advertise bool
}

// run validates ads, groups them by prefix (so two entries for one prefix
// are folded in order instead of racing each other inside GoBGP) and
// applies them in locked steps sized to hold the lock about stepTime (at
// most the batch size). Advertisements refused as stale (fence.go) come
// back as a gate.StaleError.
func (s *Speaker) run(ctx context.Context, ads []gate.Advertisement, advertise bool) error {
	var errs []error
	var refused []netip.Prefix
	byPrefix := make(map[netip.Prefix][]op, len(ads))
	order := make([]netip.Prefix, 0, len(ads))
	for _, ad := range ads {
		if err := s.validate(ad); err != nil {
			if !advertise && errors.Is(err, ErrOutOfScope) {
				continue // left the scope (Rescope): ungated now, nothing to take back
			}
			errs = append(errs, err)
			continue
		}
		if _, ok := byPrefix[ad.Prefix]; !ok {
			order = append(order, ad.Prefix)
		}
		byPrefix[ad.Prefix] = append(byPrefix[ad.Prefix], op{ad, advertise})
	}
	for len(order) > 0 {
		n := s.steps.size(len(order), s.opts.batch)
		r, took, err := s.step(ctx, order[:n], byPrefix)
		s.steps.took(n, took)
		refused = append(refused, r...)
		if err != nil {
			return staleError(refused, errors.Join(append(errs, err)...))
		}
		order = order[n:]
	}
	return staleError(refused, errors.Join(errs...))
}

func (s *Speaker) validate(ad gate.Advertisement) error {
	p := ad.Prefix
	switch {
	case !p.IsValid():
		return fmt.Errorf("%w: prefix %v", ErrInvalid, p)
	case p != p.Masked():
		return fmt.Errorf("%w: prefix %v has host bits set (want %v)", ErrInvalid, p, p.Masked())
	case p.Addr().Is4In6() || p.Addr().Zone() != "":
		return fmt.Errorf("%w: prefix %v: use plain IPv4 or IPv6", ErrInvalid, p)
	case ad.Origin != gate.Originated && ad.Origin != gate.Transit:
		return fmt.Errorf("%w: prefix %v: origin %v", ErrInvalid, p, ad.Origin)
	case ad.Origin == gate.Transit && !s.cfg.scopeOf(p).contains(p):
		return fmt.Errorf("%w: %v", ErrOutOfScope, p)
	}
	return nil
}

// step applies the ops of some prefixes while holding the lock, and
// returns those refused as stale.
func (s *Speaker) step(ctx context.Context, prefixes []netip.Prefix, ops map[netip.Prefix][]op) (refused []netip.Prefix, took time.Duration, err error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	s.turn.RLock()
	s.mu.Lock()
	start := time.Now()
	defer func() {
		took = time.Since(start)
		s.mu.Unlock()
		s.turn.RUnlock()
	}()
	if err := s.usable(); err != nil {
		return nil, 0, err
	}
	changes := make([]change, 0, len(prefixes))
	var settle []gate.Advertisement
	for _, p := range prefixes {
		c := s.current(p)
		applied := false
		for _, o := range ops[p] {
			switch {
			case o.advertise && s.stale(o.ad):
				refused = append(refused, p)
				continue
			case o.ad.Origin == gate.Transit:
				settle = append(settle, o.ad)
				c.transit = o.advertise
			case o.advertise:
				c.originated, c.nextHop = true, s.pb.nextHop(p, o.ad.NextHop)
			default:
				c.originated = false
			}
			applied = true
		}
		if applied {
			// Only refused: nothing to change (a kept copy stays).
			changes = append(changes, c)
		}
	}
	behind, err := s.applyAll(ctx, changes)
	// A release left behind settles nothing: its fence stays.
	for _, ad := range settle {
		if !behind[ad.Prefix] {
			s.settleFence(ad)
		}
	}
	for _, c := range changes {
		if behind[c.p] {
			refused = append(refused, c.p)
		}
	}
	return refused, 0, err
}

func (s *Speaker) usable() error {
	if s.closed {
		return ErrClosed
	}
	if !s.bootstrapped {
		return ErrNotBootstrapped
	}
	return nil
}

// change is the wanted state of one prefix.
type change struct {
	p          netip.Prefix
	transit    bool
	originated bool
	nextHop    netip.Addr
	// recopy: a release by copy adds its copy anew even where the copy
	// in place is of the same path (GoBGP lost it; copy.go).
	recopy bool
	// gone: a take-back whose best path went (apply's quiet take-back).
	gone bool
}

func (s *Speaker) current(p netip.Prefix) change {
	st := s.rec.get(p)
	return change{p: p, transit: st.transit, originated: st.originated, nextHop: s.onh[p]}
}

// apply moves prefixes to their wanted state in five phases, each one
// call (or stream) for the whole batch, in the order measured against
// GoBGP v3.37 (this package's README.md, "The steps"; docs/design-notes.md,
// "Gating GoBGP"):
//
//	P. transit release: HOLD add while the prefix is still held, so no
//	   neighbour gets a withdrawal for a path it never had;
//	A. release in the held set what will be out (before AddPath / toggle);
//	B. paths: originated AddPath; transit release: HOLD delete (GoBGP
//	   re-runs export for the prefix alone); take-back: HOLD add while
//	   still released, so GoBGP sees the old path as sent and withdraws it;
//	C. hold in the held set what is taken back;
//	D. delete the HOLD paths of phase B's take-backs (nothing is sent:
//	   the learned path is held now, the HOLD path was never sent).
//
// A take-back of a prefix whose best path went (change.gone: a fence of a
// withdrawal) skips the HOLD path: GoBGP withdrew the prefix from every
// neighbour when its last path went, so holding it (C) is enough. Unless
// a path came back before C, which GoBGP may have exported: a read of
// GoBGP after C finds those (quietTakeBack), and they are taken back as
// above (released again, B, C, D). A withdrawal's fence is then two calls
// and no best-path events instead of three calls and two events per
// prefix, which GoBGP's watcher converts ahead of the events of other
// prefixes (docs/design-notes.md, "Quiet take-backs").
//
// Taking back an originated prefix in scope also goes through HOLD: the
// HOLD path replaces the local path (same source), so a learned path of
// the same prefix never becomes best while still released.
//
// The record gets the intersection of old and new state first and the new
// state only once every phase succeeded, so a failure leaves it
// fail-closed; the failed prefixes are marked suspect for Check.
func (s *Speaker) apply(ctx context.Context, changes []change) error {
	_, err := s.applyAll(ctx, changes)
	return err
}

// applyAll is apply that returns the releases by copy it left as they
// were because GoBGP's best path moved on from the route released
// (planCopies): stale, for an Advertise.
func (s *Speaker) applyAll(ctx context.Context, changes []change) (behind map[netip.Prefix]bool, err error) {
	// Releases by copy (copy.go): the copies, read and built first.
	copies, behind, err := s.planCopies(ctx, changes)
	if err != nil {
		s.dirty = true
		return nil, fmt.Errorf("release by copy (%d prefixes): %w", len(changes), err)
	}
	if len(behind) > 0 {
		changes = slices.DeleteFunc(slices.Clone(changes), func(c change) bool { return behind[c.p] })
	}
	return behind, s.applyChanges(ctx, changes, copies)
}

// applyChanges is apply once the copies are planned.
func (s *Speaker) applyChanges(ctx context.Context, changes []change, copies map[netip.Prefix]copyPlan) error {
	// The AS masks of the released paths, and the not-to masks the
	// prefixes will have (notto.go). A prefix out on a copy needs none:
	// no learned path of it is ever exported.
	masks := s.releaseMasks(changes)
	for p := range copies {
		delete(masks, p)
	}
	targets, err := s.ntTargets(ctx, masks)
	if err != nil {
		s.dirty = true
		return fmt.Errorf("not-to sets (%d prefixes): %w", len(changes), err)
	}
	// Sized for a release, the common change (a table's first releases
	// are most of a convergence's calls): growing them was garbage.
	var shut, outAfter, inAfter, quiet, reexported []netip.Prefix
	rx, _ := s.b.(reExporter)
	var phasePre, phaseD []*api.Path
	open := make([]netip.Prefix, 0, len(changes))
	phaseB := make([]*api.Path, 0, 2*len(changes))
	holds := make(map[netip.Prefix]bool, len(changes))
	// push(&list)(builder(...)) appends a built path or returns its error.
	push := func(l *[]*api.Path) func(*api.Path, error) error {
		return func(p *api.Path, err error) error {
			if err == nil {
				*l = append(*l, p)
			}
			return err
		}
	}
	for _, c := range changes {
		st := s.rec.get(c.p)
		in := s.cfg.scopeOf(c.p).contains(c.p)
		plan, byCopy := copies[c.p]
		want := in && (c.transit || c.originated) && !byCopy
		// Sets in complement form (ntform.go): a prefix out after this
		// call is carved out as its bits say before anything lets it
		// out; one that is not keeps its carve-out until its withdrawal
		// went out.
		if len(s.nt.comp) > 0 {
			if want || byCopy {
				outAfter = append(outAfter, c.p)
			} else {
				inAfter = append(inAfter, c.p)
			}
		}
		if want && !st.released {
			open = append(open, c.p)
		}
		if !want && st.released {
			shut = append(shut, c.p)
		}
		var err error
		toggled := false // by a HOLD path beside the prefix's paths
		switch {
		case byCopy:
			// Out on a copy of its learned best path (copy.go): added, or
			// replacing the copy in place (an update at the neighbours),
			// after a HOLD path that withdraws the old one when a
			// neighbour's AS joins the path.
			if plan.holdFirst {
				err = push(&phasePre)(s.pb.holdPath(c.p, false))
			}
			if plan.path != nil {
				err = errors.Join(err, push(&phaseB)(plan.path, nil))
			}
		case st.kept && !c.originated:
			// Kept out on a copy (keep.go). Released: the held set lets the
			// learned path go first (phase A), then the copy goes and GoBGP
			// exports the learned path in its place, an update at the
			// neighbours. Taken back: the usual take-back, with the prefix
			// released for it (phase A) so that GoBGP judges what it sent,
			// the copy or a learned path that beat it, as sent: a HOLD path
			// replaces the copy (same source) and GoBGP withdraws it; then
			// the prefix is held (C) and the HOLD path goes (D). Out of
			// scope, ungated: the copy just goes.
			switch {
			case c.transit && in:
				err = push(&phaseB)(s.pb.holdPath(c.p, true))
			case in:
				if !s.cfg.ReleaseByCopy {
					open, shut = append(open, c.p), append(shut, c.p)
				}
				// Releasing by copy, the prefix was held all along and the
				// copy is what went out: the HOLD path replacing it is
				// withdrawal enough, with no set edits.
				err = errors.Join(push(&phaseB)(s.pb.holdPath(c.p, false)), push(&phaseD)(s.pb.holdPath(c.p, true)))
				holds[c.p] = true
			default:
				err = push(&phaseB)(s.pb.holdPath(c.p, true))
			}
		case c.originated && (!st.originated || s.onh[c.p] != c.nextHop):
			err = push(&phaseB)(s.pb.originated(c.p, c.nextHop, false))
		case st.originated && !c.originated && (c.transit || !in):
			err = push(&phaseB)(s.pb.originated(c.p, s.onh[c.p], true))
		case !c.originated && st.transit && !c.transit && c.gone && !st.originated && !st.held && st.released && in:
			quiet = append(quiet, c.p) // phase C only, unless a path came back
		case st.originated && !c.originated:
			// The HOLD path replaces the originated path (both local).
			err = errors.Join(push(&phaseB)(s.pb.holdPath(c.p, false)), push(&phaseD)(s.pb.holdPath(c.p, true)))
			holds[c.p] = true
		case !c.originated && st.transit && !c.transit:
			err = errors.Join(push(&phaseB)(s.pb.holdBeside(c.p, false)), push(&phaseD)(s.pb.holdBeside(c.p, true)))
			holds[c.p], toggled = true, true
		case !c.originated && c.transit && !st.transit:
			if rx != nil {
				// Released in the held set (phase A) and exported
				// again in the same call, one for the step
				// (reExporter): no HOLD path.
				reexported = append(reexported, c.p)
				break
			}
			// The HOLD path goes in while the prefix is still held, so
			// GoBGP does not take the learned path for sent and withdraw
			// it from every neighbour before announcing it.
			// Through the ASes of the learned path, so GoBGP does not
			// answer its deletion with a withdrawal to the neighbour the
			// path came from (holdPathThrough).
			err = errors.Join(push(&phasePre)(s.pb.holdPathThrough(c.p, s.asesOf(masks[c.p]))), push(&phaseB)(s.pb.holdBeside(c.p, true)))
			holds[c.p], toggled = true, true
		}
		if st.held && !toggled && err == nil {
			// A toggle's HOLD path that a failed call left sits beside
			// the prefix's paths: neither a local path nor a plain HOLD
			// path replaces it, so it goes in phase D.
			err = push(&phaseD)(s.pb.holdBeside(c.p, true))
			holds[c.p] = true
		}
		if err != nil {
			return fmt.Errorf("build paths: %w", err)
		}
	}
	// Not-to sets (notto.go): a prefix joins those of its new path's ASes
	// before anything lets it out (phase A), and leaves those it no longer
	// needs then too if it stays out, or once held (after phase C).
	var ntDelEarly, ntDelLate []prefixMask
	ntAdd := make([]prefixMask, 0, len(changes))
	for _, c := range changes {
		have := s.rec.get(c.p).notTo
		want := targets[c.p]
		if add := want &^ have; add != 0 {
			ntAdd = append(ntAdd, prefixMask{c.p, add})
		}
		if del := have &^ want; del != 0 {
			if s.cfg.scopeOf(c.p).contains(c.p) && (c.transit || c.originated) {
				ntDelEarly = append(ntDelEarly, prefixMask{c.p, del})
			} else {
				ntDelLate = append(ntDelLate, prefixMask{c.p, del})
			}
		}
	}
	before := make(map[netip.Prefix]prefixState, len(changes))
	for _, c := range changes {
		st := s.rec.get(c.p)
		before[c.p] = st
		st.transit = st.transit && c.transit
		st.originated = st.originated && c.originated
		st.held = st.held || holds[c.p] // conservatively, until phase D
		st.suspect = true
		s.rec.set(c.p, st)
	}
	fail := func(what string, err error) error {
		s.dirty = true
		return fmt.Errorf("%s (%d prefixes): %w", what, len(changes), err)
	}
	// A copy is in the set before it is in GoBGP: the learned-path watch
	// must not miss a change under it (copy.go).
	for p := range copies {
		s.cp.set(p, copies[p].key)
	}
	if len(phasePre) > 0 {
		if err := s.b.sendPaths(ctx, phasePre); err != nil {
			return fail("add hold paths", err)
		}
	}
	if err := s.editNotTo(ctx, ntAdd, false); err != nil {
		return fail("add to not-to sets", err)
	}
	if err := s.editNotTo(ctx, ntDelEarly, true); err != nil {
		return fail("delete from not-to sets", err)
	}
	if err := s.carve(ctx, outAfter, func(netip.Prefix) bool { return true }); err != nil {
		return fail("carve out of not-to sets", err)
	}
	if len(reexported) > 0 {
		// Phase A and the re-export in one GoBGP operation, before
		// phase B: B's paths are other prefixes', which need only A.
		if err := rx.releaseAndReExport(ctx, s.releaseEdits(open), reexported); err != nil {
			return fail("release in held set and re-export", err)
		}
	} else if err := s.setReleased(ctx, open, true); err != nil {
		return fail("release in held set", err)
	}
	if err := s.b.sendPaths(ctx, phaseB); err != nil {
		return fail("send paths", err)
	}
	if err := s.setReleased(ctx, shut, false); err != nil {
		return fail("hold in held set", err)
	}
	if len(quiet) > 0 {
		dels, err := s.quietTakeBack(ctx, quiet, holds)
		if err != nil {
			return fail("take back prefixes a path came back for", err)
		}
		phaseD = append(phaseD, dels...)
	}
	if err := s.editNotTo(ctx, ntDelLate, true); err != nil {
		return fail("delete from not-to sets", err)
	}
	if err := s.carve(ctx, inAfter, func(netip.Prefix) bool { return false }); err != nil {
		return fail("carve out of not-to sets", err)
	}
	if err := s.b.sendPaths(ctx, phaseD); err != nil {
		return fail("delete hold paths", err)
	}
	for _, c := range changes {
		was := before[c.p]
		notTo := s.rec.get(c.p).notTo // as edited above
		_, byCopy := copies[c.p]
		if was.kept && !byCopy {
			s.cp.del(c.p) // deleted, or replaced by an originated path
		}
		st := prefixState{
			transit:    c.transit,
			originated: c.originated,
			kept:       byCopy,
			released:   s.cfg.scopeOf(c.p).contains(c.p) && (c.transit || c.originated) && !byCopy,
			// A HOLD path left by an earlier failure is gone if this call
			// deleted it (every call that finds one does).
			held:    was.held && !holds[c.p],
			suspect: was.suspect,
		}
		if c.originated {
			s.onh[c.p] = c.nextHop
		} else {
			delete(s.onh, c.p)
		}
		st.fence, st.notTo = was.fence, notTo
		s.rec.set(c.p, st)
	}
	return nil
}

// quietTakeBack is apply's step after phase C for the take-backs of
// prefixes whose best path went (quiet): those GoBGP has a path for again,
// which it may have exported before phase C, are taken back as with a HOLD
// path: released again, so that GoBGP judges what it sent as sent, the HOLD
// path added (GoBGP withdraws), held again. It returns the HOLD paths'
// deletions for phase D and marks those prefixes in holds. A failed read
// takes every quiet prefix back so. Called with s.mu held.
func (s *Speaker) quietTakeBack(ctx context.Context, quiet []netip.Prefix, holds map[netip.Prefix]bool) ([]*api.Path, error) {
	var back []netip.Prefix
	found, err := s.lookup(ctx, quiet)
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, err
	case err != nil:
		s.opts.log.Warn("reading gobgp's paths of withdrawn prefixes failed; taking them back with HOLD paths", "prefixes", len(quiet), "err", err)
		back = quiet
	default:
		for _, p := range quiet {
			if len(found[p]) > 0 {
				back = append(back, p)
			}
		}
	}
	if len(back) == 0 {
		return nil, nil
	}
	adds := make([]*api.Path, 0, len(back))
	dels := make([]*api.Path, 0, len(back))
	for _, p := range back {
		a, err := s.pb.holdBeside(p, false)
		if err != nil {
			return nil, fmt.Errorf("build paths: %w", err)
		}
		d, err := s.pb.holdBeside(p, true)
		if err != nil {
			return nil, fmt.Errorf("build paths: %w", err)
		}
		adds, dels = append(adds, a), append(dels, d)
		st := s.rec.get(p)
		st.held = true // conservatively, until phase D
		s.rec.set(p, st)
		holds[p] = true
	}
	if err := s.setReleased(ctx, back, true); err != nil {
		return nil, err
	}
	if err := s.b.sendPaths(ctx, adds); err != nil {
		return nil, err
	}
	if err := s.setReleased(ctx, back, false); err != nil {
		return nil, err
	}
	return dels, nil
}

// Close stops Guard loops, deletes HOLD paths that a failed call may have
// left, deletes the originated paths (unless Config.KeepOriginatedOnClose)
// and closes a connection made by DialClient. The gate itself stays
// installed: with fibgate gone, nothing new in scope is exported
// (fail-closed). Close is idempotent.
func (s *Speaker) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	s.guards.Wait()

	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if s.bootstrapped {
		var changes []change
		var holds []*api.Path
		for p, st := range s.rec.all() {
			switch {
			case st.originated && !s.cfg.KeepOriginatedOnClose:
				changes = append(changes, change{p: p, transit: st.transit})
			case (st.held || st.kept) && !st.originated:
				// A toggle's HOLD path a failed call left (beside the
				// prefix's paths), and a kept copy (our local path).
				var dels []func(netip.Prefix, bool) (*api.Path, error)
				if st.held {
					dels = append(dels, s.pb.holdBeside)
				}
				if st.kept {
					dels = append(dels, s.pb.holdPath)
				}
				for _, build := range dels {
					hp, err := build(p, true)
					if err != nil {
						errs = append(errs, err)
						continue
					}
					holds = append(holds, hp)
				}
			}
		}
		start := time.Now()
		if err := s.apply(ctx, changes); err != nil {
			errs = append(errs, fmt.Errorf("close: delete originated paths: %w", err))
		}
		if err := s.b.sendPaths(ctx, holds); err != nil {
			errs = append(errs, fmt.Errorf("close: delete hold paths: %w", err))
		}
		s.opts.log.Info("gobgp speaker closed", "originated_deleted", len(changes), "holds_deleted", len(holds), "took", time.Since(start))
	}
	if s.owned != nil {
		if err := s.owned.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close: gobgpd connection: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Released lists what the Speaker has released (transit and originated),
// so a sidecar that stops can withdraw it before the routes under it go.
func (s *Speaker) Released() []gate.Advertisement {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []gate.Advertisement
	for p, st := range s.rec.all() {
		switch {
		case st.originated:
			out = append(out, gate.Advertisement{Prefix: p, Origin: gate.Originated, NextHop: s.onh[p]})
		case st.transit, st.kept:
			out = append(out, gate.Advertisement{Prefix: p, Origin: gate.Transit})
		}
	}
	slices.SortFunc(out, func(a, b gate.Advertisement) int {
		return cmp.Or(a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
	})
	return out
}

// IsReleased reports whether the Speaker has p out (released as transit
// or originated), so a restarted tracker knows what it must take back if
// it is not confirmed (gate.WithAlreadyOut).
func (s *Speaker) IsReleased(p netip.Prefix) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.rec.get(p)
	return st.transit || st.originated || st.kept
}
