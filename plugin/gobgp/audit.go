package gobgp

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/fibgate/fibgate/plugin/audit"
	"github.com/fibgate/fibgate/plugin/internal/chunk"
)

// AuditBGP reads what the consistency audit (plugin/audit) needs of GoBGP,
// in this order:
//   - the gate's held sets and whether its policy is first in the global
//     export chain, from which audit.BGP.Holds answers as GoBGP's prefix
//     condition does, and the established neighbours: once a pass, the
//     parts after the first taking them from ask.Carry (auditRead), and
//     listing the neighbours again (with GoBGP's adj-in counts) only to
//     read adj-out;
//   - the global RIB of IPv4 and IPv6 unicast, whole (but for what
//     ask.Except names) or, when ask.Known names prefixes, theirs only
//     (lookupKnown), paced (pacer): every
//     path, its next hop, whether it was learned, whether it is a HOLD
//     path of this gate's community, and GoBGP's best (and multipath)
//     flags. From it and the held sets, the prefixes in the gate's scope
//     that ask.Unconfirmed names and that GoBGP's gate lets out
//     (audit.BGP.LetOut);
//   - the adj-out of every established neighbour, per unicast family it
//     has, for those of them ask.Confirm names (nil: all), unless the
//     pass is large (ask.Large) and adj-out is read through the API: GoBGP
//     recomputes adj-out from today's best paths and export policy
//     (ListPath on ADJ_OUT with EnableFiltered, which judges only the
//     family asked for), so it is what GoBGP would send now; what a
//     neighbour holds is only known at the neighbour. With no prefix to
//     ask about, nothing is asked.
//
// It changes nothing in GoBGP and takes no lock of the Speaker. Through
// GoBGP's API each adj-out read costs an export run over the family's
// best paths in GoBGP's main loop, whatever the prefixes asked about,
// which is why the audit asks only about what the cheaper reads could not
// clear, and is periodic. In process (adjOutReader) only the prefixes
// asked about are exported, a slice per operation of the loop.
func (s *Speaker) AuditBGP(ctx context.Context, ask audit.Ask) (*audit.BGP, error) {
	// The RIB's map at the size asked for: a million entries grown from
	// empty left several times their final size of garbage.
	out := &audit.BGP{At: time.Now(), Out: map[netip.Prefix][]netip.Addr{}, RIB: make(map[netip.Prefix][]audit.Path, len(ask.Known)),
		LetOut: map[netip.Prefix]bool{}, InScope: func(p netip.Prefix) bool { return s.cfg.scopeOf(p).contains(p) }}
	r, ok := ask.Carry.(*auditRead)
	if !ok {
		var err error
		if r, err = s.readForAudit(ctx); err != nil {
			return nil, err
		}
	}
	out.Carry, out.Holds, out.Copied = r, r.holds, s.cp.has
	multipath := r.multipath
	var perr error
	parse := func(d *api.Destination) (netip.Prefix, bool) {
		p, err := netip.ParsePrefix(d.Prefix)
		if err != nil {
			perr = fmt.Errorf("destination %q: %w", d.Prefix, err)
			return p, false
		}
		return p.Masked(), true
	}
	// The prefixes whose adj-out is read, by family. Through the API a
	// read exports the family's whole table in GoBGP's main loop, so a
	// large periodic pass leaves it unread (audit.Ask.Large).
	adj := map[*api.Family]map[netip.Prefix]bool{familyV4: {}, familyV6: {}}
	ar, cheapAdjOut := s.b.(adjOutReader)
	cheapAdjOut = cheapAdjOut && ar.inProcessAdjOut()
	pace := newPacer(ctx)
	// Each destination's paths are carved from shared chunks: one
	// allocation per destination was a million a pass at a full table.
	var scratch []audit.Path
	var fromScratch []*api.Path
	var paths chunk.Arena[audit.Path]
	for _, f := range []*api.Family{familyV4, familyV6} {
		take := func(d *api.Destination) {
			pace.step()
			p, ok := parse(d)
			if !ok || ownPrefix(p) || ask.Except != nil && ask.Except(p) { // WatchBest's own (heartbeat.go); read by a part
				return
			}
			ps := scratch[:0]
			from := fromScratch[:0] // the API path of each of ps
			for _, x := range d.Paths {
				if x.IsWithdraw {
					continue
				}
				from = append(from, x)
				nh, comms, err := pathAttrs(x)
				if err != nil {
					perr = fmt.Errorf("destination %v: %w", p, err)
					return
				}
				ap := audit.Path{Nexthop: nh, Learned: learned(x),
					Hold: slices.Contains(comms, s.cfg.hold), Kept: slices.Contains(comms, s.cfg.keep), Best: x.Best}
				if ap.Hold || ap.Kept {
					// Only the gate's own paths are reported by identity
					// (audit.HoldLeft); a string for every path of a full
					// table was a million allocations a pass.
					ap.ID = pathID(x)
				}
				ps = append(ps, ap)
			}
			scratch, fromScratch = ps, from
			if len(ps) == 0 {
				return
			}
			if ps[0].Kept {
				for _, l := range s.learnedSet(p, from, multipath) {
					ps[slices.Index(from, l)].Best = true
				}
			}
			out.RIB[p] = paths.Of(ps...)
			// Unconfirmed before Holds: most prefixes are confirmed, and
			// a held-set lookup walks up to a prefix length of maps. A
			// kept copy that is best is out whatever the held set says.
			if ps[0].Hold || !out.InScope(p) || ask.Unconfirmed != nil && !ask.Unconfirmed(p) || !ps[0].Kept && out.Holds(p) {
				return
			}
			read := (ask.Confirm == nil || ask.Confirm(p)) && (cheapAdjOut || !ask.Large)
			out.LetOut[p] = read
			if read {
				adj[f][p] = true
			}
		}
		var err error
		if ask.Known == nil {
			err = s.readWhole(ctx, f, ask.Except, take)
		} else {
			err = s.lookupKnown(ctx, f, ask.Known, take)
		}
		if err = errors.Join(err, perr); err != nil {
			return nil, fmt.Errorf("list global rib (%s): %w", f.Afi, err)
		}
	}
	out.Checked = len(adj[familyV4]) + len(adj[familyV6])
	if err := s.readAdjOut(ctx, out, adj, r.neighbours); err != nil {
		return nil, err
	}
	return out, nil
}

// auditRead is what AuditBGP reads of GoBGP once a pass, however many
// parts the pass has (audit.Ask.Carry): whether the gate's policy is
// first in the global export chain and its held sets, as audit.BGP.Holds
// judges them, and GoBGP's multipath setting. At the full table the held
// sets are a million entries, read in one call.
type auditRead struct {
	holds     func(netip.Prefix) bool
	multipath bool
	// neighbours are the established neighbours when the pass began: a
	// part that reads no adj-out reports them.
	neighbours []peerBrief
}

func (s *Speaker) readForAudit(ctx context.Context) (*auditRead, error) {
	a, err := s.b.exportAssignment(ctx)
	if err != nil {
		return nil, fmt.Errorf("read global export assignment: %w", err)
	}
	inPlace := len(a.Policies) > 0 && a.Policies[0].Name == s.cfg.policy
	sets, err := s.readSets(ctx)
	if err != nil {
		return nil, err
	}
	// The learned paths under a kept copy are what the installer follows
	// (copy.go); with multipath, a set of them.
	multipath, err := s.b.multipath(ctx)
	if err != nil {
		return nil, fmt.Errorf("read gobgp's multipath setting: %w", err)
	}
	nbs, err := s.establishedPeers(ctx)
	if err != nil {
		return nil, err
	}
	held4, held6 := sets.held[s.cfg.setV4], sets.held[s.cfg.setV6]
	return &auditRead{multipath: multipath, neighbours: nbs, holds: func(p netip.Prefix) bool {
		if !inPlace {
			return false
		}
		if p.Addr().Is4() {
			return heldBy(held4, p)
		}
		return heldBy(held6, p)
	}}, nil
}

// readWhole reads the destinations of the family f in GoBGP's global RIB,
// but for those except names (nil: none). In process (ribLister) it lists
// the prefixes and looks them up a slice at a time (lookupKnown), so
// GoBGP's main loop is held only for the listing of its keys; through the
// API, ListPath copies the whole table in the loop first.
func (s *Speaker) readWhole(ctx context.Context, f *api.Family, except func(netip.Prefix) bool, fn func(*api.Destination)) error {
	if l, ok := s.b.(ribLister); ok {
		ps, ok, err := l.ribPrefixes(ctx, f == familyV4)
		if err != nil {
			return err
		}
		if ok {
			if except != nil {
				ps = slices.DeleteFunc(ps, except)
			}
			return s.lookupKnown(ctx, f, ps, fn)
		}
	}
	return s.b.listPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: f, EnableOnlyBinary: true}, fn)
}

// lookupSlice is how many prefixes one exact lookup of a partial read
// names (lookupKnown): GoBGP looks them up in its main loop, a few
// microseconds each, so a slice holds the loop for a few milliseconds.
const lookupSlice = 256

// lookupKnown reads the destinations of the family f among known from
// GoBGP's global RIB, lookupSlice prefixes per request. GoBGP copies the
// destinations a request names, in its main loop; a read of the whole
// table copies all of them at once, and held the loop (every update,
// every release) for half a second at 120k prefixes (make bench-churn).
func (s *Speaker) lookupKnown(ctx context.Context, f *api.Family, known []netip.Prefix, fn func(*api.Destination)) error {
	r := &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: f, EnableOnlyBinary: true}
	flush := func() error {
		if len(r.Prefixes) == 0 {
			return nil
		}
		err := s.b.listPath(ctx, r, fn)
		r.Prefixes = r.Prefixes[:0]
		return err
	}
	for _, p := range known {
		if p.Addr().Is4() != (f == familyV4) {
			continue
		}
		r.Prefixes = append(r.Prefixes, &api.TableLookupPrefix{Prefix: p.String(), Type: api.TableLookupPrefix_EXACT})
		if len(r.Prefixes) == lookupSlice {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// maxLookups bounds the prefixes one adj-out request names; with more,
// the whole adj-out is read (GoBGP computes all of it either way).
const maxLookups = 50000

// auditNeighbour is an established neighbour as the audit reads it.
type auditNeighbour struct {
	addr netip.Addr
	key  string // as GoBGP's neighbour map names it
	fams []*api.Family
}

// establishedNeighbours lists GoBGP's established neighbours and the
// unicast families each has, as adj-out reads need them: through
// ListPeer, which counts every neighbour's adj-in in GoBGP's main loop, so
// only a part that reads adj-out lists them this way.
func (s *Speaker) establishedNeighbours(ctx context.Context) ([]auditNeighbour, error) {
	var peers []auditNeighbour
	err := s.b.listPeers(ctx, func(p *api.Peer) {
		if p.GetState().GetSessionState() != api.PeerState_ESTABLISHED {
			return
		}
		a, err := netip.ParseAddr(p.GetState().GetNeighborAddress())
		if err != nil {
			return // an unnumbered neighbour has no address to name it by
		}
		n := auditNeighbour{addr: a.Unmap(), key: p.GetState().GetNeighborAddress()}
		for _, f := range []*api.Family{familyV4, familyV6} {
			if slices.ContainsFunc(p.GetAfiSafis(), func(x *api.AfiSafi) bool {
				c := x.GetConfig()
				return c.GetEnabled() && c.GetFamily().GetAfi() == f.Afi && c.GetFamily().GetSafi() == f.Safi
			}) {
				n.fams = append(n.fams, f)
			}
		}
		peers = append(peers, n)
	})
	if err != nil {
		return nil, fmt.Errorf("list neighbours: %w", err)
	}
	return peers, nil
}

// readAdjOut fills out.Neighbours with the established neighbours and
// out.Out with, for each of them and each unicast family it has, which of
// the prefixes asked about GoBGP's export policy lets out to it. With
// nothing to ask about, the neighbours are the pass's (established
// neighbours listed without GoBGP's adj-in counts by its first part) and
// nothing is read.
func (s *Speaker) readAdjOut(ctx context.Context, out *audit.BGP, ask map[*api.Family]map[netip.Prefix]bool, pass []peerBrief) error {
	if len(ask[familyV4])+len(ask[familyV6]) == 0 {
		for _, p := range pass {
			if a, err := netip.ParseAddr(p.addr); err == nil {
				out.Neighbours = append(out.Neighbours, a.Unmap())
			}
		}
		return nil
	}
	peers, err := s.establishedNeighbours(ctx)
	if err != nil {
		return err
	}
	for _, n := range peers {
		out.Neighbours = append(out.Neighbours, n.addr)
		for _, f := range n.fams {
			if len(ask[f]) == 0 {
				continue
			}
			if r, ok := s.b.(adjOutReader); ok {
				ps := slices.SortedFunc(maps.Keys(ask[f]), netip.Prefix.Compare)
				sent, ok, err := r.advertised(ctx, n.key, ps)
				if err != nil {
					return fmt.Errorf("adj-out of %v (%s): %w", n.addr, f.Afi, err)
				}
				if ok {
					for i, p := range ps {
						if sent[i] {
							out.Out[p] = append(out.Out[p], n.addr)
						}
					}
					continue
				}
			}
			r := &api.ListPathRequest{TableType: api.TableType_ADJ_OUT, Name: n.addr.String(), Family: f, EnableOnlyBinary: true, EnableFiltered: true}
			if len(ask[f]) <= maxLookups {
				for p := range ask[f] {
					r.Prefixes = append(r.Prefixes, &api.TableLookupPrefix{Prefix: p.String()})
				}
			}
			var perr error
			pace := newPacer(ctx)
			err := s.b.listPath(ctx, r, func(d *api.Destination) {
				pace.step()
				p, err := netip.ParsePrefix(d.Prefix)
				if err != nil {
					perr = fmt.Errorf("destination %q: %w", d.Prefix, err)
					return
				}
				if ask[f][p.Masked()] && slices.ContainsFunc(d.Paths, func(x *api.Path) bool { return !x.Filtered }) {
					out.Out[p.Masked()] = append(out.Out[p.Masked()], n.addr)
				}
			})
			if err = errors.Join(err, perr); err != nil {
				return fmt.Errorf("list adj-out of %v (%s): %w", n.addr, f.Afi, err)
			}
		}
	}
	return nil
}

// heldBy judges p against a held set as GoBGP's prefix condition does:
// only the longest stored prefix containing p counts, and p matches when
// one of that node's length ranges covers p's length (scope.go).
func heldBy(set map[netip.Prefix]lengths, p netip.Prefix) bool {
	for bits := p.Bits(); bits >= 0; bits-- {
		if l, ok := set[netip.PrefixFrom(p.Addr(), bits).Masked()]; ok {
			return l.has(p.Bits())
		}
	}
	return false
}

// pathID tells a path from a later one of the same kind: the UUID GoBGP
// gives paths added over its API, else the path's age.
func pathID(p *api.Path) string {
	if len(p.Uuid) > 0 {
		return hex.EncodeToString(p.Uuid)
	}
	return strconv.FormatInt(p.GetAge().AsTime().UnixNano(), 10)
}

func (b grpcBackend) listPeers(ctx context.Context, fn func(*api.Peer)) error {
	s, err := b.c.ListPeer(ctx, &api.ListPeerRequest{})
	if err != nil {
		return err
	}
	return recvAll(s, func(r *api.ListPeerResponse) { fn(r.Peer) })
}

func (b grpcBackend) listPath(ctx context.Context, r *api.ListPathRequest, fn func(*api.Destination)) error {
	s, err := b.c.ListPath(ctx, r)
	if err != nil {
		return err
	}
	return recvAll(s, func(r *api.ListPathResponse) { fn(r.Destination) })
}

func (b serverBackend) listPeers(ctx context.Context, fn func(*api.Peer)) error {
	return b.s.ListPeer(ctx, &api.ListPeerRequest{}, fn)
}

func (b serverBackend) listPath(ctx context.Context, r *api.ListPathRequest, fn func(*api.Destination)) error {
	return b.s.ListPath(ctx, r, fn)
}

// pacer spreads the audit's reads of GoBGP's tables over time. GoBGP takes
// its copy of the table in its main loop first, then turns every path into
// its API form while the reader takes them, in the reader's goroutine
// (gobgpd-ext) or in gobgpd's, held back by the stream (the sidecar): a
// reader that pauses spreads that work out. Unpaced, a pass over a table
// of 120k prefixes took the whole of a core for seconds, and on two cores
// the gate's own work waited for it: every change that reached the leaf
// meanwhile reached its FIB and its neighbours late (make bench-churn,
// docs/design-notes.md). After every paceEvery destinations the pacer
// rests paceRest times as long as they took, so a read uses at most a
// 1/(1+paceRest) share of a core, however large the table.
type pacer struct {
	ctx   context.Context
	n     int
	since time.Time
}

const (
	paceEvery = 1024
	paceRest  = 3
)

func newPacer(ctx context.Context) *pacer { return &pacer{ctx: ctx, since: time.Now()} }

// step counts one destination, and rests after every paceEvery of them.
func (p *pacer) step() {
	p.n++
	if p.n%paceEvery != 0 {
		return
	}
	t := time.NewTimer(paceRest * time.Since(p.since))
	select {
	case <-p.ctx.Done():
	case <-t.C:
	}
	t.Stop()
	p.since = time.Now()
}
