//go:build linux

package api_test

import (
	"crypto/tls"
	"io"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/fibgate/fibgate/internal/syncbuf"
	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/api/apitest"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// dialAs connects over TLS with the given client certificate ("" for none).
func dialAs(t *testing.T, addr string, p apitest.PKI, cert, key string) *grpc.ClientConn {
	t.Helper()
	pool, err := api.LoadCertPool(p.CA)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != "" {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// setPolicy writes the daemon's own policy back: a real write that
// changes nothing.
func setPolicy(t *testing.T, conn *grpc.ClientConn) error {
	t.Helper()
	c := pb.NewPolicyServiceClient(conn)
	got, err := c.GetPolicy(ctxT(t), &pb.GetPolicyRequest{})
	if err != nil {
		return err
	}
	_, err = c.SetPolicy(ctxT(t), &pb.SetPolicyRequest{Policy: got.GetPolicy()})
	return err
}

func wantDenied(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("%s: got %v, want PermissionDenied", what, err)
	}
}

func TestTCPWithoutClientCAIsReadOnly(t *testing.T) {
	p := apitest.NewPKI(t)
	addr := apitest.FreeAddr(t)
	cfg, err := api.ServerTLS(p.ServerCert, p.ServerKey, "")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	d := apitest.Start(t, apitest.Options{Server: []api.Option{api.WithTCP(addr, cfg),
		api.WithLogger(slog.New(slog.NewTextHandler(logs, nil)))}})
	conn := dialAs(t, addr, p, "", "")
	apitest.WaitServing(t, conn)

	if _, err := pb.NewRouteServiceClient(conn).ListRoutes(ctxT(t), &pb.ListRoutesRequest{}); err != nil {
		t.Fatalf("a read over TCP: %v", err)
	}
	wantDenied(t, "SetPolicy over TCP", setPolicy(t, conn))
	_, err = pb.NewSimServiceClient(conn).InjectFailure(ctxT(t), &pb.InjectFailureRequest{Prefix: "192.0.2.0/24"})
	wantDenied(t, "InjectFailure over TCP", err)
	rs, err := pb.NewHardwareServiceClient(conn).ReportRoutes(ctxT(t))
	if err == nil {
		_, err = rs.Recv()
	}
	wantDenied(t, "ReportRoutes over TCP", err)
	if err := setPolicy(t, d.Conn); err != nil {
		t.Errorf("SetPolicy over the unix socket: %v", err)
	}

	out := logs.String()
	for _, want := range []string{
		"access=read-only", // said at start
		"write refused", "method=/fibgate.v1.PolicyService/SetPolicy", "method=/fibgate.v1.HardwareService/ReportRoutes",
		"unauthenticated", "addr=127.0.0.1:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestMutualTLSRolesComeFromTheClientCertificate(t *testing.T) {
	p := apitest.NewPKI(t)
	addr := apitest.FreeAddr(t)
	cfg, err := api.ServerTLS(p.ServerCert, p.ServerKey, p.CA)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(s ...string) []api.ClientID {
		var out []api.ClientID
		for _, x := range s {
			id, err := api.ParseClientID(x)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, id)
		}
		return out
	}
	roles := api.Roles{
		Admins:  ids("cn:ops-admin", "uri:spiffe://fibgate.test/admin"),
		Readers: ids("dns:noc.example.net", "cn:ops-admin"),
	}
	logs := &syncbuf.Buffer{}
	d := apitest.Start(t, apitest.Options{Server: []api.Option{api.WithTCP(addr, cfg), api.WithTCPRoles(roles),
		api.WithLogger(slog.New(slog.NewTextHandler(logs, nil)))}})

	for _, c := range []struct {
		name      string
		cn        string
		sans      []string
		read, wrt bool
	}{
		{"admin by common name", "ops-admin", nil, true, true},
		{"admin by URI SAN", "svc-17", []string{"uri:spiffe://fibgate.test/admin"}, true, true},
		{"reader by DNS SAN", "noc", []string{"dns:noc.example.net"}, true, false},
		// The kind is part of the identity: a DNS name "ops-admin" is
		// not the common name ops-admin.
		{"DNS name equal to an admin's CN is nobody", "intruder", []string{"dns:ops-admin"}, false, false},
		{"certificate of the CA in no list", "someone", nil, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cert, key := p.Client(t, c.cn, c.sans...)
			conn := dialAs(t, addr, p, cert, key)
			_, err := pb.NewStatsServiceClient(conn).GetStats(ctxT(t), &pb.GetStatsRequest{})
			if c.read && err != nil {
				t.Errorf("read: %v", err)
			} else if !c.read {
				wantDenied(t, "read", err)
			}
			err = setPolicy(t, conn)
			if c.wrt && err != nil {
				t.Errorf("write: %v", err)
			} else if !c.wrt {
				wantDenied(t, "write", err)
			}
		})
	}
	// No client certificate: the TLS handshake already fails.
	if _, err := pb.NewStatsServiceClient(dialAs(t, addr, p, "", "")).GetStats(ctxT(t), &pb.GetStatsRequest{}); err == nil {
		t.Error("a client without a certificate got through mutual TLS")
	}
	if err := setPolicy(t, d.Conn); err != nil {
		t.Errorf("SetPolicy over the unix socket: %v", err)
	}

	out := logs.String()
	for _, want := range []string{
		"access=\"mutual TLS\"", "admin=cn:ops-admin,uri:spiffe://fibgate.test/admin", // said at start
		"write refused: client is read-only", "client=\"cn:noc dns:noc.example.net\"",
		"client in no role", "client=\"cn:intruder dns:ops-admin\"",
		"write over TCP", "client=\"cn:svc-17 uri:spiffe://fibgate.test/admin\"",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestClientRolesNeedAClientCA(t *testing.T) {
	p := apitest.NewPKI(t)
	cfg, err := api.ServerTLS(p.ServerCert, p.ServerKey, "")
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := api.ParseClientID("cn:ops-admin")
	_, err = api.New(api.WithUnixSocket(""), api.WithTCP("127.0.0.1:0", cfg), api.WithTCPRoles(api.Roles{Admins: []api.ClientID{admin}}),
		api.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err == nil || !strings.Contains(err.Error(), "tls_client_ca") {
		t.Fatalf("got %v, want a refusal naming tls_client_ca", err)
	}
}

func TestParseClientID(t *testing.T) {
	for in, want := range map[string]string{
		"cn:ops-admin": "cn:ops-admin", "DNS:noc.example.net": "dns:noc.example.net",
		"uri:spiffe://x/y": "uri:spiffe://x/y", "ip:::ffff:192.0.2.1": "ip:192.0.2.1", "email:a@b.c": "email:a@b.c",
	} {
		id, err := api.ParseClientID(in)
		if err != nil || id.String() != want {
			t.Errorf("ParseClientID(%q) = %v, %v; want %s", in, id, err, want)
		}
	}
	for _, bad := range []string{"ops-admin", "cn:", "serial:12", "ip:not-an-ip"} {
		if _, err := api.ParseClientID(bad); err == nil {
			t.Errorf("ParseClientID(%q) accepted it", bad)
		}
	}
}
