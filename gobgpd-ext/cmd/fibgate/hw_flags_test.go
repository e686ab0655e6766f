//go:build linux

package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/fibgate/fibgate/plugin/api/apitest"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
)

// TestHwTakesConnectionFlagsBeforeTheSubcommand: "fibgate hw --socket S
// fail P" reaches the daemon at S, as "fibgate hw fail P --socket S" does.
func TestHwTakesConnectionFlagsBeforeTheSubcommand(t *testing.T) {
	d := apitest.Start(t, apitest.Options{Sim: true, Policy: cliPolicy()})
	for _, args := range [][]string{
		{"hw", "--socket", d.Socket, "fail", "203.0.113.0/26"},
		{"hw", "--socket=" + d.Socket, "--timeout", "5s", "latency", "2ms"},
	} {
		if code, _, stderr := cli(t, nil, args...); code != exitOK {
			t.Fatalf("%v: exit %d %s", args, code, stderr)
		}
	}
	kerneltest.IP(t, d.NS, "route", "add", "203.0.113.0/26", "dev", "eth1")
	d.WaitState(t, fib.TableMain, "203.0.113.0/26", gate.Failed)
	code, out, stderr := cli(t, nil, "hw", "--socket", d.Socket, "stats")
	if code != exitOK || !strings.Contains(out, "latency 2ms") {
		t.Errorf("hw --socket S stats: exit %d, %q %q; want the latency set above", code, out, stderr)
	}
}

func TestHwConnectionFlagsBeforeTheSubcommandNeedNoDaemonToBeChecked(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"the socket given first is the one dialled", []string{"hw", "--socket", "/nonexistent/first.sock", "fail", "192.0.2.0/24"}, exitError, "unix socket /nonexistent/first.sock"},
		{"a flag after the subcommand overrides the one before", []string{"hw", "--socket", "/nonexistent/first.sock", "stats", "--socket", "/nonexistent/second.sock"}, exitError, "unix socket /nonexistent/second.sock"},
		{"TLS flags before the subcommand are checked like after it", []string{"hw", "--tls-ca", "ca.pem", "stats"}, exitUsage, "need --addr"},
		{"an unknown flag before the subcommand is a usage error", []string{"hw", "--bogus", "fail", "192.0.2.0/24"}, exitUsage, "flag provided but not defined: -bogus"},
		{"a subcommand's own flag is not taken before it", []string{"hw", "--batch", "8", "rate", "100"}, exitUsage, "flag provided but not defined: -batch"},
		{"flags alone are no subcommand", []string{"hw", "--socket", "/nonexistent/x.sock"}, exitUsage, "needs a subcommand"},
		{"a flag before the subcommand still needs its value", []string{"hw", "--socket"}, exitUsage, "flag needs an argument"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := cli(t, nil, c.args...)
			if code != c.code {
				t.Errorf("exit %d, want %d (%s)", code, c.code, stderr)
			}
			oneLine(t, stderr, c.want)
		})
	}
}

func TestHwHelpListsTheConnectionFlags(t *testing.T) {
	for _, args := range [][]string{{"hw", "--help"}, {"hw", "-h"}, {"hw", "help"}, {"hw", "--socket", "/x.sock", "--help"}} {
		code, out, _ := cli(t, nil, args...)
		if code != exitOK || !strings.Contains(out, "Usage") || !strings.Contains(out, "before or after the subcommand") {
			t.Errorf("%v: exit %d\n%s", args, code, out)
		}
		for _, f := range []string{"-socket", "-addr", "-tls-ca", "-tls-cert", "-tls-key", "-timeout"} {
			if !regexp.MustCompile(`(?m)^  ` + f + ` `).MatchString(out) {
				t.Errorf("%v does not list %s:\n%s", args, f, out)
			}
		}
	}
}

// TestServeHelpNamesThePolicyFlagsValue: Go's flag package takes a
// back-quoted word of a flag's text as its value's name, which made
// "-policy fibgate policy get"; the value is a FILE.
func TestServeHelpNamesThePolicyFlagsValue(t *testing.T) {
	code, out, _ := cli(t, nil, "serve", "--help")
	if code != exitOK {
		t.Fatalf("serve --help: exit %d", code)
	}
	if !regexp.MustCompile(`(?m)^  -policy FILE\n\s+read the gating policy from FILE \(YAML, as 'fibgate policy get' prints\)`).MatchString(out) {
		t.Errorf("serve --help shows -policy as:\n%s", regexp.MustCompile(`(?m)^  -policy.*\n.*`).FindString(out))
	}
}
