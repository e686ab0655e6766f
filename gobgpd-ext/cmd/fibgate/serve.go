package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/api/simctl"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/hw/external"
	"github.com/fibgate/fibgate/plugin/hw/sim"
	"github.com/fibgate/fibgate/plugin/kernel"
)

const serveUsage = `Usage: fibgate serve [flags]

Runs the gate without BGP: follows the kernel FIB of a namespace, takes
hardware state from a backend, judges every gated prefix by the policy, and
serves the fibgate API (fibgate routes|watch|policy|hw|stats talk to it).
The BGP side comes with fibgated and gobgpd-ext.

Backends:
  kernel    a real switchdev driver sets the flags; fibgate only reads them (default)
  sim       the simulated ASIC programs routes with latency, capacity and
            failures, and forwards traffic from --sim-ports for real
  external  agents outside the kernel (SAI, P4, DPDK) program routes and
            report their state over the API's HardwareService

SIGINT or SIGTERM stops it cleanly: the sim removes its rules and table,
the API socket is removed. Exit status: 0 on a signal, 1 on a runtime error,
2 on bad flags, a missing namespace or missing privileges.

Flags:
`

// serveFlags are the daemon's settings; defaults are documented in --help.
type serveFlags struct {
	netns, backend, socket, listen string
	tlsCert, tlsKey, tlsCA         string
	policyFile, setNotify          string
	metrics                        string
	rcvbuf                         int
	verbose                        bool
	simMode, simPorts              string
	simLatency, simJitter          time.Duration
	simRate                        int
	simFailProbability             float64
}

func (f *serveFlags) register(fs *flag.FlagSet) {
	d := sim.DefaultConfig()
	fs.StringVar(&f.netns, "netns", "", "follow the named network namespace instead of the current one")
	fs.StringVar(&f.backend, "backend", "kernel", "hardware backend: kernel, sim or external")
	fs.StringVar(&f.socket, "socket", api.DefaultSocket, "unix socket of the API (created with mode 0600; its directory must exist)")
	fs.StringVar(&f.listen, "listen", "", "also serve the API on this TCP address (needs --tls-cert and --tls-key)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate for --listen")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS key for --listen")
	fs.StringVar(&f.tlsCA, "tls-client-ca", "", "require client certificates signed by this CA on --listen (mTLS)")
	fs.StringVar(&f.policyFile, "policy", "", "gating policy file (YAML, as `fibgate policy get` prints); default: gate every main-table prefix on hardware confirmation")
	fs.StringVar(&f.metrics, "metrics", "", "serve Prometheus metrics (fibgate_*) at http://ADDR/metrics, e.g. 127.0.0.1:9431 (default: off)")
	fs.StringVar(&f.setNotify, "set-notify", "", "write fib_notify_on_flag_change (0, 1 or 2) for IPv4 and IPv6 first (default: leave it)")
	fs.IntVar(&f.rcvbuf, "rcvbuf", kernel.DefaultRcvBuf, "notification socket receive buffer in bytes")
	fs.BoolVar(&f.verbose, "v", false, "log at info level (default: warnings)")
	fs.StringVar(&f.simMode, "sim-mode", "trap", "sim classifier: trap (netdevsim-like) or spectrum (mlxsw-like)")
	fs.StringVar(&f.simPorts, "sim-ports", "", "comma-separated data ports whose traffic the sim forwards from its hardware table")
	fs.DurationVar(&f.simLatency, "sim-latency", d.Latency, "sim programming latency")
	fs.DurationVar(&f.simJitter, "sim-jitter", d.Jitter, "sim programming jitter (uniform, added to the latency)")
	fs.IntVar(&f.simRate, "sim-rate", d.Rate, "sim programming rate in routes/s (0: unlimited)")
	fs.Float64Var(&f.simFailProbability, "sim-fail-probability", d.FailProbability, "probability that the sim fails to program a route")
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, serveUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return err
		}
		return usageError{fmt.Errorf("serve: %w (see fibgate serve --help)", err)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("serve takes no arguments, got %q", fs.Args())}
	}
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	d, err := f.build(log)
	if err != nil {
		return err
	}
	return classify(d.run(ctx, log), f.netns)
}

// daemon is the set of parts serve runs together.
type daemon struct {
	listener    *kernel.Listener
	asic        *sim.Sim
	tracker     *gate.Tracker
	server      *api.Server
	metricsAddr string
	registry    *prometheus.Registry
}

// build checks the flags and assembles the parts; nothing runs yet.
func (f *serveFlags) build(log *slog.Logger) (*daemon, error) {
	policy := gate.DefaultPolicy()
	if f.policyFile != "" {
		pp, err := readPolicyFile(f.policyFile)
		if err != nil {
			return nil, usageError{err}
		}
		if policy, err = api.PolicyFromProto(pp); err != nil {
			return nil, usageError{fmt.Errorf("%s: %w", f.policyFile, err)}
		}
		if err := policy.Validate(); err != nil {
			return nil, usageError{fmt.Errorf("%s: %w", f.policyFile, err)}
		}
	}
	lopts := []kernel.ListenerOption{kernel.WithNetNS(f.netns), kernel.WithRcvBuf(f.rcvbuf), kernel.WithLogger(log)}
	if f.setNotify != "" {
		v, err := strconv.Atoi(f.setNotify)
		m, err2 := fib.ParseNotifyMode(v)
		if err != nil || err2 != nil {
			return nil, usageError{fmt.Errorf("--set-notify %q: want 0, 1 or 2", f.setNotify)}
		}
		lopts = append(lopts, kernel.WithSetNotifyMode(m))
	}
	if f.listen != "" && (f.tlsCert == "" || f.tlsKey == "") {
		return nil, usageError{errors.New("--listen needs --tls-cert and --tls-key: the API is not served in clear text over TCP")}
	}
	d := &daemon{}
	var aopts []api.Option
	var ext *external.Backend
	switch f.backend {
	case "kernel":
	case "sim":
		cfg := sim.DefaultConfig()
		switch f.simMode {
		case "trap":
			cfg.Mode = sim.ModeTrap
		case "spectrum":
			cfg.Mode = sim.ModeSpectrum
		default:
			return nil, usageError{fmt.Errorf("--sim-mode %q: want trap or spectrum", f.simMode)}
		}
		cfg.Latency, cfg.Jitter, cfg.Rate, cfg.FailProbability = f.simLatency, f.simJitter, f.simRate, f.simFailProbability
		if f.simPorts != "" {
			cfg.Ports = strings.Split(f.simPorts, ",")
		}
		asic, err := sim.New(cfg, sim.WithNetNS(f.netns), sim.WithLogger(log))
		if err != nil {
			return nil, usageError{fmt.Errorf("sim: %w", err)}
		}
		d.asic = asic
		lopts = append(lopts, kernel.WithDriver(asic), kernel.WithIgnoreTables(cfg.MirrorTable))
		aopts = append(aopts, api.WithSim(simctl.New(asic)))
	case "external":
		ext = external.New(external.WithLogger(log))
		lopts = append(lopts, kernel.WithDriver(ext))
		aopts = append(aopts, api.WithAgents(ext))
	default:
		return nil, usageError{fmt.Errorf("--backend %q: want kernel, sim or external", f.backend)}
	}
	d.listener = kernel.NewListener(lopts...)
	if ext != nil {
		ext.Bind(d.listener) // agents' reports reach the listener
	}
	topts := []gate.TrackerOption{gate.WithLogger(log)}
	var metrics *api.Metrics
	if f.metrics != "" {
		d.metricsAddr, d.registry = f.metrics, prometheus.NewRegistry()
		var err error
		if metrics, err = api.NewMetrics(d.registry); err != nil {
			return nil, err
		}
		topts = append(topts, gate.WithObserver(metrics))
	}
	tr, err := gate.NewTracker(d.listener, policy, topts...)
	if err != nil {
		return nil, usageError{err}
	}
	d.tracker = tr
	if metrics != nil {
		metrics.Watch(tr, d.listener)
	}
	aopts = append(aopts, api.WithGate(tr), api.WithListenerStats(d.listener), api.WithLinkNames(d.listener.LinkName),
		api.WithReady(tr.Ready()), api.WithUnixSocket(f.socket), api.WithLogger(log))
	if f.listen != "" {
		tlsCfg, err := api.ServerTLS(f.tlsCert, f.tlsKey, f.tlsCA)
		if err != nil {
			return nil, usageError{err}
		}
		aopts = append(aopts, api.WithTCP(f.listen, tlsCfg))
	}
	srv, err := api.New(aopts...)
	if err != nil {
		return nil, usageError{err}
	}
	d.server = srv
	return d, nil
}

// run starts every part and stops them all when ctx ends or one fails; it
// returns the first failure, after every part has stopped.
func (d *daemon) run(ctx context.Context, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	start := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				once.Do(func() { first = fmt.Errorf("%s: %w", name, err) })
				cancel()
			}
		}()
	}
	start("listener", d.listener.Run)
	if d.asic != nil {
		start("sim", func(ctx context.Context) error { return d.asic.Run(ctx, d.listener) })
	}
	start("gate", d.tracker.Run)
	start("api", d.server.Serve)
	if d.metricsAddr != "" {
		start("metrics", func(ctx context.Context) error { return api.ServeMetrics(ctx, d.metricsAddr, d.registry) })
	}
	go func() {
		select {
		case <-d.tracker.Ready():
			log.Info("fibgate serving", "routes", d.listener.Stats().Routes)
		case <-ctx.Done():
		}
	}()
	wg.Wait()
	return first
}
