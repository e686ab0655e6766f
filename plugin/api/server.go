// Package api is fibgate's gRPC server: the fibgate.v1 services (policy,
// routes, hardware, stats) over a unix socket, and optionally TCP with TLS,
// plus the standard health and reflection services so grpc_health_probe and
// grpcurl work without fibgate's protos.
//
// It is the edge: requests are validated and converted to the gate's own
// types here, and errors become gRPC codes in one function (statusOf).
// The server consumes small interfaces (PolicyStore, RouteStore, ...) and
// serves FAILED_PRECONDITION for what the daemon was built without.
package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// Defaults of the server's limits, chosen for a local control socket.
const (
	// DefaultSocket is where the daemon listens and the CLI connects.
	DefaultSocket = "/run/fibgate/fibgate.sock"
	// DefaultMaxRecvMsgSize bounds one request (4 MiB, gRPC's own
	// default): a policy or a batch of agent reports fits many times over.
	DefaultMaxRecvMsgSize = 4 << 20
	// DefaultMaxConcurrentStreams bounds the RPCs in flight per connection.
	DefaultMaxConcurrentStreams = 256
	// DefaultKeepaliveMinTime is the shortest keepalive ping interval a
	// client may use; pinging more often gets the connection closed.
	DefaultKeepaliveMinTime = 10 * time.Second
	// DefaultShutdownTimeout is how long Serve waits for RPCs to finish
	// before it cuts them off.
	DefaultShutdownTimeout = 5 * time.Second
	// DefaultWatchLimit is how many changed route states may wait for one
	// WatchRoutes client before it is dropped with RESOURCE_EXHAUSTED.
	// The clients that stopped reading share what they hold (each holds
	// the latest states published), so together they keep about 16 MB
	// of queued states at most (a state is about 250 bytes), plus the
	// message each is being sent; a client that keeps reading rides out a
	// burst of 64k changes.
	DefaultWatchLimit = 65536
)

type config struct {
	log              *slog.Logger
	policy           PolicyStore
	routes           RouteStore
	gateStats        GateStats
	listenerStats    ListenerStats
	agents           Agents
	sim              SimControl
	retrier          Retrier
	auditor          Auditor
	linkName         func(int) string
	ready            <-chan struct{}
	socket           string
	tcpAddr          string
	tls              *tls.Config
	roles            Roles
	maxRecv          int
	maxStreams       uint32
	keepaliveMinTime time.Duration
	shutdownTimeout  time.Duration
	watchLimit       int
}

// Option configures a Server.
type Option func(*config)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithGate serves policy, routes and gate stats from g (a *gate.Tracker).
func WithGate(g Gate) Option {
	return func(c *config) { c.policy, c.routes, c.gateStats = g, g, g }
}

// WithPolicyStore serves PolicyService from p alone.
func WithPolicyStore(p PolicyStore) Option { return func(c *config) { c.policy = p } }

// WithRouteStore serves RouteService from r alone.
func WithRouteStore(r RouteStore) Option { return func(c *config) { c.routes = r } }

// WithGateStats serves the gate's part of StatsService from s alone.
func WithGateStats(s GateStats) Option { return func(c *config) { c.gateStats = s } }

// WithListenerStats adds the route listener's counters to GetStats.
func WithListenerStats(s ListenerStats) Option { return func(c *config) { c.listenerStats = s } }

// WithAgents lets external hardware agents connect (ReportRoutes).
func WithAgents(a Agents) Option { return func(c *config) { c.agents = a } }

// WithRetrier serves HardwareService.RetryRoutes (`fibgate hw retry`).
func WithRetrier(r Retrier) Option { return func(c *config) { c.retrier = r } }

// WithSim enables the simulated ASIC's controls.
func WithSim(s SimControl) Option { return func(c *config) { c.sim = s } }

// WithAuditor serves AuditService from a (daemons with BGP).
func WithAuditor(a Auditor) Option { return func(c *config) { c.auditor = a } }

// WithLinkNames names interfaces in the routes sent to agents (pass the
// listener's LinkName), since agents map names, not indexes, to ports.
func WithLinkNames(f func(index int) string) Option { return func(c *config) { c.linkName = f } }

// WithReady keeps the health service at NOT_SERVING until ready closes
// (the tracker's Ready), so probes do not pass before the table is judged.
func WithReady(ready <-chan struct{}) Option { return func(c *config) { c.ready = ready } }

// WithUnixSocket sets the socket path (default DefaultSocket); "" serves
// no unix socket, which needs WithTCP.
func WithUnixSocket(path string) Option { return func(c *config) { c.socket = path } }

// WithTCP also serves on a TCP address with TLS: the API changes what a
// router advertises, so it is never served in clear text over the network.
// Build the config with ServerTLS.
func WithTCP(addr string, cfg *tls.Config) Option {
	return func(c *config) { c.tcpAddr, c.tls = addr, cfg }
}

// WithTCPRoles says which client certificates may write over TCP and
// which may read (see Roles). Without it, and always without a client CA,
// the TCP listener is read-only: the API changes what the router
// advertises, so a client it cannot name must not change it. Roles need
// a client CA (ServerTLS with clientCAFile).
func WithTCPRoles(r Roles) Option { return func(c *config) { c.roles = r } }

// WithMaxRecvMsgSize bounds a request's size in bytes (default 4 MiB);
// larger requests get RESOURCE_EXHAUSTED.
func WithMaxRecvMsgSize(n int) Option { return func(c *config) { c.maxRecv = n } }

// WithMaxConcurrentStreams bounds the RPCs in flight on one connection.
func WithMaxConcurrentStreams(n uint32) Option { return func(c *config) { c.maxStreams = n } }

// WithKeepaliveMinTime sets the shortest keepalive interval clients may use.
func WithKeepaliveMinTime(d time.Duration) Option { return func(c *config) { c.keepaliveMinTime = d } }

// WithShutdownTimeout bounds the graceful part of shutdown.
func WithShutdownTimeout(d time.Duration) Option { return func(c *config) { c.shutdownTimeout = d } }

// WithWatchLimit sets how many changed route states may wait for one
// WatchRoutes client (default DefaultWatchLimit); a client further behind
// is dropped with RESOURCE_EXHAUSTED, so one that stops reading costs a
// bounded amount of memory (gate.WatchLimit says why it is not sent a
// catch-up instead).
func WithWatchLimit(states int) Option { return func(c *config) { c.watchLimit = states } }

// Server serves the fibgate API. Create it with New, run it with Serve.
type Server struct {
	cfg    config
	health *health.Server
	// stopping is closed when Serve begins to stop, so long streams
	// (WatchRoutes, ReportRoutes) end and graceful stop can finish.
	stopping chan struct{}
	served   bool
	mu       sync.Mutex
}

// New checks the options and returns a server; nothing listens until Serve.
func New(opts ...Option) (*Server, error) {
	c := config{
		log:              slog.New(slog.DiscardHandler),
		socket:           DefaultSocket,
		maxRecv:          DefaultMaxRecvMsgSize,
		maxStreams:       DefaultMaxConcurrentStreams,
		keepaliveMinTime: DefaultKeepaliveMinTime,
		shutdownTimeout:  DefaultShutdownTimeout,
		watchLimit:       DefaultWatchLimit,
	}
	for _, o := range opts {
		o(&c)
	}
	switch {
	case c.socket == "" && c.tcpAddr == "":
		return nil, errors.New("api: nothing to listen on: give a unix socket path or a TCP address")
	case c.tcpAddr != "" && c.tls == nil:
		return nil, fmt.Errorf("api: TCP address %s needs TLS (a certificate and key)", c.tcpAddr)
	case c.tcpAddr != "" && (len(c.roles.Admins) > 0 || len(c.roles.Readers) > 0) && c.tls.ClientAuth != tls.RequireAndVerifyClientCert:
		return nil, errors.New("api: client roles (api.admin_clients, api.read_clients) need client certificates: set api.tls_client_ca")
	case c.maxRecv <= 0:
		return nil, fmt.Errorf("api: max receive message size %d must be positive", c.maxRecv)
	case c.maxStreams == 0:
		return nil, errors.New("api: max concurrent streams must be positive")
	case c.shutdownTimeout < 0:
		return nil, fmt.Errorf("api: negative shutdown timeout %s", c.shutdownTimeout)
	case c.watchLimit <= 0:
		return nil, fmt.Errorf("api: watch limit %d must be positive", c.watchLimit)
	}
	return &Server{cfg: c, health: health.NewServer(), stopping: make(chan struct{})}, nil
}

// serviceNames are the services health reports on (besides "", the whole
// server).
func serviceNames() []string {
	return []string{
		pb.PolicyService_ServiceDesc.ServiceName,
		pb.RouteService_ServiceDesc.ServiceName,
		pb.HardwareService_ServiceDesc.ServiceName,
		pb.SimService_ServiceDesc.ServiceName,
		pb.StatsService_ServiceDesc.ServiceName,
		pb.AuditService_ServiceDesc.ServiceName,
	}
}

func (s *Server) setHealth(st healthpb.HealthCheckResponse_ServingStatus) {
	s.health.SetServingStatus("", st)
	for _, n := range serviceNames() {
		s.health.SetServingStatus(n, st)
	}
}

func (s *Server) newGRPC(creds credentials.TransportCredentials, acc *access) *grpc.Server {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.cfg.maxRecv),
		grpc.MaxConcurrentStreams(s.cfg.maxStreams),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: s.cfg.keepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Hour, Timeout: 20 * time.Second}),
	}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	if acc != nil {
		opts = append(opts, grpc.UnaryInterceptor(acc.unary), grpc.StreamInterceptor(acc.stream))
	}
	g := grpc.NewServer(opts...)
	pb.RegisterPolicyServiceServer(g, &policyService{s: s})
	pb.RegisterRouteServiceServer(g, &routeService{s: s})
	pb.RegisterHardwareServiceServer(g, &hardwareService{s: s})
	pb.RegisterSimServiceServer(g, &simService{s: s})
	pb.RegisterStatsServiceServer(g, &statsService{s: s})
	pb.RegisterAuditServiceServer(g, &auditService{s: s})
	healthpb.RegisterHealthServer(g, s.health)
	reflection.Register(g)
	return g
}

// Serve listens and serves until ctx ends, then stops: it refuses new
// RPCs, ends the long streams, waits up to the shutdown timeout for the
// rest, cuts off what remains and removes its socket. It returns nil after
// a stop asked by ctx, and an error when it cannot listen or a listener
// fails. A Server serves once.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.served {
		s.mu.Unlock()
		return errors.New("api: Serve called twice; a Server serves once")
	}
	s.served = true
	s.mu.Unlock()

	type served struct {
		g    *grpc.Server
		ln   net.Listener
		at   string
		info []any // what the listener allows, for the start-up log
	}
	var all []served
	closeAll := func() {
		for _, x := range all {
			x.ln.Close()
		}
	}
	if s.cfg.socket != "" {
		ln, err := listenUnix(ctx, s.cfg.socket)
		if err != nil {
			return err
		}
		all = append(all, served{s.newGRPC(nil, nil), ln, "unix:" + s.cfg.socket, []any{"access", "admin (socket mode 0600)"}})
	}
	if s.cfg.tcpAddr != "" {
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.cfg.tcpAddr)
		if err != nil {
			closeAll()
			return fmt.Errorf("api: listen on %s: %w", s.cfg.tcpAddr, err)
		}
		acc := &access{roles: s.cfg.roles, mutual: s.cfg.tls.ClientAuth == tls.RequireAndVerifyClientCert, log: s.cfg.log}
		all = append(all, served{s.newGRPC(credentials.NewTLS(s.cfg.tls), acc), ln, "tcp:" + ln.Addr().String(), acc.describe()})
	}

	s.setHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	var wg sync.WaitGroup
	if s.cfg.ready != nil {
		wg.Go(func() {
			select {
			case <-s.cfg.ready:
				s.setHealth(healthpb.HealthCheckResponse_SERVING)
				s.cfg.log.Info("fibgate API serving")
			case <-s.stopping:
			}
		})
	} else {
		s.setHealth(healthpb.HealthCheckResponse_SERVING)
	}

	errc := make(chan error, len(all))
	for _, x := range all {
		// The TCP listener's access is said at warning level, so that
		// `fibgate serve` (warnings by default) says it too.
		level := slog.LevelInfo
		if strings.HasPrefix(x.at, "tcp:") {
			level = slog.LevelWarn
		}
		s.cfg.log.Log(ctx, level, "fibgate API listening", append([]any{"addr", x.at}, x.info...)...)
		wg.Go(func() {
			if err := x.g.Serve(x.ln); err != nil {
				errc <- fmt.Errorf("api: serve %s: %w", x.at, err)
			}
		})
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	close(s.stopping)
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		defer close(done)
		var stops sync.WaitGroup
		for _, x := range all {
			stops.Go(x.g.GracefulStop)
		}
		stops.Wait()
	}()
	timer := time.NewTimer(s.cfg.shutdownTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		s.cfg.log.Warn("fibgate API: RPCs still running after the shutdown timeout; cutting them off", "timeout", s.cfg.shutdownTimeout)
		for _, x := range all {
			x.g.Stop()
		}
		<-done
	}
	wg.Wait()
	s.cfg.log.Info("fibgate API stopped")
	return err
}

// streamContext returns a context that ends with the RPC or when the
// server begins to stop, for long-lived streams; its cause says which.
func (s *Server) streamContext(rpc context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(rpc)
	go func() {
		select {
		case <-s.stopping:
			cancel(ErrShuttingDown)
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}
