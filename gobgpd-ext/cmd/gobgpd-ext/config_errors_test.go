package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigurationErrorsExit2WithOneLine: issue 12's configuration errors
// in the fibgate settings stop gobgpd-ext's dry run with exit 2 and one
// line naming the key.
func TestConfigurationErrorsExit2WithOneLine(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gobgpd := write("gobgpd.toml", "[global.config]\n  as = 65001\n  router-id = \"10.0.0.1\"\n")
	for _, c := range []struct{ settings, want string }{
		{"policy:\n  scopes:\n    - name: a\n      hold_down: {initial: 1s, max: 1m, multiplier: .nan}\n", "scopes[0].hold_down.multiplier"},
		{"notify_mode: \"0\"\n", "notify_mode \"0\""},
		{"backend:\n  type: sim\n  sim:\n    fail_probability: .nan\n", "fail_probability"},
	} {
		var out, errb strings.Builder
		code := run([]string{"-d", "-f", gobgpd, "--fibgate-config", write("fibgate.yaml", c.settings)}, &out, &errb, nil)
		if code != 2 || !strings.Contains(errb.String(), c.want) || strings.Count(strings.TrimSpace(errb.String()), "\n") > 0 {
			t.Errorf("%q: exit %d, %q; want 2 and one line with %q", c.settings, code, errb.String(), c.want)
		}
	}
}
