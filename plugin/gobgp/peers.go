package gobgp

import (
	"context"
	"fmt"
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
	establishedPeers(ctx context.Context) ([]peerBrief, error)
}

// establishedPeers lists GoBGP's established neighbours: from a peer
// watch's initial dump where the backend can (peerLister), else through
// ListPeer.
func (s *Speaker) establishedPeers(ctx context.Context) ([]peerBrief, error) {
	if l, ok := s.b.(peerLister); ok {
		return l.establishedPeers(ctx)
	}
	return listEstablished(ctx, s.b)
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

// dumpEvent adds an established neighbour of a peer watch's dump to out,
// and says whether the dump is over.
func dumpEvent(r *api.WatchEventResponse, out *[]peerBrief) (over bool) {
	ev := r.GetPeer()
	switch ev.GetType() {
	case api.WatchEventResponse_PeerEvent_INIT:
		if st := ev.GetPeer().GetState(); st.GetSessionState() == api.PeerState_ESTABLISHED {
			*out = append(*out, peerBrief{addr: st.GetNeighborAddress(), as: st.GetPeerAsn()})
		}
	case api.WatchEventResponse_PeerEvent_END_OF_INIT:
		return true
	}
	return false
}

// establishedPeers reads the neighbours from the dump GoBGP sends a new
// peer watch (one event a neighbour, PEER_EVENT_INIT, then END_OF_INIT):
// GoBGP builds it in one main-loop operation from its neighbour map
// alone, with each neighbour's session state and AS as ListPeer has them.
// The watch ends once the dump is read.
func (b serverBackend) establishedPeers(ctx context.Context) ([]peerBrief, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu   sync.Mutex
		out  []peerBrief
		once sync.Once
	)
	dumped := make(chan struct{})
	err := b.s.WatchEvent(wctx, peerWatchRequest(), func(r *api.WatchEventResponse) {
		mu.Lock()
		over := dumpEvent(r, &out)
		mu.Unlock()
		if over {
			once.Do(func() { close(dumped) })
		}
	})
	if err != nil {
		return nil, fmt.Errorf("watch neighbours: %w", err)
	}
	select {
	case <-dumped:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	mu.Lock()
	defer mu.Unlock()
	return out, nil
}

// establishedPeers is serverBackend's over gobgpd's API: every GoBGP v3
// release from 3.0.0 sends a new peer watch the same dump.
func (b grpcBackend) establishedPeers(ctx context.Context) ([]peerBrief, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := b.c.WatchEvent(wctx, peerWatchRequest())
	if err != nil {
		return nil, fmt.Errorf("watch neighbours: %w", err)
	}
	var out []peerBrief
	for {
		r, err := st.Recv()
		if err != nil {
			return nil, fmt.Errorf("watch neighbours: the dump ended early: %w", err)
		}
		if dumpEvent(r, &out) {
			return out, nil
		}
	}
}
