// Command gobgpd-ext is gobgpd with fibgate's gate built in: the same
// config file, flags and gRPC API (the gobgp CLI works unchanged), and a
// prefix is advertised only once the switch hardware installed its route.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	flags "github.com/jessevdk/go-flags"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/config"
	"github.com/osrg/gobgp/v3/pkg/config/oc"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/metrics"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	fgd "github.com/fibgate/fibgate/gobgpd-ext/internal/daemon"
	"github.com/fibgate/fibgate/gobgpd-ext/internal/logstream"
	"github.com/fibgate/fibgate/gobgpd-ext/internal/version"
	"github.com/fibgate/fibgate/plugin/gobgp"
)

// options are gobgpd v3.37's flags (same names, defaults and meaning; its
// syslog and Sentry options are not carried over) plus --fibgate-config.
type options struct {
	ConfigFile       string `short:"f" long:"config-file" description:"specifying a config file"`
	ConfigType       string `short:"t" long:"config-type" description:"specifying config type (toml, yaml, json)" default:"toml"`
	ConfigAutoReload bool   `short:"a" long:"config-auto-reload" description:"activate config auto reload on changes"`
	ConfigStrict     bool   `long:"config-strict" description:"make any config error fatal"`
	LogLevel         string `short:"l" long:"log-level" description:"specifying log level"`
	LogPlain         bool   `short:"p" long:"log-plain" description:"use plain format for logging (json by default)"`
	DisableStdlog    bool   `long:"disable-stdlog" description:"disable standard logging"`
	CPUs             int    `long:"cpus" description:"specify the number of CPUs to be used"`
	GrpcHosts        string `long:"api-hosts" description:"specify the hosts that gobgpd listens on" default:":50051"`
	GracefulRestart  bool   `short:"r" long:"graceful-restart" description:"flag restart-state in graceful-restart capability"`
	Dry              bool   `short:"d" long:"dry-run" description:"check configuration (gobgpd's and fibgate's)"`
	PProfHost        string `long:"pprof-host" description:"specify the host that gobgpd listens on for pprof and metrics" default:"localhost:6060"`
	PProfDisable     bool   `long:"pprof-disable" description:"disable pprof profiling"`
	MetricsPath      string `long:"metrics-path" description:"specify path for prometheus metrics, empty value disables them" default:"/metrics"`
	UseSdNotify      bool   `long:"sdnotify" description:"use sd_notify protocol"`
	TLS              bool   `long:"tls" description:"enable TLS authentication for gRPC API"`
	TLSCertFile      string `long:"tls-cert-file" description:"The TLS cert file"`
	TLSKeyFile       string `long:"tls-key-file" description:"The TLS key file"`
	TLSClientCAFile  string `long:"tls-client-ca-file" description:"Optional TLS client CA file to authenticate clients against"`
	Version          bool   `long:"version" description:"show fibgate's version, the Go release and the GoBGP version"`

	FibgateConfig string `long:"fibgate-config" description:"fibgate settings (YAML, see deploy/examples/fibgate.yaml); default: every setting at its default"`
	NoFibgate     bool   `long:"no-fibgate" description:"run as a plain gobgpd without the gate (the lab's control leaf)"`
}

func main() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, sigs))
}

// run is gobgpd-ext with args, until SIGINT or SIGTERM arrives on sigs
// (SIGHUP reloads the config file); it returns the exit status. Every log
// line, GoBGP's and fibgate's, goes to stderr in one format.
func run(args []string, stdout, stderr io.Writer, sigs chan os.Signal) int {
	var opts options
	p := flags.NewParser(&opts, flags.Default&^flags.PrintErrors)
	p.Usage = "[OPTIONS]\n\ngobgpd with fibgate: a prefix is advertised only once the hardware installed its route.\n" +
		"gobgpd's config file, flags and API are unchanged; fibgate's settings come from --fibgate-config.\n" +
		"Exit status 2 on bad flags or configuration, 1 on a runtime error, 0 after SIGINT/SIGTERM."
	if _, err := p.ParseArgs(args); err != nil {
		var fe *flags.Error
		if errors.As(err, &fe) && fe.Type == flags.ErrHelp {
			fmt.Fprintln(stdout, err)
			return fgd.ExitOK
		}
		fmt.Fprintf(stderr, "gobgpd-ext: %v (see gobgpd-ext --help)\n", err)
		return fgd.ExitConfig
	}
	if opts.Version {
		fmt.Fprintln(stdout, "gobgpd-ext", version.Get())
		return fgd.ExitOK
	}

	if opts.CPUs > 0 {
		if runtime.NumCPU() < opts.CPUs {
			fmt.Fprintf(stderr, "gobgpd-ext: only %d CPUs are available but %d is specified\n", runtime.NumCPU(), opts.CPUs)
			return fgd.ExitConfig
		}
		runtime.GOMAXPROCS(opts.CPUs)
	}

	fcfg := fgd.Defaults()
	if opts.FibgateConfig != "" {
		var err error
		if fcfg, err = fgd.Load(opts.FibgateConfig); err != nil {
			fmt.Fprintf(stderr, "gobgpd-ext: %v\n", err)
			return fgd.ExitConfig
		}
	}
	gcfg, err := fcfg.GoBGP()
	if err != nil {
		fmt.Fprintf(stderr, "gobgpd-ext: fibgate bgp: %v\n", err)
		return fgd.ExitConfig
	}
	if gcfg.FallbackPolicy == "" && !opts.NoFibgate {
		fmt.Fprintln(stderr, "gobgpd-ext: bgp.fallback_policy is empty: gobgpd-ext holds the gated scope with that policy from its first session and across reloads; name it (default fibgate-fallback)")
		return fgd.ExitConfig
	}
	var initial *oc.BgpConfigSet
	if opts.ConfigFile != "" {
		if initial, err = config.ReadConfigFile(opts.ConfigFile, opts.ConfigType); err != nil {
			fmt.Fprintf(stderr, "gobgpd-ext: can't read config file %s: %v\n", opts.ConfigFile, err)
			return fgd.ExitConfig
		}
		if err := checkZebra(initial, &fcfg, opts.NoFibgate); err != nil {
			fmt.Fprintf(stderr, "gobgpd-ext: %s: %v\n", opts.ConfigFile, err)
			return fgd.ExitConfig
		}
	}
	if opts.Dry {
		fmt.Fprintf(stdout, "configuration valid: gobgpd %q, fibgate %d gated scope(s), backend %s\n", opts.ConfigFile, len(fcfg.GatePolicy().Scopes), fcfg.Backend.Type)
		return fgd.ExitOK
	}

	// One log stream: GoBGP's lines at gobgpd's -l, fibgate's (and
	// gobgpd-ext's own) at the settings' log_level, one handler.
	logOut := stderr
	if opts.DisableStdlog {
		logOut = io.Discard
	}
	handler := logstream.Handler(logOut, opts.LogPlain)
	bgpLevel := gobgplog.InfoLevel
	if opts.LogLevel == "debug" {
		bgpLevel = gobgplog.DebugLevel
	}
	logger := slog.New(logstream.AtLevel(handler, fcfg.Level()))

	grpcOpts := []grpc.ServerOption{grpc.MaxRecvMsgSize(256 << 20), grpc.MaxSendMsgSize(256 << 20)}
	if opts.TLS {
		creds, err := serverTLS(opts)
		if err != nil {
			fmt.Fprintf(stderr, "gobgpd-ext: %v\n", err)
			return fgd.ExitConfig
		}
		grpcOpts = append(grpcOpts, grpc.Creds(creds))
	}
	fsmTimings := metrics.NewFSMTimingsCollector()
	bgpServer := server.NewBgpServer(server.GrpcListenAddress(opts.GrpcHosts), server.GrpcOption(grpcOpts),
		server.LoggerOption(logstream.NewGoBGP(handler, bgpLevel, opts.ConfigStrict)), server.TimingHookOption(fsmTimings))
	go bgpServer.Serve() // returns only with the process, as in gobgpd
	// One metrics endpoint: GoBGP's, fibgate's, Go's and the process's,
	// on the settings' metrics address when it is set (the daemon serves
	// it), else on gobgpd's --pprof-host at --metrics-path.
	reg := fgd.NewRegistry()
	reg.MustRegister(metrics.NewBgpCollector(bgpServer), fsmTimings)
	metricsOnPProf := opts.MetricsPath != "" && (fcfg.Metrics == "" || opts.NoFibgate)
	if metricsOnPProf && opts.NoFibgate && fcfg.Metrics != "" {
		logger.Warn("metrics served on --pprof-host: with --no-fibgate nothing serves the settings' metrics address", "metrics", fcfg.Metrics, "pprof_host", opts.PProfHost)
	}
	logger.Info("gobgpd-ext started", "version", version.Get().String())
	if !opts.TLS {
		for _, h := range exposedAPI(opts.GrpcHosts) {
			logger.Warn("the GoBGP API has no authentication and is reachable from the network (gobgpd's default): use --api-hosts 127.0.0.1:50051 or --tls", "api_host", h)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var pprofDone chan struct{}
	if !opts.PProfDisable || metricsOnPProf {
		pprofDone = make(chan struct{})
		go func() {
			defer close(pprofDone)
			servePProf(ctx, opts, metricsOnPProf, reg, logger)
		}()
		defer func() { cancel(); <-pprofDone }()
	}

	var current *oc.BgpConfigSet
	if initial != nil {
		if !opts.NoFibgate {
			if err := gcfg.InjectFallback(initial); err != nil {
				fmt.Fprintf(stderr, "gobgpd-ext: %v\n", err)
				return fgd.ExitConfig
			}
		}
		// gobgpd's own start: global, policies (with the fallback first,
		// so the scope is held from the first session), neighbours.
		if current, err = config.InitialConfig(ctx, bgpServer, initial, opts.GracefulRestart); err != nil {
			fmt.Fprintf(stderr, "gobgpd-ext: apply %s: %v\n", opts.ConfigFile, err)
			return fgd.ExitConfig
		}
	}
	if opts.UseSdNotify {
		if ok, err := daemon.SdNotify(false, daemon.SdNotifyReady); !ok {
			logger.Warn("sd_notify not sent", "err", err)
		}
	}

	var d *fgd.Daemon
	var sp *gobgp.Speaker
	runErr := make(chan error, 1)
	stopBGP := sync.OnceValue(func() error { return stopServer(bgpServer) })
	if opts.NoFibgate {
		runErr <- nil
	} else {
		inProcess := func(o ...gobgp.Option) (*gobgp.Speaker, error) { return gobgp.NewInProcess(bgpServer, gcfg, o...) }
		if d, err = fgd.New(fcfg, &fgd.BGP{New: inProcess, Stop: func(context.Context) error { return stopBGP() }}, logger, fgd.WithRegistry(reg)); err != nil {
			code, msg := fgd.ExitCode(err, fcfg.NetNS)
			fmt.Fprintf(stderr, "gobgpd-ext: %s\n", msg)
			_ = stopBGP()
			return code
		}
		sp = d.Speaker()
		go func() { runErr <- d.Run(ctx) }()
	}
	if opts.ConfigAutoReload && opts.ConfigFile != "" {
		config.WatchConfigFile(opts.ConfigFile, opts.ConfigType, func() {
			select {
			case sigs <- syscall.SIGHUP:
			default:
			}
		})
	}

	var failed error
	if opts.NoFibgate {
		<-runErr
	}
loop:
	for {
		select {
		case err := <-runErr:
			failed = err // the gate stopped by itself: a runtime failure
			break loop
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				break loop
			}
			if opts.ConfigFile == "" {
				continue
			}
			current = reload(ctx, bgpServer, sp, gcfg, opts, current, logger)
		}
	}
	cancel()
	if d != nil && failed == nil {
		failed = <-runErr
	}
	if err := stopBGP(); err != nil {
		logger.Warn("stop bgp", "err", err)
	}
	if opts.UseSdNotify {
		_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	}
	logger.Info("gobgpd-ext stopped")
	code, msg := fgd.ExitCode(failed, fcfg.NetNS)
	if msg != "" {
		fmt.Fprintf(stderr, "gobgpd-ext: %s\n", msg)
	}
	return code
}

// reload is gobgpd's SIGHUP, owned by gobgpd-ext so the gate is never
// missing: the new config gets the fallback policy first (GoBGP's
// SetPolicies drops what the gate defined over the API, and the fallback
// then holds the whole scope), and the gate is re-installed right after.
func reload(ctx context.Context, s *server.BgpServer, sp *gobgp.Speaker, gcfg gobgp.Config, opts options, current *oc.BgpConfigSet, logger *slog.Logger) *oc.BgpConfigSet {
	logger.Info("reload the config file", "file", opts.ConfigFile)
	next, err := config.ReadConfigFile(opts.ConfigFile, opts.ConfigType)
	if err != nil {
		logger.Warn("can't read config file", "file", opts.ConfigFile, "err", err)
		return current
	}
	if sp != nil {
		if err := gcfg.InjectFallback(next); err != nil {
			logger.Warn("fibgate fallback", "err", err)
			return current
		}
	}
	if current == nil {
		current, err = config.InitialConfig(ctx, s, next, false)
	} else {
		current, err = config.UpdateConfig(ctx, s, current, next)
	}
	if err != nil {
		logger.Warn("failed to update config", "file", opts.ConfigFile, "err", err)
		return current
	}
	if sp != nil {
		start := time.Now()
		again, err := sp.Check(ctx)
		logger.Info("fibgate gate checked after reload", "reinstalled", again, "took", time.Since(start).Round(time.Millisecond))
		if err != nil {
			logger.Warn("fibgate gate after reload: the guard retries", "err", err)
		}
	}
	return current
}

// exposedAPI lists the --api-hosts entries that listen beyond loopback.
func exposedAPI(hosts string) []string {
	var out []string
	for _, h := range strings.Split(hosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" || strings.HasPrefix(h, "unix://") {
			continue
		}
		host, _, err := net.SplitHostPort(h)
		if err != nil {
			continue // gobgpd reports it
		}
		if ip, err := netip.ParseAddr(host); host == "localhost" || err == nil && ip.IsLoopback() {
			continue
		}
		out = append(out, h)
	}
	return out
}

// checkZebra refuses GoBGP's zebra redistribution next to fibgate's FIB
// installer: zebra would install HOLD paths' prefixes and duplicate routes.
func checkZebra(c *oc.BgpConfigSet, f *fgd.Config, noFibgate bool) error {
	if noFibgate || !c.Zebra.Config.Enabled || !f.InstallEnabled() {
		return nil
	}
	return errors.New("zebra is enabled: fibgate installs GoBGP's best paths itself; disable [zebra] or set install.enabled: false in the fibgate settings")
}

// stopServer takes every session down before StopBgp (GoBGP v3.37's
// StopBgp races with the receive loops of established sessions), so peers
// see a clean CEASE and drop our paths.
func stopServer(s *server.BgpServer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var up []string
	_ = s.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.GetState().GetSessionState() == api.PeerState_ESTABLISHED {
			up = append(up, p.GetConf().GetNeighborAddress())
		}
	})
	for _, a := range up {
		_ = s.DisablePeer(ctx, &api.DisablePeerRequest{Address: a, Communication: "gobgpd-ext shutting down"})
	}
	for len(up) > 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond) // polling GoBGP's state, bounded by ctx
		up = up[:0]
		_ = s.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			if p.GetState().GetSessionState() == api.PeerState_ESTABLISHED {
				up = append(up, p.GetConf().GetNeighborAddress())
			}
		})
	}
	s.Stop() // StopBgp, then the gRPC API
	return ctx.Err()
}

func serverTLS(opts options) (credentials.TransportCredentials, error) {
	cert, err := tls.LoadX509KeyPair(opts.TLSCertFile, opts.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("load server certificate/key pair: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if opts.TLSClientCAFile != "" {
		pem, err := os.ReadFile(opts.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("load client CA certificates: %w", err)
		}
		cfg.ClientCAs = x509.NewCertPool()
		if !cfg.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no valid client CA certificates in %q", opts.TLSClientCAFile)
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(cfg), nil
}

// servePProf is gobgpd's HTTP server on --pprof-host until ctx ends:
// pprof unless --pprof-disable, and with withMetrics every metric of reg
// at --metrics-path.
func servePProf(ctx context.Context, opts options, withMetrics bool, reg *prometheus.Registry, logger *slog.Logger) {
	mux := http.NewServeMux()
	if !opts.PProfDisable {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if withMetrics {
		mux.Handle(opts.MetricsPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	srv := &http.Server{Addr: opts.PProfHost, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		logger.Warn("pprof and metrics server stopped", "pprof_host", opts.PProfHost, "err", err)
	}
}
