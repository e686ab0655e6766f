//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fibgate/fibgate/e2e/clab"
	"github.com/fibgate/fibgate/internal/lab"
)

// fabricLab is e2e/labs/fabric, the lab users deploy with containerlab.
const fabricLab = "labs/fabric/fabric.clab.yml"

var (
	vip4 = netip.MustParseAddr("192.0.2.10")
	vip6 = netip.MustParseAddr("2001:db8:10::10")
)

// labUp builds a lab from its .clab.yml as `make lab` does, with this
// test's namespace prefix (so TestMain can prove nothing is left), and
// takes it down when the test ends.
func labUp(t *testing.T, file string) *clab.Lab {
	t.Helper()
	if testing.Short() {
		t.Skip("lab with namespaces and FRR: skipped in -short mode")
	}
	lab.RequireRoot(t)
	lab.RequireFRR(t)
	topo, err := clab.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	bin := binaries(t)
	for _, b := range []string{"gobgpd", "gobgp"} { // stock gobgpd for the sidecar leaf
		dst := filepath.Join(bin, b)
		if _, err := os.Stat(dst); err != nil {
			if err := os.Symlink(filepath.Join(lab.GobgpBinaries(t), b), dst); err != nil {
				t.Fatal(err)
			}
		}
	}
	state, err := os.MkdirTemp("", "fg-lab-")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(state) // Up makes it
	var log strings.Builder
	l, err := clab.Up(context.Background(), topo, clab.Options{StateDir: state, Bin: bin, KillWithParent: true,
		Prefix: fmt.Sprintf("%s%d-", lab.NSPrefix, os.Getpid()), Log: &log})
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, log.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range l.State.Procs {
				if b, err := os.ReadFile(p.Log); err == nil {
					lines := strings.Split(strings.TrimSpace(string(b)), "\n")
					t.Logf("--- %s/%s (tail) ---\n%s", p.Node, p.Name, strings.Join(lines[max(0, len(lines)-15):], "\n"))
				}
			}
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

// established waits until every FRR node of the lab has all its BGP
// sessions up.
func established(t *testing.T, l *clab.Lab, timeout time.Duration) {
	t.Helper()
	for _, n := range l.Topo.Nodes {
		if !n.FRR() {
			continue
		}
		lab.Eventually(t, timeout, n.Name+"'s BGP sessions", func() error {
			out, err := l.Vtysh(n.Name, "show bgp summary json")
			if err != nil {
				return err
			}
			var doc map[string]struct {
				Peers map[string]struct {
					State string `json:"state"`
				} `json:"peers"`
			}
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				return err
			}
			total := 0
			for fam, d := range doc {
				for a, p := range d.Peers {
					total++
					if p.State != "Established" {
						return fmt.Errorf("%s %s: %s", fam, a, p.State)
					}
				}
			}
			if total == 0 {
				return fmt.Errorf("no peers")
			}
			return nil
		})
	}
}

// apiConn connects to the fibgate API of a node of the lab.
func apiConn(t *testing.T, l *clab.Lab, node string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+filepath.Join(l.NodeDir(node), "run", "fibgate.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestLabFromTheClabFile brings up the lab users deploy with containerlab
// from the same file, and checks it does what its README says: every
// session up, the VIP reachable from host3 across the simulated ASICs,
// IPv4 and IPv6, at host1 (the primary); and `fiblab down` leaves
// nothing behind (TestMain checks namespaces and processes).
func TestLabFromTheClabFile(t *testing.T) {
	l := labUp(t, fabricLab)
	established(t, l, 60*time.Second)
	p := startProbe(t, l, "host3", []string{"host1", "host2"}, time.Millisecond)
	lab.Eventually(t, 30*time.Second, "probes reach the VIP at host1", func() error {
		for _, fam := range []int{4, 6} {
			if p.count(fam, "host1") == 0 {
				return fmt.Errorf("no IPv%d probe at host1 yet", fam)
			}
		}
		return nil
	})
	out, err := exec.Command("ip", "-n", l.NS("leaf1"), "rule").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "lookup 4242") {
		t.Errorf("leaf1 forwards from its sim's table: rules %s (%v)", out, err)
	}
}

// probe sends UDP probes with sequence numbers from one node to the VIP,
// over IPv4 and IPv6, and counts what each receiving node gets.
type probe struct {
	every time.Duration
	mu    sync.Mutex
	sent  [2][]time.Time // by family index: when each sequence number left
	got   [2][]atomic.Pointer[string]
	count func(fam int, node string) int
}

const probeCap = 1 << 20 // sequence numbers per family: 17 minutes at 1 kpps

func famIdx(fam int) int { return fam / 6 } // 4 -> 0, 6 -> 1

// inNS runs fn on a thread in the named namespace: sockets it opens stay
// there.
func inNS(ns string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("back to our namespace: %w (the thread stays locked and dies)", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

func startProbe(t *testing.T, l *clab.Lab, from string, to []string, every time.Duration) *probe {
	t.Helper()
	p := &probe{every: every}
	for i := range p.got {
		p.got[i] = make([]atomic.Pointer[string], probeCap)
	}
	var counts sync.Map // fam/node -> *atomic.Int64
	counter := func(fam int, node string) *atomic.Int64 {
		c, _ := counts.LoadOrStore(fmt.Sprint(fam, node), new(atomic.Int64))
		return c.(*atomic.Int64)
	}
	p.count = func(fam int, node string) int { return int(counter(fam, node).Load()) }
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var conns []io.Closer // closing them ends the receivers
	for _, node := range to {
		for _, c := range []struct {
			fam  int
			netw string
			addr string
		}{{4, "udp4", "0.0.0.0:9999"}, {6, "udp6", "[::]:9999"}} {
			var pc net.PacketConn
			if err := inNS(l.NS(node), func() (err error) { pc, err = net.ListenPacket(c.netw, c.addr); return err }); err != nil {
				t.Fatal(err)
			}
			name := node
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 64)
				for {
					n, _, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					if n >= 8 {
						seq := int(uint64(buf[0])<<56 | uint64(buf[1])<<48 | uint64(buf[2])<<40 | uint64(buf[3])<<32 | uint64(buf[4])<<24 | uint64(buf[5])<<16 | uint64(buf[6])<<8 | uint64(buf[7]))
						if seq < probeCap {
							p.got[famIdx(c.fam)][seq].Store(&name)
							counter(c.fam, name).Add(1)
						}
					}
				}
			}()
			conns = append(conns, pc)
		}
	}
	// Unconnected sockets: before the VIP is reachable, connect() fails.
	var senders [2]net.PacketConn
	dst := [2]net.Addr{&net.UDPAddr{IP: vip4.AsSlice(), Port: 9999}, &net.UDPAddr{IP: vip6.AsSlice(), Port: 9999}}
	for i, c := range []struct{ netw, addr string }{{"udp4", "0.0.0.0:0"}, {"udp6", "[::]:0"}} {
		if err := inNS(l.NS(from), func() (err error) { senders[i], err = net.ListenPacket(c.netw, c.addr); return err }); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, senders[i])
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		buf := make([]byte, 8)
		for seq := 0; seq < probeCap; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for i := 7; i >= 0; i-- {
				buf[7-i] = byte(seq >> (8 * i))
			}
			now := time.Now()
			p.mu.Lock()
			p.sent[0] = append(p.sent[0], now)
			p.sent[1] = append(p.sent[1], now)
			p.mu.Unlock()
			for i, s := range senders {
				_, _ = s.WriteTo(buf, dst[i]) // ENETUNREACH before first reachability is expected
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	})
	return p
}

// lost counts the probes of family fam sent in [from, to) that no
// receiver got, and where the others went.
func (p *probe) lost(fam int, from, to time.Time) (lost, sent int, at map[string]int) {
	p.mu.Lock()
	times := p.sent[famIdx(fam)]
	p.mu.Unlock()
	at = map[string]int{}
	for seq, ts := range times {
		if ts.Before(from) || !ts.Before(to) {
			continue
		}
		sent++
		if n := p.got[famIdx(fam)][seq].Load(); n != nil {
			at[*n]++
		} else {
			lost++
		}
	}
	return lost, sent, at
}
