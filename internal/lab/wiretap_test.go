package lab

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
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
	six := wire(bgp.NewBGPUpdateMessage(nil, attrs(
		bgp.NewPathAttributeMpReachNLRI("fd99::1", []bgp.AddrPrefixInterface{bgp.NewIPv6AddrPrefix(48, "2001:db8:1::")}),
		bgp.NewPathAttributeMpUnreachNLRI([]bgp.AddrPrefixInterface{bgp.NewIPv6AddrPrefix(64, "2001:db8:2::")}),
	), nil))
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

	want := []string{"-198.51.100.0/24", "+203.0.113.0/25", "+10.0.0.0/8", "+2001:db8:1::/48", "-2001:db8:2::/64"}
	var got []string
	Eventually(t, 5*time.Second, "the tap's sightings", func() error {
		got = got[:0]
		for _, s := range tap.Since(start) {
			sign := "-"
			if s.Present {
				sign = "+"
			}
			got = append(got, sign+s.P.String())
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
