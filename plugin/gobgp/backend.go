package gobgp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/fibgate/fibgate/plugin/gobgp/internal/bestwatch"
	"github.com/fibgate/fibgate/plugin/gobgp/internal/reexport"
)

// backend is the part of GoBGP's API the gate uses. Two implementations:
// grpcBackend talks to a stock gobgpd, serverBackend calls a BgpServer in
// the same process. Everything above it is shared, so both adapters behave
// the same by construction.
type backend interface {
	addDefinedSet(ctx context.Context, d *api.DefinedSet) error
	deleteDefinedSet(ctx context.Context, d *api.DefinedSet, all bool) error
	// listDefinedSets calls fn for the sets of a type, only the one named
	// name unless it is "".
	listDefinedSets(ctx context.Context, typ api.DefinedType, name string, fn func(*api.DefinedSet)) error
	addPolicy(ctx context.Context, p *api.Policy) error
	deletePolicy(ctx context.Context, name string) error
	listPolicies(ctx context.Context, fn func(*api.Policy)) error
	// exportAssignment returns the global export chain, first policy first.
	exportAssignment(ctx context.Context) (*api.PolicyAssignment, error)
	// setExportAssignment sets the chain and, unless it is NONE, the
	// default action.
	setExportAssignment(ctx context.Context, policies []string, def api.RouteAction) error
	// sendPaths adds and withdraws (IsWithdraw) paths in order, batched
	// where the API allows.
	sendPaths(ctx context.Context, paths []*api.Path) error
	// listGlobal calls fn for every destination of the global RIB of one
	// family with the attributes of its best path left out.
	listGlobal(ctx context.Context, family *api.Family, fn func(*api.Destination)) error
	// watchBest calls fn with the paths of every best-path event, the
	// whole table first, from one goroutine, until ctx ends; a broken
	// stream is reported once on errc. batched says the whole table may
	// span several calls (WatchBest then marks its end).
	watchBest(ctx context.Context, fn func([]watched), errc chan<- error) (batched bool, err error)
	// attrsBinary says watchBest reads GoBGP's own paths (bestwatch), whose
	// fingerprints (watched.key) are those of the attributes' wire form:
	// lookup then asks ListPath for that form, so that the two compare.
	attrsBinary() bool
	// listPeers calls fn for every neighbour, with its state (audit.go).
	listPeers(ctx context.Context, fn func(*api.Peer)) error
	// watchPeers calls fn with the neighbour of every session state
	// change GoBGP reports, until ctx ends or the watch breaks; it returns
	// why it ended (notto.go: what Check's neighbour reads wait for).
	watchPeers(ctx context.Context, fn func(*api.Peer)) error
	// listPath calls fn for every destination of a ListPath request
	// (audit.go: adj-out and the global RIB with all their paths).
	listPath(ctx context.Context, r *api.ListPathRequest, fn func(*api.Destination)) error
	// localAS returns GoBGP's own AS (keep.go).
	localAS(ctx context.Context) (uint32, error)
	// multipath says whether GoBGP's multipath is on (copy.go: the
	// installer's next hops under a copy).
	multipath(ctx context.Context) (bool, error)
	// watchLearned calls fn with what may change the paths neighbours
	// sent (copy.go): every UPDATE's paths before import policy, and every
	// neighbour's session state and End-of-RIB, until ctx ends. In process
	// only.
	watchLearned(ctx context.Context, fn func(learnedEvent)) error
}

// pathsPerMessage is how many paths one AddPathStream message carries:
// gobgpd handles each message as one operation of its main loop, so
// bigger messages amortize the loop; 1024 paths are ~100 KB.
const pathsPerMessage = 1024

var (
	familyV4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyV6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

// unicastOf is familyV4 or familyV6.
func unicastOf(v4 bool) *api.Family {
	if v4 {
		return familyV4
	}
	return familyV6
}

func globalExport() *api.PolicyAssignment {
	return &api.PolicyAssignment{Name: "global", Direction: api.PolicyDirection_EXPORT}
}

func policyRefs(names []string) []*api.Policy {
	ps := make([]*api.Policy, len(names))
	for i, n := range names {
		ps[i] = &api.Policy{Name: n}
	}
	return ps
}

// grpcBackend drives gobgpd over its gRPC API.
type grpcBackend struct{ c api.GobgpApiClient }

func (b grpcBackend) addDefinedSet(ctx context.Context, d *api.DefinedSet) error {
	_, err := b.c.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: d})
	return err
}

func (b grpcBackend) deleteDefinedSet(ctx context.Context, d *api.DefinedSet, all bool) error {
	_, err := b.c.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: d, All: all})
	return err
}

// recvAll drains a server stream, calling fn for every message.
func recvAll[T any](s interface{ Recv() (T, error) }, fn func(T)) error {
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		fn(m)
	}
}

func (b grpcBackend) listDefinedSets(ctx context.Context, typ api.DefinedType, name string, fn func(*api.DefinedSet)) error {
	s, err := b.c.ListDefinedSet(ctx, &api.ListDefinedSetRequest{DefinedType: typ, Name: name})
	if err != nil {
		return err
	}
	return recvAll(s, func(r *api.ListDefinedSetResponse) { fn(r.DefinedSet) })
}

func (b grpcBackend) addPolicy(ctx context.Context, p *api.Policy) error {
	_, err := b.c.AddPolicy(ctx, &api.AddPolicyRequest{Policy: p})
	return err
}

func (b grpcBackend) deletePolicy(ctx context.Context, name string) error {
	_, err := b.c.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: name}, All: true})
	return err
}

func (b grpcBackend) listPolicies(ctx context.Context, fn func(*api.Policy)) error {
	s, err := b.c.ListPolicy(ctx, &api.ListPolicyRequest{})
	if err != nil {
		return err
	}
	return recvAll(s, func(r *api.ListPolicyResponse) { fn(r.Policy) })
}

func (b grpcBackend) exportAssignment(ctx context.Context) (*api.PolicyAssignment, error) {
	s, err := b.c.ListPolicyAssignment(ctx, &api.ListPolicyAssignmentRequest{Name: "global", Direction: api.PolicyDirection_EXPORT})
	if err != nil {
		return nil, err
	}
	var a *api.PolicyAssignment
	err = recvAll(s, func(r *api.ListPolicyAssignmentResponse) { a = r.Assignment })
	if err == nil && a == nil {
		err = errors.New("no global export assignment in the answer")
	}
	return a, err
}

func (b grpcBackend) setExportAssignment(ctx context.Context, policies []string, def api.RouteAction) error {
	a := globalExport()
	a.Policies, a.DefaultAction = policyRefs(policies), def
	_, err := b.c.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: a})
	return err
}

func (b grpcBackend) sendPaths(ctx context.Context, paths []*api.Path) error {
	if len(paths) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream if we return early
	s, err := b.c.AddPathStream(ctx)
	if err != nil {
		return err
	}
	for len(paths) > 0 {
		n := min(len(paths), pathsPerMessage)
		if err := s.Send(&api.AddPathStreamRequest{TableType: api.TableType_GLOBAL, Paths: paths[:n]}); err != nil {
			// The real error comes with CloseAndRecv.
			if _, rerr := s.CloseAndRecv(); rerr != nil {
				return rerr
			}
			return err
		}
		paths = paths[n:]
	}
	// CloseAndRecv returns once gobgpd has handled every message.
	_, err = s.CloseAndRecv()
	return err
}

func (b grpcBackend) listGlobal(ctx context.Context, family *api.Family, fn func(*api.Destination)) error {
	s, err := b.c.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: family, EnableOnlyBinary: true})
	if err != nil {
		return err
	}
	return recvAll(s, func(r *api.ListPathResponse) { fn(r.Destination) })
}

// serverBackend calls a BgpServer in this process. It has no batch call
// for paths: every path is one operation of the server's main loop.
type serverBackend struct{ s *server.BgpServer }

func (b serverBackend) addDefinedSet(ctx context.Context, d *api.DefinedSet) error {
	return b.s.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: d})
}

func (b serverBackend) deleteDefinedSet(ctx context.Context, d *api.DefinedSet, all bool) error {
	return b.s.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: d, All: all})
}

func (b serverBackend) listDefinedSets(ctx context.Context, typ api.DefinedType, name string, fn func(*api.DefinedSet)) error {
	return b.s.ListDefinedSet(ctx, &api.ListDefinedSetRequest{DefinedType: typ, Name: name}, fn)
}

func (b serverBackend) addPolicy(ctx context.Context, p *api.Policy) error {
	return b.s.AddPolicy(ctx, &api.AddPolicyRequest{Policy: p})
}

func (b serverBackend) deletePolicy(ctx context.Context, name string) error {
	return b.s.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: name}, All: true})
}

func (b serverBackend) listPolicies(ctx context.Context, fn func(*api.Policy)) error {
	return b.s.ListPolicy(ctx, &api.ListPolicyRequest{}, fn)
}

func (b serverBackend) exportAssignment(ctx context.Context) (*api.PolicyAssignment, error) {
	var a *api.PolicyAssignment
	err := b.s.ListPolicyAssignment(ctx, &api.ListPolicyAssignmentRequest{Name: "global", Direction: api.PolicyDirection_EXPORT},
		func(x *api.PolicyAssignment) { a = x })
	if err == nil && a == nil {
		err = errors.New("no global export assignment in the answer")
	}
	return a, err
}

func (b serverBackend) setExportAssignment(ctx context.Context, policies []string, def api.RouteAction) error {
	a := globalExport()
	a.Policies, a.DefaultAction = policyRefs(policies), def
	return b.s.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: a})
}

// serverWorkers is how many goroutines feed the server's main loop. It
// handles one operation at a time; with one caller, every operation waits
// for the caller to wake up and build the next. A few callers keep an
// operation queued (measured on 2 busy cores: 1.3x to 2.7x paths/s with
// 4 callers, depending on the mix of adds and deletes).
const serverWorkers = 4

func (b serverBackend) sendPaths(ctx context.Context, paths []*api.Path) error {
	if reexport.Available() == nil && !toggleInProcess {
		return b.sendStream(ctx, paths)
	}
	if len(paths) < 2*serverWorkers {
		return b.sendSerial(ctx, paths)
	}
	// Paths of one prefix must stay in order (a HOLD path's add before
	// its delete): partition by NLRI.
	var parts [serverWorkers][]*api.Path
	for _, p := range paths {
		h := uint32(2166136261)
		for _, c := range p.NlriBinary {
			h = (h ^ uint32(c)) * 16777619
		}
		parts[h%serverWorkers] = append(parts[h%serverWorkers], p)
	}
	errs := make(chan error, serverWorkers)
	for _, part := range parts {
		go func() { errs <- b.sendSerial(ctx, part) }()
	}
	var all []error
	for range serverWorkers {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// sendStream sends paths pathsPerMessage at a time, each batch one
// operation of GoBGP's main loop (reexport.AddPaths), as the gRPC backend's
// AddPathStream does. A batch GoBGP refuses has left none of its paths in;
// it is sent again a path at a time, so that the paths before the bad one
// go in and the error names it, as before.
func (b serverBackend) sendStream(ctx context.Context, paths []*api.Path) error {
	for len(paths) > 0 {
		n := min(len(paths), pathsPerMessage)
		if err := reexport.AddPaths(ctx, b.s, paths[:n]); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return b.sendSerial(ctx, paths[:n])
		}
		paths = paths[n:]
	}
	return nil
}

func (b serverBackend) sendSerial(ctx context.Context, paths []*api.Path) error {
	for i, p := range paths {
		if i%pathsPerMessage == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		var err error
		if p.IsWithdraw {
			err = b.s.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: p.Family, Path: p})
		} else {
			_, err = b.s.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p})
		}
		if err != nil {
			return fmt.Errorf("path %d of %d: %w", i+1, len(paths), err)
		}
	}
	return nil
}

func (b serverBackend) listGlobal(ctx context.Context, family *api.Family, fn func(*api.Destination)) error {
	return b.s.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: family, EnableOnlyBinary: true}, fn)
}

func (b grpcBackend) localAS(ctx context.Context) (uint32, error) {
	r, err := b.c.GetBgp(ctx, &api.GetBgpRequest{})
	if err != nil {
		return 0, err
	}
	return r.GetGlobal().GetAsn(), nil
}

func (b serverBackend) localAS(ctx context.Context) (uint32, error) {
	r, err := b.s.GetBgp(ctx, &api.GetBgpRequest{})
	if err != nil {
		return 0, err
	}
	return r.GetGlobal().GetAsn(), nil
}

func (b grpcBackend) multipath(ctx context.Context) (bool, error) {
	r, err := b.c.GetBgp(ctx, &api.GetBgpRequest{})
	if err != nil {
		return false, err
	}
	return r.GetGlobal().GetUseMultiplePaths(), nil
}

func (b serverBackend) multipath(ctx context.Context) (bool, error) {
	r, err := b.s.GetBgp(ctx, &api.GetBgpRequest{})
	if err != nil {
		return false, err
	}
	return r.GetGlobal().GetUseMultiplePaths(), nil
}

// peerWatchRequest asks for session state changes only: no initial
// state, which would name every neighbour once for nothing.
func peerWatchRequest() *api.WatchEventRequest {
	return &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}
}

func (b grpcBackend) watchPeers(ctx context.Context, fn func(*api.Peer)) error {
	st, err := b.c.WatchEvent(ctx, peerWatchRequest())
	if err != nil {
		return err
	}
	for {
		r, err := st.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("session watch ended: %w", err)
		}
		if ev := r.GetPeer(); ev.GetType() == api.WatchEventResponse_PeerEvent_STATE {
			fn(ev.GetPeer())
		}
	}
}

func (b serverBackend) watchPeers(ctx context.Context, fn func(*api.Peer)) error {
	// The server calls back from its own goroutine until ctx ends.
	err := b.s.WatchEvent(ctx, peerWatchRequest(), func(r *api.WatchEventResponse) {
		if ev := r.GetPeer(); ev.GetType() == api.WatchEventResponse_PeerEvent_STATE {
			fn(ev.GetPeer())
		}
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

func (grpcBackend) watchLearned(context.Context, func(learnedEvent)) error {
	return ErrCopyNeedsInProcess
}

func (grpcBackend) attrsBinary() bool { return false }

// attrsBinary is true when the binary's GoBGP is the one bestwatch reads.
func (serverBackend) attrsBinary() bool { return bestwatch.Available() == nil }

// learnedEvent is one thing watchLearned reports: the prefixes of an
// UPDATE (non-nil, announced and withdrawn), or a neighbour's session
// state (also the state it is in when the watch starts), or its
// End-of-RIB for a family, or that the UPDATE watch failed (lost).
type learnedEvent struct {
	prefixes []netip.Prefix
	peer     string
	state    api.PeerState_SessionState // UNKNOWN unless a state
	eor      bool
	// lost: the watch of UPDATEs stopped on this error and another took
	// its place; UPDATEs in between were not seen.
	lost error
}

// learnedWatchRequest asks for every UPDATE's paths before import policy,
// End-of-RIBs, and the neighbours' session states. Why not GoBGP's
// post-policy watch, which reports every change of a neighbour's paths
// however it came: GoBGP builds the neighbour's whole configuration
// (toConfig) in its main loop for every path it notifies there, once per
// learned path; that was 6% of the CPU and a quarter of a converging
// 120k table's time. The pre-policy watch is notified once per UPDATE,
// which carries one prefix or hundreds. What
// changes paths without an UPDATE comes with a session state change or
// an End-of-RIB (a session's paths dropped or marked stale, stale paths
// dropped), or with neither (a long-lived graceful restart's timer, a
// soft reset in): copy.go's sweep.
func learnedWatchRequest() *api.WatchEventRequest {
	return &api.WatchEventRequest{
		Peer: &api.WatchEventRequest_Peer{},
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_ADJIN},
			{Type: api.WatchEventRequest_Table_Filter_EOR},
		}},
	}
}

func (b serverBackend) watchLearned(ctx context.Context, fn func(learnedEvent)) error {
	r := learnedWatchRequest()
	if b.attrsBinary() && !toggleInProcess {
		// The UPDATEs' prefixes in GoBGP's own form (bestwatch), on a
		// goroutine of ours; the sessions and End-of-RIBs over WatchEvent.
		// Two watches, so no order between them: each event only says
		// what to read back, and a read comes after the change it follows
		// (GoBGP notifies a watch in the main-loop pass that makes the
		// change, and serves the read in a later one).
		w, err := bestwatch.StartUpdates(b.s)
		if err != nil {
			return err
		}
		r.Table.Filters = r.Table.Filters[1:]
		go func() {
			err := w.Run(ctx, func(ns []bgp.AddrPrefixInterface) {
				fn(learnedEvent{prefixes: nlriPrefixes(ns)})
			})
			if err != nil && ctx.Err() == nil {
				// Cannot happen with the pinned GoBGP (its events were
				// checked); if it does, every change under a copy must
				// still be seen: the API's form from now on, and, for
				// what came between, every copy read back once the new
				// watch is in place (fn's lost event, with the error).
				werr := b.s.WatchEvent(ctx, &api.WatchEventRequest{Table: &api.WatchEventRequest_Table{
					Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_ADJIN}}}},
					func(r *api.WatchEventResponse) { learnedOf(r, fn) })
				if werr != nil {
					werr = fmt.Errorf("its replacement in the API's form failed too, so only sweeps read the copies back now: %w", werr)
				}
				fn(learnedEvent{lost: errors.Join(err, werr)})
			}
		}()
	}
	return b.s.WatchEvent(ctx, r, func(r *api.WatchEventResponse) { learnedOf(r, fn) })
}

// learnedOf turns a WatchEvent response of learnedWatchRequest's into
// learnedEvents.
func learnedOf(r *api.WatchEventResponse, fn func(learnedEvent)) {
	if ev := r.GetPeer(); ev != nil {
		switch ev.GetType() {
		case api.WatchEventResponse_PeerEvent_INIT, api.WatchEventResponse_PeerEvent_STATE:
			st := ev.GetPeer().GetState()
			fn(learnedEvent{peer: st.GetNeighborAddress(), state: st.GetSessionState()})
		}
		return
	}
	ps, ok := tablePaths(r)
	if !ok {
		return
	}
	// An End-of-RIB is a path with no NLRI (eorToPathAPI).
	var eors []*api.Path
	pfxs := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if p.GetNlri() == nil && len(p.GetNlriBinary()) == 0 {
			eors = append(eors, p)
		} else if pfx, ok := pathPrefix(p); ok {
			pfxs = append(pfxs, pfx)
		}
	}
	if len(eors) < len(ps) {
		fn(learnedEvent{prefixes: pfxs})
	}
	for _, p := range eors {
		fn(learnedEvent{peer: p.GetNeighborIp(), eor: true})
	}
}

// nlriPrefixes reads the unicast prefixes of NLRIs (others are left out).
func nlriPrefixes(ns []bgp.AddrPrefixInterface) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ns))
	for _, n := range ns {
		switch n := n.(type) {
		case *bgp.IPAddrPrefix:
			out = append(out, nlriPrefix(n.Prefix, n.Length))
		case *bgp.IPv6AddrPrefix:
			out = append(out, nlriPrefix(n.Prefix, n.Length))
		}
	}
	return out
}
