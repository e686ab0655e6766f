package api

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// ClientID names a client certificate by one of its identities, as the
// settings write it: "cn:NAME" is the subject's common name, "dns:NAME",
// "uri:URI", "email:ADDRESS" and "ip:ADDRESS" are subject alternative
// names. The kind is part of the name so that an identity of one kind can
// never stand for another (a DNS name equal to an admin's common name is
// not the admin).
type ClientID struct {
	Kind  string // cn, dns, uri, email or ip
	Value string
}

// clientIDKinds are the kinds ParseClientID accepts.
var clientIDKinds = []string{"cn", "dns", "uri", "email", "ip"}

// ParseClientID reads "KIND:VALUE" (see ClientID).
func ParseClientID(s string) (ClientID, error) {
	k, v, ok := strings.Cut(s, ":")
	k = strings.ToLower(k)
	if !ok || v == "" || !slices.Contains(clientIDKinds, k) {
		return ClientID{}, fmt.Errorf("client %q: want KIND:VALUE with KIND one of cn, dns, uri, email, ip (e.g. cn:noc-admin)", s)
	}
	if k == "ip" {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return ClientID{}, fmt.Errorf("client %q: %w", s, err)
		}
		v = a.Unmap().String()
	}
	return ClientID{Kind: k, Value: v}, nil
}

func (id ClientID) String() string { return id.Kind + ":" + id.Value }

// matches reports whether the certificate carries the identity.
func (id ClientID) matches(c *x509.Certificate) bool {
	switch id.Kind {
	case "cn":
		return c.Subject.CommonName == id.Value
	case "dns":
		return slices.ContainsFunc(c.DNSNames, func(n string) bool { return strings.EqualFold(n, id.Value) })
	case "email":
		return slices.Contains(c.EmailAddresses, id.Value)
	case "uri":
		return slices.ContainsFunc(c.URIs, func(u *url.URL) bool { return u.String() == id.Value })
	case "ip":
		for _, ip := range c.IPAddresses {
			if a, ok := netip.AddrFromSlice(ip); ok && a.Unmap().String() == id.Value {
				return true
			}
		}
	}
	return false
}

// Roles says what clients of the TCP listener may do, by the identities
// in their client certificates (WithTCPRoles). The unix socket is not
// affected: its mode (0600) already limits it to the daemon's user, who
// may do everything.
//
// Without a client CA (ServerTLS without clientCAFile) nobody is
// authenticated, so every TCP client may read and none may write. With
// one, a client whose certificate carries an identity of Admins may read
// and write; one that carries an identity of Readers, or any client when
// Readers is empty, may read; any other is refused everything.
type Roles struct {
	Admins  []ClientID
	Readers []ClientID
}

// role is what one connection may do.
type role uint8

const (
	roleNone role = iota
	roleRead
	roleAdmin
)

func (r role) String() string {
	return [...]string{"none", "read-only", "admin"}[r]
}

// readMethods are the RPCs that change nothing: everything else the
// fibgate services offer is a write (a new RPC is a write until it is
// listed here, so forgetting it fails closed).
var readMethods = []string{
	pb.PolicyService_GetPolicy_FullMethodName,
	pb.PolicyService_ValidatePolicy_FullMethodName,
	pb.RouteService_ListRoutes_FullMethodName,
	pb.RouteService_GetRoute_FullMethodName,
	pb.RouteService_WatchRoutes_FullMethodName,
	pb.StatsService_GetStats_FullMethodName,
	pb.AuditService_Audit_FullMethodName,
	pb.SimService_GetSimStats_FullMethodName,
}

// isWrite reports whether an RPC needs the admin role. The standard
// health and reflection services only read.
func isWrite(method string) bool {
	if strings.HasPrefix(method, "/"+healthpb.Health_ServiceDesc.ServiceName+"/") ||
		strings.HasPrefix(method, "/grpc.reflection.") {
		return false
	}
	return !slices.Contains(readMethods, method)
}

// access decides per RPC on the TCP listener.
type access struct {
	roles  Roles
	mutual bool // client certificates are required and verified
	log    *slog.Logger
}

// client returns the connection's verified certificate (nil without
// mutual TLS) and its address.
func client(ctx context.Context) (*x509.Certificate, string) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, "unknown"
	}
	addr := "unknown"
	if p.Addr != nil {
		addr = p.Addr.String()
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
		return ti.State.VerifiedChains[0][0], addr
	}
	return nil, addr
}

func (a *access) roleOf(c *x509.Certificate) role {
	if !a.mutual || c == nil {
		return roleRead
	}
	has := func(ids []ClientID) bool {
		return slices.ContainsFunc(ids, func(id ClientID) bool { return id.matches(c) })
	}
	switch {
	case has(a.roles.Admins):
		return roleAdmin
	case len(a.roles.Readers) == 0 || has(a.roles.Readers):
		return roleRead
	}
	return roleNone
}

// who describes a client for the log: its certificate's subject and
// names, or that it has none.
func who(c *x509.Certificate) string {
	if c == nil {
		return "unauthenticated (no client certificate)"
	}
	s := "cn:" + c.Subject.CommonName
	for _, n := range c.DNSNames {
		s += " dns:" + n
	}
	for _, u := range c.URIs {
		s += " uri:" + u.String()
	}
	for _, e := range c.EmailAddresses {
		s += " email:" + e
	}
	return s
}

// check returns PermissionDenied for an RPC the client's role does not
// allow, and logs it; an allowed write is logged too (an audit trail of
// who changed what over the network).
func (a *access) check(ctx context.Context, method string) error {
	cert, addr := client(ctx)
	r := a.roleOf(cert)
	write := isWrite(method)
	switch {
	case r == roleAdmin || r == roleRead && !write:
		if write {
			a.log.Info("fibgate API: write over TCP", "method", method, "client", who(cert), "addr", addr)
		}
		return nil
	case r == roleNone:
		a.log.Warn("fibgate API: request refused: client in no role", "method", method, "client", who(cert), "addr", addr)
		return status.Errorf(codes.PermissionDenied, "%s: the client certificate (%s) is in neither api.admin_clients nor api.read_clients", method, who(cert))
	case !a.mutual:
		a.log.Warn("fibgate API: write refused: the TCP listener is read-only without api.tls_client_ca", "method", method, "client", who(cert), "addr", addr)
		return status.Errorf(codes.PermissionDenied, "%s is a write: over TCP writes need mutual TLS (api.tls_client_ca) and a client certificate listed in api.admin_clients; use the unix socket", method)
	default:
		a.log.Warn("fibgate API: write refused: client is read-only", "method", method, "client", who(cert), "addr", addr)
		return status.Errorf(codes.PermissionDenied, "%s is a write: the client certificate (%s) is read-only; writes need one listed in api.admin_clients", method, who(cert))
	}
}

func (a *access) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (a *access) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := a.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

// describe says at start what the TCP listener allows.
func (a *access) describe() []any {
	if !a.mutual {
		return []any{"access", "read-only", "why", "no api.tls_client_ca: clients are not authenticated, so writes are refused (use the unix socket, or mutual TLS with api.admin_clients)"}
	}
	ids := func(l []ClientID) string {
		var s []string
		for _, id := range l {
			s = append(s, id.String())
		}
		return strings.Join(s, ",")
	}
	readers := ids(a.roles.Readers)
	if readers == "" {
		readers = "any certificate of the client CA"
	}
	admins := ids(a.roles.Admins)
	if admins == "" {
		admins = "none (read-only: no api.admin_clients)"
	}
	return []any{"access", "mutual TLS", "admin", admins, "read", readers}
}
