package gobgp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	api "github.com/osrg/gobgp/v3/api"
)

// ErrAddPathSend is why Bootstrap refuses a GoBGP that sends ADD-PATH
// (RFC 7911) to a neighbour in a gated family. GoBGP v3 exports each path
// to such a neighbour on its own, when that path changes, and sends it no
// withdrawal when the export policy rejects a path it already sent. So
// the gate's two moves both miss it: a release (the HOLD toggle changes
// the best path, not the learned path) never reaches it, and a take-back
// leaves the path it had. Measured in TestAddPathSendIsRefused; ADD-PATH
// receive (the neighbour sends us several paths) is not affected.
var ErrAddPathSend = errors.New("ADD-PATH send to a neighbour in a gated family")

// addPathSends returns what of p's configuration sends ADD-PATH in a
// family cfg gates ("ipv4-unicast send-max 4"), or nil. The configured
// send-max counts, negotiated or not: a neighbour that is down now may
// negotiate it when it comes up.
func addPathSends(p *api.Peer, cfg *normalized) []string {
	var out []string
	for _, af := range p.GetAfiSafis() {
		n := af.GetAddPaths().GetConfig().GetSendMax()
		if n == 0 {
			continue
		}
		f := af.GetConfig().GetFamily()
		if f.GetSafi() != api.Family_SAFI_UNICAST {
			continue
		}
		switch {
		case f.GetAfi() == api.Family_AFI_IP && !cfg.v4.none():
			out = append(out, fmt.Sprintf("ipv4-unicast send-max %d", n))
		case f.GetAfi() == api.Family_AFI_IP6 && !cfg.v6.none():
			out = append(out, fmt.Sprintf("ipv6-unicast send-max %d", n))
		}
	}
	return out
}

// peerName is how a neighbour is named in the gate's messages.
func peerName(p *api.Peer) string {
	if a := p.GetState().GetNeighborAddress(); a != "" {
		return a
	}
	if a := p.GetConf().GetNeighborAddress(); a != "" {
		return a
	}
	return "interface " + p.GetConf().GetNeighborInterface()
}

// addPathSenders describes the neighbours of one ListPeer read that send
// ADD-PATH in a gated family, one string each, sorted.
type addPathSenders []string

func (a *addPathSenders) note(p *api.Peer, cfg *normalized) {
	if l := addPathSends(p, cfg); len(l) > 0 {
		*a = append(*a, peerName(p)+" ("+strings.Join(l, ", ")+")")
	}
}

// list is the neighbours sorted and joined: what err names, and what
// reportAddPathSend compares with the read before.
func (a addPathSenders) list() string {
	slices.Sort(a)
	return strings.Join(a, "; ")
}

func (a addPathSenders) err() error {
	if len(a) == 0 {
		return nil
	}
	return errAddPathSend(a.list())
}

func errAddPathSend(list string) error {
	return fmt.Errorf("%w: %s: the gate can neither release a prefix to such a neighbour nor take one back (GoBGP exports its paths one by one and withdraws none its policy rejects); set add-paths send-max to 0 for it (ADD-PATH receive is fine)",
		ErrAddPathSend, list)
}

// CheckAddPathSend returns ErrAddPathSend, naming them, when peers send
// ADD-PATH in a family cfg gates: what Bootstrap refuses, for a caller
// that holds gobgpd's configuration before GoBGP runs it (gobgpd-ext
// checks its config file at start and on every reload, and keeps the
// running one rather than apply such a file). peers are as ListPeer
// returns them or oc.NewPeerFromConfigStruct builds them.
func CheckAddPathSend(cfg Config, peers ...*api.Peer) error {
	n, err := cfg.normalize()
	if err != nil {
		return err
	}
	var a addPathSenders
	for _, p := range peers {
		a.note(p, n)
	}
	return a.err()
}

// refuseAddPathSend is Bootstrap's check: ErrAddPathSend when a neighbour
// configured now sends ADD-PATH in a gated family. Neighbours that come
// later (a reload, a dynamic neighbour) are reported by Check.
func (s *Speaker) refuseAddPathSend(ctx context.Context) error {
	var a addPathSenders
	if err := s.b.listPeers(ctx, func(p *api.Peer) { a.note(p, s.cfg) }); err != nil {
		return fmt.Errorf("list neighbours: %w", err)
	}
	return a.err()
}

// reportAddPathSend logs, at error level, a change in the neighbours that
// send ADD-PATH in a gated family, as the neighbour read of Check found
// them (refreshNeighbours); the same finding again is not logged.
// s.nt.refreshMu is held.
func (s *Speaker) reportAddPathSend(a addPathSenders) {
	now := a.list()
	if now == s.addPathSeen {
		return
	}
	s.addPathSeen = now
	if now != "" {
		s.opts.log.Error("gobgp gate: a neighbour sends ADD-PATH; prefixes it got are not taken back when their routes leave the FIB", "err", errAddPathSend(now))
		return
	}
	s.opts.log.Info("gobgp gate: no neighbour sends ADD-PATH in a gated family any more")
}
