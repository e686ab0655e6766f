//go:build linux

package gobgp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/plugin/gate"
)

// The benchmarks run on loopback in the test's own namespace (no root):
// the leaf under test (gobgpd, or a BgpServer in this process) listens on
// 127.0.0.1; a "spine" BgpServer (127.0.0.2) receives what it exports and
// a "peer" BgpServer (127.0.0.3) feeds it the transit prefixes. Besides
// the API throughput (how fast Advertise returns) they report the
// end-to-end rate: until the spine holds every prefix.
//
//	go test -run '^$' -bench . -benchtime 1x ./plugin/gobgp/
//
// FIBGATE_BENCH_PREFIXES sets the number of prefixes (default 100000).

type benchLab struct {
	sp          *Speaker
	spine, peer *server.BgpServer
	leafCount   func() (uint64, error) // destinations in the leaf's RIB
	raw         api.GobgpApiClient     // gobgpd's API (client adapter only)
}

func benchPrefixes(b *testing.B) []netip.Prefix {
	n := 100000
	if v := os.Getenv("FIBGATE_BENCH_PREFIXES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatalf("FIBGATE_BENCH_PREFIXES: %v", err)
		}
	}
	ps := make([]netip.Prefix, n)
	for i := range ps {
		ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(20 + i>>16), byte(i >> 8), byte(i), 0}), 24)
	}
	return ps
}

func freePort(b testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tableCount(ctx context.Context, get func(context.Context, *api.GetTableRequest) (*api.GetTableResponse, error)) (uint64, error) {
	r, err := get(ctx, &api.GetTableRequest{TableType: api.TableType_GLOBAL, Family: familyV4})
	if err != nil {
		return 0, err
	}
	return r.NumDestination, nil
}

// startBench starts the leaf, and with sessions its spine and peer.
func startBench(b *testing.B, adapter string, sessions bool) *benchLab {
	port := freePort(b)
	var neighbours []lab.Neighbour
	if sessions {
		neighbours = []lab.Neighbour{{Address: "127.0.0.2", AS: 65002}, {Address: "127.0.0.3", AS: 65003}}
	}
	l := &benchLab{}
	var err error
	switch adapter {
	case "client":
		g := lab.StartGobgpd(b, "", lab.GobgpdConf{AS: 65001, RouterID: "10.0.0.1", Port: port, Listen: "127.0.0.1", Neighbours: neighbours}.String())
		conn := g.Dial(b)
		c := api.NewGobgpApiClient(conn)
		l.raw = c
		l.leafCount = func() (uint64, error) {
			return tableCount(context.Background(), func(ctx context.Context, r *api.GetTableRequest) (*api.GetTableResponse, error) {
				return c.GetTable(ctx, r)
			})
		}
		l.sp, err = NewClient(conn, Config{})
	default:
		s := lab.StartServer(b, "", &api.Global{Asn: 65001, RouterId: "10.0.0.1", ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"}})
		for _, n := range neighbours {
			lab.AddPeer(b, s, lab.Peer{Address: n.Address, AS: n.AS, Families: []string{"ipv4"}})
		}
		l.leafCount = func() (uint64, error) { return tableCount(context.Background(), s.GetTable) }
		l.sp, err = NewInProcess(s, Config{})
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := l.sp.Close(context.Background()); err != nil {
			b.Errorf("close: %v", err)
		}
	})
	if err := l.sp.Bootstrap(context.Background()); err != nil {
		b.Fatal(err)
	}
	if !sessions {
		return l
	}
	l.spine = lab.StartServer(b, "", &api.Global{Asn: 65002, RouterId: "10.0.0.2"})
	lab.AddPeer(b, l.spine, lab.Peer{Address: "127.0.0.1", AS: 65001, Families: []string{"ipv4"}, Active: true, RemotePort: uint32(port), LocalAddress: "127.0.0.2"})
	l.peer = lab.StartServer(b, "", &api.Global{Asn: 65003, RouterId: "10.0.0.3"})
	lab.AddPeer(b, l.peer, lab.Peer{Address: "127.0.0.1", AS: 65001, Families: []string{"ipv4"}, Active: true, RemotePort: uint32(port), LocalAddress: "127.0.0.3"})
	lab.WaitEstablished(b, l.spine, "127.0.0.1", 20*time.Second)
	lab.WaitEstablished(b, l.peer, "127.0.0.1", 20*time.Second)
	return l
}

// waitCount polls count until it returns want.
func waitCount(b *testing.B, what string, want uint64, count func() (uint64, error)) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		n, err := count()
		if err == nil && n == want {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d destinations (err %v), want %d", what, n, err, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// feed makes the peer announce ps to the leaf.
func (l *benchLab) feed(b *testing.B, ps []netip.Prefix) {
	origin, _ := bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP).Serialize()
	for _, p := range ps {
		path, err := build(p, netip.MustParseAddr("127.0.0.3"), [][]byte{origin}, false)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := l.peer.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path}); err != nil {
			b.Fatal(err)
		}
	}
	waitCount(b, "leaf learned the transit prefixes", uint64(len(ps)), l.leafCount)
}

// BenchmarkAdvertise releases and takes back every prefix, with no BGP
// session (what the API and GoBGP's RIB take) and with two (the leaf also
// sends every update to a spine and a peer; end to end is until the
// spine has them all).
func BenchmarkAdvertise(b *testing.B) {
	ps := benchPrefixes(b)
	for _, adapter := range []string{"client", "inprocess"} {
		for _, origin := range []gate.Origin{gate.Originated, gate.Transit} {
			for _, sessions := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/%d/sessions=%d", adapter, origin, len(ps), map[bool]int{false: 0, true: 2}[sessions])
				b.Run(name, func(b *testing.B) { benchAdvertise(b, adapter, origin, sessions, ps) })
			}
		}
	}
}

func benchAdvertise(b *testing.B, adapter string, origin gate.Origin, sessions bool, ps []netip.Prefix) {
	l := startBench(b, adapter, sessions)
	if origin == gate.Transit && sessions {
		l.feed(b, ps)
	}
	wait := func(string, uint64) {}
	if sessions {
		spineCount := func() (uint64, error) { return tableCount(context.Background(), l.spine.GetTable) }
		wait = func(what string, n uint64) { waitCount(b, what, n, spineCount) }
	}
	list := ads(origin, ps...)
	ctx := context.Background()
	var adv, e2e, wd, wdE2E time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := l.sp.Advertise(ctx, list); err != nil {
			b.Fatal(err)
		}
		adv += time.Since(start)
		wait("spine received", uint64(len(ps)))
		e2e += time.Since(start)

		b.StopTimer()
		start = time.Now()
		if err := l.sp.Withdraw(ctx, list); err != nil {
			b.Fatal(err)
		}
		wd += time.Since(start)
		wait("spine withdrew", 0)
		wdE2E += time.Since(start)
		b.StartTimer()
	}
	total := float64(len(ps) * b.N)
	b.ReportMetric(total/adv.Seconds(), "paths/s")
	b.ReportMetric(total/wd.Seconds(), "withdraw-paths/s")
	if sessions {
		b.ReportMetric(total/e2e.Seconds(), "e2e-paths/s")
		b.ReportMetric(total/wdE2E.Seconds(), "withdraw-e2e-paths/s")
	}
}

// nopBackend accepts everything and does nothing: BenchmarkSpeakerOnly
// measures what the Speaker itself costs per prefix (building paths and
// held-set entries, its record), without GoBGP.
type nopBackend struct{}

func (nopBackend) addDefinedSet(context.Context, *api.DefinedSet) error { return nil }
func (nopBackend) deleteDefinedSet(context.Context, *api.DefinedSet, bool) error {
	return nil
}
func (nopBackend) listDefinedSets(context.Context, api.DefinedType, string, func(*api.DefinedSet)) error {
	return nil
}
func (nopBackend) addPolicy(context.Context, *api.Policy) error          { return nil }
func (nopBackend) deletePolicy(context.Context, string) error            { return nil }
func (nopBackend) listPolicies(context.Context, func(*api.Policy)) error { return nil }
func (nopBackend) setExportAssignment(context.Context, []string, api.RouteAction) error {
	return nil
}
func (nopBackend) sendPaths(context.Context, []*api.Path) error { return nil }
func (nopBackend) exportAssignment(context.Context) (*api.PolicyAssignment, error) {
	return &api.PolicyAssignment{}, nil
}
func (nopBackend) listGlobal(context.Context, *api.Family, func(*api.Destination)) error {
	return nil
}
func (nopBackend) watchBest(context.Context, func([]watched), chan<- error) (bool, error) {
	return false, nil
}
func (nopBackend) attrsBinary() bool { return false }

func BenchmarkSpeakerOnly(b *testing.B) {
	ps := benchPrefixes(b)
	for _, origin := range []gate.Origin{gate.Originated, gate.Transit} {
		b.Run(fmt.Sprintf("%s/%d", origin, len(ps)), func(b *testing.B) {
			sp, err := newSpeaker(nopBackend{}, Config{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			if err := sp.Bootstrap(ctx); err != nil {
				b.Fatal(err)
			}
			list := ads(origin, ps...)
			var adv time.Duration
			b.ReportAllocs()
			for range b.N {
				start := time.Now()
				if err := sp.Advertise(ctx, list); err != nil {
					b.Fatal(err)
				}
				adv += time.Since(start)
				b.StopTimer()
				if err := sp.Withdraw(ctx, list); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(len(ps)*b.N)/adv.Seconds(), "paths/s")
		})
	}
}

// BenchmarkWatchBestSnapshot measures the FIB installer's start-up: the
// first WatchBest call, the whole table of learned best paths, for a leaf
// that learned FIBGATE_BENCH_PREFIXES prefixes from a peer. For gobgpd it
// also reports the size of that first message: gobgpd sends it whole and
// caps messages at 256 MiB, which bounds the table WatchBest can start
// from over gRPC.
func BenchmarkWatchBestSnapshot(b *testing.B) {
	ps := benchPrefixes(b)
	for _, adapter := range []string{"client", "inprocess"} {
		b.Run(fmt.Sprintf("%s/%d", adapter, len(ps)), func(b *testing.B) {
			l := startBench(b, adapter, true)
			l.feed(b, ps)
			wire := 0.0
			if l.raw != nil {
				ctx, cancel := context.WithCancel(context.Background())
				st, err := l.raw.WatchEvent(ctx, bestWatchRequest(), grpc.MaxCallRecvMsgSize(maxWatchMessage))
				if err != nil {
					b.Fatal(err)
				}
				first, err := st.Recv()
				if err != nil {
					b.Fatal(err)
				}
				wire = float64(proto.Size(first)) / float64(len(ps))
				cancel()
			}
			b.ResetTimer()
			for range b.N {
				ctx, cancel := context.WithCancel(context.Background())
				got := make(chan int, 1)
				start := time.Now()
				done := make(chan error, 1)
				go func() {
					done <- l.sp.WatchBest(ctx, func(initial bool, bs []BestPath) {
						if initial {
							got <- len(bs)
						}
					})
				}()
				var n int
				select {
				case n = <-got:
				case err := <-done:
					b.Fatalf("WatchBest ended before its snapshot: %v", err)
				}
				el := time.Since(start)
				cancel()
				<-done
				if n != len(ps) {
					b.Fatalf("snapshot of %d paths, want %d", n, len(ps))
				}
				b.ReportMetric(float64(el.Nanoseconds())/float64(n), "ns/path")
			}
			if wire > 0 {
				b.ReportMetric(wire, "wire-bytes/path") // after ResetTimer, which drops reported metrics
			}
		})
	}
}

// BenchmarkRecord weighs the Speaker's per-prefix record with every prefix
// of FIBGATE_BENCH_PREFIXES released, against the layout it replaced (a
// map of pointers keyed by netip.Prefix), in one run: the live bytes a
// prefix, and what a collection costs with the record live beyond one
// without it (the mark work the record adds to every cycle).
func BenchmarkRecord(b *testing.B) {
	ps := benchPrefixes(b)
	st := prefixState{transit: true, released: true, notTo: 1}
	layouts := []struct {
		name string
		fill func() any
	}{
		{"record", func() any {
			r := newRecord()
			for _, p := range ps {
				r.set(p, st)
			}
			return r
		}},
		{"pointers", func() any {
			r := make(map[netip.Prefix]*prefixState)
			for _, p := range ps {
				s := st
				r[p] = &s
			}
			return r
		}},
	}
	gcTime := func() time.Duration {
		start := time.Now()
		runtime.GC()
		return time.Since(start)
	}
	for _, l := range layouts {
		b.Run(fmt.Sprintf("%s/%d", l.name, len(ps)), func(b *testing.B) {
			var bytes, gcAdded float64
			for range b.N {
				var before, after runtime.MemStats
				runtime.GC()
				base := gcTime()
				runtime.ReadMemStats(&before)
				r := l.fill()
				runtime.GC()
				runtime.ReadMemStats(&after)
				with := gcTime()
				runtime.KeepAlive(r)
				bytes += float64(after.HeapAlloc - before.HeapAlloc)
				gcAdded += float64(with - base)
			}
			b.ReportMetric(bytes/float64(b.N*len(ps)), "B/prefix")
			b.ReportMetric(gcAdded/float64(b.N), "gc-added-ns")
		})
	}
}

// waitingBackend makes every path call wait before it goes through, as a
// call into a GoBGP whose main loop is busy (learning a table: an UPDATE
// of hundreds of prefixes ahead of it) or that sits across a slow link.
type waitingBackend struct {
	backend
	wait time.Duration
}

func (b waitingBackend) sendPaths(ctx context.Context, paths []*api.Path) error {
	time.Sleep(b.wait)
	return b.backend.sendPaths(ctx, paths)
}

// BenchmarkAdvertiseBehindAWait releases 20,000 prefixes into a GoBGP
// whose every call waits first (steps.go): how much of that wait the
// steps' sizes pay for every prefix. The Speaker's own work and GoBGP's
// are the same at every wait.
func BenchmarkAdvertiseBehindAWait(b *testing.B) {
	ps := benchPrefixes(b)[:20000]
	for _, wait := range []time.Duration{0, 2 * time.Millisecond, 20 * time.Millisecond} {
		b.Run(fmt.Sprintf("wait=%v", wait), func(b *testing.B) {
			l := startBench(b, "inprocess", false)
			l.sp.mu.Lock()
			l.sp.b = waitingBackend{backend: l.sp.b, wait: wait}
			l.sp.mu.Unlock()
			list := ads(gate.Originated, ps...)
			ctx := context.Background()
			var adv time.Duration
			for range b.N {
				start := time.Now()
				if err := l.sp.Advertise(ctx, list); err != nil {
					b.Fatal(err)
				}
				adv += time.Since(start)
				b.StopTimer()
				if err := l.sp.Withdraw(ctx, list); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(len(ps)*b.N)/adv.Seconds(), "paths/s")
		})
	}
}
