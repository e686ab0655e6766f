package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fibgate/fibgate/gobgpd-ext/internal/daemon"
	"github.com/fibgate/fibgate/plugin/api"
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
the API socket is removed. SIGHUP reads --policy again and applies it when
it changed since it was last read (a policy set over the API stays until
then). Exit status: 0 on a signal, 1 on a runtime error,
2 on bad flags or policy, a missing socket directory, a notify mode of 0
(set or found) while the policy waits for hardware, a missing namespace or
missing privileges: one line naming the flag or key.

Flags:
`

// serveFlags are the daemon's settings; defaults are documented in --help.
type serveFlags struct {
	netns, backend, socket, listen string
	tlsCert, tlsKey, tlsCA         string
	adminClients, readClients      listFlag
	policyFile, setNotify          string
	metrics                        string
	rcvbuf                         int
	verbose                        bool
	simMode, simPorts              string
	simCapacityMode                string
	simLatency, simJitter          time.Duration
	warnUnconfirmed                time.Duration
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
	fs.StringVar(&f.tlsCA, "tls-client-ca", "", "require client certificates signed by this CA on --listen (mTLS); without it --listen is read-only")
	fs.Var(&f.adminClients, "admin-client", "a client certificate that may write over --listen: cn:NAME, dns:NAME, uri:URI, email:ADDR or ip:ADDR (repeat, or comma-separated; needs --tls-client-ca)")
	fs.Var(&f.readClients, "read-client", "a client certificate that may read over --listen, like --admin-client (default: any certificate of --tls-client-ca)")
	fs.StringVar(&f.policyFile, "policy", "", "read the gating policy from `FILE` (YAML, as 'fibgate policy get' prints); default: gate every main-table prefix on hardware confirmation")
	fs.StringVar(&f.metrics, "metrics", "", "serve Prometheus metrics (fibgate_*) at http://ADDR/metrics, e.g. 127.0.0.1:9431 (default: off)")
	fs.StringVar(&f.setNotify, "set-notify", "", "write fib_notify_on_flag_change (0, 1 or 2) for IPv4 and IPv6 first (default: leave it)")
	fs.IntVar(&f.rcvbuf, "rcvbuf", kernel.DefaultRcvBuf, "notification socket receive buffer in bytes")
	fs.BoolVar(&f.verbose, "v", false, "log at info level (default: warnings)")
	fs.DurationVar(&f.warnUnconfirmed, "warn-unconfirmed", daemon.DefaultWarnUnconfirmed, "warn once when prefixes have waited this long and no route has shown a hardware flag since start (no driver offloads routes?); 0: never")
	fs.StringVar(&f.simMode, "sim-mode", "trap", "sim classifier: trap (netdevsim-like) or spectrum (mlxsw-like)")
	fs.StringVar(&f.simPorts, "sim-ports", "", "comma-separated data ports whose traffic the sim forwards from its hardware table")
	fs.DurationVar(&f.simLatency, "sim-latency", d.Latency, "sim programming latency")
	fs.DurationVar(&f.simJitter, "sim-jitter", d.Jitter, "sim programming jitter (uniform, added to the latency)")
	fs.IntVar(&f.simRate, "sim-rate", d.Rate, "sim programming rate in routes/s (0: unlimited)")
	fs.Float64Var(&f.simFailProbability, "sim-fail-probability", d.FailProbability, "probability that the sim fails to program a route")
	fs.StringVar(&f.simCapacityMode, "sim-capacity-mode", string(d.CapacityMode), "what a route that does not fit the sim's table gets: flag (offload_failed) or refuse (its write is refused, like netdevsim); size it with fibgate hw capacity")
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
	// SIGHUP reads --policy again (Daemon.ReloadWith), caught before
	// anything starts so that it never ends serve as Go's default would.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := f.config()
	if err != nil {
		return usageError{err}
	}
	log := cfg.Logger(stderr)
	d, err := daemon.New(cfg, nil, log)
	if err == nil {
		hctx, stop := context.WithCancel(ctx)
		defer stop()
		go d.ReloadOnHangup(hctx, hup, f.config)
		err = d.Run(ctx)
	}
	return serveErr(err, f.netns)
}

// serveErr turns the daemon's error into what run prints and the exit
// status it picks, by the daemons' own rules (daemon.ExitCode): one line,
// status 2 for what the operator fixes.
func serveErr(err error, netns string) error {
	code, msg := daemon.ExitCode(err, netns)
	switch code {
	case daemon.ExitOK:
		return nil
	case daemon.ExitConfig:
		return usageError{errors.New(msg)}
	}
	return errors.New(msg)
}

// listFlag is a flag that may be repeated or hold a comma-separated list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for x := range strings.SplitSeq(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			*l = append(*l, x)
		}
	}
	return nil
}

// config turns the flags into the daemons' settings.
func (f *serveFlags) config() (daemon.Config, error) {
	c := daemon.Defaults()
	c.NetNS, c.NotifyMode, c.RcvBuf, c.Metrics, c.PolicyFile = f.netns, f.setNotify, f.rcvbuf, f.metrics, f.policyFile
	c.LogLevel = "warn"
	if f.verbose {
		c.LogLevel = "info"
	}
	c.Backend.Type, c.Backend.WarnUnconfirmed = f.backend, daemon.Duration(f.warnUnconfirmed)
	c.Backend.Sim = daemon.Sim{Mode: f.simMode, Latency: daemon.Duration(f.simLatency), Jitter: daemon.Duration(f.simJitter),
		Rate: f.simRate, FailProbability: f.simFailProbability, CapacityMode: f.simCapacityMode}
	if f.simPorts != "" {
		c.Backend.Sim.Ports = strings.Split(f.simPorts, ",")
	}
	c.API = daemon.API{Socket: f.socket, Listen: f.listen, TLSCert: f.tlsCert, TLSKey: f.tlsKey, TLSClientCA: f.tlsCA,
		AdminClients: f.adminClients, ReadClients: f.readClients}
	no := false
	c.Install.Enabled = &no // no installer without BGP
	if err := c.Check(); err != nil {
		if f.policyFile != "" && strings.HasPrefix(err.Error(), "policy") {
			return c, fmt.Errorf("%s: %w", f.policyFile, err)
		}
		return c, err
	}
	return c, nil
}
