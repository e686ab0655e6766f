package reexport

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// testPath builds a local path of p; withOrigin false leaves out the
// ORIGIN GoBGP requires of an added path.
func testPath(t testing.TB, p netip.Prefix, withdraw, withOrigin bool, as uint32) *api.Path {
	t.Helper()
	var attrs []bgp.PathAttributeInterface
	if withOrigin {
		attrs = append(attrs, bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP))
	}
	attrs = append(attrs, bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{as})}),
		bgp.NewPathAttributeCommunities([]uint32{65000<<16 | as&0xffff}))
	var nlri bgp.AddrPrefixInterface
	if p.Addr().Is4() {
		nlri = bgp.NewIPAddrPrefix(uint8(p.Bits()), p.Addr().String())
		attrs = append(attrs, bgp.NewPathAttributeNextHop("0.0.0.0"))
	} else {
		nlri = bgp.NewIPv6AddrPrefix(uint8(p.Bits()), p.Addr().String())
		attrs = append(attrs, bgp.NewPathAttributeMpReachNLRI("::", []bgp.AddrPrefixInterface{nlri}))
	}
	path, err := apiutil.NewPath(nlri, withdraw, attrs, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// rib lists s's global paths of both families as text: prefix, then each
// path's attributes in GoBGP's own encoding.
func rib(t *testing.T, s *server.BgpServer) []string {
	t.Helper()
	var out []string
	for _, f := range []*api.Family{{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, {Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}} {
		err := s.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: f, EnableOnlyBinary: true}, func(d *api.Destination) {
			for _, p := range d.Paths {
				var attrs []string
				for _, a := range p.PattrsBinary {
					attrs = append(attrs, hex.EncodeToString(a))
				}
				out = append(out, fmt.Sprintf("%s best=%v %s", d.Prefix, p.Best, strings.Join(attrs, ",")))
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(out)
	return out
}

// TestAddPathsLeavesWhatAddPathAndDeletePathWould: a batch of adds and
// withdrawals through AddPaths (one main-loop operation) leaves GoBGP's
// RIB as the same paths through AddPath and DeletePath one at a time:
// order within the batch holds (an add then its withdrawal, a path then
// its replacement, a withdrawal then the add again), for both families.
// A batch with a path GoBGP refuses (no ORIGIN) fails and leaves none of
// its paths in.
func TestAddPathsLeavesWhatAddPathAndDeletePathWould(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var batch []*api.Path
	for i := range 300 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
		if i%3 == 0 {
			p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 8), byte(i)}), 48)
		}
		batch = append(batch, testPath(t, p, false, true, 65001))
		switch i % 5 {
		case 1: // added, then withdrawn
			batch = append(batch, testPath(t, p, true, true, 65001))
		case 2: // replaced by another path
			batch = append(batch, testPath(t, p, false, true, 65002))
		case 3: // withdrawn, then added again
			batch = append(batch, testPath(t, p, true, true, 65001), testPath(t, p, false, true, 65003))
		}
	}
	a, b := startServer(t), startServer(t)
	if err := AddPaths(ctx, a, batch); err != nil {
		t.Fatal(err)
	}
	for i, p := range batch {
		var err error
		if p.IsWithdraw {
			err = b.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: p.Family, Path: p})
		} else {
			_, err = b.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p})
		}
		if err != nil {
			t.Fatalf("path %d: %v", i, err)
		}
	}
	got, want := rib(t, a), rib(t, b)
	if len(want) != 240 { // 300 prefixes, a fifth withdrawn
		t.Fatalf("the one-at-a-time side has %d paths, want 240", len(want))
	}
	if !slices.Equal(got, want) {
		t.Errorf("AddPaths left %d paths, AddPath and DeletePath %d; first differences: %v", len(got), len(want), firstDiff(got, want))
	}

	bad := []*api.Path{
		testPath(t, netip.MustParsePrefix("192.0.2.0/24"), false, true, 65001),
		testPath(t, netip.MustParsePrefix("198.51.100.0/24"), false, false, 65001),
	}
	if err := AddPaths(ctx, a, bad); err == nil {
		t.Error("a batch with a path without ORIGIN was taken")
	}
	if after := rib(t, a); !slices.Equal(after, got) {
		t.Errorf("a refused batch left paths in: %v", firstDiff(after, got))
	}
}

// BenchmarkAddPaths: paths into a GoBGP without neighbours, a batch of
// 1,024 in one operation against one AddPath each (a full Add and then a
// withdrawal of each, so the table stays the same size).
func BenchmarkAddPaths(b *testing.B) {
	ctx := context.Background()
	var adds, dels []*api.Path
	for i := range 1024 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
		adds = append(adds, testPath(b, p, false, true, 65001))
		dels = append(dels, testPath(b, p, true, true, 65001))
	}
	b.Run("stream", func(b *testing.B) {
		s := startServer(b)
		for b.Loop() {
			if err := AddPaths(ctx, s, adds); err != nil {
				b.Fatal(err)
			}
			if err := AddPaths(ctx, s, dels); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one-at-a-time", func(b *testing.B) {
		s := startServer(b)
		for b.Loop() {
			for i := range adds {
				if _, err := s.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: adds[i]}); err != nil {
					b.Fatal(err)
				}
			}
			for i := range dels {
				if err := s.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: dels[i].Family, Path: dels[i]}); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
