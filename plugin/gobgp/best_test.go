//go:build linux

package gobgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/plugin/gate"
)

// bestLog records what WatchBest reports, for the FIB installer's view.
type bestLog struct {
	mu      sync.Mutex
	initial []BestPath
	inits   int
	changes []BestPath // in order
	now     map[netip.Prefix][]netip.Addr
}

func (l *bestLog) record(initial bool, ps []BestPath) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.now == nil {
		l.now = map[netip.Prefix][]netip.Addr{}
	}
	if initial {
		l.inits++
		l.initial = slices.Clone(ps)
		clear(l.now)
	} else {
		l.changes = append(l.changes, ps...)
	}
	for _, b := range ps {
		if len(b.Nexthops) == 0 {
			delete(l.now, b.Prefix)
		} else {
			l.now[b.Prefix] = b.Nexthops
		}
	}
}

// watchBest runs WatchBest until the test ends and records what it reports.
func watchBest(t *testing.T, sp *Speaker) *bestLog {
	ctx, cancel := context.WithCancel(context.Background())
	log := &bestLog{}
	done := make(chan error, 1)
	go func() { done <- sp.WatchBest(ctx, log.record) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchBest: %v", err)
		}
	})
	return log
}

func (l *bestLog) nexthops(p netip.Prefix) []netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.now[p]
}

func (l *bestLog) changesOf(p netip.Prefix) []BestPath {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []BestPath
	for _, b := range l.changes {
		if b.Prefix == p {
			out = append(out, b)
		}
	}
	return out
}

// TestWatchBestFeedsLearnedPathsAndSkipsHoldAndLocalPaths checks what the
// FIB installer is fed: learned best paths with their next hops (snapshot
// first, then changes), nothing at all while a HOLD toggle releases or
// takes back a prefix (the route must stay in hardware), a removal when
// the peer withdraws, and no next hops for a prefix whose best path is
// fibgate's own originated one.
func TestWatchBestFeedsLearnedPathsAndSkipsHoldAndLocalPaths(t *testing.T) {
	for _, a := range adapters() {
		t.Run(a.name, func(t *testing.T) {
			topo := lab.NewTopology(t, true, tran4, tran6)
			r := a.start(t, topo, Config{})
			r.learned(t, tran4, tran6)
			ctx := context.Background()
			log := watchBest(t, r.sp)
			want := map[netip.Prefix]netip.Addr{tran4: netip.MustParseAddr(lab.PeerLeaf4), tran6: netip.MustParseAddr(lab.PeerLeaf6)}
			lab.Eventually(t, 5*time.Second, "snapshot with the learned paths", func() error {
				for p, nh := range want {
					if got := log.nexthops(p); !slices.Equal(got, []netip.Addr{nh}) {
						return fmt.Errorf("%v: next hops %v, want [%v]", p, got, nh)
					}
				}
				return nil
			})
			log.mu.Lock()
			inits := log.inits
			log.mu.Unlock()
			if inits != 1 {
				t.Fatalf("%d initial snapshots, want 1", inits)
			}

			// The HOLD toggles of Advertise and Withdraw report nothing.
			both := []netip.Prefix{tran4, tran6}
			if err := r.sp.Advertise(ctx, ads(gate.Transit, both...)); err != nil {
				t.Fatal(err)
			}
			r.atSpine(t, "65001 65003", both...)
			if err := r.sp.Withdraw(ctx, ads(gate.Transit, both...)); err != nil {
				t.Fatal(err)
			}
			r.goneFromSpine(t, both...)
			lab.Never(t, quiet/2, "no change reported for HOLD toggles", func() error {
				for _, p := range both {
					if c := log.changesOf(p); len(c) > 0 {
						return fmt.Errorf("%v: changes %v reported for a HOLD toggle", p, c)
					}
				}
				return nil
			})

			// Originated: our local path wins; the prefix has no next hop.
			if err := r.sp.Advertise(ctx, ads(gate.Originated, tran4)); err != nil {
				t.Fatal(err)
			}
			lab.Eventually(t, 5*time.Second, "local best path reported without next hops", func() error {
				if got := log.nexthops(tran4); got != nil {
					return fmt.Errorf("%v: next hops %v, want none", tran4, got)
				}
				return nil
			})
			if err := r.sp.Withdraw(ctx, ads(gate.Originated, tran4)); err != nil {
				t.Fatal(err)
			}
			lab.Eventually(t, 5*time.Second, "learned path back", func() error {
				if got := log.nexthops(tran4); !slices.Equal(got, []netip.Addr{want[tran4]}) {
					return fmt.Errorf("%v: next hops %v", tran4, got)
				}
				return nil
			})

			// The peer withdraws: the prefix goes.
			topo.PeerFRR.Announce(tran6, true)
			lab.Eventually(t, 5*time.Second, "withdrawal reported", func() error {
				if got := log.nexthops(tran6); got != nil {
					return fmt.Errorf("%v: still next hops %v", tran6, got)
				}
				return nil
			})
			if n := r.holdPaths(t); n != 0 {
				t.Errorf("%d HOLD paths left", n)
			}
		})
	}
}

// TestWatchBestReadsATableOfManyMessages: over gRPC the initial table
// comes in batches whose end WatchBest marks with a HOLD path of its own;
// the snapshot must hold every prefix, the marker must never be reported
// nor exported, and changes after it must be reported as changes.
func TestWatchBestReadsATableOfManyMessages(t *testing.T) {
	saved := watchBatch
	watchBatch = 1 // every path its own message
	t.Cleanup(func() { watchBatch = saved })
	more := []netip.Prefix{tran4, held4, netip.MustParsePrefix("203.0.113.64/26"), netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("198.18.1.0/24")}
	topo := lab.NewTopology(t, true, more...)
	r := startClient(t, topo, Config{})
	r.learned(t, more...)
	log := watchBest(t, r.sp)
	lab.Eventually(t, 10*time.Second, "the snapshot", func() error {
		log.mu.Lock()
		defer log.mu.Unlock()
		if log.inits != 1 {
			return fmt.Errorf("%d snapshots", log.inits)
		}
		return nil
	})
	log.mu.Lock()
	got := map[netip.Prefix]bool{}
	for _, b := range log.initial {
		got[b.Prefix] = true
	}
	log.mu.Unlock()
	for _, p := range more {
		if !got[p] {
			t.Errorf("snapshot lacks %v: %v", p, got)
		}
	}
	if got[snapshotMarker] || len(got) != len(more) {
		t.Errorf("snapshot %v, want exactly %v", got, more)
	}
	topo.PeerFRR.Announce(new4, false)
	lab.Eventually(t, 10*time.Second, "a change after the snapshot", func() error {
		if log.nexthops(new4) == nil {
			return fmt.Errorf("%v not reported", new4)
		}
		return nil
	})
	if n := r.holdPaths(t); n != 0 {
		t.Errorf("%d HOLD paths left (the end-of-table marker?)", n)
	}
	if err := r.noneAtSpine(snapshotMarker); err != nil {
		t.Error(err)
	}
}

// TestWatchBestReportsTheMultipathSet: with GoBGP's multipath on, a prefix
// learned with equal paths from two neighbours is reported with both next
// hops (the installer writes an ECMP route), and with one once a neighbour
// withdraws it.
func TestWatchBestReportsTheMultipathSet(t *testing.T) {
	port := freePort(t)
	fams := []string{"ipv4"}
	// table.UseMultiplePaths is a package variable set by every StartBgp,
	// so all three servers of this process run with multipath on.
	leaf := lab.StartServer(t, "", &api.Global{Asn: 65001, RouterId: "10.0.0.1", ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"}, UseMultiplePaths: true})
	a := lab.StartServer(t, "", &api.Global{Asn: 65002, RouterId: "10.0.0.2", UseMultiplePaths: true})
	b := lab.StartServer(t, "", &api.Global{Asn: 65002, RouterId: "10.0.0.3", UseMultiplePaths: true})
	for _, n := range []struct {
		s    *server.BgpServer
		addr string
	}{{a, "127.0.0.2"}, {b, "127.0.0.3"}} {
		lab.AddPeer(t, leaf, lab.Peer{Address: n.addr, AS: 65002, Families: fams})
		lab.AddPeer(t, n.s, lab.Peer{Address: "127.0.0.1", AS: 65001, Families: fams, Active: true, RemotePort: uint32(port), LocalAddress: n.addr})
	}
	lab.WaitEstablished(t, leaf, "127.0.0.2", 10*time.Second)
	lab.WaitEstablished(t, leaf, "127.0.0.3", 10*time.Second)
	sp, err := NewInProcess(leaf, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close(context.Background()) })
	log := watchBest(t, sp)
	origin, _ := bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP).Serialize()
	announce := func(s *server.BgpServer, nh string, withdraw bool) {
		path, err := build(new4, netip.MustParseAddr(nh), [][]byte{origin}, withdraw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path}); err != nil {
			t.Fatal(err)
		}
	}
	announce(a, "127.0.0.2", false)
	announce(b, "127.0.0.3", false)
	want := func(nhs ...string) func() error {
		return func() error {
			got := log.nexthops(new4)
			if fmt.Sprint(got) != fmt.Sprint(nhs) {
				return fmt.Errorf("next hops %v, want %v", got, nhs)
			}
			return nil
		}
	}
	lab.Eventually(t, 10*time.Second, "ECMP over both neighbours", want("127.0.0.2", "127.0.0.3"))
	announce(a, "127.0.0.2", true)
	lab.Eventually(t, 10*time.Second, "one next hop left", want("127.0.0.3"))
}
