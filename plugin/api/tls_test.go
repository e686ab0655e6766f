//go:build linux

package api_test

import (
	"crypto/tls"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/api/apitest"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

func dialTLS(t *testing.T, addr string, p apitest.PKI, withClientCert bool) *grpc.ClientConn {
	t.Helper()
	pool, err := api.LoadCertPool(p.CA)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if withClientCert {
		c, err := tls.LoadX509KeyPair(p.ClientCert, p.ClientKey)
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

func TestTCPWithMutualTLS(t *testing.T) {
	p := apitest.NewPKI(t)
	d := apitest.Start(t, apitest.Options{})
	addr := apitest.FreeAddr(t)
	cfg, err := api.ServerTLS(p.ServerCert, p.ServerKey, p.CA)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.WithUnixSocket(""), api.WithTCP(addr, cfg), api.WithGate(d.Tracker))
	if err != nil {
		t.Fatal(err)
	}
	apitest.Serve(t, srv)

	conn := dialTLS(t, addr, p, true)
	apitest.WaitServing(t, conn)
	if _, err := pb.NewPolicyServiceClient(conn).GetPolicy(ctxT(t), &pb.GetPolicyRequest{}); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	if _, err := healthpb.NewHealthClient(dialTLS(t, addr, p, false)).Check(ctxT(t), &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("a client without a certificate got through mutual TLS")
	}
}

func TestTCPWithTLSOnly(t *testing.T) {
	p := apitest.NewPKI(t)
	addr := apitest.FreeAddr(t)
	cfg, err := api.ServerTLS(p.ServerCert, p.ServerKey, "")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.WithUnixSocket(""), api.WithTCP(addr, cfg))
	if err != nil {
		t.Fatal(err)
	}
	apitest.Serve(t, srv)
	conn := dialTLS(t, addr, p, false)
	apitest.WaitServing(t, conn)
	// Validation needs no gate, so it works on a server without one.
	if _, err := pb.NewPolicyServiceClient(conn).ValidatePolicy(ctxT(t), &pb.ValidatePolicyRequest{Policy: &pb.Policy{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.ServerTLS(p.CA, p.ServerKey, ""); err == nil {
		t.Error("ServerTLS accepted a key that does not match the certificate")
	}
}
