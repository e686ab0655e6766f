//go:build linux

package eorhold

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/fibgate/fibgate/internal/lab"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if lab.LeftBehind() {
		code = 1
	}
	os.Exit(code)
}

// peerConf is a stock gobgpd that connects to the restarting speaker and
// helps it restart (graceful restart for IPv4 unicast).
const peerConf = `[global.config]
  as = 65002
  router-id = "10.9.0.2"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.9.0.1"
    peer-as = 65001
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
  [neighbors.graceful-restart.config]
    enabled = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
`

// A restarting GoBGP (its neighbour LocalRestarting, as gobgpd -r makes
// it) finishes its sync as soon as the neighbour's End-of-RIB is in; with
// the barrier up first it waits for Release, and then sends its own
// End-of-RIB to the neighbour at once, and the barrier goes away.
func TestHoldKeepsGoBGPsSyncUntilReleased(t *testing.T) {
	if testing.Short() {
		t.Skip("namespaces, an in-process GoBGP and a stock gobgpd: skipped in -short mode")
	}
	lab.RequireRoot(t)
	lab.GobgpBinaries(t)
	leafNS, peerNS := lab.NewNS(t, "leaf"), lab.NewNS(t, "peer")
	lab.Link(t, leafNS, "to-peer", "10.9.0.1", "fd09::1", peerNS, "to-leaf", "10.9.0.2", "fd09::2")
	leaf := lab.StartServer(t, leafNS, &api.Global{Asn: 65001, RouterId: "10.9.0.1"})
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := Start(ctx, leaf, time.Minute, 20*time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Is(Address) || h.Is("10.9.0.2") {
		t.Errorf("Is tells the barrier's address wrongly")
	}
	// The real neighbour, added after the barrier is up, restarting.
	err = leaf.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:            &api.PeerConf{NeighborAddress: "10.9.0.2", PeerAsn: 65002},
		Transport:       &api.Transport{PassiveMode: true},
		Timers:          &api.Timers{Config: &api.TimersConfig{HoldTime: 9, KeepaliveInterval: 3, ConnectRetry: 1}},
		GracefulRestart: &api.GracefulRestart{Enabled: true, RestartTime: 30, DeferralTime: 300, LocalRestarting: true},
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	peer := lab.StartGobgpd(t, peerNS, peerConf)
	pc := api.NewGobgpApiClient(peer.Dial(t))
	if err := lab.AnnounceIPv4(ctx, pc, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, netip.MustParseAddr("10.9.0.2")); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 30*time.Second, "the leaf has the neighbour's End-of-RIB", func() error {
		st, err := peerState(ctx, leaf, "10.9.0.2")
		if err != nil {
			return err
		}
		if !endOfRib(st) {
			return errors.New("no End-of-RIB from the neighbour yet")
		}
		return nil
	})
	if !h.EndOfRib("10.9.0.2", "ipv4-unicast") || h.EndOfRib("10.9.0.2", "ipv6-unicast") {
		t.Errorf("EndOfRib: ipv4 %v, ipv6 %v; want the neighbour's one End-of-RIB seen", h.EndOfRib("10.9.0.2", "ipv4-unicast"), h.EndOfRib("10.9.0.2", "ipv6-unicast"))
	}
	// Without the barrier GoBGP would have finished its sync now.
	lab.Never(t, 2*time.Second, "the neighbour gets the leaf's End-of-RIB while the barrier holds", func() error {
		return peerEOR(ctx, pc, "10.9.0.1")
	})
	st, err := peerState(ctx, leaf, "10.9.0.2")
	if err != nil || !st.GetGracefulRestart().GetLocalRestarting() {
		t.Fatalf("the neighbour should still be LocalRestarting at the leaf: %v, %v", st.GetGracefulRestart(), err)
	}
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	synced, err := h.Release(rctx)
	if err != nil || !synced {
		t.Fatalf("Release = %v, %v; want the sync seen", synced, err)
	}
	lab.Eventually(t, 10*time.Second, "the leaf's End-of-RIB at the neighbour", func() error {
		if peerEOR(ctx, pc, "10.9.0.1") == nil {
			return errors.New("not yet")
		}
		return nil
	})
	t.Logf("End-of-RIB at the neighbour %v after Release", time.Since(start).Round(time.Millisecond))
	if st, err := peerState(ctx, leaf, Address); err == nil && st != nil {
		t.Errorf("the barrier neighbour is still configured after Release")
	}
	if st, err := peerState(ctx, leaf, "10.9.0.2"); err != nil || st.GetGracefulRestart().GetLocalRestarting() {
		t.Errorf("the neighbour is still LocalRestarting after the sync: %v", err)
	}
}

// peerState returns one neighbour of the in-process server, nil if none.
func peerState(ctx context.Context, s *server.BgpServer, addr string) (*api.Peer, error) {
	var out *api.Peer
	err := s.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.GetConf().GetNeighborAddress() == addr {
			out = p
		}
	})
	return out, err
}

func endOfRib(p *api.Peer) bool {
	for _, a := range p.GetAfiSafis() {
		if a.GetMpGracefulRestart().GetState().GetEndOfRibReceived() {
			return true
		}
	}
	return false
}

// peerEOR returns an error once the stock gobgpd has an End-of-RIB from
// addr (so lab.Never fails on it), nil before.
func peerEOR(ctx context.Context, c api.GobgpApiClient, addr string) error {
	s, err := c.ListPeer(ctx, &api.ListPeerRequest{Address: addr})
	if err != nil {
		return nil
	}
	for {
		r, err := s.Recv()
		if err != nil {
			return nil
		}
		if endOfRib(r.GetPeer()) {
			return fmt.Errorf("End-of-RIB from %s received", addr)
		}
	}
}
