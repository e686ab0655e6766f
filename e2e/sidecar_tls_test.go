//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/plugin/api/apitest"
)

// TestSidecarOverTLS: a stock gobgpd that serves its API only over TLS and
// only to clients with a certificate of its CA (--tls,
// --tls-client-ca-file), as an API on a TCP port should be, is gated by
// fibgated given the CA and a client certificate (--gobgpd-tls-*): the
// gate's policy goes first in gobgpd's export chain. Without a client
// certificate gobgpd refuses fibgated, which installs nothing. SIGHUP
// then makes fibgated read its settings again, and it runs on.
func TestSidecarOverTLS(t *testing.T) {
	bin := binaries(t)
	ns, d := lab.NewNS(t, "leaf"), dir(t)
	p := apitest.NewPKI(t)
	settings := filepath.Join(d, "fibgate.yaml")
	if err := os.WriteFile(settings, fmt.Appendf(nil, "netns: %s\nnotify_mode: \"1\"\napi:\n  socket: %s\n", ns, filepath.Join(d, "fibgate.sock")), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(d, "gobgpd.toml")
	if err := os.WriteFile(conf, []byte(lab.GobgpdConf{AS: 65001, RouterID: "10.0.0.1", Port: -1}.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// Both daemons on this host's loopback (the certificate names
	// 127.0.0.1); fibgated's FIB is the leaf namespace's.
	target := apitest.FreeAddr(t)
	lab.Start(t, "", d, "gobgpd", filepath.Join(lab.GobgpBinaries(t), "gobgpd"), "-f", conf, "--api-hosts", target,
		"--tls", "--tls-cert-file", p.ServerCert, "--tls-key-file", p.ServerKey, "--tls-client-ca-file", p.CA,
		"-l", "info", "--pprof-disable")

	// The test's own client, as the operator's gobgp CLI would be.
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(p.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	kp, err := tls.LoadX509KeyPair(p.ClientCert, p.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	chain := func() ([]string, error) {
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{kp}})))
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := api.NewGobgpApiClient(conn).ListPolicyAssignment(ctx, &api.ListPolicyAssignmentRequest{Name: "global", Direction: api.PolicyDirection_EXPORT})
		if err != nil {
			return nil, err
		}
		a, err := r.Recv()
		if err != nil {
			return nil, err
		}
		var names []string
		for _, pol := range a.GetAssignment().GetPolicies() {
			names = append(names, pol.GetName())
		}
		return names, nil
	}
	lab.Eventually(t, 20*time.Second, "gobgpd's API over TLS", func() error { _, err := chain(); return err })

	// Without a client certificate: refused, nothing installed.
	lone := lab.Start(t, "", d, "fibgated-nocert", filepath.Join(bin, "fibgated"), "--gobgpd", target,
		"--gobgpd-tls-ca-file", p.CA, "-c", settings)
	// TLS 1.3 refuses a missing client certificate after the handshake:
	// the client reads the server's alert ("certificate required") or,
	// when its first write lands after the server closed, a broken pipe or
	// a reset (seen in CI under load). Either is a refusal.
	lab.Eventually(t, 20*time.Second, "fibgated without a certificate logs the refusal", func() error {
		b, _ := os.ReadFile(lone.Log)
		for _, refused := range []string{"certificate required", "broken pipe", "connection reset by peer"} {
			if bytes.Contains(b, []byte("installing the gate in GoBGP failed")) && bytes.Contains(b, []byte(refused)) {
				return nil
			}
		}
		return fmt.Errorf("not yet:\n%s", b)
	})
	if c, err := chain(); err != nil || len(c) != 0 {
		t.Fatalf("export chain %v, %v; want none while fibgated cannot get in", c, err)
	}
	// Whichever way the refusal came, the log says what gobgpd asked for
	// and what to give fibgated.
	const hint = "gobgpd asked for a client certificate and fibgated has none"
	if b, _ := os.ReadFile(lone.Log); bytes.Count(b, []byte(hint)) != 1 || !bytes.Contains(b, []byte("--gobgpd-tls-client-cert-file")) {
		t.Errorf("want the hint once, naming the flags:\n%s", b)
	}
	lone.Stop(t)

	fg := lab.Start(t, "", d, "fibgated", filepath.Join(bin, "fibgated"), "--gobgpd", target,
		"--gobgpd-tls-ca-file", p.CA, "--gobgpd-tls-client-cert-file", p.ClientCert, "--gobgpd-tls-client-key-file", p.ClientKey,
		"-c", settings)
	lab.Eventually(t, 30*time.Second, "the gate first in gobgpd's export chain", func() error {
		if fg.Exited() {
			b, _ := os.ReadFile(fg.Log)
			t.Fatalf("fibgated exited:\n%s", b)
		}
		c, err := chain()
		if err != nil {
			return err
		}
		if len(c) == 0 || !strings.HasPrefix(c[0], "fibgate-") {
			return fmt.Errorf("export chain %v", c)
		}
		return nil
	})

	// SIGHUP reads the settings again (and does not end fibgated, as Go's
	// default would): the file is unchanged, so is the policy.
	if err := fg.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, 10*time.Second, "fibgated reads its settings again on SIGHUP", func() error {
		b, _ := os.ReadFile(fg.Log)
		if !bytes.Contains(b, []byte("gating policy did not change")) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if fg.Exited() {
		b, _ := os.ReadFile(fg.Log)
		t.Fatalf("fibgated ended on SIGHUP:\n%s", b)
	}
	if b, _ := os.ReadFile(fg.Log); bytes.Contains(b, []byte(hint)) {
		t.Errorf("fibgated with a certificate logged the missing-certificate hint:\n%s", b)
	}
}
