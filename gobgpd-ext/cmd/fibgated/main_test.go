package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestFlags: --check and --print-fallback work without gobgpd, mistakes
// exit 2 with one line.
func TestFlags(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "fibgate.yaml")
	if err := os.WriteFile(good, []byte("policy:\n  scopes:\n    - name: v4\n      family: ipv4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("bgp:\n  hold_community: '65535:666'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--help"}, 0, "--print-fallback"},
		{[]string{"--version"}, 0, "fibgated "},
		{[]string{"--version", "extra"}, 2, "unexpected arguments"},
		{[]string{"-c", good, "--check"}, 0, "settings valid: 1 gated scope(s)"},
		{[]string{"-c", good, "--print-fallback"}, 0, "fibgate-fallback-v4"},
		{[]string{"-c", good, "--print-fallback", "--print-fallback-format", "yaml"}, 0, "afi-safi-in-list:"},
		{[]string{"-c", good, "--print-fallback", "--print-fallback-format", "json"}, 0, `"afi-safi-in-list": [`},
		{[]string{"-c", good, "--print-fallback", "--print-fallback-format", "hcl"}, 2, "want toml, yaml or json"},
		{[]string{"-c", bad, "--check"}, 2, "hold community"},
		{[]string{"-c", filepath.Join(dir, "missing.yaml")}, 2, "missing.yaml"},
		{[]string{"--gobgp", "x"}, 2, "flag provided but not defined"},
		{[]string{"extra"}, 2, "unexpected arguments"},
		{[]string{"-c", good, "--pprof", "256.0.0.1:1"}, 2, "--pprof"},
		// TLS to gobgpd: files are read at start, a wrong one is exit 2.
		{[]string{"-c", good, "--check", "--gobgpd-tls-ca-file", filepath.Join(dir, "missing.pem")}, 2, "--gobgpd-tls-ca-file"},
		{[]string{"-c", good, "--check", "--gobgpd-tls-ca-file", good}, 2, "no PEM certificate"},
		{[]string{"-c", good, "--check", "--gobgpd-tls-client-cert-file", good}, 2, "go together"},
		{[]string{"-c", good, "--check", "--gobgpd-tls-client-cert-file", good, "--gobgpd-tls-client-key-file", good}, 2, "--gobgpd-tls-client-cert-file"},
	} {
		var out, errb strings.Builder
		code := run(context.Background(), c.args, &out, &errb)
		all := out.String() + errb.String()
		if code != c.code || !strings.Contains(all, c.out) {
			t.Errorf("%v: exit %d, %q; want %d and %q", c.args, code, all, c.code, c.out)
		}
		if code == 2 && strings.Count(strings.TrimSpace(errb.String()), "\n") > 0 {
			t.Errorf("%v: more than one line on stderr: %q", c.args, errb.String())
		}
	}
	// A scope of IPv4 only: the fallback's IPv6 set holds only ::/128,
	// never a route (the set is there so that the scope can change at
	// run time).
	var out strings.Builder
	run(context.Background(), []string{"-c", good, "--print-fallback"}, &out, &out)
	_, v6, _ := strings.Cut(out.String(), `prefix-set-name = "fibgate-fallback-v6"`)
	v6, _, _ = strings.Cut(v6, "[[policy-definitions]]")
	if strings.Count(v6, "ip-prefix") != 1 || !strings.Contains(v6, `ip-prefix = "::/128"`) {
		t.Errorf("fallback for an IPv4-only scope holds IPv6 prefixes:\n%s", out.String())
	}
}

// TestVersion: --version prints fibgate's version, the Go release and the
// GoBGP module on one line and starts nothing.
func TestVersion(t *testing.T) {
	var out, errb strings.Builder
	if code := run(context.Background(), []string{"--version"}, &out, &errb); code != 0 || errb.Len() > 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	want := regexp.MustCompile(`^fibgated \S+ \(` + regexp.QuoteMeta(runtime.Version()) + `, GoBGP v3\.\d+\.\d+\S*\)\n$`)
	if !want.MatchString(out.String()) {
		t.Errorf("--version printed %q, want it to match %s", out.String(), want)
	}
}

// TestPprofServesTheProfiles: --pprof's server answers with Go's profile
// index and closes.
func TestPprofServesTheProfiles(t *testing.T) {
	srv, addr, err := startPprof("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/debug/pprof/")
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine") {
		t.Errorf("/debug/pprof/: %s %.200q, want 200 and the profile index", resp.Status, body)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + addr.String() + "/debug/pprof/"); err == nil {
		t.Error("the profiler still answers after Close")
	}
}
