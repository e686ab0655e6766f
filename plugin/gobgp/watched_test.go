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

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/plugin/gobgp/internal/bestwatch"
)

// TestNativeWatchReadsWhatTheAPIWatchReads: in process, WatchBest reads
// GoBGP's own paths (bestwatch) instead of WatchEvent's API form. Both
// watches, registered on one GoBGP with multipath on, must see the same
// events with the same paths in the same order, and read from each path
// the same prefix, withdrawal, source, next hop, communities and AS bits.
// The fingerprint of a native path must be what exportKey makes of the
// same path read by lookup (ListPath with its attributes' wire form): the
// make-before-break and copy code compare the two.
func TestNativeWatchReadsWhatTheAPIWatchReads(t *testing.T) {
	if err := bestwatch.Available(); err != nil {
		t.Fatalf("bestwatch unavailable in this module's test binary: %v", err)
	}
	port := freePort(t)
	fams := []string{"ipv4", "ipv6"}
	leaf := lab.StartServer(t, "", &api.Global{Asn: 65001, RouterId: "10.0.0.1", ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"},
		UseMultiplePaths: true})
	lab.AddPeer(t, leaf, lab.Peer{Address: feederAddr, AS: 65002, Families: fams})
	lab.AddPeer(t, leaf, lab.Peer{Address: receiverAddr, AS: 65002, Families: fams})
	var peers []*apiAdder
	for i, addr := range []string{feederAddr, receiverAddr} {
		s := lab.StartServer(t, "", &api.Global{Asn: 65002, RouterId: fmt.Sprintf("10.0.0.%d", i+2)})
		lab.AddPeer(t, s, lab.Peer{Address: "127.0.0.1", AS: 65001, Families: fams, Active: true, RemotePort: uint32(port), LocalAddress: addr})
		peers = append(peers, &apiAdder{t: t, add: s.AddPath})
	}
	lab.WaitEstablished(t, leaf, feederAddr, 10*time.Second)
	lab.WaitEstablished(t, leaf, receiverAddr, 10*time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var fromAPI, fromNative [][]watched
	err := leaf.WatchEvent(ctx, bestWatchRequest(), func(r *api.WatchEventResponse) {
		if ps, ok := tablePaths(r); ok {
			mu.Lock()
			fromAPI = append(fromAPI, watchedAPI(ps))
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	w, err := bestwatch.Start(leaf)
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() {
		ran <- w.Run(ctx, func(ps []bestwatch.Path) {
			mu.Lock()
			fromNative = append(fromNative, watchedNative(ps))
			mu.Unlock()
		})
	}()

	comm := func(vs ...uint32) []byte {
		b, _ := bgp.NewPathAttributeCommunities(vs).Serialize()
		return b
	}
	med := func(v uint32) []byte {
		b, _ := bgp.NewPathAttributeMultiExitDisc(v).Serialize()
		return b
	}
	origin, _ := bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP).Serialize()
	v4a, v4b := netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.128/25")
	v6a, v6b := netip.MustParsePrefix("2001:db8:1::/48"), netip.MustParsePrefix("2001:db8:2::/64")
	local := netip.MustParsePrefix("203.0.113.0/24")
	last := netip.MustParsePrefix("10.255.0.0/16")
	feeder, receiver := peers[0], peers[1]
	feeder.path(v4a, "127.0.0.2", false, origin, comm(65002<<16|1, 65534<<16|4711), med(10))
	feeder.path(v4b, "127.0.0.2", false, origin)
	feeder.path(v6a, "2001:db8::2", false, origin, comm(65002<<16|6))
	receiver.path(v6a, "2001:db8::3", false, origin, comm(65002<<16|6)) // a multipath set of two
	receiver.path(v4a, "127.0.0.3", false, origin, comm(65002<<16|2), med(10))
	feeder.path(v6b, "fe80::2", false, origin) // link-local only: no usable next hop
	localPath, err := build(local, netip.MustParseAddr("10.0.0.1"), [][]byte{origin, comm(65001 << 16)}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: localPath}); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "both paths of v6a in GoBGP's RIB", func() error {
		n := 0
		err := leaf.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyV6,
			Prefixes: []*api.TableLookupPrefix{{Prefix: v6a.String()}}}, func(d *api.Destination) { n = len(d.Paths) })
		if err == nil && n != 2 {
			err = fmt.Errorf("%d paths", n)
		}
		return err
	})
	// Keys against lookup, while the paths are there.
	sp := &Speaker{b: serverBackend{leaf}}
	got, err := sp.lookup(ctx, []netip.Prefix{v4a, v4b, v6a, v6b, local})
	if err != nil {
		t.Fatal(err)
	}
	feeder.path(v4b, "127.0.0.2", true)
	receiver.path(v6a, "2001:db8::3", true)
	feeder.path(last, "127.0.0.2", false, origin)
	lab.Eventually(t, 10*time.Second, "both watches saw the last prefix", func() error {
		mu.Lock()
		defer mu.Unlock()
		for name, evs := range map[string][][]watched{"api": fromAPI, "native": fromNative} {
			if !slices.ContainsFunc(evs, func(ev []watched) bool {
				return slices.ContainsFunc(ev, func(w watched) bool { return w.prefix == last })
			}) {
				return fmt.Errorf("the %s watch has not", name)
			}
		}
		return nil
	})
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("native watch: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(fromAPI) != len(fromNative) {
		t.Fatalf("%d events through the API, %d native", len(fromAPI), len(fromNative))
	}
	x := &asIndex{bit: map[uint32]uint8{65001: 0, 65002: 1}, ases: []uint32{65001, 65002}}
	seen := map[string]bool{}
	for i := range fromAPI {
		a, n := fromAPI[i], fromNative[i]
		if len(a) != len(n) {
			t.Fatalf("event %d: %d paths through the API, %d native", i, len(a), len(n))
		}
		for j := range a {
			pa, pn := &a[j], &n[j]
			what := fmt.Sprintf("event %d path %d (%v)", i, j, pa.prefix)
			if pa.prefix != pn.prefix || pa.withdraw != pn.withdraw || pa.external != pn.external || pa.sourceAS != pn.sourceAS || pa.neighbor != pn.neighbor || pa.learned() != pn.learned() {
				t.Errorf("%s: api %v withdraw=%v external=%v as=%d from %v, native %v %v %v %d %v",
					what, pa.prefix, pa.withdraw, pa.external, pa.sourceAS, pa.neighbor, pn.prefix, pn.withdraw, pn.external, pn.sourceAS, pn.neighbor)
			}
			for _, ix := range []*asIndex{nil, x} {
				nh1, c1, m1, err1 := pa.decode(ix)
				nh2, c2, m2, err2 := pn.decode(ix)
				if nh1 != nh2 || !slices.Equal(c1, c2) || m1 != m2 || (err1 == nil) != (err2 == nil) {
					t.Errorf("%s: api reads %v %v %b %v, native %v %v %b %v", what, nh1, c1, m1, err1, nh2, c2, m2, err2)
				}
			}
			seen[fmt.Sprintf("withdraw=%v learned=%v v4=%v", pa.withdraw, pa.learned(), pa.prefix.Addr().Is4())] = true
			if pn.withdraw || (j > 0 && n[j-1].prefix == pn.prefix) || !pn.prefix.IsValid() {
				continue // the best path is the first of its prefix's
			}
			// The fingerprint of the best path, when it is still the
			// one lookup read.
			if ls := got[pn.prefix]; len(ls) > 0 && i == lastBestOf(fromNative, pn.prefix) {
				if k := exportKey(ls[0]); k != pn.key() {
					t.Errorf("%s: native key %x, lookup's %x", what, pn.key(), k)
				}
				seen["key"] = true
			}
		}
	}
	for _, want := range []string{"withdraw=false learned=true v4=true", "withdraw=false learned=true v4=false", "withdraw=true learned=false v4=true",
		"withdraw=false learned=false v4=true", "key"} {
		if !seen[want] {
			t.Errorf("no path with %s among the events %v", want, seen)
		}
	}
}

// lastBestOf is the index of the last event before the first withdrawal
// in evs that named p: the event whose best path lookup read.
func lastBestOf(evs [][]watched, p netip.Prefix) int {
	at := -1
	for i, ev := range evs {
		for _, w := range ev {
			if w.prefix == p {
				if w.withdraw {
					return at
				}
				at = i
			}
		}
	}
	return at
}

// apiAdder announces paths from one of the test's GoBGPs.
type apiAdder struct {
	t   *testing.T
	add func(context.Context, *api.AddPathRequest) (*api.AddPathResponse, error)
}

func (a *apiAdder) path(p netip.Prefix, nh string, withdraw bool, attrs ...[]byte) {
	a.t.Helper()
	path, err := build(p, netip.MustParseAddr(nh), attrs, withdraw)
	if err != nil {
		a.t.Fatal(err)
	}
	if _, err := a.add(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path}); err != nil {
		a.t.Fatalf("announce %v: %v", p, err)
	}
}
