package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fibgate/fibgate/gobgpd-ext/bgpmetrics"
	"github.com/fibgate/fibgate/gobgpd-ext/internal/version"
	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/api/simctl"
	"github.com/fibgate/fibgate/plugin/audit"
	"github.com/fibgate/fibgate/plugin/backoff"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/gobgp"
	"github.com/fibgate/fibgate/plugin/hw/external"
	"github.com/fibgate/fibgate/plugin/hw/sim"
	"github.com/fibgate/fibgate/plugin/kernel"
	"github.com/fibgate/fibgate/plugin/logdamp"
)

// ErrConfig marks errors the operator fixes in the settings or flags; the
// binaries exit 2 on them, as their --help says.
var ErrConfig = errors.New("configuration")

// configError marks err as the operator's to fix. Its text is err's alone
// (the exit status says "configuration", the line names the key), and it
// unwraps to err with errors.Unwrap, which a "%w: %w" error does not (it
// unwraps to nil: issue 12's `%!v(PANIC=Error method ...)`).
type configError struct{ err error }

func (e configError) Error() string        { return e.err.Error() }
func (e configError) Unwrap() error        { return e.err }
func (e configError) Is(target error) bool { return target == ErrConfig }

func configErr(err error) error { return configError{err} }

// BGP is the daemon's BGP side: fibgated makes its Speaker over gobgpd's
// gRPC API, gobgpd-ext one in process, and says how to stop its BgpServer.
type BGP struct {
	// New makes the Speaker with the daemon's options (logger, guard
	// interval, adoption of what is still confirmed after a restart).
	New func(opts ...gobgp.Option) (*gobgp.Speaker, error)
	// Stop ends the BGP sessions at shutdown (gobgpd-ext stops its
	// BgpServer), after the Speaker closed and before installed routes
	// are flushed: peers drop every path with the session, so nothing
	// needs withdrawing one by one. Nil (fibgated, whose gobgpd keeps
	// running): the released prefixes are withdrawn before the routes
	// under them are flushed.
	Stop func(context.Context) error
}

// Daemon is the running gate: listener, hardware backend, tracker, API,
// metrics and, with BGP, the Speaker and the FIB installer.
type Daemon struct {
	cfg      Config
	log      *slog.Logger
	listener *kernel.Listener
	asic     *sim.Sim
	tracker  *gate.Tracker
	server   *api.Server
	registry *prometheus.Registry
	bgp      *BGP
	sp       *gobgp.Speaker
	feeder   *feeder
	rw       *rewriter
	auditor  *audit.Auditor
	ready    chan struct{}
	// policies takes the gating policy at run time (the API's, Reload's);
	// filePolicy is the one the settings file gave when last read.
	policies   api.PolicyStore
	reloadMu   sync.Mutex
	filePolicy gate.Policy
}

// ShutdownTimeout bounds the shutdown sequence (withdrawals, Speaker
// close, flush), so a wedged gobgpd cannot keep a daemon from exiting.
const ShutdownTimeout = 30 * time.Second

// Option changes how New assembles a daemon.
type Option func(*Daemon)

// WithRegistry registers the daemon's metrics in reg instead of a
// registry of its own, so that a caller with metrics of its own serves
// them all on one endpoint (gobgpd-ext: GoBGP's bgp_* next to fibgate_*).
// The daemon serves reg on the settings' metrics address when that is
// set; otherwise serving it is the caller's job.
func WithRegistry(reg *prometheus.Registry) Option {
	return func(d *Daemon) { d.registry = reg }
}

// NewRegistry returns a Prometheus registry with the Go runtime and
// process collectors (go_*, process_*: memory, goroutines, CPU, open
// files), which every fibgate daemon serves next to its own metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// New checks the settings and assembles the parts; nothing runs yet. bgp
// is nil for a gate without BGP (fibgate serve).
func New(cfg Config, bgp *BGP, log *slog.Logger, opts ...Option) (*Daemon, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{cfg: cfg, log: log, bgp: bgp, ready: make(chan struct{})}
	for _, o := range opts {
		o(d)
	}
	if err := d.assemble(cfg, bgp, log); err != nil {
		d.closeEarly()
		return nil, err
	}
	return d, nil
}

// assemble makes the parts; on error New releases what was made.
func (d *Daemon) assemble(cfg Config, bgp *BGP, log *slog.Logger) error {
	lopts := []kernel.ListenerOption{kernel.WithNetNS(cfg.NetNS), kernel.WithRcvBuf(cfg.RcvBuf), kernel.WithLogger(log)}
	if cfg.NotifyMode != "" {
		v, _ := strconv.Atoi(cfg.NotifyMode)
		m, err := fib.ParseNotifyMode(v)
		if err != nil {
			return configErr(err)
		}
		lopts = append(lopts, kernel.WithSetNotifyMode(m))
	}
	if cfg.NotifyMode == "" {
		if err := checkNotify(cfg); err != nil {
			return err
		}
	}
	if cfg.API.Socket != "" {
		if err := checkSocketDir(cfg.API.Socket); err != nil {
			return err
		}
	}
	var aopts []api.Option
	var ext *external.Backend
	switch cfg.Backend.Type {
	case "sim":
		sc, err := cfg.simConfig()
		if err != nil {
			return configErr(err)
		}
		asic, err := sim.New(sc, sim.WithNetNS(cfg.NetNS), sim.WithLogger(log))
		if err != nil {
			return configErr(fmt.Errorf("sim: %w", err))
		}
		d.asic = asic
		lopts = append(lopts, kernel.WithDriver(asic), kernel.WithIgnoreTables(sc.MirrorTable))
		aopts = append(aopts, api.WithSim(simctl.New(asic)))
	case "external":
		ext = external.New(external.WithLogger(log))
		lopts = append(lopts, kernel.WithDriver(ext))
		aopts = append(aopts, api.WithAgents(ext))
	}
	d.listener = kernel.NewListener(lopts...)
	if ext != nil {
		ext.Bind(d.listener)
	}
	topts := []gate.TrackerOption{gate.WithLogger(log)}
	var metrics *api.Metrics
	if cfg.Metrics != "" && d.registry == nil {
		d.registry = NewRegistry()
	}
	if d.registry != nil {
		var err error
		if metrics, err = api.NewMetrics(d.registry); err != nil {
			return err
		}
		v := version.Get()
		if err := d.registry.Register(api.NewBuildInfo(v.Version, v.GoVersion, v.GoBGP)); err != nil {
			return fmt.Errorf("register fibgate_build_info: %w", err)
		}
		topts = append(topts, gate.WithObserver(metrics))
	}
	// What the audit needs to read the FIB as the gate does.
	var classify gate.Classifier
	var installed *audit.Installer
	if bgp != nil {
		var reg prometheus.Registerer // a nil *Registry is not a nil Registerer
		if d.registry != nil {
			reg = d.registry
		}
		bm, err := bgpmetrics.New(reg)
		if err != nil {
			return fmt.Errorf("register the BGP speaker's metrics: %w", err)
		}
		sp, err := bgp.New(append([]gobgp.Option{gobgp.WithLogger(log), gobgp.WithGuardInterval(cfg.GuardInterval()), gobgp.WithAdopt(d.Confirmed),
			gobgp.WithFIBClock(d.listener.Clock)}, bm.Options()...)...)
		if err != nil {
			return configErr(err)
		}
		d.sp = sp
		if err := bgpmetrics.RegisterGauges(reg, sp); err != nil {
			return fmt.Errorf("register the BGP speaker's gauges: %w", err)
		}
		proto, err := cfg.installProtocol()
		if err != nil {
			return configErr(err)
		}
		orig, err := cfg.originate()
		if err != nil {
			return configErr(err)
		}
		rel, err := cfg.release()
		if err != nil {
			return configErr(err)
		}
		classify = gate.ByProtocols(rel, orig...)
		topts = append(topts, gate.WithSpeaker(sp, classify),
			gate.WithAlreadyOut(sp.IsReleased))
		if cfg.InstallEnabled() {
			installed = auditInstaller(cfg.Install, proto)
			inst, err := kernel.NewInstaller(kernel.InstallerConfig{NetNS: cfg.NetNS, Table: cfg.Install.Table,
				Protocol: proto, Metric: cfg.Install.Metric, Vetoer: d.vetoer()}, log)
			if err != nil {
				return configErr(err)
			}
			d.feeder = newFeeder(sp, inst, inst.Table(), nil, log)
			d.feeder.restartTimeout = cfg.RestartTimeout()
			// Next hops that are not directly connected (iBGP, eBGP
			// multihop) resolve over the listener's model, and so do the
			// audit's expectations of the installer's routes.
			d.feeder.res = &resolver{view: d.listener.View, proto: proto,
				events: func(ctx context.Context) <-chan []fib.Event { return d.listener.Events(ctx, false) }}
			installed.Resolve = resolveIn(d.listener.View, inst.Table(), proto)
		}
	}
	rw, err := newRewriter(cfg.NetNS, d.feeder, d.vetoer())
	if err != nil {
		return configErr(err)
	}
	d.rw = rw
	topts = append(topts, gate.WithRewriter(d.rw))
	tr, err := gate.NewTracker(d.listener, cfg.policy, topts...)
	if err != nil {
		return configErr(err)
	}
	d.tracker = tr
	if d.feeder != nil {
		d.feeder.gate = tr // refused routes show in the gate
	}
	if bgp != nil {
		if d.auditor, err = d.newAuditor(cfg, classify, installed, log); err != nil {
			return configErr(err)
		}
		aopts = append(aopts, api.WithAuditor(d.auditor))
		if d.registry != nil {
			if err := api.NewAuditMetrics(d.registry, d.auditor); err != nil {
				return err
			}
		}
	}
	if metrics != nil {
		metrics.Watch(tr, d.listener)
	}
	var store api.PolicyStore = tr
	if bgp != nil {
		store = rescoping{Tracker: tr, sp: d.sp, log: log}
	}
	d.policies, d.filePolicy = store, cfg.GatePolicy()
	aopts = append(aopts, api.WithGate(tr), api.WithPolicyStore(store), api.WithListenerStats(d.listener), api.WithRetrier(d),
		api.WithLinkNames(d.listener.LinkName), api.WithReady(d.ready), api.WithUnixSocket(cfg.API.Socket), api.WithLogger(log))
	if cfg.API.Listen != "" {
		tlsCfg, err := api.ServerTLS(cfg.API.TLSCert, cfg.API.TLSKey, cfg.API.TLSClientCA)
		if err != nil {
			return configErr(err)
		}
		roles, err := cfg.API.Roles()
		if err != nil {
			return configErr(err)
		}
		aopts = append(aopts, api.WithTCP(cfg.API.Listen, tlsCfg), api.WithTCPRoles(roles))
	}
	if d.server, err = api.New(aopts...); err != nil {
		return configErr(err)
	}
	return nil
}

// notifyMode reads the sysctl for checkNotify; a test stands in for kernels
// this machine does not run.
var notifyMode = kernel.NotifyMode

// checkNotify refuses to run a gate that waits for hardware flags the
// kernel will not announce: with fib_notify_on_flag_change at 0, at 2
// (offload failures only: a driver's offload or trap is never announced),
// or on a kernel without it, nothing would ever be confirmed, and prefixes
// would be held forever. A family the kernel runs without is skipped.
func checkNotify(cfg Config) error {
	for _, fam := range hardwareFamilies(cfg.policy) {
		m, err := notifyMode(kernel.Options{NetNS: cfg.NetNS}, fam)
		if errors.Is(err, kernel.ErrFamilyDisabled) {
			continue // IPv6 disabled: no such prefix to confirm
		}
		if errors.Is(err, kernel.ErrNotifyUnsupported) {
			return configErr(fmt.Errorf("this kernel has no net.%s.fib_notify_on_flag_change (Linux 5.12 added it): it never announces hardware flag changes, so no prefix would ever be confirmed; gate at level fib, or run a kernel of 5.12 or later", fam))
		}
		if err != nil {
			return err // a missing namespace or /proc/sys: ExitCode names it
		}
		if gap := fib.NotifyMode(m).Unheard(); gap != "" {
			return configErr(fmt.Errorf("net.%s.fib_notify_on_flag_change is %d: %s, so no prefix would ever be confirmed; set notify_mode: 1 in the settings (fibgate serve: --set-notify 1) or sysctl -w net.%s.fib_notify_on_flag_change=1, or gate at level fib", fam, m, gap, fam))
		}
	}
	return nil
}

// hardwareFamilies are the families some scope of p gates at a level
// above fib: the ones whose confirmations need the kernel to announce
// hardware flag changes.
func hardwareFamilies(p gate.Policy) []fib.Family {
	var out []fib.Family
	for _, fam := range []fib.Family{fib.IPv4, fib.IPv6} {
		for _, s := range p.Scopes {
			if (s.Family == 0 || s.Family == fam) && s.Level != gate.LevelFIB {
				out = append(out, fam)
				break
			}
		}
	}
	return out
}

// checkSocketDir refuses to start when the API socket's directory is
// missing: a configuration error (exit 2, which systemd's
// RestartPreventExitStatus=2 does not restart), found before anything
// runs rather than when the API starts listening.
func checkSocketDir(socket string) error {
	dir := filepath.Dir(socket)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return configErr(fmt.Errorf("api.socket %s (fibgate serve: --socket): directory %s does not exist: create it (systemd RuntimeDirectory=, mkdir -p) or choose another path", socket, dir))
	case err != nil:
		return fmt.Errorf("api.socket %s: %w", socket, err) // a permission: ExitCode names it
	case !st.IsDir():
		return configErr(fmt.Errorf("api.socket %s (fibgate serve: --socket): %s is not a directory", socket, dir))
	}
	return nil
}

func (d *Daemon) close() {
	if d.feeder != nil {
		d.feeder.inst.Close()
	}
	if d.rw != nil {
		d.rw.close()
	}
}

// closeEarly releases what New made when New fails.
func (d *Daemon) closeEarly() {
	d.close()
	if d.sp != nil {
		_ = d.sp.Close(context.Background())
	}
}

// Speaker is the daemon's Speaker (nil without BGP), for gobgpd-ext's
// reload path (Check right after UpdateConfig).
func (d *Daemon) Speaker() *gobgp.Speaker { return d.sp }

// Run starts every part in order and, when ctx ends or a part fails, runs
// the shutdown sequence: the gate stops deciding; with BGP, the released
// prefixes are taken back (fibgated) or the sessions end (gobgpd-ext), the
// Speaker deletes its HOLD and originated paths; then the installed routes
// are flushed (install.flush_on_exit); last the backend, the listener and
// the API stop. It returns the first failure, or nil after a clean stop.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.close()
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	front, cancelFront := context.WithCancel(ctx)
	defer cancelFront()
	var baseWG, frontWG sync.WaitGroup
	var once sync.Once
	var first error
	fail := func(name string, err error) {
		once.Do(func() {
			first = err
			if !strings.HasPrefix(err.Error(), name+": ") { // not "api: api: ..."
				first = fmt.Errorf("%s: %w", name, err)
			}
		})
		cancelFront()
	}
	start := func(wg *sync.WaitGroup, c context.Context, name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(c); err != nil && c.Err() == nil {
				fail(name, err)
			}
		}()
	}
	start(&baseWG, base, "listener", d.listener.Run)
	if d.asic != nil {
		start(&baseWG, base, "sim", func(c context.Context) error { return d.asic.Run(c, d.listener) })
	}
	start(&baseWG, base, "api", d.server.Serve)
	if d.cfg.Metrics != "" {
		start(&baseWG, base, "metrics", func(c context.Context) error { return api.ServeMetrics(c, d.cfg.Metrics, d.registry) })
	}

	// The FIB first: Bootstrap adopts what an earlier instance released
	// and is confirmed now (Confirmed), which needs the whole table.
	select {
	case <-d.listener.Ready():
	case <-front.Done():
	}
	bootstrapped := d.bgp == nil || d.bootstrap(front) == nil
	if bootstrapped && front.Err() == nil {
		if d.bgp != nil {
			start(&frontWG, front, "gobgp guard", d.sp.Guard)
			if d.feeder != nil {
				start(&frontWG, front, "fib installer", d.feeder.run)
			} else {
				start(&frontWG, front, "best-path watch", d.watchBest)
			}
			start(&frontWG, front, "audit", d.auditor.Run)
		}
		start(&frontWG, front, "gate", d.tracker.Run)
		if fams := hardwareFamilies(d.tracker.Policy()); len(fams) > 0 && d.cfg.Backend.WarnUnconfirmed > 0 {
			start(&frontWG, front, "hardware watch", func(c context.Context) error {
				warnUnconfirmed(c, d.tracker, fams, time.Duration(d.cfg.Backend.WarnUnconfirmed), d.cfg.Backend.Type, d.log)
				return nil
			})
		}
		go func() {
			select {
			case <-d.tracker.Ready():
				close(d.ready)
				d.log.Info("fibgate ready", "fib_routes", d.listener.Stats().Routes, "bgp", d.bgp != nil)
			case <-front.Done():
			}
		}()
	}
	<-front.Done()
	frontWG.Wait()
	d.shutdown()
	cancelBase()
	baseWG.Wait()
	return first
}

// hardwareWatch is what warnUnconfirmed reads of the gate (a
// *gate.Tracker).
type hardwareWatch interface {
	HardwareSeenIn(fib.Family) bool
	NexthopMarksSeenIn(fib.Family) bool
	PendingIn(fib.Family) int
}

// warnUnconfirmed logs once, at WARN, when prefixes of a family in fams
// (those gated at level hardware or offload) have been pending for after
// with no route of that family ever showing a hardware flag: on a machine
// whose driver does not offload routes (or that has none) every such
// prefix waits for good, and the log is where a new user looks. A driver
// may also offload one family only (Marvell's prestera offloads IPv4 and
// never flags an IPv6 route), or mark next hops and never flag a route
// (rocker), which the warning then names. It returns
// when ctx ends, or once every family has shown a flag or been warned of.
func warnUnconfirmed(ctx context.Context, g hardwareWatch, fams []fib.Family, after time.Duration, backend string, log *slog.Logger) {
	tick := time.NewTicker(min(max(after/10, 10*time.Millisecond), time.Second))
	defer tick.Stop()
	since := map[fib.Family]time.Time{} // pending prefixes, no flag, since then
	left := slices.Clone(fams)
	for len(left) > 0 {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			var due []string    // families whose prefixes waited long enough
			var marked []string // of due: next hops marked, routes never flagged
			pending, waited := 0, time.Duration(0)
			left = slices.DeleteFunc(left, func(fam fib.Family) bool {
				if g.HardwareSeenIn(fam) {
					return true
				}
				n := g.PendingIn(fam)
				switch {
				case n == 0:
					delete(since, fam)
					return false
				case since[fam].IsZero():
					since[fam] = now
					return false
				case now.Sub(since[fam]) < after:
					return false
				}
				due = append(due, fam.String())
				if g.NexthopMarksSeenIn(fam) {
					marked = append(marked, fam.String())
				}
				pending, waited = pending+n, max(waited, now.Sub(since[fam]))
				return true
			})
			if len(due) == 0 {
				continue
			}
			var flagged []string
			for _, o := range []fib.Family{fib.IPv4, fib.IPv6} {
				if g.HardwareSeenIn(o) {
					flagged = append(flagged, o.String())
				}
			}
			msg := "no route has shown a hardware flag (offload, trap, offload_failed) since start, so no prefix waiting for the hardware is confirmed: " + unconfirmedHint(backend)
			switch {
			case len(marked) > 0:
				these := strings.Join(marked, " and ")
				msg = "no " + these + " route has shown a flag of its own (rt_offload, rt_trap, rt_offload_failed) since start, though their next hops are marked in hardware (`ip route` prints offload or trap beside a next hop): " +
					"the driver marks next hops and not routes (rocker does), and a next hop's mark is shared by every route through it and never announced, so it confirms no route; " +
					"prefixes waiting for the hardware wait for good: gate " + these + " at level fib"
			case len(flagged) > 0:
				these, others := strings.Join(due, " and "), strings.Join(flagged, " and ")
				msg = "no " + these + " route has shown a hardware flag since start, while " + others + " routes have: the driver offloads " +
					others + " routes only (Marvell's prestera offloads IPv4 only), so " + these +
					" prefixes waiting for the hardware wait for good; gate them at level fib (a scope of their family at level fib) or leave them out of the gated scopes"
			}
			log.Warn(msg, "family", strings.Join(due, ","), "pending", pending, "for", waited.Round(100*time.Millisecond), "backend", backend)
		}
	}
}

// unconfirmedHint is what to check when no flag ever shows, by backend.
func unconfirmedHint(backend string) string {
	switch backend {
	case "external":
		return "no agent has reported a route over the API (HardwareService.ReportRoutes)"
	case "sim":
		return "the simulated ASIC programs nothing (fibgate hw stats: a capacity of 0, a fail probability of 1, or a rate or latency too slow?)"
	}
	return "the kernel announces flag changes (fib_notify_on_flag_change is set), but no driver has set a flag: is there a switchdev driver that offloads routes on this machine (`ip route` shows offload or trap beside its routes)? Without one, gate at level fib, or try fibgate with backend: sim (fibgate serve: --backend sim)"
}

// Confirmed reports whether p's route is confirmed now in a gated table,
// as the gate would judge it: what a restarted Speaker may keep out
// (gobgp.WithAdopt). With a real driver the flags survive a restart of
// fibgate, so nothing flaps; the sim starts empty, so nothing is adopted.
func (d *Daemon) Confirmed(p netip.Prefix) bool {
	pol := d.tracker.Policy()
	ok := false
	d.listener.View(func(f *fib.FIB) {
		for _, table := range pol.Tables() {
			rs := f.Routes(table, p)
			if len(rs) == 0 {
				continue
			}
			if sc, in := pol.Match(table, p); in {
				if v, _ := sc.Judge(&rs[0]); v == gate.VerdictConfirmed {
					ok = true
					return
				}
			}
		}
	})
	return ok
}

// watchBest follows GoBGP's best paths while another daemon installs them
// (install.enabled: false, such as GoBGP's own zebra client with FRR's
// zebra). The FIB installer's watch does more than feed it, and that part
// holds whoever writes the routes: a prefix whose best path changes or
// goes is taken back before its route is rewritten (the fences issue 10's
// churn needs), the not-to sets learn the ASes of released paths, new
// attributes on the same route are kept on copies, and zebra is told of a
// prefix that went under a HOLD path (plugin/gobgp zebra.go). Before
// session 26 none of it ran without the installer.
func (d *Daemon) watchBest(ctx context.Context) error {
	return watchBest(ctx, d.sp, func(bool, []gobgp.BestPath) {}, d.log) // another daemon installs
}

// bootstrap installs the gate in GoBGP, retrying while gobgpd is not
// reachable yet; nothing is advertised before it succeeds.
func (d *Daemon) bootstrap(ctx context.Context) error {
	retry := backoff.Counter{Policy: gobgpdRetry}
	// gobgpd not up yet: one line, then how long (logdamp).
	failed := logdamp.New(d.log, slog.LevelWarn, "installing the gate in GoBGP failed; retrying")
	// A neighbour gobgpd sends ADD-PATH to: its configuration must
	// change (and gobgpd reload it), so it is an error, retried for that.
	refused := logdamp.New(d.log, slog.LevelError, "the gate refuses this gobgpd: fix its config and reload it; retrying")
	// Another fibgate gates it: this one waits until that one stops.
	other := logdamp.New(d.log, slog.LevelError, "another fibgate is gating this gobgpd; waiting for it to stop")
	for {
		start := time.Now()
		err := d.sp.Bootstrap(ctx)
		if err == nil {
			failed.OK()
			refused.OK()
			other.OK()
			d.log.Info("gate installed in GoBGP", "took", time.Since(start))
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := retry.Next()
		switch {
		case errors.Is(err, gobgp.ErrAddPathSend):
			refused.Fail(err, "in", wait.Round(time.Millisecond))
		case errors.Is(err, gobgp.ErrAnotherGate):
			other.Fail(err, "in", wait.Round(time.Millisecond))
		default:
			failed.Fail(err, "in", wait.Round(time.Millisecond))
		}
		if !backoff.Sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// shutdown takes BGP back before the routes under it go.
func (d *Daemon) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	start := time.Now()
	if d.restartStop() {
		// A stop for a restart (graceful_restart.restart_on_stop): BGP
		// and the installed routes stay as they are for the next instance.
		d.log.Info("fibgate stopped for a restart: nothing withdrawn, routes kept", "took", time.Since(start))
		return
	}
	withdrawn := 0
	flush := d.feeder != nil && d.cfg.flushOnExit()
	if d.bgp != nil {
		sp := d.sp
		if d.bgp.Stop == nil && flush {
			rel := sp.Released()
			if err := sp.Withdraw(ctx, rel); err != nil {
				// gobgpd still advertises some of them: their routes stay,
				// or the prefixes would be blackholed.
				d.log.Error("withdraw at shutdown failed; installed routes are kept", "err", err)
				flush = false
			}
			withdrawn = len(rel)
		}
		if err := sp.Close(ctx); err != nil {
			d.log.Error("close the gobgp speaker", "err", err)
		}
		if d.bgp.Stop != nil {
			if err := d.bgp.Stop(ctx); err != nil {
				d.log.Error("stop bgp", "err", err)
			}
		}
	}
	flushed := 0
	if flush {
		n, err := d.feeder.inst.Flush()
		if err != nil {
			d.log.Error("flush installed routes", "err", err)
		}
		flushed = n
	}
	d.log.Info("fibgate stopped", "withdrawn", withdrawn, "flushed_routes", flushed, "took", time.Since(start))
}

// newAuditor makes the consistency audit over the daemon's parts: the
// tracker's states, the listener's FIB model read as the gate reads it
// (classify, and the installer's routes unless it is off), and GoBGP
// through the Speaker.
func (d *Daemon) newAuditor(cfg Config, classify gate.Classifier, installed *audit.Installer, log *slog.Logger) (*audit.Auditor, error) {
	return audit.New(audit.Sources{
		Gate: d.tracker.Briefs,
		FIB: func(part audit.Part) audit.FIB {
			pol := d.tracker.Policy() // outside View: the tracker reads the listener under its own lock
			return audit.ReadFIBIn(d.listener.View, pol, classify, installed, part)
		},
		BGP:        d.sp.AuditBGP,
		Converging: d.converging,
	}, audit.WithInterval(time.Duration(cfg.Audit.Interval)), audit.WithWholeRIBLimit(cfg.Audit.WholeRIBMax), audit.WithLogger(log))
}

// converging says a large share of the table is on its way through the
// gate: pending its hardware, confirmed and not yet released, or named by
// route events the tracker has not judged yet. The periodic
// audit waits then (audit.Sources.Converging): a full table arriving, or a
// session's table withdrawn and learned again. A steady churn of changes
// moves a few hundred prefixes at a time and never counts as converging.
func (d *Daemon) converging() bool {
	moving, all := d.tracker.Unsettled()
	return moving > max(convergingMin, all/convergingShare)
}

// A gate converges while more than convergingMin prefixes, and more than
// one in convergingShare of those it tracks, are on their way.
const (
	convergingMin   = 1000
	convergingShare = 100
)

// auditInstaller says which kernel routes are the FIB installer's, with
// the installer's own defaults for what the settings leave at zero
// (kernel.InstallerConfig).
func auditInstaller(in Install, proto fib.Protocol) *audit.Installer {
	a := &audit.Installer{Table: in.Table, Protocol: proto, Metric: in.Metric}
	if a.Table == 0 {
		a.Table = fib.TableMain
	}
	if a.Metric == 0 {
		a.Metric = 20
	}
	return a
}

// rescoping applies policy changes over the API, also those that change
// what GoBGP holds back (the scopes' families and prefixes, or no scope
// at all: gating off), at run time and without a session reset (issue
// 14): the Speaker's sets change first (gobgp.Speaker.Rescope: nothing
// confirmed is withdrawn, nothing held gets out), then the tracker judges
// every prefix under the new policy and takes back what is out
// unconfirmed. The change lives until the daemon restarts; the settings
// file keeps the policy it starts with.
type rescoping struct {
	*gate.Tracker
	sp  *gobgp.Speaker
	log *slog.Logger
}

// rescopeTimeout bounds the Speaker's part of a policy change: a few
// GoBGP calls, and a re-run of export for the prefixes leaving the scope.
const rescopeTimeout = time.Minute

func (s rescoping) SetPolicy(p gate.Policy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	scope, none := ScopeOf(p), len(p.Scopes) == 0
	cur := s.sp.Config()
	if fmt.Sprint(scope) != fmt.Sprint(cur.Scope) || none != cur.NoScope {
		next := cur
		next.Scope, next.NoScope = scope, none
		ctx, cancel := context.WithTimeout(context.Background(), rescopeTimeout)
		defer cancel()
		if err := s.sp.Rescope(ctx, next); err != nil {
			return fmt.Errorf("change what GoBGP holds back: %w", err)
		}
		s.log.Info("gated scope changed at run time", "scopes", len(p.Scopes), "ranges", len(scope), "gating", !none)
	}
	return s.Tracker.SetPolicy(p)
}
