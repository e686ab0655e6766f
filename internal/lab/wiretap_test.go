package lab

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/nsrun"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

func TestStreamReassemblesOutOfOrderAndRetransmittedSegments(t *testing.T) {
	s := &tcpStream{next: 1000, started: true, ahead: map[uint32][]byte{}}
	s.add(1005, []byte("fghij"))  // past a gap
	s.add(1000, []byte("abc"))    // fills part of it
	s.add(1000, []byte("abc"))    // retransmitted
	s.add(1002, []byte("cde"))    // overlaps both sides
	s.add(1010, []byte("klm"))    // in order
	s.add(1009, []byte("jklmno")) // overlapping retransmission with new bytes
	if got := string(s.buf); got != "abcdefghijklmno" || s.next != 1015 || len(s.ahead) != 0 {
		t.Fatalf("buf %q next %d ahead %d, want abcdefghijklmno, 1015, 0", got, s.next, len(s.ahead))
	}
}

func TestMarkerAt(t *testing.T) {
	m := bytes.Repeat([]byte{0xff}, 16)
	for _, c := range []struct {
		b    []byte
		want int
	}{
		{m, 0},
		{append([]byte{1, 0xff, 2}, m...), 3},
		{bytes.Repeat([]byte{0xff}, 15), -1},
		{append(bytes.Repeat([]byte{0xff}, 17), 0), 0},
	} {
		if got := markerAt(c.b); got != c.want {
			t.Errorf("markerAt(% x) = %d, want %d", c.b, got, c.want)
		}
	}
}

func TestWireTapLogsTheUpdatesOnALink(t *testing.T) {
	RequireRoot(t)
	a, b := NewNS(t, "tapa"), NewNS(t, "tapb")
	Link(t, a, "t-a", "10.99.0.1", "fd99::1", b, "t-b", "10.99.0.2", "fd99::2")
	var ln net.Listener
	if err := nsrun.Do(b, func() (err error) { ln, err = net.Listen("tcp", "10.99.0.2:179"); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	drained := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, err = io.Copy(io.Discard, c)
			c.Close()
		}
		drained <- err
	}()
	var conn net.Conn
	if err := nsrun.Do(a, func() (err error) { conn, err = net.Dial("tcp", "10.99.0.2:179"); return }); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	v4 := func(p string) *bgp.IPAddrPrefix {
		q := netip.MustParsePrefix(p)
		return bgp.NewIPAddrPrefix(uint8(q.Bits()), q.Addr().String())
	}
	attrs := func(extra ...bgp.PathAttributeInterface) []bgp.PathAttributeInterface {
		return append([]bgp.PathAttributeInterface{
			bgp.NewPathAttributeOrigin(0),
			bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65001, 65010})}),
		}, extra...)
	}
	// The IPv6 UPDATE's AS path is longer, and comes after its MP_REACH:
	// a sequence of three and a set, 4 in all.
	longer := bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{
		bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65001, 65010, 65010}),
		bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SET, []uint32{64512, 64513}),
	})
	wire := func(m *bgp.BGPMessage) []byte {
		b, err := m.Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := wire(bgp.NewBGPUpdateMessage(nil, attrs(bgp.NewPathAttributeNextHop("10.99.0.1")), []*bgp.IPAddrPrefix{v4("192.0.2.0/24")}))
	second := wire(bgp.NewBGPUpdateMessage([]*bgp.IPAddrPrefix{v4("198.51.100.0/24")}, attrs(bgp.NewPathAttributeNextHop("10.99.0.1")),
		[]*bgp.IPAddrPrefix{v4("203.0.113.0/25"), v4("10.0.0.0/8")}))
	six := wire(bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(0),
		bgp.NewPathAttributeMpReachNLRI("fd99::1", []bgp.AddrPrefixInterface{bgp.NewIPv6AddrPrefix(48, "2001:db8:1::")}),
		bgp.NewPathAttributeMpUnreachNLRI([]bgp.AddrPrefixInterface{bgp.NewIPv6AddrPrefix(64, "2001:db8:2::")}),
		longer,
	}, nil))
	keepalive := wire(bgp.NewBGPKeepAliveMessage())

	write := func(b []byte) {
		t.Helper()
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	// The tap starts in the middle of a message: it must skip the rest of
	// it and find the next by its marker.
	write(before[:10])
	start := time.Now()
	tap := TapBGP(t, b, "t-b", netip.MustParseAddr("10.99.0.1"))
	write(before[10:])
	write(keepalive)
	// A message split over three writes.
	write(second[:7])
	write(second[7:30])
	write(second[30:])
	write(six)

	// An announcement shows its AS path's length.
	want := []string{"-198.51.100.0/24", "+203.0.113.0/25 2", "+10.0.0.0/8 2", "+2001:db8:1::/48 4", "-2001:db8:2::/64"}
	var got []string
	Eventually(t, 5*time.Second, "the tap's sightings", func() error {
		got = got[:0]
		for _, s := range tap.Since(start) {
			sign := "-"
			if s.Present {
				sign = "+"
			}
			g := sign + s.P.String()
			if s.Present {
				g += " " + strconv.Itoa(s.ASPath)
			}
			got = append(got, g)
			if s.At.Before(start) || s.At.After(time.Now()) {
				return fmt.Errorf("%v at %v, outside the test's time", s.P, s.At)
			}
		}
		if err := tap.Err(); err != nil {
			t.Fatalf("tap: %v", err)
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("got %v, want %v", got, want)
		}
		return nil
	})
	tap.Close()
	if err := tap.Err(); err != nil {
		t.Errorf("tap after close: %v", err)
	}
	conn.Close()
	if err := <-drained; err != nil {
		t.Errorf("receiver: %v", err)
	}
}

func TestASPathLength(t *testing.T) {
	as4 := func(typ byte, ases ...uint32) []byte {
		b := []byte{typ, byte(len(ases))}
		for _, a := range ases {
			b = binary.BigEndian.AppendUint32(b, a)
		}
		return b
	}
	for _, c := range []struct {
		name string
		v    []byte
		want int
	}{
		{"empty (iBGP, originated here)", nil, 0},
		{"a sequence", as4(2, 65001, 65010, 65010), 3},
		{"a sequence and a set", append(as4(2, 65001), as4(1, 1, 2, 3)...), 2},
		{"confederation segments count nothing", append(as4(3, 64512, 64513), as4(2, 65010)...), 1},
		{"two-octet ASes (no AS4 capability)", []byte{2, 2, 0xfd, 0xe9, 0xfe, 0x02}, -1},
		{"an unknown segment type", as4(9, 1), -1},
		{"a segment past the end", as4(2, 65001)[:5], -1},
	} {
		if got := asPathLength(c.v); got != c.want {
			t.Errorf("%s: asPathLength(% x) = %d, want %d", c.name, c.v, got, c.want)
		}
	}
}
