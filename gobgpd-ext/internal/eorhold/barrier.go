package eorhold

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// family is the one address family of the barrier's session. GoBGP sends a
// neighbour the paths of its negotiated families only, so the barrier gets
// none of the unicast table; l2vpn-vpls is one GoBGP knows and gobgpd-ext
// has no use for.
const family = bgp.RF_VPLS

// holdTime is the barrier's BGP hold time, in seconds: the session lives
// for one restart, and GoBGP expects keepalives like from any neighbour.
const holdTime = 90

// barrier is the BGP speaker behind the neighbour Hold adds to GoBGP: it
// accepts GoBGP's one connection on a loopback port, answers OPEN with
// graceful restart for its family (not restarting itself), keeps the
// session up with keepalives and discards what GoBGP sends. Its End-of-RIB
// goes out when release is called.
type barrier struct {
	ln  net.Listener
	as  uint32
	id  string
	log *slog.Logger

	mu          sync.Mutex
	conn        net.Conn
	established bool
	released    bool
	eorSent     bool
	eorReceived bool // GoBGP sent its End-of-RIB: its sync finished
	changed     chan struct{}
	done        chan struct{} // closed when serve returns
	err         error
}

func newBarrier(ln net.Listener, as uint32, id string, log *slog.Logger) *barrier {
	return &barrier{ln: ln, as: as, id: id, log: log, changed: make(chan struct{}), done: make(chan struct{})}
}

// notify wakes whoever waits on a state change; call with mu held.
func (b *barrier) notify() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// state returns a snapshot and the channel closed at the next change.
func (b *barrier) state() (established, eorReceived bool, changed <-chan struct{}, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.established, b.eorReceived, b.changed, b.err
}

// serve accepts GoBGP's connection and runs the session until it ends or
// the listener is closed.
func (b *barrier) serve() {
	defer close(b.done)
	err := b.session()
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	if b.err == nil {
		b.err = errors.New("session ended")
	}
	b.established = false
	b.notify()
	b.mu.Unlock()
}

func (b *barrier) session() error {
	var conn net.Conn
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		// Only GoBGP, over loopback: the port is the namespace's own.
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok && a.IP.IsLoopback() {
			conn = c
			break
		}
		c.Close()
	}
	_ = b.ln.Close() // one session
	b.mu.Lock()
	b.conn = conn
	b.mu.Unlock()
	defer conn.Close()
	if err := b.send(b.open()); err != nil {
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	for {
		typ, body, err := readMessage(conn)
		if err != nil {
			return err
		}
		switch typ {
		case bgp.BGP_MSG_OPEN:
			if err := b.send(bgp.NewBGPKeepAliveMessage()); err != nil {
				return err
			}
		case bgp.BGP_MSG_KEEPALIVE:
			b.mu.Lock()
			first := !b.established
			b.established = true
			release := first && b.released && !b.eorSent
			b.notify()
			b.mu.Unlock()
			if first {
				go b.keepalive(stop)
			}
			if release {
				if err := b.sendEOR(); err != nil {
					return err
				}
			}
		case bgp.BGP_MSG_UPDATE:
			if isEOR(body) {
				b.mu.Lock()
				b.eorReceived = true
				b.notify()
				b.mu.Unlock()
			}
		case bgp.BGP_MSG_NOTIFICATION:
			return errors.New("notification from GoBGP")
		}
	}
}

// open is the barrier's OPEN: its family with graceful restart (restart
// state off, so GoBGP owes it nothing), four-octet AS numbers.
func (b *barrier) open() *bgp.BGPMessage {
	as2 := uint16(bgp.AS_TRANS)
	if b.as <= 0xffff {
		as2 = uint16(b.as)
	}
	caps := []bgp.ParameterCapabilityInterface{
		bgp.NewCapMultiProtocol(family),
		bgp.NewCapGracefulRestart(false, false, holdTime, []*bgp.CapGracefulRestartTuple{bgp.NewCapGracefulRestartTuple(family, true)}),
		bgp.NewCapFourOctetASNumber(b.as),
	}
	return bgp.NewBGPOpenMessage(as2, holdTime, b.id, []bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
}

func (b *barrier) keepalive(stop <-chan struct{}) {
	t := time.NewTicker(holdTime / 3 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := b.send(bgp.NewBGPKeepAliveMessage()); err != nil {
				return
			}
		}
	}
}

// release sends the End-of-RIB now, or once the session is up.
func (b *barrier) release() error {
	b.mu.Lock()
	b.released = true
	now := b.established && !b.eorSent
	b.mu.Unlock()
	if now {
		return b.sendEOR()
	}
	return nil
}

func (b *barrier) sendEOR() error {
	b.mu.Lock()
	if b.eorSent {
		b.mu.Unlock()
		return nil
	}
	b.eorSent = true
	b.mu.Unlock()
	return b.send(bgp.NewEndOfRib(family))
}

// send writes one message; concurrent senders are serialised.
func (b *barrier) send(m *bgp.BGPMessage) error {
	buf, err := m.Serialize()
	if err != nil {
		return fmt.Errorf("serialize %d: %w", m.Header.Type, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn == nil {
		return errors.New("no session")
	}
	_ = b.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := b.conn.Write(buf); err != nil {
		return fmt.Errorf("write to GoBGP: %w", err)
	}
	return nil
}

// close ends the session and the listener.
func (b *barrier) close() {
	_ = b.ln.Close()
	b.mu.Lock()
	if b.conn != nil {
		_ = b.conn.Close()
	}
	b.mu.Unlock()
	<-b.done
}

// readMessage reads one BGP message and returns its type and body.
func readMessage(r io.Reader) (uint8, []byte, error) {
	var hdr [bgp.BGP_HEADER_LENGTH]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[16:18]))
	if n < bgp.BGP_HEADER_LENGTH || n > 65535 {
		return 0, nil, fmt.Errorf("bad message length %d", n)
	}
	body := make([]byte, n-bgp.BGP_HEADER_LENGTH)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return hdr[18], body, nil
}

// isEOR says whether an UPDATE body is the End-of-RIB of the barrier's
// family: no withdrawn routes and no NLRI, and one MP_UNREACH_NLRI
// attribute of that family with nothing in it.
func isEOR(body []byte) bool {
	m, err := bgp.ParseBGPBody(&bgp.BGPHeader{Type: bgp.BGP_MSG_UPDATE, Len: uint16(len(body) + bgp.BGP_HEADER_LENGTH)}, body)
	if err != nil {
		return false
	}
	u, ok := m.Body.(*bgp.BGPUpdate)
	if !ok {
		return false
	}
	ok, eor := u.IsEndOfRib()
	return ok && eor == family
}
