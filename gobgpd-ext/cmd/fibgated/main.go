// Command fibgated is fibgate's sidecar for a stock gobgpd: it installs the
// gate in gobgpd over its gRPC API, writes gobgpd's learned best paths into
// the kernel FIB, and lets gobgpd advertise a prefix only once the hardware
// confirmed its route.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fibgate/fibgate/gobgpd-ext/internal/daemon"
	"github.com/fibgate/fibgate/gobgpd-ext/internal/profiling"
	"github.com/fibgate/fibgate/gobgpd-ext/internal/version"
	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/gobgp"
)

const usage = `Usage: fibgated [--gobgpd ADDR [--gobgpd-tls ...]] [-c FILE]
       fibgated --version

fibgated makes a running gobgpd advertise a prefix only after the switch
hardware installed its route, and withdraw it when installation fails. It
installs an export policy first in gobgpd's global chain (policy, sets and
HOLD paths named fibgate-*), writes gobgpd's learned best paths into the
kernel as proto bgp routes, follows their hardware flags (rtm_flags offload,
trap, offload_failed) and releases each prefix in gobgpd once confirmed.

Before fibgated runs, gobgpd exports everything: put the fallback policy
(--print-fallback) into gobgpd's config, first in its global export
policies. The gate lives in it: fibgated releases confirmed prefixes by
editing its sets over gobgpd's API, and whatever makes gobgpd read its
config again (a restart, a reload with SIGHUP) puts back the file's
version, which holds every gated prefix, until fibgated restores the
releases. So reload gobgpd as usual (systemctl reload gobgpd): nothing
leaks. Leave gobgpd's zebra off: fibgated installs routes itself. Leave
ADD-PATH send off (add-paths send-max 0; receive is fine): fibgated refuses
a gobgpd that sends it to a neighbour, which it could neither release a
prefix to nor take one back from.

A gobgpd that serves its API with --tls is reached with --gobgpd-tls (and
--gobgpd-tls-ca-file for a private CA; a client certificate and key when
gobgpd checks them with --tls-client-ca-file), as the gobgp CLI's --tls
flags do.

The settings file (YAML) is documented in deploy/examples/fibgate.yaml;
every key is optional. SIGHUP reads it again and applies its gating policy
when that changed since it was last read (a policy set over the API stays
until then); other changed settings are logged and take effect at the
next start. SIGINT or SIGTERM: withdraw what was released,
delete HOLD and originated paths, remove installed routes
(install.flush_on_exit), exit 0. Exit status 1 on a runtime error, 2 on
bad flags or settings, a missing namespace or missing privileges.

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fibgated", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	target := fs.String("gobgpd", "127.0.0.1:50051", "gobgpd's gRPC API: host:port or unix:///path (gobgpd --api-hosts)")
	file := fs.String("c", "", "settings file (YAML); default: every setting at its default")
	check := fs.Bool("check", false, "check the settings file and exit")
	fallback := fs.Bool("print-fallback", false, "print the fallback policy for gobgpd's config file and exit")
	fallbackFormat := fs.String("print-fallback-format", "toml", "the format of gobgpd's config file (gobgpd -t): toml, yaml or json")
	showVersion := fs.Bool("version", false, "print fibgate's version, the Go release and the GoBGP version, and exit")
	pprofAddr := fs.String("pprof", "", "serve Go's profiler (/debug/pprof/) on this address, such as 127.0.0.1:6061, as gobgpd's --pprof-host does; off by default")
	var tlsf gobgpdTLS
	fs.BoolVar(&tlsf.on, "gobgpd-tls", false, "reach gobgpd's API over TLS (gobgpd --tls); implied by the other --gobgpd-tls flags")
	fs.StringVar(&tlsf.ca, "gobgpd-tls-ca-file", "", "CA certificates (PEM) that gobgpd's certificate must chain to; default: the system's")
	fs.StringVar(&tlsf.cert, "gobgpd-tls-client-cert-file", "", "client certificate (PEM) for a gobgpd that checks them (gobgpd --tls-client-ca-file); with --gobgpd-tls-client-key-file")
	fs.StringVar(&tlsf.key, "gobgpd-tls-client-key-file", "", "the client certificate's key (PEM)")
	fs.StringVar(&tlsf.serverName, "gobgpd-tls-server-name", "", "the name gobgpd's certificate must carry; default: the host of --gobgpd")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return daemon.ExitOK
		}
		fmt.Fprintf(stderr, "fibgated: %v (see fibgated --help)\n", err)
		return daemon.ExitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fibgated: unexpected arguments %q (see fibgated --help)\n", fs.Args())
		return daemon.ExitConfig
	}
	if *showVersion {
		fmt.Fprintln(stdout, "fibgated", version.Get())
		return daemon.ExitOK
	}
	// The logger comes with the settings, after the TLS files are checked.
	var certLog atomic.Pointer[slog.Logger]
	creds, err := tlsf.credentials(func() {
		if l := certLog.Load(); l != nil {
			l.Warn("gobgpd asked for a client certificate and fibgated has none: a gobgpd that requires one (gobgpd --tls-client-ca-file) refuses fibgated, which then sees its connection closed or reset; give fibgated one with --gobgpd-tls-client-cert-file and --gobgpd-tls-client-key-file")
		}
	})
	if err != nil {
		fmt.Fprintf(stderr, "fibgated: %v\n", err)
		return daemon.ExitConfig
	}
	// SIGHUP reads the settings again (Daemon.ReloadWith); caught from
	// here on, so that one during start-up does not end fibgated as Go's
	// default would, leaving its routes and HOLD paths behind.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg := daemon.Defaults()
	if *file != "" {
		var err error
		if cfg, err = daemon.Load(*file); err != nil {
			fmt.Fprintf(stderr, "fibgated: %v\n", err)
			return daemon.ExitConfig
		}
	}
	gcfg, err := cfg.GoBGP()
	if err != nil {
		fmt.Fprintf(stderr, "fibgated: bgp: %v\n", err)
		return daemon.ExitConfig
	}
	switch {
	case gcfg.ReleaseByCopy:
		fmt.Fprintf(stderr, "fibgated: bgp.release: copy works in gobgpd-ext only: a copy fibgated added would stay in gobgpd after fibgated stopped; use release: toggle or auto (the default) with fibgated\n")
		return daemon.ExitConfig
	case cfg.BGP.Release == "reexport":
		fmt.Fprintf(stderr, "fibgated: bgp.release: reexport works in gobgpd-ext only: gobgpd has no call that exports a prefix again; use release: toggle or auto (the default) with fibgated\n")
		return daemon.ExitConfig
	}
	switch {
	case *fallback:
		text, err := gcfg.FallbackAs(*fallbackFormat)
		if err != nil {
			fmt.Fprintf(stderr, "fibgated: --print-fallback-format: %v\n", err)
			return daemon.ExitConfig
		}
		// A header in the formats that have comments (JSON has none).
		where := map[string]string{
			"toml": "Also list it first in [global.apply-policy.config] export-policy-list = [%q, ...].",
			"yaml": "Merge these lists into your file's, and list the policy first in global.apply-policy.config.export-policy-list: [%q, ...].",
		}[*fallbackFormat]
		if where != "" {
			fmt.Fprintf(stdout, "# fibgate fallback: fibgated's gate; as written here it holds every gated prefix (fibgated down, gobgpd reloaded).\n# "+where+"\n", gcfg.FallbackPolicy)
		}
		fmt.Fprint(stdout, text)
		return daemon.ExitOK
	case *check:
		fmt.Fprintf(stdout, "settings valid: %d gated scope(s), backend %s\n", len(cfg.GatePolicy().Scopes), cfg.Backend.Type)
		return daemon.ExitOK
	}
	log := cfg.Logger(stderr)
	certLog.Store(log)
	if *pprofAddr != "" {
		srv, addr, err := startPprof(*pprofAddr)
		if err != nil {
			fmt.Fprintf(stderr, "fibgated: --pprof: %v\n", err)
			return daemon.ExitConfig
		}
		defer srv.Close()
		log.Info("profiler serving", "addr", addr.String())
	}
	d, err := daemon.New(cfg, &daemon.BGP{New: func(o ...gobgp.Option) (*gobgp.Speaker, error) {
		return gobgp.DialClientWithCredentials(*target, creds, gcfg, o...)
	}}, log)
	if err != nil {
		code, msg := daemon.ExitCode(err, cfg.NetNS)
		fmt.Fprintf(stderr, "fibgated: %s\n", msg)
		return code
	}
	log.Info("fibgated starting", "gobgpd", *target, "tls", tlsf.enabled(), "backend", cfg.Backend.Type, "netns", cfg.NetNS)
	var read func() (daemon.Config, error)
	if *file != "" {
		read = func() (daemon.Config, error) { return daemon.Load(*file) }
	}
	hctx, stopHangups := context.WithCancel(ctx)
	defer stopHangups()
	go d.ReloadOnHangup(hctx, hup, read)
	code, msg := daemon.ExitCode(d.Run(ctx), cfg.NetNS)
	if msg != "" {
		fmt.Fprintf(stderr, "fibgated: %s\n", msg)
	}
	return code
}

// startPprof serves net/http/pprof's handlers on addr until the server is
// closed: how the sidecar's CPU and heap are profiled in make bench-scale,
// and in production when it misbehaves.
func startPprof(addr string) (*http.Server, net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	profiling.Register(mux)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, ln.Addr(), nil
}

// gobgpdTLS is how fibgated reaches a gobgpd whose API is served with
// --tls: the gobgp CLI's --tls, --tls-ca-file, --tls-client-cert-file and
// --tls-client-key-file, under fibgated's --gobgpd-tls prefix.
type gobgpdTLS struct {
	on                        bool
	ca, cert, key, serverName string
}

// enabled says TLS was asked for, by --gobgpd-tls or any of its files.
func (g gobgpdTLS) enabled() bool {
	return g.on || g.ca != "" || g.cert != "" || g.key != "" || g.serverName != ""
}

// credentials are the transport credentials the flags ask for: plain
// (gobgpd's default) unless TLS is; every file is read now, so a wrong
// path or a key that does not match its certificate stops fibgated at
// start (exit 2) rather than failing every connection later. Without a
// client certificate, noCert is called once when gobgpd asks for one: a
// gobgpd that requires it refuses after the TLS 1.3 handshake, and
// fibgated sees that as a broken pipe or a reset as often as the
// server's alert, which name no certificate.
func (g gobgpdTLS) credentials(noCert func()) (credentials.TransportCredentials, error) {
	if !g.enabled() {
		return insecure.NewCredentials(), nil
	}
	if (g.cert == "") != (g.key == "") {
		return nil, errors.New("--gobgpd-tls-client-cert-file and --gobgpd-tls-client-key-file go together")
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: g.serverName}
	if g.ca != "" {
		pool, err := api.LoadCertPool(g.ca)
		if err != nil {
			return nil, fmt.Errorf("--gobgpd-tls-ca-file: %w", err)
		}
		c.RootCAs = pool
	}
	if g.cert != "" {
		kp, err := tls.LoadX509KeyPair(g.cert, g.key)
		if err != nil {
			return nil, fmt.Errorf("--gobgpd-tls-client-cert-file %s, --gobgpd-tls-client-key-file %s: %w", g.cert, g.key, err)
		}
		c.Certificates = []tls.Certificate{kp}
	} else {
		var once sync.Once
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			once.Do(noCert)
			return &tls.Certificate{}, nil // none: the server decides
		}
	}
	return credentials.NewTLS(c), nil
}
