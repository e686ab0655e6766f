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
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
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

	"github.com/fibgate/fibgate/gobgpd-ext/bgpmetrics"
	fgd "github.com/fibgate/fibgate/gobgpd-ext/internal/daemon"
	"github.com/fibgate/fibgate/gobgpd-ext/internal/eorhold"
	"github.com/fibgate/fibgate/gobgpd-ext/internal/logstream"
	"github.com/fibgate/fibgate/gobgpd-ext/internal/profiling"
	"github.com/fibgate/fibgate/gobgpd-ext/internal/version"
	"github.com/fibgate/fibgate/plugin/gobgp"
)

// options are gobgpd v3.37's flags (same names, defaults and meaning) plus
// --fibgate-config, so that a unit file written for gobgpd starts
// gobgpd-ext unchanged.
type options struct {
	ConfigFile        string  `short:"f" long:"config-file" description:"specifying a config file"`
	ConfigType        string  `short:"t" long:"config-type" description:"specifying config type (toml, yaml, json)" default:"toml"`
	ConfigAutoReload  bool    `short:"a" long:"config-auto-reload" description:"activate config auto reload on changes"`
	ConfigStrict      bool    `long:"config-strict" description:"make any config error fatal"`
	LogLevel          string  `short:"l" long:"log-level" description:"specifying log level"`
	LogPlain          bool    `short:"p" long:"log-plain" description:"use plain format for logging (json by default)"`
	UseSyslog         string  `short:"s" long:"syslog" description:"use syslogd"`
	Facility          string  `long:"syslog-facility" description:"specify syslog facility"`
	DisableStdlog     bool    `long:"disable-stdlog" description:"disable standard logging"`
	CPUs              int     `long:"cpus" description:"specify the number of CPUs to be used"`
	GrpcHosts         string  `long:"api-hosts" description:"specify the hosts that gobgpd listens on" default:":50051"`
	GracefulRestart   bool    `short:"r" long:"graceful-restart" description:"flag restart-state in graceful-restart capability"`
	Dry               bool    `short:"d" long:"dry-run" description:"check configuration (gobgpd's and fibgate's)"`
	PProfHost         string  `long:"pprof-host" description:"specify the host that gobgpd listens on for pprof and metrics" default:"localhost:6060"`
	PProfDisable      bool    `long:"pprof-disable" description:"disable pprof profiling"`
	MetricsPath       string  `long:"metrics-path" description:"specify path for prometheus metrics, empty value disables them" default:"/metrics"`
	UseSdNotify       bool    `long:"sdnotify" description:"use sd_notify protocol"`
	TLS               bool    `long:"tls" description:"enable TLS authentication for gRPC API"`
	TLSCertFile       string  `long:"tls-cert-file" description:"The TLS cert file"`
	TLSKeyFile        string  `long:"tls-key-file" description:"The TLS key file"`
	TLSClientCAFile   string  `long:"tls-client-ca-file" description:"Optional TLS client CA file to authenticate clients against"`
	Version           bool    `long:"version" description:"show fibgate's version, the Go release and the GoBGP version"`
	SentryDSN         string  `long:"sentry-dsn" description:"Sentry DSN" default:""`
	SentryEnvironment string  `long:"sentry-environment" description:"Sentry environment" default:"development"`
	SentrySampleRate  float64 `long:"sentry-sample-rate" description:"Sentry traces sample rate" default:"1.0"`
	SentryDebug       bool    `long:"sentry-debug" description:"Sentry debug mode"`

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
	opts, code, done := parseFlags(args, stdout, stderr)
	if done {
		return code
	}
	s, err := load(opts)
	if err != nil {
		fmt.Fprintf(stderr, "gobgpd-ext: %v\n", err)
		return fgd.ExitConfig
	}
	if opts.Dry {
		if w := s.redistributeWarning(s.initial); w != "" {
			fmt.Fprintf(stderr, "gobgpd-ext: warning: %s\n", w)
		}
		fmt.Fprintf(stdout, "configuration valid: gobgpd %q, fibgate %d gated scope(s), backend %s, release %s\n", opts.ConfigFile, len(s.fcfg.GatePolicy().Scopes), s.fcfg.Backend.Type, s.release())
		return fgd.ExitOK
	}
	flush, err := startSentry(opts)
	if err != nil {
		fmt.Fprintf(stderr, "gobgpd-ext: %v\n", err)
		return fgd.ExitConfig
	}
	defer flush()
	return s.serve(stderr, sigs)
}

// parseFlags reads gobgpd-ext's flags. done says run ends here, with code:
// --help, --version, or a bad flag (one line on stderr).
func parseFlags(args []string, stdout, stderr io.Writer) (opts options, code int, done bool) {
	p := flags.NewParser(&opts, flags.Default&^flags.PrintErrors)
	p.Usage = "[OPTIONS]\n\ngobgpd with fibgate: a prefix is advertised only once the hardware installed its route.\n" +
		"gobgpd's config file, flags and API are unchanged; fibgate's settings come from --fibgate-config.\n" +
		"Exit status 2 on bad flags or configuration, 1 on a runtime error, 0 after SIGINT/SIGTERM."
	if _, err := p.ParseArgs(args); err != nil {
		var fe *flags.Error
		if errors.As(err, &fe) && fe.Type == flags.ErrHelp {
			fmt.Fprintln(stdout, err)
			return opts, fgd.ExitOK, true
		}
		fmt.Fprintf(stderr, "gobgpd-ext: %v (see gobgpd-ext --help)\n", err)
		return opts, fgd.ExitConfig, true
	}
	if opts.Version {
		fmt.Fprintln(stdout, "gobgpd-ext", version.Get())
		return opts, fgd.ExitOK, true
	}
	return opts, 0, false
}

// setup is what gobgpd-ext runs with, read and checked before anything
// starts.
type setup struct {
	opts    options
	fcfg    fgd.Config       // fibgate's settings
	gcfg    gobgp.Config     // the gate in GoBGP, from fcfg
	initial *oc.BgpConfigSet // gobgpd's config file; nil without -f
}

// load checks --cpus, reads fibgate's settings and gobgpd's config file,
// and checks them together; any error is a configuration error (exit 2).
func load(opts options) (*setup, error) {
	if opts.CPUs > 0 {
		if runtime.NumCPU() < opts.CPUs {
			return nil, fmt.Errorf("only %d CPUs are available but %d is specified", runtime.NumCPU(), opts.CPUs)
		}
		runtime.GOMAXPROCS(opts.CPUs)
	}
	s := &setup{opts: opts, fcfg: fgd.Defaults()}
	var err error
	if opts.FibgateConfig != "" {
		if s.fcfg, err = fgd.Load(opts.FibgateConfig); err != nil {
			return nil, err
		}
	}
	if s.gcfg, err = s.fcfg.GoBGP(); err != nil {
		return nil, fmt.Errorf("fibgate bgp: %w", err)
	}
	if _, why := s.gcfg.InProcessRelease(); why != nil && s.fcfg.BGP.Release == "reexport" && !opts.NoFibgate {
		return nil, fmt.Errorf("fibgate bgp.release: reexport: %w; use release: auto (the default) or toggle", why)
	}
	if s.gcfg.FallbackPolicy == "" && !opts.NoFibgate {
		return nil, errors.New("bgp.fallback_policy is empty: gobgpd-ext holds the gated scope with that policy from its first session and across reloads; name it (default fibgate-fallback)")
	}
	if opts.ConfigFile != "" {
		if s.initial, err = config.ReadConfigFile(opts.ConfigFile, opts.ConfigType); err != nil {
			return nil, fmt.Errorf("can't read config file %s: %w", opts.ConfigFile, err)
		}
		if err := s.checkFile(s.initial); err != nil {
			return nil, fmt.Errorf("%s: %w", opts.ConfigFile, err)
		}
	}
	return s, nil
}

// ext is a running gobgpd-ext: GoBGP's server and, unless --no-fibgate,
// the gate around it.
type ext struct {
	*setup
	log     *slog.Logger
	bgp     *server.BgpServer
	stopBGP func() error // once: sessions down, then StopBgp
	d       *fgd.Daemon  // nil with --no-fibgate
	sp      *gobgp.Speaker
	// softIn is sp for the API's goroutines (afterSoftResetIn), from the
	// moment the gate starts.
	softIn  atomic.Pointer[gobgp.Speaker]
	current *oc.BgpConfigSet // what gobgpd's config file applied last
	hold    *eorhold.Hold    // End-of-RIB held after -r (restart.go); nil: none
}

// serve starts GoBGP, applies gobgpd's config file, starts the gate and
// runs until a signal ends it or the gate fails; it returns the exit
// status.
func (s *setup) serve(stderr io.Writer, sigs chan os.Signal) int {
	x := &ext{setup: s}
	handler := x.startLogs(stderr)
	reg, err := x.startBGP(handler)
	if err != nil {
		fmt.Fprintf(stderr, "gobgpd-ext: %v\n", err)
		return fgd.ExitConfig
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if stop := x.startPProf(ctx, reg); stop != nil {
		defer stop()
	}
	if err := x.applyConfigFile(ctx); err != nil {
		fmt.Fprintf(stderr, "gobgpd-ext: %v\n", err)
		return fgd.ExitConfig
	}
	if s.opts.UseSdNotify {
		if ok, err := daemon.SdNotify(false, daemon.SdNotifyReady); !ok {
			x.log.Warn("sd_notify not sent", "err", err)
		}
	}
	runErr, err := x.startGate(ctx, reg)
	if err != nil {
		code, msg := fgd.ExitCode(err, s.fcfg.NetNS)
		fmt.Fprintf(stderr, "gobgpd-ext: %s\n", msg)
		_ = x.stopBGP()
		return code
	}
	x.holdEOR(ctx)
	if s.opts.ConfigAutoReload && s.opts.ConfigFile != "" {
		config.WatchConfigFile(s.opts.ConfigFile, s.opts.ConfigType, func() {
			select {
			case sigs <- syscall.SIGHUP:
			default:
			}
		})
	}
	failed := x.loop(ctx, sigs, runErr)
	cancel()
	if x.d != nil && failed == nil {
		failed = <-runErr
	}
	if x.restartStop() {
		x.leaveAPI()
		x.log.Info("stopped for a restart: BGP sessions end without a NOTIFICATION, so neighbours with graceful restart keep our routes; start again with -r")
	} else if err := x.stopBGP(); err != nil {
		x.log.Warn("stop bgp", "err", err)
	}
	if s.opts.UseSdNotify {
		_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	}
	x.log.Info("gobgpd-ext stopped")
	code, msg := fgd.ExitCode(failed, s.fcfg.NetNS)
	if msg != "" {
		fmt.Fprintf(stderr, "gobgpd-ext: %s\n", msg)
	}
	return code
}

// startLogs makes the one log stream: one handler on stderr (none with
// --disable-stdlog) and syslog's with --syslog, GoBGP's lines at gobgpd's
// -l, fibgate's and gobgpd-ext's own at the settings' log_level. It
// returns the handler for GoBGP's logger.
func (x *ext) startLogs(stderr io.Writer) slog.Handler {
	out := stderr
	if x.opts.DisableStdlog {
		out = io.Discard
	}
	var h slog.Handler = logstream.Handler(out, x.opts.LogPlain)
	var syslogErr error
	if x.opts.UseSyslog != "" {
		// As gobgpd: every line to syslog too, and a daemon that cannot
		// be reached is an error logged, not a reason to stop.
		w, err := dialSyslog(x.opts.UseSyslog, x.opts.Facility)
		if err == nil {
			h = slog.NewMultiHandler(h, newSyslogHandler(w, x.opts.LogPlain))
		}
		syslogErr = err
	}
	x.log = slog.New(logstream.AtLevel(h, x.fcfg.Level()))
	if syslogErr != nil {
		x.log.Error("unable to connect to the syslog daemon", "syslog", x.opts.UseSyslog, "err", syslogErr)
	}
	return h
}

// startBGP starts GoBGP's server with gobgpd's API flags and its logger
// on handler, and returns the registry of every metric: GoBGP's, Go's and
// the process's now, fibgate's once the gate registers them.
func (x *ext) startBGP(handler slog.Handler) (*prometheus.Registry, error) {
	grpcOpts := []grpc.ServerOption{grpc.MaxRecvMsgSize(256 << 20), grpc.MaxSendMsgSize(256 << 20),
		grpc.ChainUnaryInterceptor(x.afterSoftResetIn)}
	if x.opts.TLS {
		creds, err := serverTLS(x.opts)
		if err != nil {
			return nil, err
		}
		grpcOpts = append(grpcOpts, grpc.Creds(creds))
	}
	level := gobgplog.InfoLevel
	if x.opts.LogLevel == "debug" {
		level = gobgplog.DebugLevel
	}
	fsmTimings := metrics.NewFSMTimingsCollector()
	x.bgp = server.NewBgpServer(server.GrpcListenAddress(x.opts.GrpcHosts), server.GrpcOption(grpcOpts),
		server.LoggerOption(logstream.NewGoBGP(handler, level, x.opts.ConfigStrict)), server.TimingHookOption(fsmTimings))
	go x.bgp.Serve() // returns only with the process, as in gobgpd
	x.stopBGP = sync.OnceValue(func() error { return stopServer(x.bgp) })
	reg := fgd.NewRegistry()
	reg.MustRegister(bgpmetrics.Spaced(metrics.NewBgpCollector(x.bgp)), fsmTimings)
	x.log.Info("gobgpd-ext started", "version", version.Get().String())
	if w := x.redistributeWarning(x.initial); w != "" {
		x.log.Warn(w)
	}
	if _, why := x.gcfg.InProcessRelease(); why != nil && !x.opts.NoFibgate {
		x.log.Warn("releasing by toggle, which costs GoBGP two operations a prefix, and reading best paths in their API form: this binary's GoBGP is not the one the re-export and the native best-path watch were written for", "why", why)
	}
	if !x.opts.TLS {
		for _, h := range exposedAPI(x.opts.GrpcHosts) {
			x.log.Warn("the GoBGP API has no authentication and is reachable from the network (gobgpd's default): use --api-hosts 127.0.0.1:50051 or --tls", "api_host", h)
		}
	}
	return reg, nil
}

// afterSoftResetIn tells the gate of a soft reset in asked over the API
// (`gobgp neighbor X softresetin`, or the soft reset a client sends after
// an import policy change): GoBGP runs import policy over the neighbour's
// paths again and reports no event of what changed, and a release by copy
// must follow the paths its copies were made of (Speaker.ReadCopiesBack).
func (x *ext) afterSoftResetIn(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err == nil && softResetIn(req) {
		if sp := x.softIn.Load(); sp != nil {
			sp.ReadCopiesBack()
		}
	}
	return resp, err
}

// softResetIn says whether an API request runs import policy again.
func softResetIn(req any) bool {
	r, ok := req.(*api.ResetPeerRequest)
	return ok && r.Soft && r.Direction != api.ResetPeerRequest_OUT
}

// startPProf serves gobgpd's --pprof-host until ctx ends, and returns
// what waits for it to stop (nil when nothing is served). One metrics
// endpoint: the settings' metrics address when it is set (the gate serves
// reg there), else --pprof-host at --metrics-path, as gobgpd does.
func (x *ext) startPProf(ctx context.Context, reg *prometheus.Registry) (wait func()) {
	withMetrics := x.opts.MetricsPath != "" && (x.fcfg.Metrics == "" || x.opts.NoFibgate)
	if withMetrics && x.opts.NoFibgate && x.fcfg.Metrics != "" {
		x.log.Warn("metrics served on --pprof-host: with --no-fibgate nothing serves the settings' metrics address", "metrics", x.fcfg.Metrics, "pprof_host", x.opts.PProfHost)
	}
	if x.opts.PProfDisable && !withMetrics {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		servePProf(ctx, x.opts, withMetrics, reg, x.log)
	}()
	return func() { cancel(); <-done }
}

// applyConfigFile is gobgpd's own start: global, policies (with the
// fallback first, so the scope is held from the first session),
// neighbours.
func (x *ext) applyConfigFile(ctx context.Context) error {
	if x.initial == nil {
		return nil
	}
	if !x.opts.NoFibgate {
		if err := x.gcfg.InjectFallback(x.initial); err != nil {
			return err
		}
	}
	var err error
	if x.current, err = x.initialConfig(ctx); err != nil {
		return fmt.Errorf("apply %s: %w", x.opts.ConfigFile, err)
	}
	return nil
}

// startGate assembles the gate around GoBGP and runs it until ctx ends;
// its result arrives on the channel returned. With --no-fibgate nothing
// starts and nothing ever arrives.
func (x *ext) startGate(ctx context.Context, reg *prometheus.Registry) (<-chan error, error) {
	runErr := make(chan error, 1)
	if x.opts.NoFibgate {
		return runErr, nil
	}
	inProcess := func(o ...gobgp.Option) (*gobgp.Speaker, error) { return gobgp.NewInProcess(x.bgp, x.gcfg, o...) }
	d, err := fgd.New(x.fcfg, &fgd.BGP{New: inProcess, Stop: func(context.Context) error { return x.stopBGP() }}, x.log, fgd.WithRegistry(reg))
	if err != nil {
		return nil, err
	}
	x.d, x.sp = d, d.Speaker()
	x.softIn.Store(x.sp)
	go func() { runErr <- d.Run(ctx) }()
	return runErr, nil
}

// loop waits for SIGINT or SIGTERM, reloading on SIGHUP (gobgpd's config
// file, then the fibgate settings' gating policy: Daemon.ReloadWith), or
// for the gate to stop by itself: that error is the one it returns.
func (x *ext) loop(ctx context.Context, sigs <-chan os.Signal, runErr <-chan error) error {
	for {
		select {
		case err := <-runErr:
			return err // the gate stopped by itself: a runtime failure
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				return nil
			}
			if x.opts.ConfigFile != "" {
				x.current = reload(ctx, x.bgp, x.sp, x.gcfg, x.opts, x.current, x.checkFile, x.log)
			}
			if x.d != nil && x.opts.FibgateConfig != "" {
				x.d.ReloadWith(func() (fgd.Config, error) { return fgd.Load(x.opts.FibgateConfig) })
			}
		}
	}
}

// reload is gobgpd's SIGHUP, owned by gobgpd-ext so the gate is never
// missing: the new config gets the fallback policy first (GoBGP's
// SetPolicies drops what the gate defined over the API, and the fallback
// then holds the whole scope), and the gate is re-installed right after.
func reload(ctx context.Context, s *server.BgpServer, sp *gobgp.Speaker, gcfg gobgp.Config, opts options, current *oc.BgpConfigSet, check func(*oc.BgpConfigSet) error, logger *slog.Logger) *oc.BgpConfigSet {
	logger.Info("reload the config file", "file", opts.ConfigFile)
	next, err := config.ReadConfigFile(opts.ConfigFile, opts.ConfigType)
	if err != nil {
		logger.Warn("can't read config file", "file", opts.ConfigFile, "err", err)
		return current
	}
	if err := check(next); err != nil {
		logger.Error("config file refused; the running config stays", "file", opts.ConfigFile, "err", err)
		return current
	}
	if sp != nil {
		// The scope as it is now: a policy change over the API may have
		// changed it since start (Speaker.Rescope).
		if err := sp.Config().InjectFallback(next); err != nil {
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
		// UpdateConfig soft-resets every neighbour in when a policy
		// changed, which no watch reports.
		sp.ReadCopiesBack()
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

// checkFile refuses what of gobgpd's config file the gate cannot work
// with: at start, and on a reload (which then keeps the running config).
func (s *setup) checkFile(c *oc.BgpConfigSet) error {
	if err := checkZebra(c, &s.fcfg, s.opts.NoFibgate); err != nil {
		return err
	}
	return checkAddPath(c, s.gcfg, s.opts.NoFibgate)
}

// checkAddPath refuses ADD-PATH send to a neighbour or a peer group in a
// family the gate holds: the gate could neither release a prefix to it
// nor take one back (gobgp.ErrAddPathSend).
func checkAddPath(c *oc.BgpConfigSet, g gobgp.Config, noFibgate bool) error {
	if noFibgate {
		return nil
	}
	peers := make([]*api.Peer, 0, len(c.Neighbors)+len(c.PeerGroups))
	for i := range c.Neighbors {
		peers = append(peers, oc.NewPeerFromConfigStruct(&c.Neighbors[i]))
	}
	for i := range c.PeerGroups {
		pg := &c.PeerGroups[i]
		p := &api.Peer{Conf: &api.PeerConf{NeighborAddress: "peer-group " + pg.Config.PeerGroupName}, AfiSafis: oc.NewPeerGroupFromConfigStruct(pg).AfiSafis}
		if n := pg.AddPaths.Config.SendMax; n > 0 && len(p.AfiSafis) == 0 {
			// Its neighbours' own families, whichever they are.
			for _, afi := range []api.Family_Afi{api.Family_AFI_IP, api.Family_AFI_IP6} {
				p.AfiSafis = append(p.AfiSafis, &api.AfiSafi{
					Config:   &api.AfiSafiConfig{Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}},
					AddPaths: &api.AddPaths{Config: &api.AddPathsConfig{SendMax: uint32(n)}},
				})
			}
		}
		peers = append(peers, p)
	}
	return gobgp.CheckAddPathSend(g, peers...)
}

// checkZebra refuses GoBGP's zebra redistribution next to fibgate's FIB
// installer: zebra would install HOLD paths' prefixes and duplicate routes.
func checkZebra(c *oc.BgpConfigSet, f *fgd.Config, noFibgate bool) error {
	if noFibgate || !c.Zebra.Config.Enabled || !f.InstallEnabled() {
		return nil
	}
	return errors.New("zebra is enabled: fibgate installs GoBGP's best paths itself; disable [zebra] or set install.enabled: false in the fibgate settings")
}

// release is how the gate will release a confirmed transit prefix
// (bgp.release, with "auto" resolved for this binary).
func (s *setup) release() string {
	how, why := s.gcfg.InProcessRelease()
	if why != nil {
		return how + " (re-export unavailable)"
	}
	return how
}

// redistributeWarning says what happens to the paths GoBGP's zebra client
// redistributes ([zebra.config] redistribute-route-type-list), or "": they
// are gated like any path, but their kernel routes (connected, static)
// are not of the protocol the gate releases on (install.protocol), so
// without bgp.release_protocols their prefixes stay held for good, which
// nothing else would tell.
func (s *setup) redistributeWarning(c *oc.BgpConfigSet) string {
	if c == nil || s.opts.NoFibgate || !c.Zebra.Config.Enabled || len(c.Zebra.Config.RedistributeRouteTypeList) == 0 || len(s.fcfg.BGP.ReleaseProtocols) > 0 {
		return ""
	}
	return fmt.Sprintf("GoBGP redistributes %v routes from zebra: fibgate holds their prefixes in the gated scopes for good "+
		"(it releases a prefix on a route of protocol %s); name their kernel routes' protocol in bgp.release_protocols "+
		"(kernel for connected subnets), or leave them out of the scopes", c.Zebra.Config.RedistributeRouteTypeList, s.fcfg.Install.Protocol)
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
		profiling.Register(mux)
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
