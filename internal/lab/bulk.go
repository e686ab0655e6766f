//go:build linux

package lab

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"google.golang.org/grpc"
)

// This file drives a stock gobgpd as a bulk BGP speaker: a source that
// announces and withdraws tens of thousands of prefixes in one call each,
// and an observer whose best paths are streamed with the test's own
// timestamps. FRR with that many `network` statements takes minutes, and
// reading its table back through vtysh JSON takes seconds per poll; a
// gobgpd does both in well under a second.

var bulkFamilyV4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}

// ActiveSpeakerConf renders a gobgpd config file for a speaker that
// connects to its single neighbour itself. GobgpdConf's neighbours are
// passive by default because its gobgpd is the device under test; a source
// or observer next to a passive device must take the initiative.
func ActiveSpeakerConf(as uint32, routerID string, n Neighbour) string {
	return GobgpdConf{AS: as, RouterID: routerID, Neighbours: []Neighbour{n}, Active: true}.String()
}

// HostPrefixes returns n distinct IPv4 /32s counted up from base, so a
// test can make any number of prefixes (4M in 100.64.0.0/10) that belong
// to no link of the lab.
func HostPrefixes(base netip.Addr, n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	a := base
	for i := range out {
		out[i] = netip.PrefixFrom(a, 32)
		a = a.Next()
	}
	return out
}

// AnnounceIPv4 adds a path for every prefix to gobgpd's global table, with
// next hop nh, in messages of 1024 paths in their binary form (gobgpd
// decodes them without unpacking protobuf Anys). It returns once gobgpd
// has taken every path.
func AnnounceIPv4(ctx context.Context, c api.GobgpApiClient, ps []netip.Prefix, nh netip.Addr) error {
	return sendIPv4(ctx, c, ps, nh, false)
}

// AnnounceIPv4With is AnnounceIPv4 with attributes of the test's own (an
// AS_PATH to prepend to gobgpd's AS, communities): how a test makes one
// neighbour's paths better or worse than another's.
func AnnounceIPv4With(ctx context.Context, c api.GobgpApiClient, ps []netip.Prefix, nh netip.Addr, extra ...bgp.PathAttributeInterface) error {
	return sendIPv4(ctx, c, ps, nh, false, extra...)
}

// WithdrawIPv4 deletes the paths AnnounceIPv4 added for ps (with the same
// next hop), in the same batches.
func WithdrawIPv4(ctx context.Context, c api.GobgpApiClient, ps []netip.Prefix, nh netip.Addr) error {
	return sendIPv4(ctx, c, ps, nh, true)
}

func sendIPv4(ctx context.Context, c api.GobgpApiClient, ps []netip.Prefix, nh netip.Addr, withdraw bool, extra ...bgp.PathAttributeInterface) error {
	var attrs [][]byte
	for _, a := range append([]bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP), bgp.NewPathAttributeNextHop(nh.String())}, extra...) {
		b, err := a.Serialize()
		if err != nil {
			return fmt.Errorf("%s attribute: %w", a.GetType(), err)
		}
		attrs = append(attrs, b)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream if we return early
	s, err := c.AddPathStream(ctx)
	if err != nil {
		return fmt.Errorf("add path stream: %w", err)
	}
	const perMessage = 1024
	for len(ps) > 0 {
		n := min(len(ps), perMessage)
		paths := make([]*api.Path, n)
		for i, p := range ps[:n] {
			a := p.Addr().As4()
			nlri := append([]byte{byte(p.Bits())}, a[:(p.Bits()+7)/8]...)
			paths[i] = &api.Path{Family: bulkFamilyV4, NlriBinary: nlri, PattrsBinary: attrs, IsWithdraw: withdraw}
		}
		if err := s.Send(&api.AddPathStreamRequest{TableType: api.TableType_GLOBAL, Paths: paths}); err != nil {
			if _, rerr := s.CloseAndRecv(); rerr != nil {
				return fmt.Errorf("announce %d prefixes: %w", len(ps), rerr)
			}
			return fmt.Errorf("announce %d prefixes: %w", len(ps), err)
		}
		ps = ps[n:]
	}
	if _, err := s.CloseAndRecv(); err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	return nil
}

// WithdrawAllIPv4 deletes every local IPv4 path of gobgpd's global table
// in one request: a bulk withdrawal at wire speed.
func WithdrawAllIPv4(ctx context.Context, c api.GobgpApiClient) error {
	if _, err := c.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: bulkFamilyV4}); err != nil {
		return fmt.Errorf("withdraw all ipv4 paths: %w", err)
	}
	return nil
}

// Sighting is one change of a prefix at a watched speaker: it appeared
// (Present) or went at At, the moment the test received the event. The
// speaker had the change a little earlier, never later, so a sighting
// before another process's timestamp proves the order.
type Sighting struct {
	P       netip.Prefix
	Present bool
	At      time.Time
	// ASPath is an announcement's AS path length as WireTap read it from
	// the UPDATE (an AS_SET counts once, confederation segments not at
	// all; -1: an AS_PATH it could not read), which tells one of a
	// prefix's paths from another when best paths move; 0 for a
	// withdrawal, and in BestWatch's sightings (ASPathsSince has them).
	ASPath int
}

// SightingsByPrefix groups sightings by prefix, each prefix's in the
// order given (oldest first, as Since returns them): judging a change
// needs one prefix's history at a time.
func SightingsByPrefix(ss []Sighting) map[netip.Prefix][]Sighting {
	by := make(map[netip.Prefix][]Sighting)
	for _, s := range ss {
		by[s.P] = append(by[s.P], s)
	}
	return by
}

// BestWatch follows the IPv4 best paths of a gobgpd through WatchEvent:
// what a BGP neighbour really holds, pushed as it changes instead of
// polled, so even 100k prefixes cost nothing between changes.
type BestWatch struct {
	mu   sync.Mutex
	now  map[netip.Prefix]bool
	log  []Sighting
	err  error
	done chan struct{}
	// asPaths, when not nil (WatchBestASPaths), holds the AS path length
	// of what the speaker holds per prefix; asLog its changes.
	asPaths map[netip.Prefix]int
	asLog   []ASPathSighting
}

// ASPathSighting is a change of the AS path a watched speaker holds for
// a prefix: its length from At on (0: the prefix went).
type ASPathSighting struct {
	P   netip.Prefix
	Len int
	At  time.Time
}

// WatchBest starts watching the best paths of the gobgpd behind conn,
// the current table first. The watch ends when the test does.
func WatchBest(tb testing.TB, conn *grpc.ClientConn) *BestWatch {
	tb.Helper()
	return watchBest(tb, conn, false)
}

// WatchBestASPaths is WatchBest that also logs every change of the AS
// path's length per prefix (ASPathsSince): what a make-before-break test
// needs to tell a neighbour's old path from its new one.
func WatchBestASPaths(tb testing.TB, conn *grpc.ClientConn) *BestWatch {
	tb.Helper()
	return watchBest(tb, conn, true)
}

func watchBest(tb testing.TB, conn *grpc.ClientConn, asPaths bool) *BestWatch {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req := &api.WatchEventRequest{
		Table: &api.WatchEventRequest_Table{
			Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_BEST, Init: true}},
		},
		BatchSize: 8192,
	}
	st, err := api.NewGobgpApiClient(conn).WatchEvent(ctx, req, grpc.MaxCallRecvMsgSize(256<<20))
	if err != nil {
		cancel()
		tb.Fatalf("watch best paths: %v", err)
	}
	w := &BestWatch{now: map[netip.Prefix]bool{}, done: make(chan struct{})}
	if asPaths {
		w.asPaths = map[netip.Prefix]int{}
	}
	go func() {
		defer close(w.done)
		for {
			r, err := st.Recv()
			at := time.Now()
			if err != nil {
				if ctx.Err() == nil {
					w.mu.Lock()
					w.err = fmt.Errorf("watch best paths: %w", err)
					w.mu.Unlock()
				}
				return
			}
			w.record(r.GetTable().GetPaths(), at)
		}
	}()
	tb.Cleanup(func() { cancel(); <-w.done })
	return w
}

func (w *BestWatch) record(paths []*api.Path, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, path := range paths {
		var n api.IPAddressPrefix
		if path.GetNlri() == nil || path.GetNlri().UnmarshalTo(&n) != nil {
			continue // not a unicast prefix
		}
		a, err := netip.ParseAddr(n.Prefix)
		if err != nil {
			continue
		}
		p := netip.PrefixFrom(a, int(n.PrefixLen)).Masked()
		present := !path.GetIsWithdraw()
		if w.asPaths != nil {
			l := 0
			if present {
				l = asPathLen(path)
			}
			if old, ok := w.asPaths[p]; !ok && l > 0 || ok && old != l {
				w.asPaths[p] = l
				w.asLog = append(w.asLog, ASPathSighting{P: p, Len: l, At: at})
			}
		}
		if w.now[p] == present {
			continue // another best path of a prefix it holds
		}
		if present {
			w.now[p] = true
		} else {
			delete(w.now, p)
		}
		w.log = append(w.log, Sighting{P: p, Present: present, At: at})
	}
}

// Count returns how many prefixes the speaker holds now, and the error
// that ended the watch, if one did.
func (w *BestWatch) Count() (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.now), w.err
}

// Has says whether the speaker holds p now.
func (w *BestWatch) Has(p netip.Prefix) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now[p]
}

// Since returns the sightings from `since` on, oldest first.
func (w *BestWatch) Since(since time.Time) []Sighting {
	w.mu.Lock()
	defer w.mu.Unlock()
	return from(w.log, since, func(s Sighting) time.Time { return s.At })
}

// from returns the entries of a log in time order at or after t.
func from[T any](log []T, t time.Time, at func(T) time.Time) []T {
	var out []T
	for _, e := range log {
		if !at(e).Before(t) {
			out = append(out, e)
		}
	}
	return out
}

// asPathLen counts the ASes of a path's AS_PATH (a set counts once).
func asPathLen(p *api.Path) int {
	for _, a := range p.GetPattrs() {
		var m api.AsPathAttribute
		if !a.MessageIs(&m) || a.UnmarshalTo(&m) != nil {
			continue
		}
		n := 0
		for _, seg := range m.Segments {
			if seg.Type == api.AsSegment_AS_SET {
				n++
			} else {
				n += len(seg.Numbers)
			}
		}
		return n
	}
	return 0
}

// ASPathsSince returns the AS path changes logged at or after t, oldest
// first (WatchBestASPaths).
func (w *BestWatch) ASPathsSince(t time.Time) []ASPathSighting {
	w.mu.Lock()
	defer w.mu.Unlock()
	return from(w.asLog, t, func(s ASPathSighting) time.Time { return s.At })
}
