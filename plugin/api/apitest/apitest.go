//go:build linux

// Package apitest runs a whole fibgate API for tests, the way the daemon
// wires it: a kernel route listener on a throwaway network namespace, the
// external hardware backend attached to it as a driver, the gate's tracker
// and the API server on a temporary unix socket, with a client connection.
// Tests of the API, of external agents and of the CLI share it, so they
// exercise the real pieces rather than fakes. It needs root (namespaces)
// and skips otherwise.
package apitest

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/api/simctl"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/hw/external"
	"github.com/fibgate/fibgate/plugin/hw/sim"
	"github.com/fibgate/fibgate/plugin/kernel"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
)

// Daemon is a running API with everything behind it.
type Daemon struct {
	NS       string
	Listener *kernel.Listener
	Tracker  *gate.Tracker
	Backend  *external.Backend // nil with Options.Sim
	Sim      *sim.Sim          // nil without Options.Sim
	Socket   string
	Conn     *grpc.ClientConn
}

// Options change what Start builds.
type Options struct {
	// Policy is the gate's policy; zero means gate.DefaultPolicy().
	Policy gate.Policy
	// Server options are added after apitest's own (socket, gate, ...).
	Server []api.Option
	// Sim attaches the simulated ASIC (reporting only, no forwarding) as
	// the listener's driver, with its controls in the API, instead of the
	// external backend.
	Sim bool
	// SimConfig is the simulator's configuration with Sim; zero means
	// sim.DefaultConfig().
	SimConfig *sim.Config
	// Links are interfaces (dummy or veth) created in the namespace before
	// the listener starts; default "eth1".
	Links []string
}

// SocketDir returns a fresh short directory for a unix socket (the path of
// a socket may not exceed 107 bytes, which t.TempDir can), removed when the
// test ends.
func SocketDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "fg")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Start builds and runs the daemon; everything stops, and is waited for,
// when the test ends. It returns once the health service says SERVING.
func Start(tb testing.TB, o Options) *Daemon {
	tb.Helper()
	d := StartGate(tb, o)
	opts := []api.Option{
		api.WithUnixSocket(d.Socket),
		api.WithGate(d.Tracker),
		api.WithListenerStats(d.Listener),
		api.WithLinkNames(d.Listener.LinkName),
		api.WithReady(d.Tracker.Ready()),
		api.WithShutdownTimeout(2 * time.Second),
	}
	if d.Sim != nil {
		opts = append(opts, api.WithSim(simctl.New(d.Sim)))
	} else {
		opts = append(opts, api.WithAgents(d.Backend))
	}
	srv, err := api.New(append(opts, o.Server...)...)
	if err != nil {
		tb.Fatalf("api.New: %v", err)
	}
	Serve(tb, srv)
	d.Conn = Dial(tb, d.Socket)
	WaitServing(tb, d.Conn)
	return d
}

// StartGate builds and runs everything but the API server (Socket is set
// but nobody listens there), for tests that run servers of their own.
func StartGate(tb testing.TB, o Options) *Daemon {
	tb.Helper()
	ns := kerneltest.NewNS(tb)
	if o.Links == nil {
		o.Links = []string{"eth1"}
	}
	for _, l := range o.Links {
		kerneltest.AddLink(tb, ns, l)
	}
	if o.Policy.Scopes == nil {
		o.Policy = gate.DefaultPolicy()
	}
	d := &Daemon{NS: ns, Socket: filepath.Join(SocketDir(tb), "fibgate.sock")}
	var driver fib.Driver
	if o.Sim {
		cfg := sim.DefaultConfig()
		if o.SimConfig != nil {
			cfg = *o.SimConfig
		}
		s, err := sim.New(cfg, sim.WithNetNS(ns), sim.WithoutForwarding())
		if err != nil {
			tb.Fatalf("sim: %v", err)
		}
		d.Sim, driver = s, s
	} else {
		d.Backend = external.New()
		driver = d.Backend
	}
	d.Listener = kernel.NewListener(kernel.WithNetNS(ns), kernel.WithDriver(driver), kernel.WithSetNotifyMode(fib.NotifyAll))
	var err error
	if d.Tracker, err = gate.NewTracker(d.Listener, o.Policy); err != nil {
		tb.Fatalf("tracker: %v", err)
	}
	run(tb, "listener", d.Listener.Run)
	if d.Sim != nil {
		run(tb, "sim", func(ctx context.Context) error { return d.Sim.Run(ctx, d.Listener) })
	} else {
		d.Backend.Bind(d.Listener)
	}
	run(tb, "tracker", d.Tracker.Run)
	return d
}

// Serve runs srv until the test ends, and waits for it to stop.
func Serve(tb testing.TB, srv *api.Server) {
	tb.Helper()
	run(tb, "api server", srv.Serve)
}

// run runs f until the test ends; cleanups run last-in first-out, so what
// started later stops first.
func run(tb testing.TB, name string, f func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f(ctx); err != nil {
			tb.Errorf("%s: %v", name, err)
		}
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
	})
}

// Dial connects to a unix socket without TLS; the connection closes when
// the test ends.
func Dial(tb testing.TB, socket string) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient("unix:"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// WaitServing waits (10 s at most) until the server's health says SERVING.
func WaitServing(tb testing.TB, conn *grpc.ClientConn) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := healthpb.NewHealthClient(conn)
	for {
		r, err := h.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("API never became SERVING (last: %v, %v)", r.GetStatus(), err)
		case <-time.After(10 * time.Millisecond): // polling with a deadline
		}
	}
}

// WaitState waits (10 s at most) until the tracker holds prefix in table
// in one of the given states (any state when none is given) and returns it.
func (d *Daemon) WaitState(tb testing.TB, table uint32, prefix string, states ...gate.State) gate.RouteState {
	tb.Helper()
	p := netip.MustParsePrefix(prefix)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, ok := d.Tracker.Get(table, p)
		if ok && (len(states) == 0 || slices.Contains(states, st.State)) {
			return st
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s in table %d never reached %v (now %v, known %t)", prefix, table, states, st.State, ok)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}
