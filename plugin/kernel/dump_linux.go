//go:build linux

package kernel

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// dump sends one NLM_F_DUMP request of type typ (req is the request with
// room for the nlmsghdr, which dump fills in) on a socket of its own in
// opts.NetNS and feeds each answer to each. When the kernel marks the dump
// NLM_F_DUMP_INTR it calls reset and starts over, up to dumpRetries times.
func dump(opts Options, typ uint16, req []byte, reset func(), each func(msg []byte) error) error {
	// A blocking socket: a dump is answered at once and the kernel paces
	// it to our reads (no overrun is possible), so the poller buys nothing.
	fd, err := openSocket(opts.NetNS, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("bind netlink socket: %w", err)
	}
	// Strict checking makes the kernel validate the request header instead
	// of guessing at it, and extended acks explain errors. Both are
	// best-effort: older kernels without them still dump.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	nsa, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		return fmt.Errorf("getsockname: unexpected address %T", sa)
	}
	return dumpOn(&nlConn{fd: fd, portID: nsa.Pid}, typ, req, reset, each)
}

// dumpConn is what a dump needs from a socket; tests replace it to script
// the kernel's answers (interrupted dumps, errors) that a real kernel does
// not produce on demand.
type dumpConn interface {
	send(req []byte) error
	// recv reads one datagram; n may exceed len(b) (MSG_TRUNC).
	recv(b []byte) (n int, fromKernel bool, err error)
	port() uint32
}

// nlConn is a blocking netlink socket.
type nlConn struct {
	fd     int
	portID uint32
}

func (c *nlConn) send(req []byte) error {
	return unix.Sendto(c.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

func (c *nlConn) recv(b []byte) (int, bool, error) {
	for {
		n, from, err := unix.Recvfrom(c.fd, b, unix.MSG_TRUNC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, false, err
		}
		nsa, ok := from.(*unix.SockaddrNetlink)
		return n, ok && nsa.Pid == 0, nil
	}
}

func (c *nlConn) port() uint32 { return c.portID }

// dumpOn runs the request/answer/retry loop of dump on c.
func dumpOn(c dumpConn, typ uint16, req []byte, reset func(), each func(msg []byte) error) error {
	buf := make([]byte, maxDatagram)
	seq := uint32(time.Now().UnixNano())
	for attempt := 1; ; attempt++ {
		seq++
		binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
		binary.NativeEndian.PutUint16(req[4:], typ)
		binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
		binary.NativeEndian.PutUint32(req[8:], seq)
		binary.NativeEndian.PutUint32(req[12:], 0)
		if err := c.send(req); err != nil {
			return fmt.Errorf("send dump request: %w", err)
		}
		reset()
		interrupted, err := readDump(c, buf, seq, each)
		if err != nil {
			return err
		}
		if !interrupted {
			return nil
		}
		if attempt == dumpRetries {
			return fmt.Errorf("%w, %d attempts", ErrDumpInterrupted, attempt)
		}
	}
}

// readDump reads the answer to the dump with sequence number seq until
// NLMSG_DONE and reports whether any part of it was flagged
// NLM_F_DUMP_INTR. Messages of other requests (stale sequence numbers or
// ports) and datagrams not from the kernel are ignored.
func readDump(c dumpConn, buf []byte, seq uint32, each func([]byte) error) (interrupted bool, err error) {
	var msgs [][]byte
	for {
		n, kernel, err := c.recv(buf)
		if err != nil {
			return false, fmt.Errorf("receive dump: %w", err)
		}
		if n > len(buf) {
			return false, fmt.Errorf("receive dump: datagram of %d bytes exceeds the %d-byte buffer", n, len(buf))
		}
		if !kernel {
			continue
		}
		msgs, err = splitMessages(msgs[:0], buf[:n])
		if err != nil {
			return false, fmt.Errorf("receive dump: %w", err)
		}
		for _, msg := range msgs {
			h, _, err := parseHeader(msg)
			if err != nil {
				return false, fmt.Errorf("receive dump: %w", err)
			}
			if h.Seq != seq || h.PID != c.port() {
				continue
			}
			if h.Flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch h.Type {
			case nlmsgDone:
				// NLMSG_DONE carries an int error (a dump can fail, also
				// at the start when the request is rejected), followed
				// directly by extended-ack attributes.
				if len(msg) >= nlmsgHdrLen+4 {
					if e := int32(binary.NativeEndian.Uint32(msg[nlmsgHdrLen:])); e < 0 {
						return false, fmt.Errorf("dump ended with error: %w%s", unix.Errno(-e), extack(msg, h.Flags, nlmsgHdrLen+4))
					}
				}
				return interrupted, nil
			case nlmsgError:
				if err := nlError(msg); err != nil {
					return false, err
				}
			case nlmsgNoop:
			default:
				if err := each(msg); err != nil {
					return false, err
				}
			}
		}
	}
}

// nlError decodes an NLMSG_ERROR: nil for an ack, else the errno with the
// extended-ack message when the kernel sent one.
func nlError(msg []byte) error {
	if len(msg) < nlmsgHdrLen+4 {
		return fmt.Errorf("kernel error message truncated (%d bytes)", len(msg))
	}
	e := int32(binary.NativeEndian.Uint32(msg[nlmsgHdrLen:]))
	if e == 0 {
		return nil
	}
	// struct nlmsgerr is the error and the request's header; with
	// NLM_F_CAPPED only the header, else the whole request. The
	// extended-ack attributes follow.
	flags := binary.NativeEndian.Uint16(msg[6:])
	off := nlmsgHdrLen + 4 + nlmsgHdrLen
	if flags&unix.NLM_F_CAPPED == 0 && len(msg) >= off {
		off = nlmsgHdrLen + 4 + align4(int(binary.NativeEndian.Uint32(msg[nlmsgHdrLen+4:])))
	}
	return fmt.Errorf("kernel: %w%s", unix.Errno(-e), extack(msg, flags, off))
}

// extack returns ": <text>" for the NLMSGERR_ATTR_MSG attribute at or after
// off when the message has NLM_F_ACK_TLVS, else "".
func extack(msg []byte, flags uint16, off int) string {
	if flags&unix.NLM_F_ACK_TLVS == 0 || off < 0 || off > len(msg) {
		return ""
	}
	ar := newAttrReader(msg[off:], off)
	for ar.next() {
		if ar.typ == unix.NLMSGERR_ATTR_MSG {
			return ": " + strings.TrimRight(string(ar.data), "\x00")
		}
	}
	return ""
}
