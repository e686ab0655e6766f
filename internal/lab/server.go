//go:build linux

// Package lab builds the test labs of plugin/gobgp from real parts: network
// namespaces joined by veth pairs, FRR from the distribution, a stock
// gobgpd built from the module version in go.mod, and GoBGP's BgpServer in
// this process. Everything a helper starts is stopped when the test ends,
// also on failure.
package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/vishvananda/netns"
)

// serveHook is a GoBGP timing hook; Observe runs on the goroutine of
// BgpServer.Serve after each operation of its main loop, which makes it
// the one place to act on that goroutine:
//   - after StartBgp it runs once (then, if set), to take Serve's thread
//     back out of the namespace it opened its listener in;
//   - Serve never returns on its own (not even after StopBgp), so once
//     exit is set, the next operation's Observe calls runtime.Goexit.
type serveHook struct {
	then atomic.Pointer[func()]
	exit atomic.Bool
}

func (h *serveHook) Observe(op server.FSMOperation, _, _ time.Duration) {
	if op != server.FSMMgmtOp {
		return
	}
	if f := h.then.Swap(nil); f != nil {
		(*f)()
	}
	if h.exit.Load() {
		runtime.Goexit()
	}
}

// StartServer runs a BgpServer for the test with global settings g, inside
// the network namespace ns ("" for the test's own namespace). It listens
// on g.ListenPort, by default 179 in a namespace and nowhere otherwise. It
// is stopped, and its Serve goroutine ended, when the test ends.
//
// BgpServer opens its listening sockets in StartBgp, which runs on the
// goroutine of Serve, and a socket belongs to the namespace of the thread
// that opens it. So for a namespace, Serve starts on a goroutine locked to
// an OS thread that joined ns with setns(2); once StartBgp is done, the
// hook moves that thread back to the original namespace and unlocks it
// (accepted sessions stay in ns with their listener). Keeping Serve locked
// would work too, but every operation would then hand off between OS
// threads: measured 5x slower. If moving back fails, the thread stays
// locked and dies with the goroutine. Goroutines the server starts to dial
// out run in the test's namespace: peers must connect to this server.
func StartServer(tb testing.TB, ns string, g *api.Global) *server.BgpServer {
	tb.Helper()
	hook := &serveHook{}
	s := server.NewBgpServer(server.LoggerOption(NewLogger(tb, gobgplog.ErrorLevel)), server.TimingHookOption(hook))
	started := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		if ns != "" {
			runtime.LockOSThread()
			if err := enter(ns, hook); err != nil {
				started <- err
				return // the locked thread ends with the goroutine
			}
		}
		started <- nil
		s.Serve()
	}()
	if err := <-started; err != nil {
		tb.Fatal(err)
	}
	switch {
	case ns != "" && g.ListenPort == 0:
		g.ListenPort = 179
	case g.ListenPort == 0:
		g.ListenPort = -1 // no listener
	}
	if err := s.StartBgp(context.Background(), &api.StartBgpRequest{Global: g}); err != nil {
		tb.Fatalf("start bgp server: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drainPeers(ctx, tb, s)
		if err := s.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
			tb.Errorf("stop bgp server: %v", err)
		}
		hook.exit.Store(true)
		// Any operation: Serve answers it, then its hook exits. But the
		// hook runs after the answer, so StopBgp's own hook may already
		// see exit set and end Serve (a CI run hung so, under -race;
		// TestPolicyChangesOverTheAPIChangeTheScope hangs within 200
		// runs with -race without this). This operation then waits in
		// GoBGP's queue for ever (mgmtOperation has no context), so it
		// is left behind instead of hanging the test.
		go func() { _, _ = s.GetBgp(ctx, &api.GetBgpRequest{}) }()
		select {
		case <-exited:
		case <-ctx.Done():
			tb.Errorf("bgp server: Serve did not end")
		}
	})
	return s
}

// Peer describes a neighbour of an in-process server.
type Peer struct {
	Address string
	AS      uint32
	// Families to enable: "ipv4" and/or "ipv6" (unicast), or any other
	// by GoBGP's name ("l3vpn-ipv4-unicast", "ipv4-labelled-unicast").
	Families []string
	// Active makes the server connect (to RemotePort, from LocalAddress)
	// instead of waiting for the neighbour to.
	Active       bool
	RemotePort   uint32
	LocalAddress string
	// AddPathSend and AddPathReceive configure ADD-PATH (RFC 7911) for
	// every family: send up to AddPathSend paths a prefix, accept many.
	AddPathSend    uint32
	AddPathReceive bool
}

// AddPeer configures a neighbour with short timers, passive unless
// p.Active.
func AddPeer(tb testing.TB, s *server.BgpServer, p Peer) {
	tb.Helper()
	var afs []*api.AfiSafi
	for _, f := range p.Families {
		fam := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
		switch f {
		case "ipv4":
		case "ipv6":
			fam.Afi = api.Family_AFI_IP6
		default: // GoBGP's name: l3vpn-ipv4-unicast, ipv4-labelled-unicast, ...
			rf, err := bgp.GetRouteFamily(f)
			if err != nil {
				tb.Fatalf("peer %s: family %q: %v", p.Address, f, err)
			}
			afi, safi := bgp.RouteFamilyToAfiSafi(rf)
			fam = &api.Family{Afi: api.Family_Afi(afi), Safi: api.Family_Safi(safi)}
		}
		af := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: fam, Enabled: true}}
		if p.AddPathSend > 0 || p.AddPathReceive {
			af.AddPaths = &api.AddPaths{Config: &api.AddPathsConfig{SendMax: p.AddPathSend, Receive: p.AddPathReceive}}
		}
		afs = append(afs, af)
	}
	err := s.AddPeer(context.Background(), &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: p.Address, PeerAsn: p.AS},
		Transport: &api.Transport{PassiveMode: !p.Active, RemotePort: p.RemotePort, LocalAddress: p.LocalAddress},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 9, KeepaliveInterval: 3, ConnectRetry: 1}},
		AfiSafis:  afs,
	}})
	if err != nil {
		tb.Fatalf("add peer %s: %v", p.Address, err)
	}
}

// logger adapts GoBGP's logger to the test log, dropping what is below
// its level.
type logger struct {
	tb    testing.TB
	level atomic.Uint32
	done  atomic.Bool
}

// NewLogger returns a GoBGP logger that writes to the test log at level
// and above until the test ends (GoBGP goroutines may log later; those
// lines are dropped instead of panicking the test framework).
func NewLogger(tb testing.TB, level gobgplog.LogLevel) gobgplog.Logger {
	l := &logger{tb: tb}
	l.level.Store(uint32(level))
	tb.Cleanup(func() { l.done.Store(true) })
	return l
}

func (l *logger) log(level gobgplog.LogLevel, name, msg string, f gobgplog.Fields) {
	if level > gobgplog.LogLevel(l.level.Load()) || l.done.Load() {
		return
	}
	var b strings.Builder
	for k, v := range f {
		fmt.Fprintf(&b, " %s=%v", k, v)
	}
	l.tb.Logf("gobgp %s: %s%s", name, msg, b.String())
}

func (l *logger) Panic(msg string, f gobgplog.Fields) {
	l.log(gobgplog.PanicLevel, "panic", msg, f)
	panic(msg)
}
func (l *logger) Fatal(msg string, f gobgplog.Fields) { l.log(gobgplog.FatalLevel, "fatal", msg, f) }
func (l *logger) Error(msg string, f gobgplog.Fields) { l.log(gobgplog.ErrorLevel, "error", msg, f) }
func (l *logger) Warn(msg string, f gobgplog.Fields)  { l.log(gobgplog.WarnLevel, "warn", msg, f) }
func (l *logger) Info(msg string, f gobgplog.Fields)  { l.log(gobgplog.InfoLevel, "info", msg, f) }
func (l *logger) Debug(msg string, f gobgplog.Fields) { l.log(gobgplog.DebugLevel, "debug", msg, f) }
func (l *logger) SetLevel(level gobgplog.LogLevel)    { l.level.Store(uint32(level)) }
func (l *logger) GetLevel() gobgplog.LogLevel         { return gobgplog.LogLevel(l.level.Load()) }

// WaitEstablished waits until the server's session with neighbour is up.
func WaitEstablished(tb testing.TB, s *server.BgpServer, neighbour string, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var state api.PeerState_SessionState
		err := s.ListPeer(context.Background(), &api.ListPeerRequest{Address: neighbour}, func(p *api.Peer) {
			state = p.GetState().GetSessionState()
		})
		if err == nil && state == api.PeerState_ESTABLISHED {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("session with %s not established after %v (state %v, err %v)", neighbour, timeout, state, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// enter moves the calling (locked) thread into namespace ns and arms hook
// to move it back and unlock it after the next operation of Serve.
func enter(ns string, hook *serveHook) error {
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current netns: %w", err)
	}
	h, err := netns.GetFromPath(filepath.Join("/run/netns", ns))
	if err != nil {
		orig.Close()
		return fmt.Errorf("open netns %s: %w", ns, err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		orig.Close()
		return fmt.Errorf("enter netns %s: %w", ns, err)
	}
	back := func() {
		defer orig.Close()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}
	hook.then.Store(&back)
	return nil
}

// drainPeers takes every neighbour down and waits until GoBGP shows no
// established session. GoBGP v3.37's StopBgp resets its global config in
// the same step in which it deletes the neighbours, while the receive loops
// of established sessions, which read that config, are not yet ordered
// before it: the race detector reports it (about one teardown in eight).
// A session that went down through DisablePeer reaches the server loop as
// a state change after its receive loop ended, which orders those reads
// before the reset; ListPeer answers from the same loop.
func drainPeers(ctx context.Context, tb testing.TB, s *server.BgpServer) {
	established := func() []string {
		var up []string
		_ = s.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			if p.GetState().GetSessionState() == api.PeerState_ESTABLISHED {
				up = append(up, p.GetConf().GetNeighborAddress())
			}
		})
		return up
	}
	up := established()
	for _, a := range up {
		if err := s.DisablePeer(ctx, &api.DisablePeerRequest{Address: a, Communication: "test ends"}); err != nil {
			tb.Logf("disable peer %s: %v", a, err)
		}
	}
	for len(up) > 0 {
		select {
		case <-ctx.Done():
			tb.Logf("peers %v still established before stopping", up)
			return
		case <-time.After(10 * time.Millisecond): // polling GoBGP's state with a deadline
		}
		up = established()
	}
}
