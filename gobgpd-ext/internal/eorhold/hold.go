// Package eorhold holds GoBGP's End-of-RIB back after a graceful restart
// of gobgpd-ext until the table is confirmed in hardware.
//
// GoBGP v3.37 started with -r marks every neighbour with graceful restart
// LocalRestarting: it sends them nothing until every established
// neighbour with graceful restart has sent its End-of-RIB (or the
// neighbour's deferral timer expires); then it sends its table and its own
// End-of-RIB at once ("sync finished"). Nothing in GoBGP lets a caller
// delay that moment: the neighbours' End-of-RIBs come as fast as they
// send their tables, long before the hardware has programmed the routes
// learned from them, and the neighbours that helped us restart drop the
// routes we do not re-send at our End-of-RIB.
//
// A Hold adds one more neighbour that GoBGP waits for: a barrier, a small
// BGP speaker of this package on a loopback port, in an address family
// gobgpd-ext does not carry (so GoBGP sends it none of the table), with
// graceful restart. Its End-of-RIB goes only when Release is called, so
// GoBGP's sync finishes then, with every prefix the gate has released by
// then. The barrier must be up before the real neighbours are added (a
// sync that finishes without it is not held), which only gobgpd-ext can
// arrange, since it starts GoBGP itself: see docs/design-notes.md.
package eorhold

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// Server is what a Hold uses of GoBGP's BgpServer.
type Server interface {
	GetBgp(ctx context.Context, r *api.GetBgpRequest) (*api.GetBgpResponse, error)
	AddPeer(ctx context.Context, r *api.AddPeerRequest) error
	DeletePeer(ctx context.Context, r *api.DeletePeerRequest) error
	WatchEvent(ctx context.Context, r *api.WatchEventRequest, fn func(*api.WatchEventResponse)) error
}

// Address is the barrier's neighbour address in GoBGP: a loopback address
// (Linux answers for all of 127.0.0.0/8 on lo) that no real neighbour has.
const Address = "127.0.0.2"

// Description is the barrier neighbour's description, as `gobgp neighbor`
// shows it while it exists.
const Description = "fibgate End-of-RIB barrier: holds the graceful-restart sync until the table is in hardware"

// Hold is GoBGP's sync held back by the barrier neighbour.
type Hold struct {
	s   Server
	b   *barrier
	log *slog.Logger

	stopWatch context.CancelFunc
	mu        sync.Mutex
	eors      map[string]bool // neighbour address + " " + family: End-of-RIB seen
}

// Start listens on Address (a port the kernel picks), adds the barrier to
// s as a neighbour that is LocalRestarting, with a deferral time above
// timeout (so only Release ends its hold), and waits up to wait until
// GoBGP has connected to it (GoBGP dials after 1 to 2 s). s must be
// started (StartBgp) and have none of its real neighbours yet. On error
// nothing is left behind.
func Start(ctx context.Context, s Server, timeout, wait time.Duration, log *slog.Logger) (*Hold, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g, err := s.GetBgp(ctx, &api.GetBgpRequest{})
	if err != nil {
		return nil, fmt.Errorf("end-of-rib barrier: read GoBGP's global config: %w", err)
	}
	as, id := g.GetGlobal().GetAsn(), "127.0.0.2"
	if g.GetGlobal().GetRouterId() == id {
		id = "127.0.0.3"
	}
	ln, err := net.Listen("tcp4", net.JoinHostPort(Address, "0"))
	if err != nil {
		return nil, fmt.Errorf("end-of-rib barrier: listen on %s: %w", Address, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	h := &Hold{s: s, b: newBarrier(ln, as, id, log), log: log, eors: map[string]bool{}}
	// Before any neighbour exists, so every End-of-RIB is seen (EndOfRib).
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	h.stopWatch = stop
	err = s.WatchEvent(wctx, &api.WatchEventRequest{Table: &api.WatchEventRequest_Table{
		Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_EOR}}}}, h.eor)
	if err != nil {
		stop()
		ln.Close()
		return nil, fmt.Errorf("end-of-rib barrier: watch GoBGP's End-of-RIBs: %w", err)
	}
	go h.b.serve()
	deferral := uint32(min(math.MaxUint16, timeout.Seconds()+60))
	err = s.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: Address, PeerAsn: as, Description: Description},
		Transport: &api.Transport{RemotePort: uint32(port)},
		Timers:    &api.Timers{Config: &api.TimersConfig{ConnectRetry: 1, HoldTime: holdTime, KeepaliveInterval: holdTime / 3}},
		GracefulRestart: &api.GracefulRestart{Enabled: true, RestartTime: holdTime, DeferralTime: deferral,
			LocalRestarting: true},
		AfiSafis: []*api.AfiSafi{{
			Config:            &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_L2VPN, Safi: api.Family_SAFI_VPLS}, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}},
		}},
	}})
	if err != nil {
		h.b.close()
		h.stopWatch()
		return nil, fmt.Errorf("end-of-rib barrier: add neighbour %s: %w", Address, err)
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		up, _, changed, berr := h.b.state()
		if up {
			log.Info("end-of-rib barrier up: GoBGP's graceful-restart sync waits for the table to be confirmed",
				"neighbor", Address, "port", port)
			return h, nil
		}
		if berr != nil {
			err = berr
		}
		select {
		case <-changed:
			continue
		case <-wctx.Done():
			if err == nil {
				err = wctx.Err()
			}
		}
		h.remove(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("end-of-rib barrier: GoBGP did not connect to %s: %w", net.JoinHostPort(Address, strconv.Itoa(port)), err)
	}
}

// Is says whether addr is the barrier's neighbour address, so that what
// reads GoBGP's neighbours can leave it out.
func (h *Hold) Is(addr string) bool { return addr == Address }

// eor records an End-of-RIB event of GoBGP's watch.
func (h *Hold) eor(r *api.WatchEventResponse) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range r.GetTable().GetPaths() {
		f := p.GetFamily()
		rf := bgp.AfiSafiToRouteFamily(uint16(f.GetAfi()), uint8(f.GetSafi()))
		h.eors[p.GetNeighborIp()+" "+rf.String()] = true
	}
}

// EndOfRib says whether neighbour addr has sent End-of-RIB for family
// ("ipv4-unicast") since the Hold started, before any neighbour was
// added: what GoBGP received, where GoBGP's own EndOfRibReceived is also
// set, with no End-of-RIB, for a neighbour whose OPEN has the restart bit
// (gobgp.Speaker.Restart).
func (h *Hold) EndOfRib(addr, family string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.eors[addr+" "+family]
}

// Release sends the barrier's End-of-RIB, after which GoBGP finishes its
// sync as soon as every other established neighbour has sent its own, and
// waits (bounded by ctx) for GoBGP's End-of-RIB to reach the barrier: the
// sync is over and every neighbour has been sent the table. Then it
// removes the barrier. It reports whether the sync was seen; without it
// (another neighbour's End-of-RIB is still owed, or ctx ended) the barrier
// goes all the same, and GoBGP finishes the sync at the last End-of-RIB
// or its deferral timers.
func (h *Hold) Release(ctx context.Context) (synced bool, err error) {
	if err := h.b.release(); err != nil {
		h.remove(context.WithoutCancel(ctx))
		return false, fmt.Errorf("end-of-rib barrier: send End-of-RIB: %w", err)
	}
	for {
		_, eor, changed, berr := h.b.state()
		if eor {
			synced = true
			break
		}
		if berr != nil {
			err = fmt.Errorf("end-of-rib barrier: %w", berr)
			break
		}
		select {
		case <-changed:
			continue
		case <-ctx.Done():
		}
		break
	}
	h.remove(context.WithoutCancel(ctx))
	return synced, err
}

// Close removes the barrier without releasing it; for a Hold that is not
// wanted after all. GoBGP's sync then waits for the other neighbours'
// deferral timers.
func (h *Hold) Close(ctx context.Context) { h.remove(ctx) }

func (h *Hold) remove(ctx context.Context) {
	h.stopWatch()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := h.s.DeletePeer(ctx, &api.DeletePeerRequest{Address: Address}); err != nil && !errors.Is(err, context.Canceled) {
		h.log.Warn("end-of-rib barrier: delete neighbour", "neighbor", Address, "err", err)
	}
	h.b.close()
}
