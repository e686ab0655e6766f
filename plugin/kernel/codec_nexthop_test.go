package kernel

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
)

// nexthopMsg builds an RTM_NEWNEXTHOP (or DEL) as the kernel sends it:
// nhmsg, then the attributes given as type and payload.
func nexthopMsg(typ uint16, family uint8, flags uint32, attrs ...nla) []byte {
	b := make([]byte, nlmsgHdrLen+nhmsgLen)
	binary.NativeEndian.PutUint16(b[4:], typ)
	b[nlmsgHdrLen] = family
	binary.NativeEndian.PutUint32(b[nlmsgHdrLen+4:], flags)
	for _, a := range attrs {
		b = appendAttrHeader(b, a.typ, len(a.data))
		b = append(b, a.data...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	return b
}

// nla is one attribute of a built message.
type nla struct {
	typ  uint16
	data []byte
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// TestDecodeNexthop reads the three shapes of object a route can name (a
// gateway on an interface, onlink; a group with weights, the upper byte of
// Linux 6.12's 16-bit weights included; a blackhole) and refuses what is
// malformed, naming the field.
func TestDecodeNexthop(t *testing.T) {
	gw := nexthopMsg(rtmNewNexthop, afInet, 4, nla{nhaID, u32(5)}, nla{nhaOIF, u32(3)}, nla{nhaGateway, []byte{10, 1, 0, 2}})
	m, err := DecodeNexthop(gw)
	if err != nil || m.ID != 5 || m.LinkIndex != 3 || m.Gateway != netip.MustParseAddr("10.1.0.2") || m.Flags != 4 || m.Deleted || m.Group != nil {
		t.Errorf("gateway object: %+v, %v", m, err)
	}
	grp := nexthopMsg(rtmDelNexthop, afUnspec, 0, nla{nhaID, u32(10)}, nla{nhaGroup,
		append(append(u32(1), 0, 0, 0, 0), append(u32(2), 2, 1, 0, 0)...)})
	m, err = DecodeNexthop(grp)
	if err != nil || !m.Deleted || len(m.Group) != 2 || m.Group[0] != (GroupMember{1, 1}) || m.Group[1] != (GroupMember{2, 259}) {
		t.Errorf("group object: %+v, %v", m, err)
	}
	if v, err := Decode(nexthopMsg(rtmNewNexthop, afInet, 0, nla{nhaID, u32(7)}, nla{nhaBlackhole, []byte{}})); err != nil || !v.(NexthopMessage).Blackhole {
		t.Errorf("blackhole object through Decode: %+v, %v", v, err)
	}
	for name, msg := range map[string][]byte{
		"NHA_GROUP":   nexthopMsg(rtmNewNexthop, afUnspec, 0, nla{nhaID, u32(10)}, nla{nhaGroup, []byte{1, 0, 0, 0, 0}}),
		"NHA_ID":      nexthopMsg(rtmNewNexthop, afInet, 0, nla{nhaOIF, u32(3)}),
		"NHA_GATEWAY": nexthopMsg(rtmNewNexthop, afInet, 0, nla{nhaID, u32(5)}, nla{nhaGateway, []byte{10, 1, 0}}),
		"nhmsg":       nexthopMsg(rtmNewNexthop, afInet, 0)[:nlmsgHdrLen+4],
	} {
		if name == "nhmsg" {
			binary.NativeEndian.PutUint32(msg, uint32(len(msg)))
		}
		var de *DecodeError
		if _, err := DecodeNexthop(msg); !errors.As(err, &de) || de.Field != name {
			t.Errorf("malformed %s: %v, want a DecodeError naming it", name, err)
		}
	}
	// Seed the dispatcher's fuzz corpus with them.
	if *record {
		for i, msg := range [][]byte{gw, grp} {
			p := filepath.Join("testdata", "fuzz", "FuzzDecode", "nexthop-"+strconv.Itoa(i))
			if err := os.WriteFile(p, []byte("go test fuzz v1\n[]byte("+strconv.Quote(string(msg))+")\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRouteOverAnObjectKeepsItsFlagsOnTheRoute: an IPv6 route over a
// nexthop group is one fib6_info, not siblings, so its hardware flags are
// the whole route's. DecodeRoute gives them to the route alone (as it
// does an IPv4 route's), so the gate judges every path by them; put on
// the first next hop only, as for IPv6 siblings, a trapped route over a
// group of two read as one path trapped and one not, and a scope whose
// ECMP rule is "all" never confirmed it.
func TestRouteOverAnObjectKeepsItsFlagsOnTheRoute(t *testing.T) {
	in := RouteMessage{Type: rtmNewRoute, Multipath: true, Route: fib.Route{Table: fib.TableMain, Type: fib.TypeUnicast,
		Protocol: fib.ProtoStatic, Priority: 1024, NHID: 10, Flags: fib.Trap,
		Prefix: netip.MustParsePrefix("2001:db8:5::/64"), Nexthops: []fib.Nexthop{
			{Gateway: netip.MustParseAddr("2001:db8:ff::2"), LinkIndex: 3, Weight: 1},
			{Gateway: netip.MustParseAddr("2001:db8:ff::3"), LinkIndex: 3, Weight: 1}}}}
	m, err := DecodeRoute(EncodeRoute(in))
	if err != nil {
		t.Fatal(err)
	}
	if m.Route.Flags != fib.Trap || m.Route.Nexthops[0].HW != 0 || m.Route.Nexthops[1].HW != 0 {
		t.Errorf("decoded flags %v, next hops %v and %v; want trap on the route alone", m.Route.Flags, m.Route.Nexthops[0].HW, m.Route.Nexthops[1].HW)
	}
	sc := gate.Scope{Level: gate.LevelHardware, ECMP: gate.ECMPAll}
	if v, why := sc.Judge(&m.Route); v != gate.VerdictConfirmed {
		t.Errorf("judged %v (%s), want confirmed: every path of the route is trapped", v, why)
	}
	// However a path came by a flag of its own (the model takes an IPv6
	// flag notification as a sibling's), the route's flags decide.
	m.Route.Nexthops[0].HW = fib.Trap
	if v, why := sc.Judge(&m.Route); v != gate.VerdictConfirmed {
		t.Errorf("with a flag on one path: judged %v (%s), want confirmed by the route's trap", v, why)
	}
}
