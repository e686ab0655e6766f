//go:build linux

package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fibgate/fibgate/plugin/fib"
)

const (
	nlmReplace = unix.NLM_F_REPLACE
	nlmExcl    = unix.NLM_F_EXCL
	nlmCreate  = unix.NLM_F_CREATE
	nlmAppend  = unix.NLM_F_APPEND
)

// routeTo matches a route message of a type for a prefix.
func routeTo(typ uint16, prefix string) func(any) bool {
	p := netip.MustParsePrefix(prefix)
	return func(v any) bool {
		m, ok := v.(RouteMessage)
		return ok && m.Type == typ && m.Route.Prefix == p
	}
}

func TestSubscribeReportsNLFlagsOfEachIPv4Operation(t *testing.T) {
	t.Parallel()
	ns := newTestNS(t)
	addTestLink(t, ns, "d0")
	ipn(t, ns, "addr", "add", "192.0.2.1/24", "dev", "d0")
	s := testSubscribe(t, ns)
	steps := []struct {
		args    []string
		typ     uint16
		nlflags uint16
		gw      string
	}{
		{[]string{"add", "198.51.100.0/24", "via", "192.0.2.2"}, unix.RTM_NEWROUTE, nlmExcl | nlmCreate, "192.0.2.2"},
		{[]string{"append", "198.51.100.0/24", "via", "192.0.2.3"}, unix.RTM_NEWROUTE, nlmCreate | nlmAppend, "192.0.2.3"},
		{[]string{"prepend", "198.51.100.0/24", "via", "192.0.2.4"}, unix.RTM_NEWROUTE, nlmCreate, "192.0.2.4"},
		{[]string{"replace", "198.51.100.0/24", "via", "192.0.2.5"}, unix.RTM_NEWROUTE, nlmReplace, "192.0.2.5"},
		{[]string{"del", "198.51.100.0/24", "via", "192.0.2.3"}, unix.RTM_DELROUTE, 0, "192.0.2.3"},
	}
	for _, st := range steps {
		ipn(t, ns, append([]string{"route"}, st.args...)...)
		m := waitMessage(t, s, "route "+st.args[0], routeTo(st.typ, "198.51.100.0/24")).(RouteMessage)
		if m.NLFlags != st.nlflags {
			t.Errorf("route %s: nlflags %s, want %s", st.args[0], nlFlagsString(m.NLFlags), nlFlagsString(st.nlflags))
		}
		if len(m.Route.Nexthops) != 1 || m.Route.Nexthops[0].Gateway != netip.MustParseAddr(st.gw) {
			t.Errorf("route %s: got %s, want via %s", st.args[0], m.Route.String(), st.gw)
		}
	}
	// What is left after replacing the first alias (the prepended 192.0.2.4)
	// and deleting 192.0.2.3, in dump (= alias) order.
	got, err := DumpRoutes(Options{NetNS: ns}, fib.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	var gws []string
	for _, m := range got {
		if m.Route.Prefix.String() == "198.51.100.0/24" {
			gws = append(gws, m.Route.Nexthops[0].Gateway.String())
		}
	}
	if strings.Join(gws, " ") != "192.0.2.5 192.0.2.2" {
		t.Errorf("aliases after replace and delete: %v, want [192.0.2.5 192.0.2.2]", gws)
	}
}

func TestSubscribeIPv6MultipathAddAndOneHopDelete(t *testing.T) {
	t.Parallel()
	ns := newTestNS(t)
	addTestLink(t, ns, "d0")
	addTestLink(t, ns, "d1")
	ipn(t, ns, "-6", "addr", "add", "2001:db8:1::1/64", "dev", "d0", "nodad")
	ipn(t, ns, "-6", "addr", "add", "2001:db8:2::1/64", "dev", "d1", "nodad")
	s := testSubscribe(t, ns)
	ipn(t, ns, "-6", "route", "add", "2001:db8:10::/48",
		"nexthop", "via", "2001:db8:1::2", "dev", "d0", "nexthop", "via", "2001:db8:2::2", "dev", "d1")
	add := waitMessage(t, s, "multipath add", routeTo(unix.RTM_NEWROUTE, "2001:db8:10::/48")).(RouteMessage)
	if add.NLFlags != nlmCreate || len(add.Route.Nexthops) != 2 || !add.Multipath {
		t.Errorf("multipath add: nlflags %s, %s; want CREATE with 2 hops", nlFlagsString(add.NLFlags), add.Route.String())
	}
	ipn(t, ns, "-6", "route", "del", "2001:db8:10::/48", "via", "2001:db8:2::2", "dev", "d1")
	del := waitMessage(t, s, "one-hop delete", routeTo(unix.RTM_DELROUTE, "2001:db8:10::/48")).(RouteMessage)
	if len(del.Route.Nexthops) != 1 || del.Route.Nexthops[0].Gateway != netip.MustParseAddr("2001:db8:2::2") {
		t.Errorf("one-hop delete: %s, want only via 2001:db8:2::2", del.Route.String())
	}
}

func TestDumpRoutesReturnsWhatWasAdded(t *testing.T) {
	t.Parallel()
	ns := newTestNS(t)
	addTestLink(t, ns, "d0")
	d0 := linkIndex(t, ns, "d0")
	ipn(t, ns, "addr", "add", "192.0.2.1/24", "dev", "d0")
	ipn(t, ns, "-6", "addr", "add", "2001:db8:1::1/64", "dev", "d0", "nodad")
	ipn(t, ns, "route", "add", "198.51.100.0/24", "via", "192.0.2.2", "metric", "7", "proto", "bgp")
	ipn(t, ns, "route", "add", "203.0.113.0/24", "via", "192.0.2.3", "table", "1000")
	ipn(t, ns, "-6", "route", "add", "2001:db8:10::/48", "via", "2001:db8:1::2", "metric", "9")
	ipn(t, ns, "-6", "route", "add", "2001:db8:11::/48", "from", "2001:db8:99::/64", "via", "2001:db8:1::2")

	want := map[string]fib.Route{
		"198.51.100.0/24": {Table: fib.TableMain, Type: fib.TypeUnicast, Protocol: fib.ProtoBGP, Priority: 7,
			Nexthops: []fib.Nexthop{{Gateway: netip.MustParseAddr("192.0.2.2"), LinkIndex: d0, Weight: 1}}},
		"203.0.113.0/24": {Table: 1000, Type: fib.TypeUnicast, Protocol: fib.ProtoBoot,
			Nexthops: []fib.Nexthop{{Gateway: netip.MustParseAddr("192.0.2.3"), LinkIndex: d0, Weight: 1}}},
		"2001:db8:10::/48": {Table: fib.TableMain, Type: fib.TypeUnicast, Protocol: fib.ProtoBoot, Priority: 9,
			Nexthops: []fib.Nexthop{{Gateway: netip.MustParseAddr("2001:db8:1::2"), LinkIndex: d0, Weight: 1}}},
	}
	for _, fam := range []fib.Family{fib.IPv4, fib.IPv6, 0} {
		got, err := DumpRoutes(Options{NetNS: ns}, fam)
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]bool{}
		var local, src bool
		for _, m := range got {
			if m.NLFlags&unix.NLM_F_MULTI == 0 {
				t.Errorf("family %v: dump message without NLM_F_MULTI: %s", fam, m.Route.String())
			}
			if fam != 0 && m.Route.Family() != fam {
				t.Errorf("family %v: dump returned %s", fam, m.Route.String())
			}
			if m.Route.Table == fib.TableLocal && m.Route.Type == fib.TypeLocal {
				local = true
			}
			if m.Src.IsValid() {
				src = m.Src.String() == "2001:db8:99::/64" && m.Route.Prefix.String() == "2001:db8:11::/48"
				continue
			}
			w, ok := want[m.Route.Prefix.String()]
			if !ok {
				continue
			}
			found[m.Route.Prefix.String()] = true
			w.Prefix = m.Route.Prefix
			if !m.Route.SameAs(&w) || m.Route.Protocol != w.Protocol {
				t.Errorf("family %v: dumped %s\n want %s", fam, m.Route.String(), w.String())
			}
		}
		for p := range want {
			if fam == 0 || fib.FamilyOf(netip.MustParsePrefix(p)) == fam {
				if !found[p] {
					t.Errorf("family %v: %s missing from the dump", fam, p)
				}
			}
		}
		if !local {
			t.Errorf("family %v: no local-table entries in the dump (all tables expected)", fam)
		}
		if fam != fib.IPv4 && !src {
			t.Errorf("family %v: source-specific route missing or its Src wrong", fam)
		}
	}
}

func TestDumpRoutesRejectsUnknownFamily(t *testing.T) {
	if _, err := DumpRoutes(Options{}, 7); err == nil || !strings.Contains(err.Error(), "unsupported family 7") {
		t.Errorf("DumpRoutes(family 7) = %v, want an unsupported family error", err)
	}
}

func TestDumpLinksAndAddrs(t *testing.T) {
	t.Parallel()
	ns := newTestNS(t)
	addTestLink(t, ns, "d0")
	ipn(t, ns, "addr", "add", "192.0.2.1/24", "dev", "d0")
	ipn(t, ns, "-6", "addr", "add", "2001:db8:1::1/64", "dev", "d0", "nodad")
	links, err := DumpLinks(Options{NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]LinkMessage{}
	for _, l := range links {
		byName[l.Name] = l
	}
	if lo := byName["lo"]; lo.Index != 1 || !lo.AdminUp {
		t.Errorf("lo = %+v, want index 1, admin up", lo)
	}
	d0 := byName["d0"]
	if !d0.Up || !d0.AdminUp || d0.OperState != OperUp || d0.Deleted {
		t.Errorf("d0 = %+v, want up (IFF_UP|IFF_RUNNING, operstate up)", d0)
	}
	addrs, err := DumpAddrs(Options{NetNS: ns}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, a := range addrs {
		if a.Index == d0.Index {
			have = append(have, a.Prefix.String())
		}
	}
	if got := strings.Join(have, " "); !strings.Contains(got, "192.0.2.1/24") || !strings.Contains(got, "2001:db8:1::1/64") {
		t.Errorf("addresses of d0: %s, want 192.0.2.1/24 and 2001:db8:1::1/64", got)
	}
}

// TestSubscribeSeesLinkAndAddressLoss checks the messages a listener needs
// to notice routes that the kernel flushes without RTM_DELROUTE.
func TestSubscribeSeesLinkAndAddressLoss(t *testing.T) {
	t.Parallel()
	ns := newTestNS(t)
	addTestLink(t, ns, "d0")
	addTestLink(t, ns, "d1")
	ipn(t, ns, "addr", "add", "192.0.2.1/24", "dev", "d0")
	ipn(t, ns, "addr", "add", "198.51.100.1/24", "dev", "d1")
	ipn(t, ns, "route", "add", "203.0.113.0/24", "via", "192.0.2.2")
	d0 := linkIndex(t, ns, "d0")
	s := testSubscribe(t, ns)

	ipn(t, ns, "link", "set", "d0", "down")
	down := waitMessage(t, s, "d0 down", func(v any) bool {
		l, ok := v.(LinkMessage)
		return ok && l.Index == d0 && !l.AdminUp
	}).(LinkMessage)
	if down.Up || down.Deleted || down.Name != "d0" {
		t.Errorf("link down: %+v", down)
	}
	ipn(t, ns, "addr", "del", "198.51.100.1/24", "dev", "d1")
	waitMessage(t, s, "RTM_DELADDR", func(v any) bool {
		a, ok := v.(AddrMessage)
		return ok && a.Deleted && a.Prefix.String() == "198.51.100.1/24"
	})
	ipn(t, ns, "link", "del", "d1")
	waitMessage(t, s, "RTM_DELLINK", func(v any) bool {
		l, ok := v.(LinkMessage)
		return ok && l.Deleted && l.Name == "d1"
	})
}

// TestSubscribeOverrunReturnsErrOverrun fills a tiny receive buffer and
// expects ENOBUFS to come out as ErrOverrun, after which the subscription
// keeps working.
func TestSubscribeOverrunReturnsErrOverrun(t *testing.T) {
	t.Parallel()
	ns := newTestNS(t)
	addTestLink(t, ns, "d0")
	s, err := Subscribe(Options{NetNS: ns, RcvBuf: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.RcvBuf() > 64<<10 {
		t.Fatalf("RcvBuf() = %d, want the kernel minimum for a 1-byte request", s.RcvBuf())
	}
	var lines []string
	for i := range 200 {
		lines = append(lines, fmt.Sprintf("route add 10.0.%d.0/24 dev d0", i))
	}
	ipBatch(t, ns, lines)
	var overrun error
	for range 1000 {
		if _, err := s.receiveNow(); err != nil {
			overrun = err
			break
		}
	}
	if !errors.Is(overrun, ErrOverrun) || !errors.Is(overrun, unix.ENOBUFS) {
		t.Fatalf("after 200 unread notifications: %v, want ErrOverrun (ENOBUFS)", overrun)
	}
	// Receive emptied the queue, so the kernel delivers again.
	ipn(t, ns, "route", "add", "10.1.0.0/24", "dev", "d0")
	waitMessage(t, s, "a notification after the overrun", routeTo(unix.RTM_NEWROUTE, "10.1.0.0/24"))
}

func TestCloseUnblocksReceive(t *testing.T) {
	t.Parallel()
	ns := newTestNS(t)
	s, err := Subscribe(Options{NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := s.Receive()
		errc <- err
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Receive after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Receive still blocked 5s after Close")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestReadDeadlineEndsReceive(t *testing.T) {
	t.Parallel()
	ns := newTestNS(t)
	s := testSubscribe(t, ns)
	if err := s.SetReadDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Receive(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Receive past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
}

func TestMissingNetNSIsErrNotExist(t *testing.T) {
	requireNetAdmin(t)
	opts := Options{NetNS: "fibgate-test-does-not-exist"}
	_, subErr := Subscribe(opts)
	_, dumpErr := DumpRoutes(opts, fib.IPv4)
	_, linkErr := DumpLinks(opts)
	_, modeErr := NotifyMode(opts, fib.IPv4)
	setErr := SetNotifyMode(opts, fib.IPv6, 1)
	for name, err := range map[string]error{"Subscribe": subErr, "DumpRoutes": dumpErr, "DumpLinks": linkErr, "NotifyMode": modeErr, "SetNotifyMode": setErr} {
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), `"fibgate-test-does-not-exist"`) {
			t.Errorf("%s in a missing netns: %v, want os.ErrNotExist naming the netns", name, err)
		}
	}
	if _, err := Subscribe(Options{NetNS: "../../etc"}); err == nil || !strings.Contains(err.Error(), "invalid network namespace name") {
		t.Errorf("Subscribe(../../etc) = %v, want an invalid name error", err)
	}
}

// TestNamespacesStayPut checks that opening sockets in another namespace
// leaves the calling thread, and so the process, where it was.
func TestNamespacesStayPut(t *testing.T) {
	ns := newTestNS(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Skip("cannot read /proc/thread-self/ns/net:", err)
	}
	s := testSubscribe(t, ns)
	if _, err := DumpRoutes(Options{NetNS: ns}, fib.IPv4); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Readlink("/proc/thread-self/ns/net")
	if before != after {
		t.Errorf("thread netns changed from %s to %s", before, after)
	}
	// The socket does live in the namespace: a route added there shows.
	addTestLink(t, ns, "d0")
	ipn(t, ns, "route", "add", "10.9.0.0/16", "dev", "d0")
	waitMessage(t, s, "route in the namespace", routeTo(unix.RTM_NEWROUTE, "10.9.0.0/16"))
}

// TestRcvBufForcedAndFallback checks SO_RCVBUFFORCE as root, and the
// SO_RCVBUF fallback on a thread that dropped CAP_NET_ADMIN.
func TestRcvBufForcedAndFallback(t *testing.T) {
	ns := newTestNS(t)
	s := testSubscribe(t, ns)
	if s.Warning() != nil || s.RcvBuf() < 2*DefaultRcvBuf {
		t.Errorf("as root: RcvBuf() = %d, Warning() = %v; want >= %d and no warning", s.RcvBuf(), s.Warning(), 2*DefaultRcvBuf)
	}

	type result struct {
		warning, err error
		got          int
	}
	resc := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread loses a capability
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			resc <- result{err: err}
			return
		}
		data[0].Effective &^= 1 << unix.CAP_NET_ADMIN
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			resc <- result{err: err}
			return
		}
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err != nil {
			resc <- result{err: err}
			return
		}
		defer unix.Close(fd)
		w, err := setRcvBuf(fd, 1<<30)
		got, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
		resc <- result{w, err, got}
	}()
	r := <-resc
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !errors.Is(r.warning, ErrRcvBufNotForced) || !strings.Contains(r.warning.Error(), "CAP_NET_ADMIN") {
		t.Errorf("without CAP_NET_ADMIN: warning %v, want ErrRcvBufNotForced mentioning CAP_NET_ADMIN", r.warning)
	}
	if r.got <= 0 || r.got >= 2<<30 {
		t.Errorf("without CAP_NET_ADMIN: SO_RCVBUF = %d, want the rmem_max-capped fallback", r.got)
	}
}

// TestKernelDropsNotificationsWhileCongested pins down the kernel
// behaviour that makes Receive empty the queue after an overrun: once
// ENOBUFS is reported, the socket stays "congested" and every new
// notification is dropped, without another ENOBUFS, until the receive
// queue has been read empty.
//
// Nothing is read between the error and the next route: the overrun
// left at least one datagram queued (the kernel drops only when the
// queued bytes pass the buffer), so the queue cannot be empty then. Reading
// even one datagram could empty it where the buffer holds only one, which
// clears the congestion and made an earlier version of this test flaky.
func TestKernelDropsNotificationsWhileCongested(t *testing.T) {
	t.Parallel()
	ns := newTestNS(t)
	addTestLink(t, ns, "d0")
	s, err := Subscribe(Options{NetNS: ns, RcvBuf: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var lines []string
	for i := range 200 {
		lines = append(lines, fmt.Sprintf("route add 10.0.%d.0/24 dev d0", i))
	}
	ipBatch(t, ns, lines)
	// read takes datagrams off the socket until it is empty, or, with
	// untilError, until the first error.
	read := func(untilError bool) (msgs [][]byte, enobufs int) {
		s.conn.Control(func(fd uintptr) {
			for {
				n, _, err := s.recv(int(fd), s.buf)
				if err == unix.ENOBUFS {
					enobufs++
					if untilError {
						return
					}
					continue
				}
				if err != nil {
					return
				}
				msgs, _ = splitMessages(msgs, append([]byte(nil), s.buf[:n]...))
			}
		})
		return msgs, enobufs
	}
	if msgs, enobufs := read(true); enobufs != 1 || len(msgs) != 0 {
		t.Fatalf("first reads: %d messages and %d ENOBUFS, want the error first and alone", len(msgs), enobufs)
	}
	// Still congested: this notification is lost.
	ipn(t, ns, "route", "add", "10.1.0.0/24", "dev", "d0")
	msgs, enobufs := read(false)
	if len(msgs) == 0 {
		t.Fatal("nothing queued after the overrun")
	}
	for _, m := range msgs {
		if r, err := DecodeRoute(m); err == nil && r.Route.Prefix.String() == "10.1.0.0/24" {
			t.Errorf("notification delivered while congested (kernel behaviour changed?)")
		}
	}
	if enobufs != 0 {
		t.Errorf("ENOBUFS reported again (%d) for a drop while congested", enobufs)
	}
	// The queue is empty now, so delivery resumes.
	ipn(t, ns, "route", "add", "10.2.0.0/24", "dev", "d0")
	waitMessage(t, s, "a notification once the queue was emptied", routeTo(unix.RTM_NEWROUTE, "10.2.0.0/24"))
}

// TestDumpShowsKernelExtack sends a request the kernel's strict check
// rejects and expects its extended-ack text in the error.
func TestDumpShowsKernelExtack(t *testing.T) {
	t.Parallel()
	ns := newTestNS(t)
	req := make([]byte, nlmsgHdrLen+rtmsgLen)
	req[nlmsgHdrLen] = unix.AF_INET
	req[nlmsgHdrLen+1] = 8 // rtm_dst_len must be 0 in a dump request
	err := dump(Options{NetNS: ns}, unix.RTM_GETROUTE, req, func() {}, func([]byte) error { return nil })
	if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "dump request") {
		t.Errorf("invalid dump request: %v, want EINVAL with the kernel's explanation", err)
	}
	t.Log(err)
}

// TestIgnoreTablesDropsTheirNotificationsInTheKernel: with the filter on,
// route notifications of the tables named (above and below 256, added and
// deleted) never reach the socket, and everything else still does. A
// second subscription without the filter sees them, so they were sent.
func TestIgnoreTablesDropsTheirNotificationsInTheKernel(t *testing.T) {
	t.Parallel()
	ns := newTestNS(t)
	addTestLink(t, ns, "d0")
	ipn(t, ns, "addr", "add", "192.0.2.1/24", "dev", "d0")
	filtered, plain := testSubscribe(t, ns), testSubscribe(t, ns)
	if err := filtered.IgnoreTables(4242, 100); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"add", "198.51.100.0/24", "via", "192.0.2.2", "table", "4242"},
		{"add", "198.51.100.0/24", "via", "192.0.2.2", "table", "100"},
		{"add", "2001:db8:1::/48", "dev", "d0", "table", "4242"},
		{"del", "198.51.100.0/24", "via", "192.0.2.2", "table", "4242"},
		{"add", "198.51.100.0/24", "via", "192.0.2.2", "table", "4243"},
		{"add", "203.0.113.0/24", "via", "192.0.2.2"},
	} {
		ipn(t, ns, append([]string{"route"}, args...)...)
	}
	ignored := func(v any) bool {
		m, ok := v.(RouteMessage)
		return ok && (m.Route.Table == 4242 || m.Route.Table == 100)
	}
	var leaked []string
	other := false // table 4243's route, not ignored
	waitMessage(t, filtered, "the main table's route", func(v any) bool {
		if m, ok := v.(RouteMessage); ok {
			other = other || m.Route.Table == 4243
			if ignored(v) {
				leaked = append(leaked, fmt.Sprintf("%v table %d", m.Route.Prefix, m.Route.Table))
			}
		}
		return routeTo(unix.RTM_NEWROUTE, "203.0.113.0/24")(v)
	})
	if len(leaked) > 0 {
		t.Errorf("notifications of ignored tables reached the socket: %v", leaked)
	}
	if !other {
		t.Error("table 4243's route, which is not ignored, did not come before the main table's")
	}
	waitMessage(t, plain, "the ignored table's route without the filter", func(v any) bool {
		m, ok := v.(RouteMessage)
		return ok && m.Route.Table == 4242
	})
}
