//go:build linux

package gobgp

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"google.golang.org/protobuf/proto"

	"github.com/fibgate/fibgate/internal/lab"
)

// TestEstablishedPeersAsListPeerHasThem holds the in-process listing of
// established neighbours (a peer watch's initial dump, which spares
// GoBGP's main loop ListPeer's adj-in counts) to ListPeer of the same
// GoBGP: the same neighbours with the same ASes, a configured neighbour
// that never came up left out, and with ListPeer's fallback (a backend
// without the watch's listing) the same answer again.
func TestEstablishedPeersAsListPeerHasThem(t *testing.T) {
	x := newLoopLab(t)
	sp := x.speaker(t)
	ctx := context.Background()
	if err := x.leaf.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{Conf: &api.PeerConf{NeighborAddress: "127.0.0.9", PeerAsn: 65009}}}); err != nil {
		t.Fatal(err)
	}
	var want []peerBrief
	configured := 0
	if err := x.leaf.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		configured++
		if p.GetState().GetSessionState() == api.PeerState_ESTABLISHED {
			want = append(want, peerBrief{addr: p.GetState().GetNeighborAddress(), as: p.GetConf().GetPeerAsn()})
		}
	}); err != nil {
		t.Fatal(err)
	}
	if configured != 3 || len(want) != 2 {
		t.Fatalf("the lab: %d neighbours configured, %d established; want 3 and 2", configured, len(want))
	}
	slices.SortFunc(want, comparePeers)
	if _, ok := sp.b.(peerLister); !ok {
		t.Fatal("the in-process backend lists neighbours through ListPeer")
	}
	for _, c := range []struct {
		name string
		b    backend
	}{{"peer watch", sp.b}, {"ListPeer", viaAPI{sp.b}}} {
		inProcess := sp.b
		sp.b = c.b
		got, err := sp.establishedPeers(ctx)
		sp.b = inProcess
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		slices.SortFunc(got, comparePeers)
		if !slices.Equal(got, want) {
			t.Errorf("%s: established neighbours %v, ListPeer's %v", c.name, got, want)
		}
	}
	// A cancelled listing returns, with the context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := sp.establishedPeers(cctx); err == nil {
		t.Error("a listing with a cancelled context succeeded")
	}
}

// TestEstablishedPeersOverBothAdapters: a stock gobgpd over its API and
// GoBGP in process dump the established neighbours (FRR spines over IPv4
// and IPv6) that ListPeer lists, with their ASes; so does the gobgpd
// $FIBGATE_SIDECAR_GOBGPD names, when set (make test-gobgpd-versions: the
// oldest GoBGP v3).
func TestEstablishedPeersOverBothAdapters(t *testing.T) {
	same := func(t *testing.T, b backend) {
		ctx := context.Background()
		if _, ok := b.(peerLister); !ok {
			t.Fatal("the backend lists neighbours through ListPeer")
		}
		l := &Speaker{b: b} // what the Speaker reads from the dump
		var got, want []peerBrief
		// Every neighbour up, in the dump as in ListPeer.
		lab.Eventually(t, 30*time.Second, "the dump has what ListPeer has", func() error {
			var err error
			if got, err = l.establishedPeers(ctx); err != nil {
				return err
			}
			if want, err = listEstablished(ctx, b); err != nil {
				return err
			}
			slices.SortFunc(got, comparePeers)
			slices.SortFunc(want, comparePeers)
			if len(want) < 4 || !slices.Equal(got, want) {
				return fmt.Errorf("established neighbours %v, ListPeer's %v", got, want)
			}
			return nil
		})
		// The dump's fingerprint of the neighbours (the not-to backstop's)
		// is the same from one dump to the next while nothing changes.
		a, err := l.neighbourSig(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b2, err := l.neighbourSig(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if a == 0 || a != b2 {
			t.Errorf("the neighbours' fingerprints of two dumps: %x and %x, want one, not 0", a, b2)
		}
	}
	for _, a := range adapters() {
		t.Run(a.name, func(t *testing.T) {
			topo := lab.NewTopology(t, true, tran4, tran6)
			r := a.start(t, topo, Config{})
			r.learned(t, tran4, tran6)
			same(t, r.sp.b)
		})
	}
	if bin := os.Getenv("FIBGATE_SIDECAR_GOBGPD"); bin != "" {
		t.Run("FIBGATE_SIDECAR_GOBGPD", func(t *testing.T) {
			topo := lab.NewTopology(t, true, tran4, tran6)
			conf := lab.GobgpdConf{AS: lab.LeafAS, RouterID: lab.LeafSpine4, Neighbours: topo.LeafNeighbours()}.String()
			g := lab.StartGobgpdFrom(t, bin, topo.Leaf, conf)
			b := grpcBackend{api.NewGobgpApiClient(g.Dial(t))}
			topo.Routers(t)
			same(t, b)
		})
	}
}

func comparePeers(a, b peerBrief) int {
	if a.addr != b.addr {
		if a.addr < b.addr {
			return -1
		}
		return 1
	}
	return int(a.as) - int(b.as)
}

// listPeerBackend is GoBGP's own backend whose neighbour dumps are read
// through ListPeer, as before peers.go, counting the listings.
type listPeerBackend struct {
	serverBackend
	n *atomic.Int64
}

func (b listPeerBackend) dumpPeers(ctx context.Context, fn func(*api.PeerState)) error {
	b.n.Add(1)
	return b.listPeers(ctx, func(p *api.Peer) {
		st := proto.CloneOf(p.GetState())
		st.PeerAsn = p.GetConf().GetPeerAsn()
		fn(st)
	})
}

// TestKeepCost measures the make-before-break of best paths moving in a
// stream (keep.go) beside a held table of FIBGATE_KEEP_COST_PREFIXES
// prefixes (skipped unless set): spine a has the table and 2,000
// released prefixes with a long AS path, then spine b announces those
// 2,000 with a short one, one UPDATE each, and every report of WatchBest
// keeps them on copies. Side by side: the neighbours listed from a peer
// watch's dump (peers.go) and through ListPeer, which counts spine a's
// adj-in in GoBGP's main loop for every report.
func TestKeepCost(t *testing.T) {
	v := os.Getenv("FIBGATE_KEEP_COST_PREFIXES")
	if v == "" {
		t.Skip("set FIBGATE_KEEP_COST_PREFIXES to measure")
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatal(err)
	}
	for _, viaListPeer := range []bool{false, true} {
		name := map[bool]string{false: "peer watch", true: "ListPeer"}[viaListPeer]
		t.Run(name, func(t *testing.T) {
			listings := new(atomic.Int64)
			var wrap func(backend) backend
			if viaListPeer {
				wrap = func(b backend) backend { return listPeerBackend{b.(serverBackend), listings} }
			}
			x := newMBBLabWith(t, wrap)
			long := bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65100, 65101})})
			for i := range n {
				x.announce(t, x.a, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(20 + i>>16), byte(i >> 8), byte(i), 0}), 24), "127.0.0.2", false, long)
			}
			moving := make([]netip.Prefix, 2000)
			for i := range moving {
				moving[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), 32)
			}
			x.releasedViaA(t, moving...)
			lab.Eventually(t, 5*time.Minute, "the table learned", func() error {
				x.best.mu.Lock()
				got := len(x.best.now)
				x.best.mu.Unlock()
				if got < n+len(moving) {
					return fmt.Errorf("%d of %d", got, n+len(moving))
				}
				return nil
			})
			stalled := probeLoop(t, x.leaf)
			start := time.Now()
			for _, p := range moving {
				x.announce(t, x.b, p, "127.0.0.3", false)
			}
			lab.Eventually(t, 5*time.Minute, "the moves kept", func() error {
				if k := x.sp.Kept(); k < len(moving) {
					return fmt.Errorf("%d of %d kept", k, len(moving))
				}
				return nil
			})
			took := time.Since(start)
			t.Logf("%d held prefixes, %d moving: all kept after %v; GoBGP's main loop answered within %v; %d ListPeer listings",
				n, len(moving), took.Round(time.Millisecond), stalled().Round(time.Millisecond), listings.Load())
		})
	}
}
