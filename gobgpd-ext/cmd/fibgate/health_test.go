package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/api"
)

// TestHealthIsReadyOnlyOnceTheGateIs: a readiness probe must fail while
// the daemon is up but the gate not yet ready (fibgated waiting for
// gobgpd), and pass once it is.
func TestHealthIsReadyOnlyOnceTheGateIs(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "fibgate.sock")
	ready := make(chan struct{})
	srv, err := api.New(api.WithUnixSocket(sock), api.WithReady(ready))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	health := func() (int, string, string) {
		var out, errb strings.Builder
		code := run(context.Background(), []string{"health", "--socket", sock, "--timeout", "2s"}, &out, &errb)
		return code, out.String(), errb.String()
	}
	deadline := time.Now().Add(10 * time.Second)
	code, out, stderr := health()
	for code == exitError && strings.Contains(stderr, "cannot reach") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // the socket may not listen yet: polled with a deadline
		code, out, stderr = health()
	}
	if code != exitError || out != "NOT_SERVING\n" || !strings.Contains(stderr, "not ready") {
		t.Errorf("before ready: exit %d, %q, %q; want 1, NOT_SERVING", code, out, stderr)
	}
	close(ready)
	for code, out, stderr = health(); code != exitOK && time.Now().Before(deadline); code, out, stderr = health() {
		time.Sleep(20 * time.Millisecond) // the server flips its status when it sees ready: polled with a deadline
	}
	if code != exitOK || out != "SERVING\n" || stderr != "" {
		t.Errorf("after ready: exit %d, %q, %q; want 0, SERVING", code, out, stderr)
	}
	if code, _, stderr := func() (int, string, string) {
		var o, e strings.Builder
		return run(context.Background(), []string{"health", "extra"}, &o, &e), o.String(), e.String()
	}(); code != exitUsage || !strings.Contains(stderr, "no arguments") {
		t.Errorf("bad args: exit %d %q", code, stderr)
	}
}
