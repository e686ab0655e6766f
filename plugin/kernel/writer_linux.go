package kernel

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/fibgate/fibgate/plugin/fib"
)

// RouteOp is one route to write: added or replaced in place (the kernel's
// NLM_F_CREATE|NLM_F_REPLACE), or deleted.
type RouteOp struct {
	Route  fib.Route
	Delete bool
}

// RouteWriter writes routes in batches: many requests go out in one
// sendmsg, and the kernel's acknowledgements come back matched to them by
// sequence number. A full table written one request and one ack at a time
// (vishvananda/netlink's Handle) spends most of its time in system calls
// and wake-ups; FRR's zebra batches the same way. It is not safe for
// concurrent use.
type RouteWriter struct {
	fd  int
	seq uint32
	buf []byte
	rcv []byte
}

// writeBatch is how many requests go out in one sendmsg: their acks (36
// bytes each with NETLINK_CAP_ACK) fit a small receive buffer.
const writeBatch = 256

// NewRouteWriter opens a netlink socket in the named namespace ("" for the
// caller's).
func NewRouteWriter(ns string) (*RouteWriter, error) {
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
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	return &RouteWriter{fd: fd, rcv: make([]byte, 1<<16)}, nil
}

// Close closes the socket.
func (w *RouteWriter) Close() error { return unix.Close(w.fd) }

// Write carries out ops in order and returns one error per op (nil: done),
// each the kernel's errno (unix.Errno: ESRCH for a delete of a route that
// is not there, ENETUNREACH for a gateway that is not reachable, ...). An
// error that stops the whole batch (the socket failed) is given to every op
// not acknowledged yet.
func (w *RouteWriter) Write(ops []RouteOp) []error {
	errs := make([]error, len(ops))
	for start := 0; start < len(ops); start += writeBatch {
		end := min(start+writeBatch, len(ops))
		w.batch(ops[start:end], errs[start:end])
	}
	return errs
}

func (w *RouteWriter) batch(ops []RouteOp, errs []error) {
	w.buf = w.buf[:0]
	first := w.seq + 1
	for i := range ops {
		w.seq++
		m := RouteMessage{Type: unix.RTM_NEWROUTE, NLFlags: unix.NLM_F_REQUEST | unix.NLM_F_ACK | unix.NLM_F_CREATE | unix.NLM_F_REPLACE,
			Seq: w.seq, Route: ops[i].Route}
		m.Route.Flags = 0
		if ops[i].Delete {
			m.Type, m.NLFlags = unix.RTM_DELROUTE, unix.NLM_F_REQUEST|unix.NLM_F_ACK
			// Match any scope and type, as `ip route del` does.
			m.Route.Scope, m.Route.Type = unix.RT_SCOPE_NOWHERE, 0
		}
		w.buf = append(w.buf, EncodeRoute(m)...)
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
	acked := make([]bool, len(ops))
	for left := len(ops); left > 0; {
		n, _, err := unix.Recvfrom(w.fd, w.rcv, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			fail(fmt.Errorf("read route acks: %w", err))
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
			if binary.NativeEndian.Uint16(msg[4:]) != unix.NLMSG_ERROR || l < nlmsgHdrLen+4 {
				continue
			}
			i := int(binary.NativeEndian.Uint32(msg[8:]) - first)
			if i < 0 || i >= len(ops) || acked[i] {
				continue // an answer to an earlier, abandoned batch
			}
			acked[i] = true
			left--
			if code := int32(binary.NativeEndian.Uint32(msg[nlmsgHdrLen:])); code < 0 {
				errs[i] = syscall.Errno(-code)
			}
		}
	}
}
