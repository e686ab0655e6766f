package gobgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
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
	// Neighbours counts the configured neighbours. None: a gobgpd that
	// has just started serves its API before it reads its config file,
	// so its table is not even being learned yet.
	Neighbours int
	// Established counts the established neighbours.
	Established int
	// AwaitingEOR lists the established neighbours that announced
	// graceful restart and have not sent End-of-RIB for every family they
	// negotiated yet: their routes may still be coming (owesEOR).
	AwaitingEOR []string
}

// EORSeen says whether neighbour addr has sent End-of-RIB for family (as
// GoBGP names it: "ipv4-unicast") since its session came up.
type EORSeen func(addr, family string) bool

// Restart reads RestartState from GoBGP. Neighbours for which skip
// returns true are left out (gobgpd-ext's End-of-RIB barrier); skip may be
// nil. eor, when not nil, says which End-of-RIBs really arrived; without
// it GoBGP's EndOfRibReceived says, which GoBGP also sets, without any
// End-of-RIB, for a neighbour whose OPEN has the restart bit while GoBGP
// restarts itself (RFC 4724 4.1: it must not wait for it then). FRR sets
// that bit for its restart time after it starts.
func (s *Speaker) Restart(ctx context.Context, skip func(addr string) bool, eor EORSeen) (RestartState, error) {
	var st RestartState
	err := s.b.listPeers(ctx, func(p *api.Peer) {
		addr := p.GetState().GetNeighborAddress()
		if addr == "" {
			addr = p.GetConf().GetNeighborAddress()
		}
		if skip != nil && skip(addr) {
			return
		}
		st.Neighbours++
		if p.GetGracefulRestart().GetLocalRestarting() {
			st.Restarting = true
		}
		if p.GetState().GetSessionState() != api.PeerState_ESTABLISHED {
			return
		}
		st.Established++
		if owesEOR(p, addr, eor) {
			st.AwaitingEOR = append(st.AwaitingEOR, addr)
		}
	})
	if err != nil {
		return st, fmt.Errorf("list neighbours: %w", err)
	}
	slices.Sort(st.AwaitingEOR)
	return st, nil
}

// owesEOR says whether an established neighbour has not sent End-of-RIB
// for every family it negotiated, when it announced the graceful restart
// capability. That is stricter than GoBGP's own sync, which waits only for
// families the neighbour listed in the capability, i.e. that it can
// restart in itself: a helper-only neighbour (FRR's default) lists none,
// yet as a receiving speaker it sends its table and then End-of-RIB (RFC
// 4724, 4.2), and its table is part of ours.
func owesEOR(p *api.Peer, addr string, eor EORSeen) bool {
	if !p.GetGracefulRestart().GetEnabled() {
		return false // ours off: the neighbour has no reason to send it
	}
	caps, err := apiutil.UnmarshalCapabilities(p.GetState().GetRemoteCap())
	if err != nil {
		return false
	}
	gr := false
	remote := map[bgp.RouteFamily]bool{}
	for _, c := range caps {
		switch c := c.(type) {
		case *bgp.CapGracefulRestart:
			gr = true
		case *bgp.CapMultiProtocol:
			remote[c.CapValue] = true
		}
	}
	if !gr {
		return false // no graceful restart: End-of-RIB is not promised
	}
	if len(remote) == 0 {
		remote[bgp.RF_IPv4_UC] = true // no multiprotocol capability: IPv4 unicast
	}
	for _, a := range p.GetAfiSafis() {
		f := a.GetConfig().GetFamily()
		if f == nil {
			continue
		}
		rf := bgp.AfiSafiToRouteFamily(uint16(f.GetAfi()), uint8(f.GetSafi()))
		if !a.GetConfig().GetEnabled() || !remote[rf] {
			continue
		}
		seen := a.GetMpGracefulRestart().GetState().GetEndOfRibReceived()
		if eor != nil {
			seen = eor(addr, rf.String())
		}
		if !seen {
			return true
		}
	}
	return false
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
