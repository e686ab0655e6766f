//go:build linux

package kernel

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fibgate/fibgate/plugin/fib"
)

// scriptConn plays the kernel's side of a dump: for each request it
// answers with the datagrams script returns for that attempt.
type scriptConn struct {
	script   func(attempt int, seq uint32) [][]byte
	attempts int
	queue    [][]byte
}

const scriptPort = 4242

func (c *scriptConn) send(req []byte) error {
	c.attempts++
	c.queue = c.script(c.attempts, binary.NativeEndian.Uint32(req[8:]))
	return nil
}

func (c *scriptConn) recv(b []byte) (int, bool, error) {
	if len(c.queue) == 0 {
		return 0, false, errors.New("script ran out of datagrams")
	}
	d := c.queue[0]
	c.queue = c.queue[1:]
	if len(d) == 0 { // a datagram from another process
		return copy(b, "from user space, not the kernel"), false, nil
	}
	return max(copy(b, d), len(d)), true, nil
}

func (c *scriptConn) port() uint32 { return scriptPort }

// stamp returns msg with the given nlmsg flags, seq and pid.
func stamp(msg []byte, flags uint16, seq, pid uint32) []byte {
	msg = append([]byte(nil), msg...)
	binary.NativeEndian.PutUint16(msg[6:], flags)
	binary.NativeEndian.PutUint32(msg[8:], seq)
	binary.NativeEndian.PutUint32(msg[12:], pid)
	return msg
}

// control builds NLMSG_DONE or NLMSG_ERROR carrying errno (0 = none) and
// optional extack attributes.
func control(typ uint16, flags uint16, seq uint32, errno int32, extack string) []byte {
	b := make([]byte, nlmsgHdrLen+4)
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	binary.NativeEndian.PutUint32(b[12:], scriptPort)
	binary.NativeEndian.PutUint32(b[16:], uint32(-errno))
	if typ == nlmsgError {
		b = append(b, make([]byte, nlmsgHdrLen)...) // the capped request header
		if extack != "" {
			text := append([]byte(extack), 0)
			b = binary.NativeEndian.AppendUint16(b, uint16(rtaHdrLen+len(text)))
			b = binary.NativeEndian.AppendUint16(b, unix.NLMSGERR_ATTR_MSG)
			b = append(b, text...)
			for len(b)%4 != 0 {
				b = append(b, 0)
			}
		}
	}
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	return b
}

func routeMsg(prefix string) []byte {
	return EncodeRoute(RouteMessage{Type: rtmNewRoute, Route: fib.Route{Table: 254, Prefix: pfx(prefix), Type: fib.TypeUnicast}})
}

// collect runs dumpOn against a script and returns the prefixes seen after
// the last reset.
func collect(t *testing.T, c *scriptConn) ([]string, int, error) {
	t.Helper()
	var got []string
	resets := 0
	req := make([]byte, nlmsgHdrLen+rtmsgLen)
	err := dumpOn(c, unix.RTM_GETROUTE, req, func() { got = nil; resets++ }, func(msg []byte) error {
		m, err := DecodeRoute(msg)
		if err != nil {
			return err
		}
		got = append(got, m.Route.Prefix.String())
		return nil
	})
	return got, resets, err
}

func TestDumpRestartsWhenInterrupted(t *testing.T) {
	c := &scriptConn{script: func(attempt int, seq uint32) [][]byte {
		intr := uint16(0)
		if attempt == 1 {
			intr = unix.NLM_F_DUMP_INTR
		}
		return [][]byte{
			append(stamp(routeMsg("10.0.0.0/8"), unix.NLM_F_MULTI, seq, scriptPort), stamp(routeMsg("10.1.0.0/16"), unix.NLM_F_MULTI|intr, seq, scriptPort)...),
			append(stamp(routeMsg("10.2.0.0/16"), unix.NLM_F_MULTI, seq, scriptPort), control(nlmsgDone, unix.NLM_F_MULTI, seq, 0, "")...),
		}
	}}
	got, resets, err := collect(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if c.attempts != 2 || resets != 2 || strings.Join(got, " ") != "10.0.0.0/8 10.1.0.0/16 10.2.0.0/16" {
		t.Errorf("attempts %d, resets %d, got %v; want a clean second dump", c.attempts, resets, got)
	}
}

func TestDumpGivesUpWhenAlwaysInterrupted(t *testing.T) {
	c := &scriptConn{script: func(_ int, seq uint32) [][]byte {
		return [][]byte{control(nlmsgDone, unix.NLM_F_MULTI|unix.NLM_F_DUMP_INTR, seq, 0, "")}
	}}
	_, _, err := collect(t, c)
	if !errors.Is(err, ErrDumpInterrupted) || c.attempts != dumpRetries {
		t.Errorf("after %d attempts: %v, want ErrDumpInterrupted after %d", c.attempts, err, dumpRetries)
	}
}

func TestDumpIgnoresStaleAndForeignMessages(t *testing.T) {
	c := &scriptConn{script: func(_ int, seq uint32) [][]byte {
		return [][]byte{
			stamp(routeMsg("10.9.0.0/16"), unix.NLM_F_MULTI, seq-1, scriptPort), // an older request
			stamp(routeMsg("10.8.0.0/16"), unix.NLM_F_MULTI, seq, scriptPort+1), // another socket
			nil, // a datagram from user space
			append(stamp(routeMsg("10.0.0.0/8"), unix.NLM_F_MULTI, seq, scriptPort), control(nlmsgDone, unix.NLM_F_MULTI, seq, 0, "")...),
		}
	}}
	got, _, err := collect(t, c)
	if err != nil || strings.Join(got, " ") != "10.0.0.0/8" {
		t.Errorf("got %v, %v; want only 10.0.0.0/8", got, err)
	}
}

func TestDumpReportsKernelErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply func(seq uint32) []byte
		errno unix.Errno
		text  string
	}{
		{"NLMSG_ERROR with extended ack", func(seq uint32) []byte {
			return control(nlmsgError, unix.NLM_F_CAPPED|unix.NLM_F_ACK_TLVS, seq, int32(unix.EINVAL), "Invalid header for route dump request")
		}, unix.EINVAL, "Invalid header for route dump request"},
		{"NLMSG_ERROR without", func(seq uint32) []byte { return control(nlmsgError, 0, seq, int32(unix.EPERM), "") }, unix.EPERM, ""},
		{"NLMSG_DONE with an error", func(seq uint32) []byte { return control(nlmsgDone, unix.NLM_F_MULTI, seq, int32(unix.EMSGSIZE), "") }, unix.EMSGSIZE, "dump ended with error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &scriptConn{script: func(_ int, seq uint32) [][]byte { return [][]byte{tc.reply(seq)} }}
			_, _, err := collect(t, c)
			if !errors.Is(err, tc.errno) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("got %v, want %v mentioning %q", err, tc.errno, tc.text)
			}
		})
	}
}

func TestDumpRejectsTruncatedDatagram(t *testing.T) {
	c := &scriptConn{script: func(_ int, seq uint32) [][]byte {
		return [][]byte{make([]byte, maxDatagram+1)}
	}}
	if _, _, err := collect(t, c); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Errorf("oversized datagram: %v", err)
	}
}
