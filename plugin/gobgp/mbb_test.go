//go:build linux

package gobgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
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
	asPath    map[netip.Prefix]string   // of the path the receiver holds
	comms     map[netip.Prefix][]uint32 // its communities
	hist      map[netip.Prefix][]string // every AS path received, "withdrawn" for a withdrawal
}

func watchArrivals(t *testing.T, recv *server.BgpServer) *arrivals {
	x := &arrivals{withdrawn: map[netip.Prefix]int{}, has: map[netip.Prefix]bool{}, asPath: map[netip.Prefix]string{}, comms: map[netip.Prefix][]uint32{}, hist: map[netip.Prefix][]string{}}
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
			x.asPath[pfx], x.comms[pfx] = "", nil
			attrs, _ := apiutil.GetNativePathAttributes(p)
			for _, a := range attrs {
				switch a := a.(type) {
				case *bgp.PathAttributeAsPath:
					x.asPath[pfx] = a.String()
				case *bgp.PathAttributeCommunities:
					x.comms[pfx] = a.Value
				}
			}
			if p.IsWithdraw {
				x.hist[pfx] = append(x.hist[pfx], "withdrawn")
			} else {
				x.hist[pfx] = append(x.hist[pfx], x.asPath[pfx])
			}
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

// history returns what the receiver was sent of p, in order: AS paths,
// and "withdrawn" for withdrawals.
func (x *arrivals) history(p netip.Prefix) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.hist[p])
}

// path returns the AS path and communities of what the receiver holds.
func (x *arrivals) path(p netip.Prefix) (string, []uint32) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.asPath[p], x.comms[p]
}

func newMBBLab(t *testing.T) *mbbLab { return newMBBLabWith(t, nil) }

// newMBBLabWith is newMBBLab with the leaf's Speaker on wrap's backend
// (nil: GoBGP's own), for faults.
func newMBBLabWith(t *testing.T, wrap func(backend) backend) *mbbLab {
	return newMBBLabConfig(t, Config{}, wrap)
}

// newMBBLabConfig is newMBBLabWith with the Speaker's Config.
func newMBBLabConfig(t *testing.T, cfg Config, wrap func(backend) backend, opts ...Option) *mbbLab {
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
	var b backend = serverBackend{x.leaf}
	if wrap != nil {
		b = wrap(b)
	}
	x.sp, err = newSpeaker(b, cfg, append([]Option{WithLogger(testLogger(t))}, opts...))
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
	x.flushedAt(t, x.arrivals, "the receiver", sentinel)
}

// flushedAt is flushed for the neighbour whose arrivals are at.
func (x *mbbLab) flushedAt(t *testing.T, at *arrivals, who string, sentinel netip.Prefix) {
	t.Helper()
	if err := x.sp.Advertise(context.Background(), []gate.Advertisement{{Prefix: sentinel, Origin: gate.Originated}}); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "the sentinel at "+who, func() error {
		if has, _ := at.at(sentinel); !has {
			return fmt.Errorf("%s has no %v yet", who, sentinel)
		}
		return nil
	})
}

// viaA is the AS path the receiver sees on spine a's paths from
// releasedViaA, viaB on spine b's plain ones.
const viaA, viaB = "{AsPath: 65001 65002 65100 65101}", "{AsPath: 65001 65002}"

// releasedViaA makes spine a announce ps with a long AS path (65100 65101
// after its own), waits until the installer has them over a alone,
// releases them, and waits until the receiver holds a's paths.
func (x *mbbLab) releasedViaA(t *testing.T, ps ...netip.Prefix) {
	t.Helper()
	long := bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65100, 65101})})
	for _, p := range ps {
		x.announce(t, x.a, p, "127.0.0.2", false, long)
	}
	lab.Eventually(t, 10*time.Second, "spine a's paths", func() error {
		for _, p := range ps {
			if n := len(x.best.nexthops(p)); n != 1 {
				return fmt.Errorf("%v: %d next hops", p, n)
			}
		}
		return nil
	})
	if err := x.sp.Advertise(context.Background(), ads(gate.Transit, ps...)); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "a's paths at the receiver", func() error {
		for _, p := range ps {
			if as, _ := x.path(p); as != viaA {
				return fmt.Errorf("%v: AS path %q", p, as)
			}
		}
		return nil
	})
}

// installedVia waits until the installer was told of ps over next hop nh
// alone.
func (x *mbbLab) installedVia(t *testing.T, nh string, ps ...netip.Prefix) {
	t.Helper()
	want := netip.MustParseAddr(nh)
	lab.Eventually(t, 10*time.Second, "the installer told of "+nh, func() error {
		for _, p := range ps {
			if nhs := x.best.nexthops(p); len(nhs) != 1 || nhs[0] != want {
				return fmt.Errorf("%v: next hops %v", p, nhs)
			}
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
	x.installedVia(t, "127.0.0.3", same, other)
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

// TestAttributeChangeKeepsThePreviousPathUntilReleased is make-before-break
// when what neighbours receive changes: a released prefix learned from
// spine a (a long AS path) gets a better path from spine b (a short one).
// The receiver keeps a's path (as a kept copy, its mark stripped) with no
// withdrawal until the gate releases the new route; then it gets b's,
// again without a withdrawal. A prefix whose learned paths change under
// its copy (a withdraws) is fenced as before: the copy goes.
func TestAttributeChangeKeepsThePreviousPathUntilReleased(t *testing.T) {
	x := newMBBLab(t)
	p, q := netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24")
	x.releasedViaA(t, p, q)

	// Spine b brings a shorter AS path: GoBGP's best path changes.
	for _, pfx := range []netip.Prefix{p, q} {
		x.announce(t, x.b, pfx, "127.0.0.3", false)
	}
	x.installedVia(t, "127.0.0.3", p, q)
	lab.Eventually(t, 10*time.Second, "both kept", func() error {
		if n := x.sp.Kept(); n != 2 {
			return fmt.Errorf("%d kept", n)
		}
		return nil
	})
	x.flushed(t, netip.MustParsePrefix("192.0.2.99/32"))
	for _, pfx := range []netip.Prefix{p, q} {
		has, wd := x.at(pfx)
		as, comms := x.path(pfx)
		if !has || wd != 0 || as != viaA {
			t.Errorf("%v while its new route is pending: at the receiver %v, withdrawn %d times, AS path %q; want a's path (%q), never withdrawn", pfx, has, wd, as, viaA)
		}
		if slices.Contains(comms, keepCommunity(mustCommunity(t, DefaultHoldCommunity))) {
			t.Errorf("%v: the keep mark reached the receiver: %v", pfx, comms)
		}
		if !x.sp.IsReleased(pfx) {
			t.Errorf("%v: the Speaker does not count it as out", pfx)
		}
	}

	// Spine a withdraws q: the learned paths under q's copy changed, so
	// the copy goes and q is held until its route is released.
	x.announce(t, x.a, q, "127.0.0.2", true)
	lab.Eventually(t, 10*time.Second, "q's copy dropped and q withdrawn", func() error {
		if has, wd := x.at(q); has || wd == 0 {
			return fmt.Errorf("receiver has %v, withdrawn %d times", has, wd)
		}
		if n := x.sp.Kept(); n != 1 {
			return fmt.Errorf("%d kept", n)
		}
		return nil
	})

	// The new routes are programmed: the gate releases both.
	if err := x.sp.Advertise(context.Background(), ads(gate.Transit, p, q)); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "b's paths at the receiver", func() error {
		for _, pfx := range []netip.Prefix{p, q} {
			if as, _ := x.path(pfx); as != viaB {
				return fmt.Errorf("%v: AS path %q", pfx, as)
			}
		}
		return nil
	})
	if _, wd := x.at(p); wd != 0 {
		t.Errorf("%v withdrawn %d times on its way from a's path to b's; want none", p, wd)
	}
	if n := x.sp.Kept(); n != 0 {
		t.Errorf("%d copies left after the releases", n)
	}
}

func mustCommunity(t *testing.T, s string) uint32 {
	t.Helper()
	v, err := parseCommunity(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestAttributeChangeThatWouldStrandANeighbourIsFenced: the new best path
// comes through spine b with the receiver's AS in it (65002 65003), the
// previous one through spine a. GoBGP would send the receiver a copy of
// a's path, and at the release neither b's path (its AS is in it) nor a
// withdrawal: the receiver would keep the copy for good. So the prefix is
// not kept but fenced: the receiver loses it until the release, and no
// copy is made. (A neighbour whose AS is in the previous path only is
// kept from the new one by the not-to sets: notto_test.go.)
func TestAttributeChangeThatWouldStrandANeighbourIsFenced(t *testing.T) {
	x := newMBBLab(t)
	p := netip.MustParsePrefix("198.51.100.0/24")
	x.releasedViaA(t, p)
	x.announce(t, x.b, p, "127.0.0.3", false, asPath(65003))
	x.installedVia(t, "127.0.0.3", p)
	lab.Eventually(t, 10*time.Second, "the receiver without the leaf's path", func() error {
		if has, _ := x.at(p); has {
			return fmt.Errorf("the receiver holds %v", p)
		}
		if x.sp.IsReleased(p) {
			return fmt.Errorf("%v still out", p)
		}
		return nil
	})
	if n := x.sp.Kept(); n != 0 {
		t.Errorf("%d copies: a copy of a's path would stay at the receiver, whose AS is in b's", n)
	}
}

// fromLeaf reports whether s holds a path for p learned from the leaf
// (127.0.0.1).
func fromLeaf(t *testing.T, s *server.BgpServer, p netip.Prefix) bool {
	t.Helper()
	found := false
	err := s.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyV4,
		Prefixes: []*api.TableLookupPrefix{{Prefix: p.String()}}}, func(d *api.Destination) {
		for _, x := range d.Paths {
			if x.NeighborIp == "127.0.0.1" && !x.IsWithdraw {
				found = true
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestAFailedKeepEndsHeld: adding the copy fails. The prefix must end held
// (the new path withdrawn, no copy) once Check repairs, and be released
// normally after.
func TestAFailedKeepEndsHeld(t *testing.T) {
	fb := &flaky{}
	x := newMBBLabWith(t, func(b backend) backend { fb.backend = b; return fb })
	ctx := context.Background()
	p := netip.MustParsePrefix("198.51.100.0/24")
	x.releasedViaA(t, p)
	fb.n.Store(fb.calls.Load() + 1) // the copy's add
	x.announce(t, x.b, p, "127.0.0.3", false)
	lab.Eventually(t, 10*time.Second, "the failed copy", func() error {
		if fb.calls.Load() < fb.n.Load() {
			return fmt.Errorf("%d calls of %d", fb.calls.Load(), fb.n.Load())
		}
		return nil
	})
	if again, err := x.sp.Check(ctx); err != nil || !again {
		t.Fatalf("Check = %v, %v; want a repair", again, err)
	}
	x.flushed(t, netip.MustParsePrefix("192.0.2.99/32"))
	if has, _ := x.at(p); has {
		t.Errorf("%v at the receiver after the repair: its new path is not confirmed", p)
	}
	if n := x.sp.Kept(); n != 0 || x.sp.IsReleased(p) {
		t.Errorf("after the repair: %d copies, released %v; want none, held", n, x.sp.IsReleased(p))
	}
	if err := x.sp.Advertise(ctx, ads(gate.Transit, p)); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "spine b's path at the receiver", func() error {
		if as, _ := x.path(p); as != viaB {
			return fmt.Errorf("AS path %q", as)
		}
		return nil
	})
}

// TestANewPathPreferredByLocalPrefIsFenced: the leaf's import policy gives
// spine b's paths a LOCAL_PREF of 200. GoBGP compares LOCAL_PREF before
// local origin, so a copy of spine a's path would not be best: the prefix
// is fenced (no copy), and the receiver loses it until the release.
func TestANewPathPreferredByLocalPrefIsFenced(t *testing.T) {
	x := newMBBLab(t)
	ctx := context.Background()
	if err := x.leaf.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
		DefinedType: api.DefinedType_NEIGHBOR, Name: "spine-b", List: []string{"127.0.0.3/32"}}}); err != nil {
		t.Fatal(err)
	}
	if err := x.leaf.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: "prefer-b", Statements: []*api.Statement{{
		Name:       "prefer-b",
		Conditions: &api.Conditions{NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: "spine-b"}},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT, LocalPref: &api.LocalPrefAction{Value: 200}},
	}}}}); err != nil {
		t.Fatal(err)
	}
	if err := x.leaf.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_IMPORT, Policies: []*api.Policy{{Name: "prefer-b"}},
		DefaultAction: api.RouteAction_ACCEPT}}); err != nil {
		t.Fatal(err)
	}
	p := netip.MustParsePrefix("198.51.100.0/24")
	x.releasedViaA(t, p)
	x.announce(t, x.b, p, "127.0.0.3", false)
	x.installedVia(t, "127.0.0.3", p)
	lab.Eventually(t, 10*time.Second, "p taken back", func() error {
		if has, _ := x.at(p); has {
			return fmt.Errorf("receiver still has %v", p)
		}
		return nil
	})
	if n := x.sp.Kept(); n != 0 {
		t.Errorf("%d copies: a copy with LOCAL_PREF 100 under a path with 200 is not best", n)
	}
}

// TestAKeptCopyWhosePathGoesIsTakenBackWithoutStrandingTheNewRoute: p is
// out on a copy of spine a's path while the route of b's better path is
// programmed; then a withdraws. The copy would advertise a path nobody
// forwards on any more, so p is withdrawn. But the route of b's path was
// written after the keep's fence and is still the one to release: its
// confirmation must release p, not be refused as older than a fence.
// The FIB clock is the test's: the keep's fence reads 10, the installer
// writes b's route at 20.
func TestAKeptCopyWhosePathGoesIsTakenBackWithoutStrandingTheNewRoute(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{{"kept copy", Config{}}, {"release by copy", Config{ReleaseByCopy: true}}} {
		t.Run(tc.name, func(t *testing.T) {
			var clock atomic.Uint64
			clock.Store(1)
			x := newMBBLabConfig(t, tc.cfg, nil, WithFIBClock(clock.Load))
			p := netip.MustParsePrefix("198.51.100.0/24")
			x.releasedViaA(t, p)
			clock.Store(10)
			x.announce(t, x.b, p, "127.0.0.3", false)
			x.installedVia(t, "127.0.0.3", p)
			x.flushed(t, netip.MustParsePrefix("192.0.2.99/32"))
			// (Released by toggle, b's path goes out in the fence window
			// first.)
			if h := x.history(p); len(h) == 0 || h[len(h)-1] != viaA {
				t.Fatalf("%v while b's route is programmed: the receiver was sent %q; want a's path last", p, h)
			}
			clock.Store(20)
			x.announce(t, x.a, p, "127.0.0.2", true)
			lab.Eventually(t, 10*time.Second, "p withdrawn at the receiver", func() error {
				if has, wd := x.at(p); has || wd == 0 {
					return fmt.Errorf("receiver has it %v (%q), withdrawn %d times", has, x.history(p), wd)
				}
				return nil
			})
			if err := x.sp.Advertise(context.Background(), []gate.Advertisement{{Prefix: p, Origin: gate.Transit, Version: 20}}); err != nil {
				t.Fatalf("the release of b's route: %v", err)
			}
			lab.Eventually(t, 10*time.Second, "b's path at the receiver", func() error {
				if as, _ := x.path(p); as != viaB {
					return fmt.Errorf("AS path %q", as)
				}
				return nil
			})
		})
	}
}
