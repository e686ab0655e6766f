package api

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/grpc/peer"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// Paging and streaming limits.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
	// watchChunk bounds the routes per WatchRoutes message, so a full
	// table's snapshot never comes near a client's 4 MiB message limit.
	watchChunk = 500
)

// routeService serves RouteService from the RouteStore.
type routeService struct {
	pb.UnimplementedRouteServiceServer
	s *Server
}

func (r *routeService) store() (RouteStore, error) {
	if r.s.cfg.routes == nil {
		return nil, ErrNoGate
	}
	return r.s.cfg.routes, nil
}

// routeFilter is a validated set of ListRoutes/WatchRoutes filters; zero
// fields match everything.
type routeFilter struct {
	prefix  netip.Prefix
	covered bool
	family  fib.Family
	table   uint32
	state   gate.State
}

func newRouteFilter(prefix string, covered bool, family pb.Family, table uint32, state pb.State) (routeFilter, error) {
	var f routeFilter
	var err error
	if f.family, err = familyFromProto(family); err != nil {
		return f, &FieldError{Field: "family", Err: err}
	}
	if f.state, err = stateFromProto(state); err != nil {
		return f, &FieldError{Field: "state", Err: err}
	}
	f.table, f.covered = table, covered
	if prefix == "" {
		if covered {
			return f, badField("include_covered", "needs a prefix to look inside")
		}
		return f, nil
	}
	if f.prefix, err = parsePrefix(prefix); err != nil {
		return f, &FieldError{Field: "prefix", Err: err}
	}
	if f.family != 0 && fib.FamilyOf(f.prefix) != f.family {
		return f, badField("prefix", "%s is not %s, the family asked for", f.prefix, f.family)
	}
	return f, nil
}

func (f routeFilter) match(s gate.RouteState) bool {
	return f.matchKey(s.Table, s.Prefix, s.State)
}

func (f routeFilter) matchBrief(b gate.Brief) bool { return f.matchKey(b.Table, b.Prefix, b.State) }

func (f routeFilter) matchKey(table uint32, p netip.Prefix, state gate.State) bool {
	switch {
	case f.table != 0 && table != f.table,
		f.family != 0 && fib.FamilyOf(p) != f.family,
		f.state != 0 && state != f.state:
		return false
	case !f.prefix.IsValid():
		return true
	case f.covered:
		return p.Addr().Is4() == f.prefix.Addr().Is4() && p.Bits() >= f.prefix.Bits() && f.prefix.Contains(p.Addr())
	}
	return p == f.prefix
}

// hash identifies the filters in a page token, so a token is not used
// with other filters (which would skip or repeat routes silently).
func (f routeFilter) hash() uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s|%t|%d|%d|%d", f.prefix, f.covered, f.family, f.table, f.state)
	return h.Sum64()
}

// compareKey orders routes as RouteStore.List does: table, address,
// prefix length.
func compareKey(aTable uint32, a netip.Prefix, bTable uint32, b netip.Prefix) int {
	if c := cmp.Compare(aTable, bTable); c != 0 {
		return c
	}
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

func compareStates(a, b gate.RouteState) int { return compareKey(a.Table, a.Prefix, b.Table, b.Prefix) }

const tokenVersion = 1

// A page token is the key of the last route returned plus the filters'
// hash: the next page starts after that key, so routes added or removed
// between pages neither shift nor repeat the rest.
func encodeToken(filterHash uint64, table uint32, p netip.Prefix) string {
	b := []byte{tokenVersion}
	b = binary.BigEndian.AppendUint64(b, filterHash)
	b = binary.BigEndian.AppendUint32(b, table)
	pfx, _ := p.MarshalBinary()
	b = append(b, pfx...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(s string, filterHash uint64) (uint32, netip.Prefix, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 1+8+4 || b[0] != tokenVersion {
		return 0, netip.Prefix{}, badField("page_token", "not a token this server issued")
	}
	if binary.BigEndian.Uint64(b[1:9]) != filterHash {
		return 0, netip.Prefix{}, badField("page_token", "issued for other filters: repeat the filters of the first page")
	}
	var p netip.Prefix
	if err := p.UnmarshalBinary(b[13:]); err != nil || !p.IsValid() {
		return 0, netip.Prefix{}, badField("page_token", "not a token this server issued")
	}
	return binary.BigEndian.Uint32(b[9:13]), p, nil
}

// ListRoutes returns one page of gated prefixes matching the filters.
func (r *routeService) ListRoutes(_ context.Context, req *pb.ListRoutesRequest) (*pb.ListRoutesResponse, error) {
	st, err := r.store()
	if err != nil {
		return nil, statusOf(err)
	}
	f, err := newRouteFilter(req.GetPrefix(), req.GetIncludeCovered(), req.GetFamily(), req.GetTable(), req.GetState())
	if err != nil {
		return nil, statusOf(err)
	}
	size := int(req.GetPageSize())
	switch {
	case size == 0:
		size = defaultPageSize
	case size < 0 || size > maxPageSize:
		return nil, statusOf(badField("page_size", "%d is out of range: want 1 to %d (0 means %d)", size, maxPageSize, defaultPageSize))
	}
	var table uint32
	var after netip.Prefix
	if tok := req.GetPageToken(); tok != "" {
		if table, after, err = decodeToken(tok, f.hash()); err != nil {
			return nil, statusOf(err)
		}
	}
	out := &pb.ListRoutesResponse{}
	var page []gate.RouteState
	var more bool
	if pg, ok := st.(Pager); ok {
		page, more = pg.Page(table, after, size, f.matchBrief)
	} else {
		page, more = pageOfList(st.List(), f, table, after, size)
	}
	for _, s := range page {
		out.Routes = append(out.Routes, routeStateToProto(s))
	}
	if more {
		last := page[len(page)-1]
		out.NextPageToken = encodeToken(f.hash(), last.Table, last.Prefix)
	}
	return out, nil
}

// storeEmpty says whether st has no state, without listing them all
// when it can page.
func storeEmpty(st RouteStore) bool {
	if pg, ok := st.(Pager); ok {
		page, _ := pg.Page(0, netip.Prefix{}, 1, nil)
		return len(page) == 0
	}
	return len(st.List()) == 0
}

// pageOfList is Pager.Page over a whole list, for a RouteStore that
// cannot page itself.
func pageOfList(list []gate.RouteState, f routeFilter, table uint32, after netip.Prefix, n int) ([]gate.RouteState, bool) {
	if !slices.IsSortedFunc(list, compareStates) {
		slices.SortFunc(list, compareStates)
	}
	start := 0
	if after.IsValid() {
		start = sort.Search(len(list), func(i int) bool { return compareKey(list[i].Table, list[i].Prefix, table, after) > 0 })
	}
	var out []gate.RouteState
	for _, s := range list[start:] {
		if !f.match(s) {
			continue
		}
		if len(out) == n {
			return out, true
		}
		out = append(out, s)
	}
	return out, false
}

// GetRoute returns one gated prefix.
func (r *routeService) GetRoute(_ context.Context, req *pb.GetRouteRequest) (*pb.GetRouteResponse, error) {
	st, err := r.store()
	if err != nil {
		return nil, statusOf(err)
	}
	p, err := parsePrefix(req.GetPrefix())
	if err != nil {
		return nil, statusOf(&FieldError{Field: "prefix", Err: err})
	}
	states, err := lookup(st, req.GetTable(), p)
	if err != nil {
		return nil, statusOf(err)
	}
	if len(states) > 1 {
		var tables []string
		for _, s := range states {
			tables = append(tables, strconv.FormatUint(uint64(s.Table), 10))
		}
		return nil, statusOf(fmt.Errorf("%w: %s is gated in tables %s: name one", ErrSeveralTables, p, strings.Join(tables, ", ")))
	}
	return &pb.GetRouteResponse{Route: routeStateToProto(states[0])}, nil
}

// lookup returns the states of p in table, or with table 0 in every table
// that has it (the API's "every table"); NOT_FOUND when there is none.
func lookup(st RouteStore, table uint32, p netip.Prefix) ([]gate.RouteState, error) {
	if table != 0 {
		if s, ok := st.Get(table, p); ok {
			return []gate.RouteState{s}, nil
		}
		return nil, fmt.Errorf("%w: %s in table %d is not gated (no scope matches it, or it is not in the FIB)", ErrNotFound, p, table)
	}
	if states := st.Find(p); len(states) > 0 {
		return states, nil
	}
	return nil, fmt.Errorf("%w: %s is not gated in any table (no scope matches it, or it is not in the FIB)", ErrNotFound, p)
}

// WatchRoutes sends the snapshot in chunks, marks its end, then streams
// changes until the client goes or the server stops. A client that falls
// more than the watch limit behind is dropped (logged, and answered with
// RESOURCE_EXHAUSTED once it reads again); it reconnects for a fresh
// snapshot. One that reads nothing at all holds only the message being
// sent meanwhile: its queue is released when it is dropped.
func (r *routeService) WatchRoutes(req *pb.WatchRoutesRequest, stream pb.RouteService_WatchRoutesServer) error {
	st, err := r.store()
	if err != nil {
		return statusOf(err)
	}
	f, err := newRouteFilter(req.GetPrefix(), req.GetIncludeCovered(), req.GetFamily(), req.GetTable(), pb.State_STATE_UNSPECIFIED)
	if err != nil {
		return statusOf(err)
	}
	ctx, cancel := r.s.streamContext(stream.Context())
	defer cancel()
	ctx, drop := context.WithCancelCause(ctx)
	defer drop(context.Canceled)
	limit := r.s.cfg.watchLimit
	snapshot := !req.GetSkipSnapshot()
	changes := st.Watch(ctx, snapshot, gate.WatchLimit(limit, func(err error) {
		r.s.cfg.log.Warn("fibgate API: WatchRoutes client fell behind; dropped it", "peer", peerOf(stream.Context()), "limit", limit, "err", err)
		drop(fmt.Errorf("this client read too slowly (%w); reconnect for a fresh snapshot", err))
	}))
	if snapshot {
		// The store sends a non-empty snapshot as its first batch and
		// nothing for an empty one; the store tells which to expect. In a
		// race either way a batch is only labelled differently, never lost.
		var first []gate.RouteState
		if !storeEmpty(st) {
			select {
			case first = <-changes:
			case <-ctx.Done():
				return endOfStream(ctx)
			}
		}
		if err := sendStates(stream, filterStates(first, f), true); err != nil {
			return err
		}
	}
	for {
		select {
		case batch, ok := <-changes:
			if !ok {
				return endOfStream(ctx)
			}
			if err := sendStates(stream, filterStates(batch, f), false); err != nil {
				return err
			}
		case <-ctx.Done():
			return endOfStream(ctx)
		}
	}
}

func filterStates(in []gate.RouteState, f routeFilter) []gate.RouteState {
	out := make([]gate.RouteState, 0, len(in))
	for _, s := range in {
		if f.match(s) {
			out = append(out, s)
		}
	}
	return out
}

// sendStates sends states in chunks; a snapshot ends with a message that
// says so, even when empty.
func sendStates(stream pb.RouteService_WatchRoutesServer, states []gate.RouteState, snapshot bool) error {
	for len(states) > 0 || snapshot {
		n := min(len(states), watchChunk)
		msg := &pb.WatchRoutesResponse{Routes: routeStatesToProto(states[:n]), Snapshot: snapshot}
		states = states[n:]
		if snapshot && len(states) == 0 {
			msg.SnapshotComplete = true
			snapshot = false
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
	return nil
}

// endOfStream says why a stream ended: the client left (its own status),
// or the server is stopping (UNAVAILABLE: reconnect), or the client fell
// too far behind (RESOURCE_EXHAUSTED: reconnect), or the source closed.
func endOfStream(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), ErrShuttingDown) {
		return statusOf(ErrShuttingDown)
	}
	if cause := context.Cause(ctx); errors.Is(cause, gate.ErrWatcherTooSlow) {
		return statusOf(cause)
	}
	if ctx.Err() != nil {
		return statusOf(ctx.Err())
	}
	return statusOf(fmt.Errorf("%w: the route source stopped", ErrShuttingDown))
}

// peerOf names a stream's client for logs ("" when unknown; a unix socket
// peer has no address worth naming).
func peerOf(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}
