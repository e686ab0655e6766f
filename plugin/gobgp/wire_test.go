package gobgp

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestWireReadersAgreeWithUnmarshal: for random attributes, the readers
// of wire.go find what protobuf's own decoding finds, and truncated bytes
// give an error or a prefix of the answer, never a panic.
func TestWireReadersAgreeWithUnmarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := &asIndex{bit: map[uint32]uint8{}}
	for i := range 40 {
		as := uint32(64500 + i)
		x.ases = append(x.ases, as)
		x.bit[as] = uint8(i)
	}
	addr := func() string {
		switch rng.IntN(5) {
		case 0:
			return fmt.Sprintf("10.%d.%d.%d", rng.IntN(256), rng.IntN(256), rng.IntN(256))
		case 1:
			return fmt.Sprintf("2001:db8::%x", rng.IntN(1<<16))
		case 2:
			return fmt.Sprintf("fe80::%x", rng.IntN(1<<16))
		case 3:
			return fmt.Sprintf("::ffff:192.0.2.%d", rng.IntN(256))
		default:
			return "not an address"
		}
	}
	for i := range 3000 {
		var msg proto.Message
		var want, got string
		switch i % 5 {
		case 0:
			m := &api.AsPathAttribute{}
			for range rng.IntN(4) {
				seg := &api.AsSegment{Type: api.AsSegment_Type(1 + rng.IntN(2))}
				for range rng.IntN(6) {
					seg.Numbers = append(seg.Numbers, uint32(64490+rng.IntN(60)))
				}
				m.Segments = append(m.Segments, seg)
			}
			msg = m
			var mask uint64
			for _, s := range m.Segments {
				mask |= x.maskOf(s.Numbers)
			}
			want = fmt.Sprint(mask)
			b := marshal(t, m)
			v, err := wireASMask(b, x)
			got = fmt.Sprint(v, err)
			want += " <nil>"
		case 1:
			m := &api.NextHopAttribute{NextHop: addr()}
			msg = m
			want = "invalid IP"
			if a, err := netip.ParseAddr(m.NextHop); err == nil {
				want = a.Unmap().String()
			}
			v, err := wireNextHop(marshal(t, m))
			got = v.String()
			if err != nil {
				got = err.Error()
			}
		case 2:
			m := &api.MpReachNLRIAttribute{Family: familyV6}
			for range rng.IntN(3) {
				m.NextHops = append(m.NextHops, addr())
			}
			msg = m
			want = "invalid IP"
			for _, s := range m.NextHops {
				if a, err := netip.ParseAddr(s); err == nil && !a.IsLinkLocalUnicast() {
					want = a.Unmap().String()
					break
				}
			}
			v, err := wireMpNextHop(marshal(t, m))
			got = v.String()
			if err != nil {
				got = err.Error()
			}
		case 3:
			m := &api.CommunitiesAttribute{}
			for range rng.IntN(5) {
				m.Communities = append(m.Communities, rng.Uint32())
			}
			msg = m
			want = fmt.Sprint(m.Communities)
			v, err := wireCommunities(marshal(t, m), nil)
			got = fmt.Sprint(v)
			if err != nil {
				got = err.Error()
			}
			if len(v) == 0 {
				got = fmt.Sprint([]uint32(nil))
			}
		case 4:
			m := &api.IPAddressPrefix{PrefixLen: uint32(rng.IntN(140)), Prefix: addr()}
			msg = m
			want = "false"
			if a, err := netip.ParseAddr(m.Prefix); err == nil {
				if p, err := a.Unmap().Prefix(int(m.PrefixLen)); err == nil {
					want = p.String()
				}
			}
			p, ok := wireIPPrefix(marshal(t, m))
			got = p.String()
			if !ok {
				got = "false"
			}
		}
		if got != want {
			t.Fatalf("%T %v: wire reader %s, protobuf %s", msg, msg, got, want)
		}
		b := marshal(t, msg)
		for cut := range len(b) {
			_, _ = wireASMask(b[:cut], x)
			_, _ = wireNextHop(b[:cut])
			_, _ = wireMpNextHop(b[:cut])
			_, _ = wireCommunities(b[:cut], nil)
			_, _ = wireIPPrefix(b[:cut])
		}
	}
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a.Value
}

// BenchmarkBestOf is WatchBest's decoding of one best path with an AS
// path, next hop and communities: what the full table pays per event.
func BenchmarkBestOf(b *testing.B) {
	x := &asIndex{bit: map[uint32]uint8{65001: 0, 65002: 1}, ases: []uint32{65001, 65002}}
	attrs := []proto.Message{
		&api.OriginAttribute{Origin: 0},
		&api.AsPathAttribute{Segments: []*api.AsSegment{{Type: api.AsSegment_AS_SEQUENCE, Numbers: []uint32{65001, 3356, 1299, 13335}}}},
		&api.NextHopAttribute{NextHop: "10.0.0.2"},
		&api.CommunitiesAttribute{Communities: []uint32{3356<<16 | 100, 3356<<16 | 501}},
	}
	var anys []*anypb.Any
	for _, m := range attrs {
		a, err := anypb.New(m)
		if err != nil {
			b.Fatal(err)
		}
		anys = append(anys, a)
	}
	nlri, err := anypb.New(&api.IPAddressPrefix{PrefixLen: 24, Prefix: "198.51.100.0"})
	if err != nil {
		b.Fatal(err)
	}
	p := &api.Path{Family: familyV4, Nlri: nlri, Pattrs: anys, NeighborIp: "10.0.0.2"}
	cfg, err := Config{}.normalize()
	if err != nil {
		b.Fatal(err)
	}
	s := &Speaker{cfg: cfg}
	pfx, _ := pathPrefix(p)
	b.ReportAllocs()
	for b.Loop() {
		pf, ok := pathPrefix(p)
		if !ok || pf != pfx {
			b.Fatal(pf)
		}
		bp, ok := s.bestOf(pf, watchedAPI([]*api.Path{p}), x)
		if !ok || bp.ases != 1 || len(bp.Nexthops) != 1 {
			b.Fatalf("%+v %v", bp, ok)
		}
	}
}
