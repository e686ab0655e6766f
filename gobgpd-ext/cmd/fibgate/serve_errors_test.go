package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeConfigurationErrorsExit2NamingTheFlag: issue 12's configuration
// errors reach `fibgate serve` as one line naming what to fix, exit 2: a
// notify mode of 0 under a hardware-level policy, numbers that are not
// finite or out of range, a missing socket directory.
func TestServeConfigurationErrorsExit2NamingTheFlag(t *testing.T) {
	dir := t.TempDir()
	nan := filepath.Join(dir, "nan.yaml")
	if err := os.WriteFile(nan, []byte("scopes:\n  - name: a\n    hold_down: {initial: 1s, max: 1m, multiplier: .nan}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--set-notify", "0"}, "--set-notify 0"},
		{[]string{"serve", "--backend", "sim", "--sim-fail-probability", "NaN"}, "fail_probability NaN"},
		{[]string{"serve", "--rcvbuf", "0"}, "rcvbuf 0"},
		{[]string{"serve", "--policy", nan}, "scopes[0].hold_down.multiplier"},
		{[]string{"serve", "--set-notify", "1", "--socket", filepath.Join(dir, "missing", "fibgate.sock")}, "--socket"},
		{[]string{"serve", "--listen", "127.0.0.1:0", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--admin-client", "cn:ops"}, "--tls-client-ca"},
		{[]string{"serve", "--admin-client", "ops"}, "--admin-client"},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), c.args, io.Discard, &stderr)
		if code != exitUsage || strings.Contains(stderr.String(), "api: api:") {
			t.Errorf("%v: exit %d, %q; want %d", c.args, code, stderr.String(), exitUsage)
		}
		oneLine(t, stderr.String(), c.want)
	}
}
