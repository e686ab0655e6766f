package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigurationErrorsExit2WithOneLine: issue 12's configuration errors
// stop fibgated with exit 2 and one line naming the key, before it dials
// gobgpd; a file of comments alone is every default, as the example
// settings say.
func TestConfigurationErrorsExit2WithOneLine(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--check", "-c", write("nan.yaml", "policy:\n  scopes:\n    - name: a\n      hold_down: {initial: 1s, max: 1m, multiplier: .nan}\n")}, 2, "scopes[0].hold_down.multiplier"},
		{[]string{"--check", "-c", write("notify0.yaml", "notify_mode: \"0\"\n")}, 2, "notify_mode \"0\""},
		{[]string{"--check", "-c", write("admins.yaml", "api:\n  admin_clients: [cn:ops]\n")}, 2, "api.admin_clients"},
		{[]string{"--check", "-c", write("badid.yaml", "api:\n  tls_client_ca: ca.pem\n  read_clients: [serial:1]\n")}, 2, "api.read_clients"},
		{[]string{"--check", "-c", write("wholerib.yaml", "audit:\n  whole_rib_max: -1\n")}, 2, "audit.whole_rib_max -1"},
		{[]string{"--check", "-c", write("copy.yaml", "bgp:\n  release: copy\n")}, 2, "bgp.release: copy works in gobgpd-ext only"},
		{[]string{"--check", "-c", write("reexport.yaml", "bgp:\n  release: reexport\n")}, 2, "bgp.release: reexport works in gobgpd-ext only"},
		{[]string{"--check", "-c", write("auto.yaml", "bgp:\n  release: auto\n")}, 0, "settings valid"},
		{[]string{"--check", "-c", write("comments.yaml", "# only comments\n# log_level: info\n")}, 0, "settings valid: 1 gated scope(s)"},
		{[]string{"--gobgpd", "127.0.0.1:1", "-c", write("nosock.yaml", "notify_mode: \"1\"\napi:\n  socket: "+filepath.Join(dir, "missing", "fibgate.sock")+"\n")}, 2, "api.socket"},
	} {
		var out, errb strings.Builder
		code := run(context.Background(), c.args, &out, &errb)
		all := out.String() + errb.String()
		if code != c.code || !strings.Contains(all, c.out) || strings.Contains(all, "api: api:") {
			t.Errorf("%v: exit %d, %q; want %d and %q", c.args, code, all, c.code, c.out)
		}
		if code == 2 && strings.Count(strings.TrimSpace(errb.String()), "\n") > 0 {
			t.Errorf("%v: more than one line on stderr: %q", c.args, errb.String())
		}
	}
}
