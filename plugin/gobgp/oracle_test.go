//go:build linux

package gobgp

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/fibgate/fibgate/internal/lab"
)

// exported asks GoBGP which of its best paths its export policy lets out
// to neighbour: ListPath on ADJ_OUT with EnableFiltered evaluates today's
// policy for every best path (it does not say what was sent, which is why
// the lab tests look at FRR instead; for judging the policy it is exact).
func exported(t *testing.T, s *server.BgpServer, neighbour string, fam *api.Family) map[netip.Prefix]bool {
	t.Helper()
	out := make(map[netip.Prefix]bool)
	err := s.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_ADJ_OUT, Name: neighbour, Family: fam, EnableFiltered: true},
		func(d *api.Destination) {
			p := netip.MustParsePrefix(d.Prefix)
			for _, path := range d.Paths {
				out[p] = !path.Filtered
			}
		})
	if err != nil {
		t.Fatalf("list adj-out: %v", err)
	}
	return out
}

// addCarriers adds local paths (not the Speaker's) for prefixes, so the
// export policy has something to judge.
func addCarriers(t *testing.T, s *server.BgpServer, ps []netip.Prefix) {
	t.Helper()
	for _, p := range ps {
		nh := netip.MustParseAddr("192.0.2.254")
		if p.Addr().Is6() {
			nh = netip.MustParseAddr("2001:db8::254")
		}
		origin, _ := bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP).Serialize()
		path, err := build(p, nh, [][]byte{origin}, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path}); err != nil {
			t.Fatalf("add carrier %v: %v", p, err)
		}
	}
}

// loopLab is three BgpServers in this process on loopback (no root
// needed): the leaf under test, a feeder (AS 65002, 127.0.0.2) that
// announces routes to it, and a receiver (AS 65003, 127.0.0.3) whose RIB
// shows what the leaf really sent. GoBGP judges export only for
// established sessions, so the receiver also makes ListPath on ADJ_OUT
// meaningful.
type loopLab struct {
	leaf, feeder, receiver *server.BgpServer
}

const (
	feederAddr   = "127.0.0.2"
	receiverAddr = "127.0.0.3"
)

func newLoopLab(t *testing.T) *loopLab {
	port := freePort(t)
	fams := []string{"ipv4", "ipv6"}
	x := &loopLab{leaf: lab.StartServer(t, "", &api.Global{Asn: 65001, RouterId: "10.0.0.1", ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"}})}
	lab.AddPeer(t, x.leaf, lab.Peer{Address: feederAddr, AS: 65002, Families: fams})
	lab.AddPeer(t, x.leaf, lab.Peer{Address: receiverAddr, AS: 65003, Families: fams})
	x.feeder = lab.StartServer(t, "", &api.Global{Asn: 65002, RouterId: "10.0.0.2"})
	lab.AddPeer(t, x.feeder, lab.Peer{Address: "127.0.0.1", AS: 65001, Families: fams, Active: true, RemotePort: uint32(port), LocalAddress: feederAddr})
	x.receiver = lab.StartServer(t, "", &api.Global{Asn: 65003, RouterId: "10.0.0.3"})
	lab.AddPeer(t, x.receiver, lab.Peer{Address: "127.0.0.1", AS: 65001, Families: fams, Active: true, RemotePort: uint32(port), LocalAddress: receiverAddr})
	lab.WaitEstablished(t, x.leaf, feederAddr, 10*time.Second)
	lab.WaitEstablished(t, x.leaf, receiverAddr, 10*time.Second)
	return x
}

// speaker starts a bootstrapped in-process Speaker on the leaf, closed
// when the test ends.
func (x *loopLab) speaker(t *testing.T, opts ...Option) *Speaker {
	t.Helper()
	sp, err := NewInProcess(x.leaf, Config{}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close(context.Background()) })
	return sp
}

// announce makes the feeder announce (or withdraw) ps.
func (x *loopLab) announce(t *testing.T, withdraw bool, ps ...netip.Prefix) {
	t.Helper()
	origin, _ := bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP).Serialize()
	for _, p := range ps {
		nh := netip.MustParseAddr(feederAddr)
		if p.Addr().Is6() {
			nh = netip.MustParseAddr("2001:db8::2")
		}
		path, err := build(p, nh, [][]byte{origin}, withdraw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x.feeder.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path}); err != nil {
			t.Fatalf("feeder announce %v: %v", p, err)
		}
	}
}

// rib returns the prefixes in s's global RIB with the age of their best
// path (which changes when the prefix is withdrawn and announced again).
func rib(t *testing.T, s *server.BgpServer) map[netip.Prefix]time.Time {
	t.Helper()
	out := make(map[netip.Prefix]time.Time)
	for _, fam := range []*api.Family{familyV4, familyV6} {
		err := s.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: fam}, func(d *api.Destination) {
			if len(d.Paths) > 0 {
				out[netip.MustParsePrefix(d.Prefix)] = d.Paths[0].Age.AsTime()
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// received waits until the receiver has exactly the prefixes of want
// among those of watched.
func (x *loopLab) received(t *testing.T, watched []netip.Prefix, want ...netip.Prefix) map[netip.Prefix]time.Time {
	t.Helper()
	var got map[netip.Prefix]time.Time
	lab.Eventually(t, 5*time.Second, fmt.Sprintf("receiver has %v of %v", want, watched), func() error {
		got = rib(t, x.receiver)
		for _, p := range watched {
			_, has := got[p]
			if has != slices.Contains(want, p) {
				return fmt.Errorf("receiver has %v: %v", p, has)
			}
		}
		return nil
	})
	return got
}

// learned waits until the leaf has learned ps from the feeder.
func (x *loopLab) learned(t *testing.T, ps ...netip.Prefix) {
	t.Helper()
	lab.Eventually(t, 5*time.Second, fmt.Sprintf("leaf learned %v", ps), func() error {
		got := rib(t, x.leaf)
		for _, p := range ps {
			if _, ok := got[p]; !ok {
				return fmt.Errorf("%v missing", p)
			}
		}
		return nil
	})
}

// TestGoBGPJudgesHeldSetLikeTheModel checks the longest-match model of
// scope_test.go against GoBGP's real policy engine: random nested scopes,
// random releases, and every route judged by GoBGP's export policy must
// be exported exactly when it is out of scope or released.
func TestGoBGPJudgesHeldSetLikeTheModel(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	s := newLoopLab(t).leaf
	ctx := context.Background()
	for iter := range 25 {
		// A fresh gate and fresh routes each time, on the same servers.
		if err := s.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: globalExport()}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL}); err != nil {
			t.Fatal(err)
		}
		rs := randScope(r)
		sp, err := NewInProcess(s, Config{Scope: rs, Name: fmt.Sprintf("oracle%d", iter)})
		if err != nil {
			t.Fatal(err)
		}
		if err := sp.Bootstrap(ctx); err != nil {
			t.Fatalf("bootstrap: %v", err)
		}
		seen := make(map[netip.Prefix]bool)
		var carriers []netip.Prefix
		for range 150 {
			if p := randPrefix(r); !seen[p] {
				seen[p] = true
				carriers = append(carriers, p)
			}
		}
		addCarriers(t, s, carriers)
		released := make(map[netip.Prefix]bool)
		var rel []netip.Prefix
		for _, p := range carriers {
			if sp.cfg.v4.contains(p) && r.IntN(3) == 0 {
				released[p] = true
				rel = append(rel, p)
			}
		}
		if err := sp.setReleased(ctx, rel, true); err != nil {
			t.Fatal(err)
		}
		// Hold a third of them again, to exercise deletes.
		var back []netip.Prefix
		for _, p := range rel {
			if r.IntN(3) == 0 {
				back = append(back, p)
				released[p] = false
			}
		}
		if err := sp.setReleased(ctx, back, false); err != nil {
			t.Fatal(err)
		}
		got := exported(t, s, receiverAddr, familyV4)
		for _, p := range carriers {
			want := !naiveInScope(rs, p) || released[p]
			if got[p] != want {
				t.Fatalf("iteration %d: scope %v: %v exported=%v, want %v (released %v)", iter, rs, p, got[p], want, released[p])
			}
		}
	}
}

// TestReleasedPrefixesKeepUserPolicies: the gate rejects, it never
// accepts, so a user's export policy after it still applies to released
// prefixes (an accepting statement would end the chain and skip it).
func TestReleasedPrefixesKeepUserPolicies(t *testing.T) {
	s := newLoopLab(t).leaf
	ctx := context.Background()
	user := &api.Policy{Name: "user-no-10-9", Statements: []*api.Statement{{
		Name:       "user-no-10-9-s",
		Conditions: &api.Conditions{PrefixSet: &api.MatchSet{Name: "user-10-9"}},
		Actions:    &api.Actions{RouteAction: api.RouteAction_REJECT},
	}}}
	for _, err := range []error{
		s.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{DefinedType: api.DefinedType_PREFIX, Name: "user-10-9",
			Prefixes: []*api.Prefix{{IpPrefix: "10.9.0.0/16", MaskLengthMin: 16, MaskLengthMax: 32}}}}),
		s.AddPolicy(ctx, &api.AddPolicyRequest{Policy: user}),
		s.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
			Name: "global", Direction: api.PolicyDirection_EXPORT, Policies: []*api.Policy{{Name: user.Name}}, DefaultAction: api.RouteAction_ACCEPT}}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	sp, err := NewInProcess(s, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := sp.b.exportAssignment(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Policies) != 2 || a.Policies[0].Name != sp.cfg.policy || a.Policies[1].Name != user.Name {
		t.Fatalf("global export chain %v, want the gate first, then %s", a.Policies, user.Name)
	}
	p1, p2 := netip.MustParsePrefix("10.9.1.0/24"), netip.MustParsePrefix("10.8.1.0/24")
	addCarriers(t, s, []netip.Prefix{p1, p2})
	if got := exported(t, s, receiverAddr, familyV4); got[p1] || got[p2] {
		t.Fatalf("before release: exported %v, want nothing", got)
	}
	if err := sp.setReleased(ctx, []netip.Prefix{p1, p2}, true); err != nil {
		t.Fatal(err)
	}
	if got := exported(t, s, receiverAddr, familyV4); got[p1] || !got[p2] {
		t.Fatalf("after release: exported %v, want %v only (the user policy rejects %v)", got, p2, p1)
	}
}
