package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fibgate/fibgate/internal/nsrun"
)

// WireTap reads the BGP UPDATEs a router sends over a link from a packet
// socket at the receiving end, and logs when each prefix was announced or
// withdrawn by the kernel's receive timestamp of the packet that completed
// the message. A receiving daemon shows a change only after it processed
// it: a GoBGP neighbour holding a full table spent seconds in its own
// garbage collection under churn on a small machine, which hid how soon
// the router under test had really sent, and would hide an early
// announcement as well. The wire has no such lag.
type WireTap struct {
	fd      int
	from    map[netip.Addr]bool
	streams map[streamKey]*tcpStream
	stop    chan struct{}
	done    chan struct{}

	mu  sync.Mutex
	log []Sighting
	err error
}

type streamKey struct {
	src, dst     netip.Addr
	sport, dport uint16
}

// tcpStream reassembles one direction of a TCP connection into BGP
// messages.
type tcpStream struct {
	next    uint32 // sequence number of the next byte wanted
	started bool
	synced  bool // buf starts at a message's first byte
	buf     []byte
	ahead   map[uint32][]byte // segments past a gap, by sequence number
}

// TapBGP starts logging the BGP messages that the addresses from send
// over interface ifname of namespace ns (TCP port 179 at either end). It
// may start mid-session: it finds the first message by its marker. The
// tap stops when the test ends or at Close.
func TapBGP(tb testing.TB, ns, ifname string, from ...netip.Addr) *WireTap {
	tb.Helper()
	fd, err := packetSocket(ns, ifname)
	if err != nil {
		tb.Fatalf("tap %s in %s: %v", ifname, ns, err)
	}
	w := &WireTap{fd: fd, from: map[netip.Addr]bool{}, streams: map[streamKey]*tcpStream{}, stop: make(chan struct{}), done: make(chan struct{})}
	for _, a := range from {
		w.from[a.Unmap()] = true
	}
	go w.run()
	tb.Cleanup(func() { w.Close() })
	return w
}

// packetSocket opens a packet socket bound to ifname inside ns, with
// kernel receive timestamps and a receive buffer that holds a few seconds
// of a full table's UPDATEs while the reader is descheduled.
func packetSocket(ns, ifname string) (int, error) {
	fd := -1
	err := nsrun.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_ALL)
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return fmt.Errorf("packet socket (root?): %w", err)
		}
		for _, o := range []struct{ opt, v int }{{unix.SO_RCVBUFFORCE, 256 << 20}, {unix.SO_TIMESTAMPNS, 1}} {
			if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, o.opt, o.v); err != nil {
				unix.Close(s)
				return fmt.Errorf("setsockopt %d: %w", o.opt, err)
			}
		}
		// A timeout lets the reader notice Close.
		if err := unix.SetsockoptTimeval(s, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100_000}); err != nil {
			unix.Close(s)
			return fmt.Errorf("receive timeout: %w", err)
		}
		if err := unix.Bind(s, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			unix.Close(s)
			return fmt.Errorf("bind to %s: %w", ifname, err)
		}
		fd = s
		return nil
	})
	return fd, err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (w *WireTap) run() {
	defer close(w.done)
	buf := make([]byte, 256<<10) // a GRO packet is up to 64 KiB
	oob := make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))))
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		n, oobn, _, _, err := unix.Recvmsg(w.fd, buf, oob, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			w.fail(fmt.Errorf("read: %w", err))
			return
		}
		at, err := stampOf(oob[:oobn])
		if err != nil {
			w.fail(err)
			return
		}
		if err := w.packet(buf[:n], at); err != nil {
			w.fail(err)
			return
		}
	}
}

func stampOf(oob []byte) (time.Time, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, fmt.Errorf("control message: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			ts := *(*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
			return time.Unix(ts.Unix()), nil
		}
	}
	return time.Time{}, errors.New("a packet without its receive timestamp")
}

func (w *WireTap) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

// packet takes one IP packet: TCP segments from a tapped address to or
// from port 179 go to their stream.
func (w *WireTap) packet(p []byte, at time.Time) error {
	var k streamKey
	var tcp []byte
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		ihl, total := int(p[0]&0xf)*4, int(binary.BigEndian.Uint16(p[2:4]))
		if p[9] != unix.IPPROTO_TCP || ihl < 20 || total > len(p) || total < ihl {
			return nil
		}
		k.src, k.dst = netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
		tcp = p[ihl:total]
	case len(p) >= 40 && p[0]>>4 == 6:
		plen := int(binary.BigEndian.Uint16(p[4:6]))
		if p[6] != unix.IPPROTO_TCP || 40+plen > len(p) {
			return nil // extension headers do not occur on the lab's links
		}
		k.src, k.dst = netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40]))
		tcp = p[40 : 40+plen]
	default:
		return nil
	}
	if !w.from[k.src] || len(tcp) < 20 {
		return nil
	}
	k.sport, k.dport = binary.BigEndian.Uint16(tcp[0:2]), binary.BigEndian.Uint16(tcp[2:4])
	if k.sport != 179 && k.dport != 179 {
		return nil
	}
	seq, off, flags := binary.BigEndian.Uint32(tcp[4:8]), int(tcp[12]>>4)*4, tcp[13]
	if off < 20 || off > len(tcp) {
		return fmt.Errorf("a TCP segment from %v with header length %d", k.src, off)
	}
	s := w.streams[k]
	if s == nil || flags&0x02 != 0 { // SYN: a new connection
		s = &tcpStream{ahead: map[uint32][]byte{}}
		w.streams[k] = s
	}
	if flags&0x02 != 0 {
		s.next, s.started, s.synced = seq+1, true, true
	}
	data := tcp[off:]
	if len(data) == 0 {
		return nil
	}
	if !s.started {
		s.next, s.started = seq, true
	}
	s.add(seq, data)
	return w.messages(s, at)
}

// add puts a segment's bytes into the stream in sequence order, keeping
// segments past a gap until it fills; retransmitted bytes are dropped.
func (s *tcpStream) add(seq uint32, data []byte) {
	if int32(seq-s.next) > 0 {
		s.ahead[seq] = append([]byte(nil), data...)
		return
	}
	s.take(seq, data)
	for progressed := true; progressed && len(s.ahead) > 0; {
		progressed = false
		for q, b := range s.ahead {
			if int32(q-s.next) <= 0 {
				delete(s.ahead, q)
				s.take(q, b)
				progressed = true
			}
		}
	}
}

// take appends what a segment starting at or before next has past it.
func (s *tcpStream) take(seq uint32, data []byte) {
	if old := int(s.next - seq); old < len(data) {
		s.buf = append(s.buf, data[old:]...)
		s.next = seq + uint32(len(data))
	}
}

// messages takes every whole BGP message from the front of the stream.
func (w *WireTap) messages(s *tcpStream, at time.Time) error {
	if !s.synced {
		i := markerAt(s.buf)
		if i < 0 {
			s.buf = s.buf[max(0, len(s.buf)-15):]
			return nil
		}
		s.buf, s.synced = s.buf[i:], true
	}
	var seen []Sighting
	for len(s.buf) >= 19 {
		if markerAt(s.buf[:16]) != 0 {
			return fmt.Errorf("lost the BGP message boundary (%d bytes pending)", len(s.buf))
		}
		n := int(binary.BigEndian.Uint16(s.buf[16:18]))
		if n < 19 {
			return fmt.Errorf("a BGP message of length %d", n)
		}
		if len(s.buf) < n {
			break
		}
		if s.buf[18] == 2 {
			var err error
			if seen, err = updateSightings(s.buf[19:n], at, seen); err != nil {
				return err
			}
		}
		s.buf = s.buf[n:]
	}
	if len(s.buf) == 0 {
		s.buf = nil // give the memory back between bursts
	}
	if len(seen) > 0 {
		w.mu.Lock()
		w.log = append(w.log, seen...)
		w.mu.Unlock()
	}
	return nil
}

// markerAt is the index of the first BGP marker (16 bytes of 0xff) in b,
// or -1.
func markerAt(b []byte) int {
	run := 0
	for i, c := range b {
		if c != 0xff {
			run = 0
			continue
		}
		if run++; run == 16 {
			return i - 15
		}
	}
	return -1
}

// updateSightings appends the prefixes an UPDATE body withdraws and
// announces, IPv4 unicast and MP_(UN)REACH_NLRI of IPv4 and IPv6 unicast
// (no ADD-PATH: the lab does not negotiate it).
func updateSightings(b []byte, at time.Time, out []Sighting) ([]Sighting, error) {
	bad := func(what string) ([]Sighting, error) { return out, fmt.Errorf("a malformed UPDATE: %s", what) }
	if len(b) < 2 {
		return bad("no withdrawn routes length")
	}
	wl := int(binary.BigEndian.Uint16(b))
	if 2+wl+2 > len(b) {
		return bad("withdrawn routes past the end")
	}
	var err error
	if out, err = prefixes(b[2:2+wl], false, false, at, out); err != nil {
		return out, err
	}
	rest := b[2+wl:]
	al := int(binary.BigEndian.Uint16(rest))
	if 2+al > len(rest) {
		return bad("path attributes past the end")
	}
	attrs, nlri := rest[2:2+al], rest[2+al:]
	// The AS path first: the attributes may come in any order, and every
	// prefix the UPDATE announces has it.
	asPath := 0
	for a := attrs; len(a) >= 3; {
		typ, v, next, ok := attribute(a)
		if !ok {
			return bad("attribute past the end")
		}
		if typ == 2 {
			asPath = asPathLength(v)
		}
		a = next
	}
	for len(attrs) >= 3 {
		typ, v, next, _ := attribute(attrs) // read whole above
		attrs = next
		if (typ != 14 && typ != 15) || len(v) < 3 || v[2] != 1 { // MP_(UN)REACH, SAFI unicast
			continue
		}
		afi := binary.BigEndian.Uint16(v)
		if afi != 1 && afi != 2 {
			continue
		}
		if typ == 15 {
			out, err = prefixes(v[3:], afi == 2, false, at, out)
		} else {
			if len(v) < 4 || 5+int(v[3]) > len(v) {
				return bad("MP_REACH_NLRI next hop")
			}
			n := len(out)
			out, err = prefixes(v[5+int(v[3]):], afi == 2, true, at, out)
			setASPath(out[n:], asPath)
		}
		if err != nil {
			return out, err
		}
	}
	n := len(out)
	out, err = prefixes(nlri, false, true, at, out)
	setASPath(out[n:], asPath)
	return out, err
}

// attribute splits the path attribute at the start of b from the rest:
// its type code and value; ok is false when its header or value runs past
// the end.
func attribute(b []byte) (typ byte, v, rest []byte, ok bool) {
	flags, typ := b[0], b[1]
	hl, l := 3, int(b[2])
	if flags&0x10 != 0 { // extended length
		if len(b) < 4 {
			return typ, nil, nil, false
		}
		hl, l = 4, int(binary.BigEndian.Uint16(b[2:4]))
	}
	if hl+l > len(b) {
		return typ, nil, nil, false
	}
	return typ, b[hl : hl+l], b[hl+l:], true
}

// asPathLength is the length of an AS_PATH in four-octet form, as two
// speakers with the four-octet AS capability (RFC 6793) exchange it, and
// every speaker in the labs has it: an AS_SEQUENCE counts its ASes, an
// AS_SET one, the confederation segments none (RFC 4271 9.1.2.2, RFC
// 5065). -1 when the value is no such path.
func asPathLength(v []byte) int {
	n := 0
	for len(v) > 0 {
		if len(v) < 2 || 2+4*int(v[1]) > len(v) {
			return -1
		}
		switch v[0] {
		case 1: // AS_SET
			n++
		case 2: // AS_SEQUENCE
			n += int(v[1])
		case 3, 4: // AS_CONFED_SEQUENCE, AS_CONFED_SET
		default:
			return -1
		}
		v = v[2+4*int(v[1]):]
	}
	return n
}

// setASPath sets the AS path length of announcements.
func setASPath(ss []Sighting, n int) {
	for i := range ss {
		if ss[i].Present {
			ss[i].ASPath = n
		}
	}
}

// prefixes appends the prefixes of an NLRI field.
func prefixes(b []byte, v6, present bool, at time.Time, out []Sighting) ([]Sighting, error) {
	for len(b) > 0 {
		bits := int(b[0])
		n := (bits + 7) / 8
		if (!v6 && bits > 32) || bits > 128 || 1+n > len(b) {
			return out, fmt.Errorf("a malformed prefix (length %d)", bits)
		}
		var a [16]byte
		copy(a[:], b[1:1+n])
		addr := netip.AddrFrom16(a)
		if !v6 {
			addr = netip.AddrFrom4([4]byte(a[:4]))
		}
		out = append(out, Sighting{P: netip.PrefixFrom(addr, bits).Masked(), Present: present, At: at})
		b = b[1+n:]
	}
	return out, nil
}

// Since returns every announcement and withdrawal on the wire from
// `since` on, oldest first: an announcement of a prefix already announced
// (new attributes) is one too.
func (w *WireTap) Since(since time.Time) []Sighting {
	w.mu.Lock()
	defer w.mu.Unlock()
	return from(w.log, since, func(s Sighting) time.Time { return s.At })
}

// Err says why the tap stopped reading, or, after Close, whether its
// socket dropped packets or a stream was left with a gap: its log is then
// incomplete.
func (w *WireTap) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// ErrIncomplete is in what Err returns when the tap missed part of a
// stream (its socket dropped packets, or a segment never came): its log
// holds what came before the first missing byte of each stream, and
// nothing after it.
var ErrIncomplete = errors.New("the capture is incomplete")

// Close stops the tap; its log stays readable.
func (w *WireTap) Close() {
	select {
	case <-w.stop:
		return
	default:
	}
	close(w.stop)
	<-w.done
	// Every reason the capture is incomplete: the first one alone hid
	// whether a gap came with dropped packets.
	var missed []error
	if st, err := unix.GetsockoptTpacketStats(w.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err != nil {
		w.fail(fmt.Errorf("the tap's statistics: %w", err))
	} else if st.Drops > 0 {
		missed = append(missed, fmt.Errorf("the tap's socket dropped %d of %d packets", st.Drops, st.Packets))
	}
	for k, s := range w.streams {
		if len(s.ahead) > 0 {
			gap := uint32(0) // bytes up to the nearest segment past it
			for q := range s.ahead {
				if d := q - s.next; gap == 0 || d < gap {
					gap = d
				}
			}
			missed = append(missed, fmt.Errorf("the stream from %v:%d has %d segments past a gap of %d bytes from sequence number %d",
				k.src, k.sport, len(s.ahead), gap, s.next))
		}
	}
	if len(missed) > 0 {
		w.fail(fmt.Errorf("%w: %w", ErrIncomplete, errors.Join(missed...)))
	}
	unix.Close(w.fd)
}
