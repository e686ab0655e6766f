//go:build linux

package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fibgate/fibgate/plugin/fib"
)

// DefaultRcvBuf is the receive buffer of a Subscription unless
// Options.RcvBuf says otherwise. The kernel doubles it for accounting, and
// each queued notification is charged its skb truesize (measured on 6.18:
// 832 bytes for an IPv4 route, 1280 for an IPv6 one), so 32 MiB absorbs a
// burst of about 80k IPv4 or 52k IPv6 route changes before the socket
// overruns.
const DefaultRcvBuf = 32 << 20

const (
	// recvBufSize is the reused read buffer of a Subscription. Receive
	// keeps reading datagrams into it while at least maxDatagram bytes are
	// free, so one call drains a burst with few wake-ups.
	recvBufSize = 1 << 20
	// maxDatagram bounds one netlink datagram: notifications are single
	// messages of a few KiB and dump batches are capped by the kernel at
	// 32 KiB. A longer one is detected with MSG_TRUNC and reported.
	maxDatagram = 64 << 10
	// dumpRetries bounds restarts of a dump the kernel marks
	// NLM_F_DUMP_INTR (the table changed while it was being dumped).
	dumpRetries = 10
	// maxDiscard bounds the datagrams dropped after an overrun, so a
	// notification flood cannot keep Receive busy forever.
	maxDiscard = 1 << 20
	// maxRcvBuf keeps the doubled value the kernel accounts within a C int.
	maxRcvBuf = 1 << 30
)

// ErrOverrun is matched (errors.Is) by the error Receive returns when the
// kernel dropped notifications because the receive buffer was full
// (ENOBUFS), or a datagram did not fit the read buffer. What was lost is
// unknown: dump and reconcile. The subscription stays usable: Receive has
// already emptied the socket queue, because until it is empty the kernel
// keeps the socket "congested" and drops every new notification without
// reporting ENOBUFS again; so notifications that follow the error are
// delivered and are newer than anything queued before it.
const ErrOverrun = constError("netlink notifications lost (socket overrun)")

// ErrRcvBufNotForced is matched by Subscription.Warning when the process
// lacks CAP_NET_ADMIN for SO_RCVBUFFORCE and SO_RCVBUF, capped by
// net.core.rmem_max, gave a smaller buffer than asked for. The subscription
// works, but overruns sooner.
const ErrRcvBufNotForced = constError("receive buffer not forced")

// ErrDumpInterrupted is returned when a dump was still interrupted
// (NLM_F_DUMP_INTR) after dumpRetries attempts because the tables kept
// changing.
const ErrDumpInterrupted = constError("dump interrupted by concurrent changes (NLM_F_DUMP_INTR)")

// Options selects the network namespace of a socket and sizes it.
type Options struct {
	// NetNS is a named network namespace under /run/netns (as created by
	// `ip netns add`); "" is the caller's. Sockets are opened inside it on
	// a throwaway thread, so the rest of the process stays in its own.
	NetNS string
	// RcvBuf is the notification socket's receive buffer in bytes, set
	// with SO_RCVBUFFORCE (the kernel doubles it for bookkeeping); 0 means
	// DefaultRcvBuf. Small values are allowed (tests provoke overruns).
	RcvBuf int
}

// groupMask selects the rtnetlink multicast groups a Subscription joins
// (bit g-1 for group g): routes of both families, plus links and addresses,
// whose loss flushes routes without RTM_DELROUTE. Nexthop objects
// (RTNLGRP_NEXTHOP, 32) are beyond the mask's bits and joined apart.
const groupMask = 1<<(unix.RTNLGRP_LINK-1) |
	1<<(unix.RTNLGRP_IPV4_IFADDR-1) | 1<<(unix.RTNLGRP_IPV6_IFADDR-1) |
	1<<(unix.RTNLGRP_IPV4_ROUTE-1) | 1<<(unix.RTNLGRP_IPV6_ROUTE-1)

// Subscription receives route, link and address notifications as raw
// netlink messages; decode them with Decode. NETLINK_NO_ENOBUFS is left
// off on purpose: an overrun must be reported, never silently absorbed.
type Subscription struct {
	opts    Options
	file    *os.File
	conn    syscall.RawConn
	closed  atomic.Bool
	rcvbuf  int
	warning error

	// Owned by the (single) goroutine calling Receive.
	buf     []byte
	msgs    [][]byte
	pending error
	sa      unix.RawSockaddrNetlink
	salen   uint32
}

// Subscribe opens a NETLINK_ROUTE socket in opts.NetNS joined to the route
// (IPv4 and IPv6), link and address groups. Subscribe before dumping, so
// that no change falls between the dump and the first notification.
func Subscribe(opts Options) (*Subscription, error) {
	size := opts.RcvBuf
	if size == 0 {
		size = DefaultRcvBuf
	}
	if size < 0 || size > maxRcvBuf {
		return nil, fmt.Errorf("subscribe to route notifications: receive buffer of %d bytes outside 0..%d", size, maxRcvBuf)
	}
	fd, err := openSocket(opts.NetNS, unix.SOCK_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("subscribe to route notifications in %s: %w", opts.where(), err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groupMask}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("subscribe to route notifications in %s: bind groups: %w", opts.where(), err)
	}
	// A kernel without nexthop objects (before 5.3) has no such group, and
	// no route can name an object there.
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, unix.RTNLGRP_NEXTHOP); err != nil && err != unix.EINVAL {
		unix.Close(fd)
		return nil, fmt.Errorf("subscribe to route notifications in %s: join nexthop objects: %w", opts.where(), err)
	}
	warning, err := setRcvBuf(fd, size)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("subscribe to route notifications in %s: %w", opts.where(), err)
	}
	got, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	// A non-blocking fd makes os.NewFile register it with the runtime
	// poller, so Receive parks the goroutine instead of a thread, read
	// deadlines work and Close wakes a blocked Receive.
	f := os.NewFile(uintptr(fd), "netlink-route")
	conn, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("subscribe to route notifications in %s: %w", opts.where(), err)
	}
	return &Subscription{
		opts: opts, file: f, conn: conn, rcvbuf: got, warning: warning,
		buf: make([]byte, recvBufSize), msgs: make([][]byte, 0, 1024),
	}, nil
}

// setRcvBuf forces the receive buffer; without CAP_NET_ADMIN it falls back
// to SO_RCVBUF and returns a warning matching ErrRcvBufNotForced if the
// buffer came out smaller than asked for.
func setRcvBuf(fd, size int) (warning, err error) {
	ferr := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
	if ferr == nil {
		return nil, nil
	}
	if !errors.Is(ferr, unix.EPERM) {
		return nil, fmt.Errorf("set SO_RCVBUFFORCE to %d bytes: %w", size, ferr)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, size); err != nil {
		return nil, fmt.Errorf("set SO_RCVBUF to %d bytes: %w", size, err)
	}
	got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return nil, fmt.Errorf("read SO_RCVBUF: %w", err)
	}
	if got >= 2*size { // the kernel reports twice what was set
		return nil, nil
	}
	return fmt.Errorf("%w: SO_RCVBUFFORCE needs CAP_NET_ADMIN (%v); SO_RCVBUF is capped by net.core.rmem_max: got %d bytes of the %d asked for",
		ErrRcvBufNotForced, ferr, got/2, size), nil
}

// Warning returns nil, or an error matching ErrRcvBufNotForced when the
// receive buffer is smaller than Options.RcvBuf asked for. Log it: the
// subscription works but overruns sooner.
func (s *Subscription) Warning() error { return s.warning }

// RcvBuf returns the socket's receive buffer as the kernel accounts it
// (getsockopt SO_RCVBUF: twice the value set).
func (s *Subscription) RcvBuf() int { return s.rcvbuf }

// SetReadDeadline makes a blocked or future Receive fail with an error
// matching os.ErrDeadlineExceeded after t; the zero time removes the
// deadline. It lets tests and pollers wait for a message without sleeping.
func (s *Subscription) SetReadDeadline(t time.Time) error {
	return s.file.SetReadDeadline(t)
}

// Receive blocks until at least one notification arrives and returns every
// message that is queued, up to about 1 MiB, each starting at its nlmsghdr.
// The slices point into a buffer that the next Receive reuses: they stay
// valid only until then (copy what must outlive it). Receive must not be
// called from several goroutines at once.
//
// An overrun (ENOBUFS) returns an error matching ErrOverrun; messages read
// before it are returned first and the overrun on the next call. After Close
// it returns an error matching net.ErrClosed. Datagrams not sent by the
// kernel (nl_pid != 0) are dropped.
func (s *Subscription) Receive() ([][]byte, error) {
	return s.receive(true)
}

// receiveNow is Receive without waiting: it returns what is queued, maybe
// nothing.
func (s *Subscription) receiveNow() ([][]byte, error) {
	return s.receive(false)
}

func (s *Subscription) receive(wait bool) ([][]byte, error) {
	if err := s.pending; err != nil {
		s.pending = nil
		return nil, err
	}
	s.msgs = s.msgs[:0]
	var rerr error
	var err error
	if wait {
		err = s.conn.Read(func(fd uintptr) bool {
			var done bool
			done, rerr = s.fill(int(fd))
			return done
		})
	} else {
		err = s.conn.Control(func(fd uintptr) { _, rerr = s.fill(int(fd)) })
	}
	switch {
	case err != nil && s.closed.Load():
		return nil, fmt.Errorf("receive netlink notifications in %s: subscription closed: %w", s.opts.where(), net.ErrClosed)
	case err != nil:
		return nil, fmt.Errorf("receive netlink notifications in %s: %w", s.opts.where(), err)
	case rerr != nil:
		return nil, rerr
	}
	return s.msgs, nil
}

// fill reads queued datagrams into s.buf and splits them into s.msgs until
// the queue is empty or the buffer has less than maxDatagram bytes left.
// done is false when nothing was queued (the caller waits and retries).
func (s *Subscription) fill(fd int) (done bool, err error) {
	used := 0
	for used == 0 || len(s.buf)-used >= maxDatagram {
		n, kernel, err := s.recv(fd, s.buf[used:])
		switch err {
		case nil:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return len(s.msgs) > 0, nil
		case unix.ENOBUFS:
			n := s.discard(fd, s.buf[used:])
			return true, s.deferErr(s.overrun(fmt.Errorf("%w; discarded %d queued datagrams to end the congestion", unix.ENOBUFS, n)))
		default:
			return true, fmt.Errorf("receive netlink notifications in %s: %w", s.opts.where(), err)
		}
		if room := len(s.buf) - used; n > room {
			return true, s.deferErr(s.overrun(fmt.Errorf("datagram of %d bytes truncated to %d", n, room)))
		}
		if !kernel {
			continue
		}
		s.msgs, err = splitMessages(s.msgs, s.buf[used:used+n])
		used += n
		if err != nil {
			return true, fmt.Errorf("receive netlink notifications in %s: %w", s.opts.where(), err)
		}
	}
	return true, nil
}

// discard reads and drops queued datagrams until the queue is empty (or a
// bound is hit under a flood). After an overrun the kernel marks the socket
// congested and silently drops every further notification until user space
// has emptied the receive queue; emptying it at once makes notifications
// flow again before the caller dumps. What is dropped predates that dump.
func (s *Subscription) discard(fd int, scratch []byte) (n int) {
	for range maxDiscard {
		_, _, err := s.recv(fd, scratch)
		switch err {
		case nil:
			n++
		case unix.EINTR, unix.ENOBUFS:
		default: // EAGAIN: the queue is empty, the congestion is over
			return n
		}
	}
	return n
}

// deferErr returns err now if no message was read yet; otherwise it keeps
// err for the next Receive, so the messages read before it are delivered.
func (s *Subscription) deferErr(err error) error {
	if len(s.msgs) == 0 {
		return err
	}
	s.pending = err
	return nil
}

// overrun builds the error for lost notifications.
func (s *Subscription) overrun(cause error) error {
	return fmt.Errorf("receive netlink notifications in %s: %w: %w", s.opts.where(), ErrOverrun, cause)
}

// recv reads one datagram without blocking and without allocating (unlike
// unix.Recvfrom, which allocates the sender address). With MSG_TRUNC the
// result is the datagram's real length even when b was too short.
func (s *Subscription) recv(fd int, b []byte) (n int, fromKernel bool, err error) {
	s.salen = unix.SizeofSockaddrNetlink
	r, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd),
		uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		unix.MSG_TRUNC|unix.MSG_DONTWAIT,
		uintptr(unsafe.Pointer(&s.sa)), uintptr(unsafe.Pointer(&s.salen)))
	if e != 0 {
		return 0, false, e
	}
	return int(r), s.sa.Pid == 0, nil
}

// Close closes the socket. It is safe to call concurrently with a blocked
// Receive, which then returns an error matching net.ErrClosed, and more
// than once.
func (s *Subscription) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	if err := s.file.Close(); err != nil {
		return fmt.Errorf("close netlink subscription in %s: %w", s.opts.where(), err)
	}
	return nil
}

// openSocket opens a NETLINK_ROUTE socket inside the named namespace.
func openSocket(ns string, flags int) (int, error) {
	fd := -1
	err := inNetNS(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|flags, unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("open NETLINK_ROUTE socket: %w", err)
		}
		return nil
	})
	return fd, err
}

// DumpRoutes dumps the routes of all tables of one family (fib.IPv4,
// fib.IPv6, or 0 for both) on a socket of its own. It reads until
// NLMSG_DONE, returns kernel errors (NLMSG_ERROR), restarts when the kernel
// flags the dump NLM_F_DUMP_INTR, and leaves out what DecodeRoute skips
// (cloned cache entries, multicast and other families). Routes are in the
// kernel's dump order, which within one key is the alias order.
func DumpRoutes(opts Options, family fib.Family) ([]RouteMessage, error) {
	var name string
	switch family {
	case 0:
		name = "ipv4 and ipv6"
	case fib.IPv4, fib.IPv6:
		name = family.String()
	default:
		return nil, fmt.Errorf("dump routes: unsupported family %d (want fib.IPv4, fib.IPv6 or 0 for both)", family)
	}
	req := make([]byte, nlmsgHdrLen+rtmsgLen)
	req[nlmsgHdrLen] = uint8(family)
	// Keep the raw messages first and decode once the count is known: a
	// RouteMessage is ~180 bytes, and growing a slice of a million of them
	// by append costs more than the dump itself (measured: 2.2 -> 1.x µs
	// per route at 100k routes).
	var raw rawMessages
	err := dump(opts, unix.RTM_GETROUTE, req, raw.reset, raw.add)
	if err != nil {
		return nil, fmt.Errorf("dump %s routes in %s: %w", name, opts.where(), err)
	}
	out := make([]RouteMessage, 0, raw.n)
	for msg := range raw.all() {
		m, err := DecodeRoute(msg)
		if errors.Is(err, ErrSkip) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("dump %s routes in %s: %w", name, opts.where(), err)
		}
		if family != 0 && m.Route.Family() != family {
			// A kernel without the family's dump (IPv6 disabled) answers
			// with every family's routes (rtnl_dump_all).
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

// rawMessages collects dumped messages back to back in 1 MiB chunks.
type rawMessages struct {
	chunks [][]byte
	n      int
}

func (r *rawMessages) reset() { *r = rawMessages{} }

func (r *rawMessages) add(msg []byte) error {
	last := len(r.chunks) - 1
	if last < 0 || cap(r.chunks[last])-len(r.chunks[last]) < len(msg) {
		r.chunks = append(r.chunks, make([]byte, 0, max(1<<20, len(msg))))
		last++
	}
	r.chunks[last] = append(r.chunks[last], msg...)
	r.n++
	return nil
}

// all yields the messages in order; they were split and checked by dump.
func (r *rawMessages) all() func(yield func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for _, c := range r.chunks {
			for len(c) >= nlmsgHdrLen {
				l := int(binary.NativeEndian.Uint32(c))
				if !yield(c[:l:l]) {
					return
				}
				c = c[l:]
			}
		}
	}
}

// DumpLinks dumps all network interfaces, so a listener knows which links
// exist and are up when it starts or resynchronises.
func DumpLinks(opts Options) ([]LinkMessage, error) {
	req := make([]byte, nlmsgHdrLen+ifinfomsgLen)
	var out []LinkMessage
	err := dump(opts, unix.RTM_GETLINK, req, func() { out = out[:0] }, func(msg []byte) error {
		l, err := DecodeLink(msg)
		if errors.Is(err, ErrSkip) {
			return nil
		}
		if err != nil {
			return err
		}
		out = append(out, l)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dump links in %s: %w", opts.where(), err)
	}
	return out, nil
}

// DumpNexthops dumps the nexthop objects of all families, the counterpart
// of RTM_NEWNEXTHOP/RTM_DELNEXTHOP notifications. A kernel without nexthop
// objects (before 5.3) has none to dump.
func DumpNexthops(opts Options) ([]NexthopMessage, error) {
	req := make([]byte, nlmsgHdrLen+nhmsgLen)
	var out []NexthopMessage
	err := dump(opts, unix.RTM_GETNEXTHOP, req, func() { out = out[:0] }, func(msg []byte) error {
		m, err := DecodeNexthop(msg)
		if err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dump nexthop objects in %s: %w", opts.where(), err)
	}
	return out, nil
}

// DumpAddrs dumps the addresses of one family (fib.IPv4, fib.IPv6, or 0 for
// both), the counterpart of RTM_NEWADDR/RTM_DELADDR notifications.
func DumpAddrs(opts Options, family fib.Family) ([]AddrMessage, error) {
	if family != 0 && family != fib.IPv4 && family != fib.IPv6 {
		return nil, fmt.Errorf("dump addresses: unsupported family %d (want fib.IPv4, fib.IPv6 or 0 for both)", family)
	}
	req := make([]byte, nlmsgHdrLen+ifaddrmsgLen)
	req[nlmsgHdrLen] = uint8(family)
	var out []AddrMessage
	err := dump(opts, unix.RTM_GETADDR, req, func() { out = out[:0] }, func(msg []byte) error {
		a, err := DecodeAddr(msg)
		if errors.Is(err, ErrSkip) {
			return nil
		}
		if err != nil {
			return err
		}
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dump addresses in %s: %w", opts.where(), err)
	}
	return out, nil
}
