package gobgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	api "github.com/osrg/gobgp/v3/api"
)

// RestartState is what GoBGP says of its neighbours while it restarts
// gracefully (gobgpd started with -r, RFC 4724). GoBGP then sends nothing
// to a neighbour that is LocalRestarting until every established
// neighbour with graceful restart has sent its End-of-RIB, or the
// neighbour's deferral timer expires; then it sends its table and its own
// End-of-RIB ("sync finished"). The daemons read this to know when
// GoBGP's table is whole (docs/design-notes.md, "Graceful restart").
type RestartState struct {
	// Restarting: some neighbour is still LocalRestarting, so GoBGP has
	// not finished its sync.
	Restarting bool
	// Established counts the established neighbours.
	Established int
	// AwaitingEOR lists the established neighbours that negotiated
	// graceful restart and have not sent End-of-RIB for every family of
	// it yet: their routes may still be coming.
	AwaitingEOR []string
}

// Restart reads RestartState from GoBGP. Neighbours for which skip
// returns true are left out (gobgpd-ext's End-of-RIB barrier); skip may be
// nil.
func (s *Speaker) Restart(ctx context.Context, skip func(addr string) bool) (RestartState, error) {
	var st RestartState
	err := s.b.listPeers(ctx, func(p *api.Peer) {
		addr := p.GetState().GetNeighborAddress()
		if addr == "" {
			addr = p.GetConf().GetNeighborAddress()
		}
		if skip != nil && skip(addr) {
			return
		}
		if p.GetGracefulRestart().GetLocalRestarting() {
			st.Restarting = true
		}
		if p.GetState().GetSessionState() != api.PeerState_ESTABLISHED {
			return
		}
		st.Established++
		for _, a := range p.GetAfiSafis() {
			// As GoBGP's own recvedAllEOR: a family whose graceful
			// restart both sides negotiated owes an End-of-RIB.
			if g := a.GetMpGracefulRestart().GetState(); g.GetEnabled() && g.GetReceived() && !g.GetEndOfRibReceived() {
				st.AwaitingEOR = append(st.AwaitingEOR, addr)
				return
			}
		}
	})
	if err != nil {
		return st, fmt.Errorf("list neighbours: %w", err)
	}
	slices.Sort(st.AwaitingEOR)
	return st, nil
}

// Learned lists the IPv4 and IPv6 unicast prefixes for which GoBGP holds a
// path learned from a neighbour, whichever path is best (a HOLD path of
// the gate may be above it): the transit table a restarted daemon waits to
// see confirmed before its End-of-RIB goes out.
func (s *Speaker) Learned(ctx context.Context) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var perr error
	for _, f := range []*api.Family{familyV4, familyV6} {
		err := s.b.listGlobal(ctx, f, func(d *api.Destination) {
			if !slices.ContainsFunc(d.GetPaths(), learned) {
				return
			}
			p, err := netip.ParsePrefix(d.GetPrefix())
			if err != nil {
				perr = fmt.Errorf("destination %q: %w", d.GetPrefix(), err)
				return
			}
			out = append(out, p.Masked())
		})
		if err == nil {
			err = perr
		}
		if err != nil {
			return nil, fmt.Errorf("list global rib (%s): %w", f.GetAfi(), err)
		}
	}
	return out, nil
}

// learned says whether a path came from a neighbour: local paths (the
// gate's originated and HOLD paths, the CLI's) have no neighbour address.
func learned(p *api.Path) bool {
	if p.GetIsWithdraw() {
		return false
	}
	a, err := netip.ParseAddr(p.GetNeighborIp())
	return err == nil && !a.IsUnspecified()
}
