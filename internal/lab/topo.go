//go:build linux

package lab

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The lab's addressing: leaf–spine on 10.0.1.0/30 and fd00:1::/64,
// leaf–peer on 10.0.2.0/30 and fd00:2::/64.
const (
	LeafAS  = 65001
	SpineAS = 65002
	PeerAS  = 65003

	LeafSpine4 = "10.0.1.1"
	SpineLeaf4 = "10.0.1.2"
	LeafSpine6 = "fd00:1::1"
	SpineLeaf6 = "fd00:1::2"
	LeafPeer4  = "10.0.2.1"
	PeerLeaf4  = "10.0.2.2"
	LeafPeer6  = "fd00:2::1"
	PeerLeaf6  = "fd00:2::2"
)

// Topology is the lab of plugin/gobgp's tests:
//
//	peer (FRR, AS 65003) ── leaf (the speaker under test, AS 65001) ── spine (FRR, AS 65002)
//
// Each link carries one IPv4 and one IPv6 session. The leaf's speaker is
// started by the test (gobgpd or an in-process BgpServer), passive: the
// FRRs connect to it. The spine is where tests look for what the leaf
// really sent.
type Topology struct {
	Leaf, Spine, Peer string
	SpineFRR, PeerFRR *FRR
	peerNetworks      []netip.Prefix
}

// NewTopology builds the namespaces and links, the peer's only if
// withPeer. peerNetworks are what the peer announces from the start.
// Routers starts the FRRs.
func NewTopology(tb testing.TB, withPeer bool, peerNetworks ...netip.Prefix) *Topology {
	tb.Helper()
	if testing.Short() {
		tb.Skip("lab test with namespaces and FRR: skipped in -short mode")
	}
	RequireRoot(tb)
	RequireFRR(tb)
	t := &Topology{Leaf: NewNS(tb, "leaf"), Spine: NewNS(tb, "spine"), peerNetworks: peerNetworks}
	Link(tb, t.Leaf, "to-spine", LeafSpine4, LeafSpine6, t.Spine, "to-leaf", SpineLeaf4, SpineLeaf6)
	if withPeer {
		t.Peer = NewNS(tb, "peer")
		Link(tb, t.Leaf, "to-peer", LeafPeer4, LeafPeer6, t.Peer, "to-leaf", PeerLeaf4, PeerLeaf6)
	}
	return t
}

// Routers starts the FRRs and waits for their sessions with the leaf.
// Start the leaf's speaker first: an FRR whose first connections are
// refused backs off (1, 2, 4 s...) before it tries again.
func (t *Topology) Routers(tb testing.TB) {
	tb.Helper()
	t.SpineFRR = StartFRR(tb, t.Spine, SpineAS, BGPConfig(SpineAS, SpineLeaf4,
		[]Neighbour{{Address: LeafSpine4, AS: LeafAS}, {Address: LeafSpine6, AS: LeafAS}}, nil))
	if t.Peer != "" {
		t.PeerFRR = StartFRR(tb, t.Peer, PeerAS, BGPConfig(PeerAS, PeerLeaf4,
			[]Neighbour{{Address: LeafPeer4, AS: LeafAS}, {Address: LeafPeer6, AS: LeafAS}}, t.peerNetworks))
	}
	t.SpineFRR.WaitEstablished(LeafSpine4, 20*time.Second)
	t.SpineFRR.WaitEstablished(LeafSpine6, 20*time.Second)
	if t.PeerFRR != nil {
		t.PeerFRR.WaitEstablished(LeafPeer4, 20*time.Second)
		t.PeerFRR.WaitEstablished(LeafPeer6, 20*time.Second)
	}
}

// LeafNeighbours lists the sessions the leaf's speaker must configure.
func (t *Topology) LeafNeighbours() []Neighbour {
	ns := []Neighbour{{Address: SpineLeaf4, AS: SpineAS}, {Address: SpineLeaf6, AS: SpineAS}}
	if t.Peer != "" {
		ns = append(ns, Neighbour{Address: PeerLeaf4, AS: PeerAS}, Neighbour{Address: PeerLeaf6, AS: PeerAS})
	}
	return ns
}

// LeftBehind is what a TestMain runs after the tests: as root it reports
// (on stderr) every namespace of this process and every child process
// still there, and says whether anything was left, so the run fails when a
// test did not clean up after itself, also on failure.
func LeftBehind() bool {
	if os.Geteuid() != 0 {
		return false
	}
	bad := false
	if left, err := Leftovers(); err != nil || len(left) > 0 {
		fmt.Fprintf(os.Stderr, "cleanup: namespaces left: %v %v\n", left, err)
		bad = true
	}
	if c := Children(); len(c) > 0 {
		fmt.Fprintf(os.Stderr, "cleanup: child processes left: %v\n", c)
		bad = true
	}
	return bad
}

// Children lists the processes whose parent is this process; a TestMain
// calls it after the tests to prove that every daemon was stopped and
// reaped.
func Children() []string {
	self := strconv.Itoa(os.Getpid())
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == self {
			out = append(out, e.Name()+" "+s[strings.IndexByte(s, '('):i+1])
		}
	}
	return out
}
