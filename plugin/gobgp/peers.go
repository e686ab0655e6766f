package gobgp

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"sync"

	api "github.com/osrg/gobgp/v3/api"
)

// peerBrief is an established neighbour: its session's address (as a
// path's NeighborIp has it; ListPeer's fallback gives the configured one)
// and its AS.
type peerBrief struct {
	addr string
	as   uint32
}

// peerLister is a backend that lists GoBGP's established neighbours
// without ListPeer (both of this package's do). GoBGP's ListPeer counts
// every neighbour's adj-in for its answer, in its main loop: about 30 ms
// for a neighbour with 300,000 paths, so at a full table from two
// upstreams a fifth of a second that every UPDATE, release and fence
// waits behind. Make-before-break (keep.go) listed them for every batch of
// best paths moving.
type peerLister interface {
	// dumpPeers hands fn every neighbour of one peer watch's dump.
	dumpPeers(ctx context.Context, fn func(*api.PeerState)) error
}

// establishedPeers lists GoBGP's established neighbours: from a peer
// watch's initial dump where the backend can (peerLister), else through
// ListPeer.
func (s *Speaker) establishedPeers(ctx context.Context) ([]peerBrief, error) {
	l, ok := s.b.(peerLister)
	if !ok {
		return listEstablished(ctx, s.b)
	}
	var out []peerBrief
	if err := l.dumpPeers(ctx, established(&out)); err != nil {
		return nil, err
	}
	return out, nil
}

// listEstablished lists b's established neighbours through ListPeer.
func listEstablished(ctx context.Context, b backend) ([]peerBrief, error) {
	var out []peerBrief
	err := b.listPeers(ctx, func(p *api.Peer) {
		if p.GetState().GetSessionState() == api.PeerState_ESTABLISHED {
			out = append(out, peerBrief{addr: p.GetState().GetNeighborAddress(), as: p.GetConf().GetPeerAsn()})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list neighbours: %w", err)
	}
	return out, nil
}

// dumpEvent hands fn the state of a neighbour in a peer watch's dump, and
// says whether the dump is over.
func dumpEvent(r *api.WatchEventResponse, fn func(*api.PeerState)) (over bool) {
	ev := r.GetPeer()
	switch ev.GetType() {
	case api.WatchEventResponse_PeerEvent_INIT:
		fn(ev.GetPeer().GetState())
	case api.WatchEventResponse_PeerEvent_END_OF_INIT:
		return true
	}
	return false
}

// established collects the established neighbours of a dump.
func established(out *[]peerBrief) func(*api.PeerState) {
	return func(st *api.PeerState) {
		if st.GetSessionState() == api.PeerState_ESTABLISHED {
			*out = append(*out, peerBrief{addr: st.GetNeighborAddress(), as: st.GetPeerAsn()})
		}
	}
}

// signed fingerprints the neighbours of a dump whatever their order.
type signed struct{ sum uint64 }

func (g *signed) add(st *api.PeerState) {
	var h maphash.Hash
	h.SetSeed(exportSeed)
	h.WriteString(st.GetNeighborAddress())
	h.WriteByte(0)
	h.Write(binary.LittleEndian.AppendUint32(nil, st.GetPeerAsn()))
	h.WriteByte(byte(st.GetSessionState()))
	g.sum += h.Sum64() // a sum: the dump's order is the neighbour map's
}

// dumpPeers reads the dump GoBGP sends a new peer watch (one event a
// neighbour, PEER_EVENT_INIT, then END_OF_INIT) into fn: GoBGP builds it
// in one main-loop operation from its neighbour map alone, with each
// neighbour's session state and AS as ListPeer has them. The watch ends
// once the dump is read.
func (b serverBackend) dumpPeers(ctx context.Context, fn func(*api.PeerState)) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// GoBGP's watcher may call on after the dump, or after ctx ended,
	// until the watch is gone: fn is not called once dumpPeers returns.
	var (
		mu       sync.Mutex
		finished bool
	)
	dumped := make(chan struct{})
	err := b.s.WatchEvent(wctx, peerWatchRequest(), func(r *api.WatchEventResponse) {
		mu.Lock()
		defer mu.Unlock()
		if !finished && dumpEvent(r, fn) {
			finished = true
			close(dumped)
		}
	})
	if err != nil {
		return fmt.Errorf("watch neighbours: %w", err)
	}
	select {
	case <-dumped:
		return nil
	case <-ctx.Done():
		mu.Lock()
		finished = true
		mu.Unlock()
		return ctx.Err()
	}
}

// dumpPeers is serverBackend's over gobgpd's API: every GoBGP v3 release
// from 3.0.0 sends a new peer watch the same dump.
func (b grpcBackend) dumpPeers(ctx context.Context, fn func(*api.PeerState)) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := b.c.WatchEvent(wctx, peerWatchRequest())
	if err != nil {
		return fmt.Errorf("watch neighbours: %w", err)
	}
	for {
		r, err := st.Recv()
		if err != nil {
			return fmt.Errorf("watch neighbours: the dump ended early: %w", err)
		}
		if dumpEvent(r, fn) {
			return nil
		}
	}
}
