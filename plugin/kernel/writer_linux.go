package kernel

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/fibgate/fibgate/plugin/fib"
)

// RouteWriter writes routes in batches: many requests go out in one
// sendmsg, and the kernel's acknowledgements come back matched to them by
// sequence number. A full table written one request and one ack at a time
// (vishvananda/netlink's Handle) spends most of its time in system calls
// and wake-ups; FRR's zebra batches the same way. It is not safe for
// concurrent use.
type RouteWriter struct {
	fd   int
	seq  uint32
	buf  []byte
	rcv  []byte
	veto Vetoer
}

// writeBatch is how many requests go out in one sendmsg: their answers,
// should every one fail (36 bytes each with NETLINK_CAP_ACK), fit a small
// receive buffer.
const writeBatch = 256

// WriterOption configures a RouteWriter.
type WriterOption func(*RouteWriter)

// WithVetoer makes the writer ask v before it adds or replaces routes
// (Vetoer): a user-space driver refuses them as a kernel driver would.
func WithVetoer(v Vetoer) WriterOption { return func(w *RouteWriter) { w.veto = v } }

// NewRouteWriter opens a netlink socket in the named namespace ("" for the
// caller's).
func NewRouteWriter(ns string, opts ...WriterOption) (*RouteWriter, error) {
	fd, err := openSocket(ns, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind netlink socket: %w", err)
	}
	// Acks without a copy of the request: a batch's answers stay small.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	// With the kernel's reason for a refusal (extended acks).
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	w := &RouteWriter{fd: fd, rcv: make([]byte, 1<<16)}
	for _, o := range opts {
		o(w)
	}
	return w, nil
}

// Close closes the socket.
func (w *RouteWriter) Close() error { return unix.Close(w.fd) }

// Write carries out ops in order and returns one error per op (nil: done),
// each the kernel's errno (unix.Errno: ESRCH for a delete of a route that
// is not there, ENETUNREACH for a gateway that is not reachable, ...), as
// an *AckError when the kernel said why. An error that stops the whole
// batch (the socket failed) is given to every op not acknowledged yet.
// With a Vetoer, the ops it refuses are not sent and get its error.
func (w *RouteWriter) Write(ops []RouteOp) []error {
	if w.veto == nil {
		return w.write(ops)
	}
	errs := w.veto.Veto(ops)
	if len(errs) != len(ops) {
		errs = make([]error, len(ops))
	}
	pass := make([]RouteOp, 0, len(ops))
	idx := make([]int, 0, len(ops))
	for i := range ops {
		if errs[i] == nil {
			pass, idx = append(pass, ops[i]), append(idx, i)
		}
	}
	perrs := w.write(pass)
	w.veto.Written(pass, perrs)
	for j, i := range idx {
		errs[i] = perrs[j]
	}
	return errs
}

func (w *RouteWriter) write(ops []RouteOp) []error {
	errs := make([]error, len(ops))
	for start := 0; start < len(ops); start += writeBatch {
		end := min(start+writeBatch, len(ops))
		w.batch(ops[start:end], errs[start:end])
	}
	return errs
}

// Rewrite writes routes into the kernel again so that the hardware
// programs them afresh: the kernel never asks a driver to program a route
// again by itself, and replacing an IPv4 route with an identical one is a
// no-op (kernel-semantics behaviour 12). So each route is deleted, matched
// exactly (Exact: a route someone changed meanwhile is left alone and its
// error is ESRCH), and the deleted ones are added back as they were, only
// where their place is still free (Exclusive: a route someone added
// meanwhile stays, EEXIST). Drivers see the route go and come back, with
// its flags cleared; it is missing from the kernel between its delete and
// its add: tens of microseconds for one route, up to a few milliseconds for
// a batch of 256 (10,000 routes are written again in 0.3-0.5 s).
//
// It returns one error per route; one that was deleted and could not be
// added back matches ErrNotAddedBack (and the kernel's errno). Routes with
// attributes the model does not keep (ErrUnmodelled) and kernel-owned
// address routes (ErrAddressRoute) are not touched.
func (w *RouteWriter) Rewrite(routes []fib.Route) []error {
	errs := make([]error, len(routes))
	var dels []RouteOp
	var idx []int
	for i := range routes {
		if err := rewritable(&routes[i]); err != nil {
			errs[i] = err
			continue
		}
		r := writable(routes[i])
		dels, idx = append(dels, RouteOp{Route: r, Delete: true, Exact: true}), append(idx, i)
	}
	var adds []RouteOp
	var addIdx []int
	for j, err := range w.Write(dels) {
		if err != nil {
			errs[idx[j]] = fmt.Errorf("rewrite %s: delete: %w", &routes[idx[j]], err)
			continue
		}
		adds, addIdx = append(adds, RouteOp{Route: dels[j].Route, Exclusive: true}), append(addIdx, idx[j])
	}
	for j, err := range w.Write(adds) {
		if err != nil {
			errs[addIdx[j]] = fmt.Errorf("rewrite %s: %w: %w", &routes[addIdx[j]], ErrNotAddedBack, err)
		}
	}
	return errs
}

// batch sends ops in one sendmsg and reads the answers. Only the last
// request asks for an acknowledgement: the kernel answers a failed
// request whatever its flags, handles the requests of one message in
// order and queues its answers in that order, so when the last one's
// acknowledgement is read, every request before it without an answer
// succeeded. (An acknowledgement a request, as before, was a message the
// kernel built and this loop read per route.) Answers the receive buffer
// could not hold make the read fail (ENOBUFS) before the last
// acknowledgement, and every request without an answer gets that error.
func (w *RouteWriter) batch(ops []RouteOp, errs []error) {
	w.buf = w.buf[:0]
	first := w.seq + 1
	for i := range ops {
		w.seq++
		var ack uint16
		if i == len(ops)-1 {
			ack = unix.NLM_F_ACK
		}
		m := RouteMessage{Type: unix.RTM_NEWROUTE, NLFlags: unix.NLM_F_REQUEST | ack | unix.NLM_F_CREATE | unix.NLM_F_REPLACE,
			Seq: w.seq, Route: writable(ops[i].Route)}
		switch {
		case ops[i].Delete:
			m.Type, m.NLFlags = unix.RTM_DELROUTE, unix.NLM_F_REQUEST|ack
			if !ops[i].Exact {
				// Match any scope and type, as `ip route del` does.
				m.Route.Scope, m.Route.Type = unix.RT_SCOPE_NOWHERE, 0
			}
		case ops[i].Exclusive:
			m.NLFlags = unix.NLM_F_REQUEST | ack | unix.NLM_F_CREATE | unix.NLM_F_EXCL
		}
		w.buf = appendRoute(w.buf, m)
	}
	fail := func(err error) {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	if err := unix.Sendto(w.fd, w.buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		fail(fmt.Errorf("send %d route requests: %w", len(ops), err))
		return
	}
	answered := make([]bool, len(ops))
	for !answered[len(ops)-1] {
		n, _, err := unix.Recvfrom(w.fd, w.rcv, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			for i := range errs {
				if !answered[i] {
					errs[i] = fmt.Errorf("read route acks: %w", err)
				}
			}
			return
		}
		b := w.rcv[:n]
		for len(b) >= nlmsgHdrLen {
			l := int(binary.NativeEndian.Uint32(b))
			if l < nlmsgHdrLen || l > len(b) {
				break
			}
			msg := b[:l]
			b = b[align4(l):]
			a, ok := decodeAck(msg)
			if !ok {
				continue
			}
			i := int(a.seq - first)
			if i < 0 || i >= len(ops) || answered[i] {
				continue // an answer to an earlier, abandoned batch
			}
			answered[i] = true
			switch {
			case a.errno != 0 && a.msg != "":
				errs[i] = &AckError{Errno: syscall.Errno(a.errno), Msg: a.msg}
			case a.errno != 0:
				errs[i] = syscall.Errno(a.errno)
			}
		}
	}
}
