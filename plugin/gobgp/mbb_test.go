//go:build linux

package gobgp

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/plugin/gate"
)

// TestExportKeyIgnoresOnlyTheNextHop: the fingerprint WatchBest fences on
// is the same for two paths that differ only in their next hop, in both
// forms GoBGP hands paths out (wire format in process, Any over gRPC), and
// differs when anything else a neighbour receives differs.
func TestExportKeyIgnoresOnlyTheNextHop(t *testing.T) {
	origin := bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)
	asPath := bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65002, 65100})})
	comm := bgp.NewPathAttributeCommunities([]uint32{65002<<16 | 1})
	paths := func(p netip.Prefix, nh string, attrs ...bgp.PathAttributeInterface) (bin, anyForm *api.Path) {
		var hop bgp.PathAttributeInterface = bgp.NewPathAttributeNextHop(nh)
		if p.Addr().Is6() {
			hop = bgp.NewPathAttributeMpReachNLRI(nh, []bgp.AddrPrefixInterface{bgp.NewIPv6AddrPrefix(uint8(p.Bits()), p.Addr().String())})
		}
		all := append([]bgp.PathAttributeInterface{hop}, attrs...)
		bin = &api.Path{}
		for _, a := range all {
			b, err := a.Serialize()
			if err != nil {
				t.Fatal(err)
			}
			bin.PattrsBinary = append(bin.PattrsBinary, b)
		}
		anys, err := apiutil.MarshalPathAttributes(all)
		if err != nil {
			t.Fatal(err)
		}
		return bin, &api.Path{Pattrs: anys}
	}
	v4, v6 := netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:1::/48")
	for _, tc := range []struct {
		name   string
		p      netip.Prefix
		a, b   []bgp.PathAttributeInterface
		nh1    string
		nh2    string
		sameAs bool
	}{
		{"IPv4, other next hop", v4, []bgp.PathAttributeInterface{origin, asPath}, []bgp.PathAttributeInterface{origin, asPath}, "10.0.0.1", "10.0.0.2", true},
		{"IPv6, other next hop", v6, []bgp.PathAttributeInterface{origin, asPath}, []bgp.PathAttributeInterface{origin, asPath}, "2001:db8::1", "2001:db8::2", true},
		{"IPv4, a community more", v4, []bgp.PathAttributeInterface{origin, asPath}, []bgp.PathAttributeInterface{origin, asPath, comm}, "10.0.0.1", "10.0.0.1", false},
		{"IPv6, other AS path", v6, []bgp.PathAttributeInterface{origin, asPath}, []bgp.PathAttributeInterface{origin,
			bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65003, 65100})})}, "2001:db8::1", "2001:db8::2", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			binA, anyA := paths(tc.p, tc.nh1, tc.a...)
			binB, anyB := paths(tc.p, tc.nh2, tc.b...)
			if got := exportKey(binA) == exportKey(binB); got != tc.sameAs {
				t.Errorf("wire format: same key = %v, want %v", got, tc.sameAs)
			}
			if got := exportKey(anyA) == exportKey(anyB); got != tc.sameAs {
				t.Errorf("Any form: same key = %v, want %v", got, tc.sameAs)
			}
		})
	}
}

// mbbLab is a leaf with multipath over two neighbours of one AS (spines a
// and b) and a receiver behind it that records every withdrawal it gets.
type mbbLab struct {
	leaf, a, b, recv *server.BgpServer
	sp               *Speaker
	best             *bestLog
	*arrivals
}

// arrivals records what a receiving BgpServer holds and how often each
// prefix was withdrawn there, from its own best-path events.
type arrivals struct {
	mu        sync.Mutex
	withdrawn map[netip.Prefix]int
	has       map[netip.Prefix]bool
}

func watchArrivals(t *testing.T, recv *server.BgpServer) *arrivals {
	x := &arrivals{withdrawn: map[netip.Prefix]int{}, has: map[netip.Prefix]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	err := recv.WatchEvent(ctx, &api.WatchEventRequest{Table: &api.WatchEventRequest_Table{
		Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_BEST}}}}, func(r *api.WatchEventResponse) {
		ps, _ := tablePaths(r)
		x.mu.Lock()
		defer x.mu.Unlock()
		for _, p := range ps {
			pfx, ok := pathPrefix(p)
			if !ok {
				continue
			}
			if p.IsWithdraw {
				x.withdrawn[pfx]++
			}
			x.has[pfx] = !p.IsWithdraw
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func (x *arrivals) at(p netip.Prefix) (has bool, withdrawn int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.has[p], x.withdrawn[p]
}

func newMBBLab(t *testing.T) *mbbLab {
	port := freePort(t)
	fams := []string{"ipv4"}
	g := func(as uint32, id string, port int, listen ...string) *api.Global {
		return &api.Global{Asn: as, RouterId: id, ListenPort: int32(port), ListenAddresses: listen, UseMultiplePaths: true}
	}
	x := &mbbLab{}
	x.leaf = lab.StartServer(t, "", g(65001, "10.0.0.1", port, "127.0.0.1"))
	x.a = lab.StartServer(t, "", g(65002, "10.0.0.2", -1))
	x.b = lab.StartServer(t, "", g(65002, "10.0.0.3", -1))
	x.recv = lab.StartServer(t, "", g(65003, "10.0.0.4", -1))
	for _, n := range []struct {
		s    *server.BgpServer
		addr string
		as   uint32
	}{{x.a, "127.0.0.2", 65002}, {x.b, "127.0.0.3", 65002}, {x.recv, "127.0.0.4", 65003}} {
		lab.AddPeer(t, x.leaf, lab.Peer{Address: n.addr, AS: n.as, Families: fams})
		lab.AddPeer(t, n.s, lab.Peer{Address: "127.0.0.1", AS: 65001, Families: fams, Active: true, RemotePort: uint32(port), LocalAddress: n.addr})
		lab.WaitEstablished(t, x.leaf, n.addr, 10*time.Second)
	}
	x.arrivals = watchArrivals(t, x.recv)
	var err error
	x.sp, err = NewInProcess(x.leaf, Config{}, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := x.sp.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = x.sp.Close(context.Background()) })
	x.best = watchBest(t, x.sp)
	return x
}

// announce makes spine s announce (or withdraw) p with next hop nh and
// the extra attributes.
func (x *mbbLab) announce(t *testing.T, s *server.BgpServer, p netip.Prefix, nh string, withdraw bool, extra ...bgp.PathAttributeInterface) {
	t.Helper()
	attrs := [][]byte{}
	for _, a := range append([]bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}, extra...) {
		b, err := a.Serialize()
		if err != nil {
			t.Fatal(err)
		}
		attrs = append(attrs, b)
	}
	path, err := build(p, netip.MustParseAddr(nh), attrs, withdraw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path}); err != nil {
		t.Fatal(err)
	}
}

// flushed releases a sentinel prefix and waits until the receiver has it:
// GoBGP sends a neighbour's updates in order, so whatever the leaf sent
// the receiver before has arrived too.
func (x *mbbLab) flushed(t *testing.T, sentinel netip.Prefix) {
	t.Helper()
	if err := x.sp.Advertise(context.Background(), []gate.Advertisement{{Prefix: sentinel, Origin: gate.Originated}}); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "the sentinel at the receiver", func() error {
		if has, _ := x.at(sentinel); !has {
			return fmt.Errorf("receiver has no %v yet", sentinel)
		}
		return nil
	})
}

// TestNextHopChangeUnderTheSameAttributesIsNotFenced is make-before-break
// at the BGP side: a released prefix over ECMP (spines a and b, the same
// attributes) loses spine a. The installer hears of the new next-hop set,
// but neighbours receive nothing new, so the prefix is not taken back: the
// receiver never sees it withdrawn, and the Speaker still has it out. When
// the remaining path brings attributes of its own (a community), the
// prefix is fenced as before: its new path must wait for its new route.
func TestNextHopChangeUnderTheSameAttributesIsNotFenced(t *testing.T) {
	x := newMBBLab(t)
	same, other := netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24")
	comm := bgp.NewPathAttributeCommunities([]uint32{65002<<16 | 7})
	x.announce(t, x.a, same, "127.0.0.2", false)
	x.announce(t, x.b, same, "127.0.0.3", false)
	x.announce(t, x.a, other, "127.0.0.2", false)
	x.announce(t, x.b, other, "127.0.0.3", false, comm)
	lab.Eventually(t, 10*time.Second, "ECMP over both spines for both prefixes", func() error {
		for _, p := range []netip.Prefix{same, other} {
			if n := len(x.best.nexthops(p)); n != 2 {
				return fmt.Errorf("%v: %d next hops", p, n)
			}
		}
		return nil
	})
	if err := x.sp.Advertise(context.Background(), ads(gate.Transit, same, other)); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "both released at the receiver", func() error {
		for _, p := range []netip.Prefix{same, other} {
			if has, _ := x.at(p); !has {
				return fmt.Errorf("receiver has no %v", p)
			}
		}
		return nil
	})

	// Spine a goes for both prefixes.
	x.announce(t, x.a, same, "127.0.0.2", true)
	x.announce(t, x.a, other, "127.0.0.2", true)
	lab.Eventually(t, 10*time.Second, "the installer told of one next hop left", func() error {
		for _, p := range []netip.Prefix{same, other} {
			if nhs := x.best.nexthops(p); len(nhs) != 1 || nhs[0] != netip.MustParseAddr("127.0.0.3") {
				return fmt.Errorf("%v: next hops %v", p, nhs)
			}
		}
		return nil
	})
	x.flushed(t, netip.MustParsePrefix("192.0.2.99/32"))

	if has, wd := x.at(same); !has || wd != 0 {
		t.Errorf("%v (same attributes on spine b): at the receiver %v, withdrawn %d times; want kept, never withdrawn", same, has, wd)
	}
	if !x.sp.IsReleased(same) {
		t.Errorf("%v: the Speaker took it back", same)
	}
	// A best path with attributes of its own: the fence holds the prefix
	// until the tracker releases its new route.
	if has, wd := x.at(other); has || wd == 0 {
		t.Errorf("%v (a community on spine b): at the receiver %v, withdrawn %d times; want withdrawn (fenced)", other, has, wd)
	}
	if x.sp.IsReleased(other) {
		t.Errorf("%v: still released after its attributes changed", other)
	}
}
