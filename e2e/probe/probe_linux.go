package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fibgate/fibgate/internal/nsrun"
)

// Port is the UDP port probes are sent to and received on.
const Port = 9999

// DefaultWindow is how many probes per destination a Probe remembers by
// default: 17 minutes at 1,000 per second.
const DefaultWindow = 1 << 20

// Config says where probes go from and to.
type Config struct {
	// From is the network namespace probes leave from.
	From string
	// To are the destinations, any mix of IPv4 and IPv6.
	To []netip.Addr
	// At names the namespaces that may receive them (name -> namespace).
	// A destination is received in each of them that has it as a local
	// address: an anycast address in several places is received in all.
	At map[string]string
	// Every is the time between probes (default 1 ms: 1,000 per second
	// to each destination).
	Every time.Duration
	// Window is how many probes per destination are remembered (default
	// DefaultWindow); Each and Tally see the last Window only.
	Window int
}

// Probe sends probes until Close. Its methods are safe to call while it
// runs.
type Probe struct {
	cfg   Config
	dsts  []netip.Addr
	names []string         // receiver names, sorted; index+1 is stored in got
	at    [][]int          // per destination: indexes of the names that receive it
	sent  []atomic.Int64   // ring: when probe seq%Window left (Unix ns)
	got   [][]atomic.Int32 // per destination, ring: 1+index of the receiver, 0 if none
	count [][]atomic.Int64 // per destination and receiver: probes received
	next  atomic.Uint64    // the next sequence number to send
	stop  context.CancelFunc
	conns []io.Closer
	wg    sync.WaitGroup
	once  sync.Once
}

// Start opens the sockets and starts sending. It fails when a namespace
// cannot be entered or no namespace of At has a destination.
func Start(cfg Config) (*Probe, error) {
	if cfg.Every <= 0 {
		cfg.Every = time.Millisecond
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if len(cfg.To) == 0 {
		return nil, errors.New("probe: no destination")
	}
	p := &Probe{cfg: cfg, dsts: cfg.To, sent: make([]atomic.Int64, cfg.Window)}
	for name := range cfg.At {
		p.names = append(p.names, name)
	}
	sort.Strings(p.names)
	ctx, cancel := context.WithCancel(context.Background())
	p.stop = cancel
	fail := func(err error) (*Probe, error) {
		p.Close()
		return nil, err
	}
	seen := map[string]bool{} // a namespace two names share receives once
	p.at = make([][]int, len(p.dsts))
	p.got = make([][]atomic.Int32, len(p.dsts))
	p.count = make([][]atomic.Int64, len(p.dsts))
	for d, dst := range p.dsts {
		p.got[d] = make([]atomic.Int32, cfg.Window)
		p.count[d] = make([]atomic.Int64, len(p.names))
		clear(seen)
		for i, name := range p.names {
			ns := cfg.At[name]
			if seen[ns] {
				continue
			}
			var pc net.PacketConn
			err := nsrun.Do(ns, func() (err error) {
				pc, err = net.ListenUDP(network(dst), net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, Port)))
				return err
			})
			if errors.Is(err, syscall.EADDRNOTAVAIL) {
				continue // not an address of this namespace
			}
			if err != nil {
				return fail(fmt.Errorf("probe: receive %s in %s (%s): %w", dst, name, ns, err))
			}
			seen[ns] = true
			p.at[d] = append(p.at[d], i)
			p.conns = append(p.conns, pc)
			p.wg.Add(1)
			go p.receive(pc, d, i)
		}
		if len(p.at[d]) == 0 {
			return fail(fmt.Errorf("probe: no namespace of %v has the address %s", p.names, dst))
		}
	}
	// Unconnected sockets: before a destination is reachable, connect()
	// would fail; a probe that cannot leave is lost like any other.
	senders := make([]net.PacketConn, len(p.dsts))
	for d, dst := range p.dsts {
		wild := netip.IPv4Unspecified()
		if dst.Is6() {
			wild = netip.IPv6Unspecified()
		}
		err := nsrun.Do(cfg.From, func() (err error) {
			senders[d], err = net.ListenUDP(network(dst), net.UDPAddrFromAddrPort(netip.AddrPortFrom(wild, 0)))
			return err
		})
		if err != nil {
			return fail(fmt.Errorf("probe: send from %s: %w", cfg.From, err))
		}
		p.conns = append(p.conns, senders[d])
	}
	p.wg.Add(1)
	go p.send(ctx, senders)
	return p, nil
}

func network(a netip.Addr) string {
	if a.Is4() {
		return "udp4"
	}
	return "udp6"
}

func (p *Probe) send(ctx context.Context, senders []net.PacketConn) {
	defer p.wg.Done()
	tick := time.NewTicker(p.cfg.Every)
	defer tick.Stop()
	buf := make([]byte, 8)
	to := make([]net.Addr, len(p.dsts))
	for d, dst := range p.dsts {
		to[d] = net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, Port))
	}
	w := uint64(p.cfg.Window)
	start := time.Now()
	var seq uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// A busy machine drops ticks: send what is due by now, so the
		// rate holds (at most maxBurst at once after a long stall).
		due := uint64(time.Since(start)/p.cfg.Every) + 1
		if due > seq+maxBurst { // a long stall: its probes are not sent late
			start = start.Add(time.Duration(due-seq-maxBurst) * p.cfg.Every)
			due = seq + maxBurst
		}
		for seq < due {
			i := seq % w
			for d := range p.dsts {
				p.got[d][i].Store(0)
			}
			p.sent[i].Store(time.Now().UnixNano())
			p.next.Store(seq + 1)
			binary.BigEndian.PutUint64(buf, seq)
			for d, s := range senders {
				_, _ = s.WriteTo(buf, to[d]) // ENETUNREACH while there is no route: lost
			}
			seq++
		}
	}
}

// maxBurst bounds how many probes a late tick sends at once.
const maxBurst = 50

func (p *Probe) receive(pc net.PacketConn, d, who int) {
	defer p.wg.Done()
	buf := make([]byte, 64)
	w := uint64(p.cfg.Window)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if n < 8 {
			continue
		}
		seq := binary.BigEndian.Uint64(buf)
		if next := p.next.Load(); seq >= next || next-seq > w {
			continue // not ours, or older than the window
		}
		p.got[d][seq%w].Store(int32(who + 1))
		p.count[d][who].Add(1)
	}
}

// Close stops sending and receiving; probes in flight are not waited for.
func (p *Probe) Close() error {
	p.once.Do(func() {
		if p.stop != nil {
			p.stop()
		}
		for _, c := range p.conns {
			c.Close()
		}
		p.wg.Wait()
	})
	return nil
}

// Receivers returns the names of the namespaces that receive dst.
func (p *Probe) Receivers(dst netip.Addr) []string {
	d := p.index(dst)
	if d < 0 {
		return nil
	}
	var out []string
	for _, i := range p.at[d] {
		out = append(out, p.names[i])
	}
	return out
}

// Count returns how many probes to dst the namespace named at received.
func (p *Probe) Count(dst netip.Addr, at string) int {
	d := p.index(dst)
	i := sort.SearchStrings(p.names, at)
	if d < 0 || i == len(p.names) || p.names[i] != at {
		return 0
	}
	return int(p.count[d][i].Load())
}

func (p *Probe) index(dst netip.Addr) int {
	for d, x := range p.dsts {
		if x == dst {
			return d
		}
	}
	return -1
}

// Each calls fn, in order, for every probe to dst sent in [from, to) and
// still in the window, with where it arrived ("" when nowhere, so far).
func (p *Probe) Each(dst netip.Addr, from, to time.Time, fn func(sent time.Time, at string)) {
	d := p.index(dst)
	if d < 0 {
		return
	}
	w := uint64(p.cfg.Window)
	n := p.next.Load()
	lo := n - min(n, w)
	// sentAt's ok is false once the sender has begun to reuse seq's slot
	// (it stores the new time before it moves next past it): the oldest
	// probes leave the window while this reads.
	sentAt := func(seq uint64) (int64, bool) {
		ts := p.sent[seq%w].Load()
		return ts, p.next.Load() < seq+w
	}
	// Send times grow with the sequence number, and the probes that left
	// the window are the oldest: find the first in range.
	first := lo + uint64(sort.Search(int(n-lo), func(i int) bool {
		ts, ok := sentAt(lo + uint64(i))
		return ok && ts >= from.UnixNano()
	}))
	for seq := first; seq < n; seq++ {
		ts, ok := sentAt(seq)
		if !ok {
			continue
		}
		if ts >= to.UnixNano() {
			return
		}
		at := ""
		if who := p.got[d][seq%w].Load(); who > 0 {
			at = p.names[who-1]
		}
		fn(time.Unix(0, ts), at)
	}
}

// Tally is what became of the probes to one destination in a time range.
type Tally struct {
	Sent, Lost int
	// At counts the probes each receiver got.
	At map[string]int
}

// Tally counts the probes to dst sent in [from, to): those still missing
// count as lost, so leave the probes in flight (a millisecond or so; a
// loop ends with the TTL) out of the range.
func (p *Probe) Tally(dst netip.Addr, from, to time.Time) Tally {
	t := Tally{At: map[string]int{}}
	p.Each(dst, from, to, func(_ time.Time, at string) {
		t.Sent++
		if at == "" {
			t.Lost++
		} else {
			t.At[at]++
		}
	})
	return t
}
