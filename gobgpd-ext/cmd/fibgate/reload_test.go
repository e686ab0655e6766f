//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
)

// TestServeReloadsItsPolicyOnSIGHUP: SIGHUP, which Go's default turns
// into an abrupt exit, makes `fibgate serve` read --policy again: an
// edited file is in force at once; a policy set over the API since then
// stays while the file does not change; and a file that does not parse
// changes nothing. serve keeps running throughout.
func TestServeReloadsItsPolicyOnSIGHUP(t *testing.T) {
	ns := kerneltest.NewNS(t)
	dir := t.TempDir()
	sock, policy := filepath.Join(dir, "fibgate.sock"), filepath.Join(dir, "policy.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(policy, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("scopes:\n  - name: first\n    level: fib\n")
	serveErr := serveInBackground(t, sock, "--netns", ns, "--backend", "kernel", "--policy", policy, "-v")
	get := func() string {
		var out bytes.Buffer
		run(context.Background(), []string{"policy", "get", "--socket", sock}, &out, &out)
		return out.String()
	}
	hangup := func(want string) {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		lab.Eventually(t, 10*time.Second, fmt.Sprintf("%q in serve's log after SIGHUP", want), func() error {
			if !strings.Contains(serveErr.String(), want) {
				return fmt.Errorf("log:\n%s", serveErr.String())
			}
			return nil
		})
	}
	if !strings.Contains(get(), "name: first") {
		t.Fatalf("the policy at start:\n%s", get())
	}

	write("scopes:\n  - name: second\n    level: fib\n")
	hangup("gating policy is in force")
	if p := get(); !strings.Contains(p, "name: second") {
		t.Errorf("after the edit and SIGHUP:\n%s", p)
	}

	// Set over the API: a SIGHUP with the file unchanged keeps it.
	api := filepath.Join(dir, "api.yaml")
	if err := os.WriteFile(api, []byte("scopes:\n  - name: from-api\n    level: fib\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"policy", "set", "-f", api, "--socket", sock}, &out, &out); code != 0 {
		t.Fatalf("policy set: %d %s", code, out.String())
	}
	hangup("did not change")
	if p := get(); !strings.Contains(p, "name: from-api") {
		t.Errorf("a SIGHUP with the file unchanged replaced the API's policy:\n%s", p)
	}

	write("scopes: [\n")
	hangup("refused")
	if p := get(); !strings.Contains(p, "name: from-api") {
		t.Errorf("a file that does not parse changed the policy:\n%s", p)
	}
}
