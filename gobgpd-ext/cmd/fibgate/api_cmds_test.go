//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/api/apitest"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
)

// cli runs fibgate with args against d's socket and returns the exit
// status and output.
func cli(t *testing.T, d *apitest.Daemon, args ...string) (int, string, string) {
	t.Helper()
	if d != nil {
		args = append(args, "--socket", d.Socket)
	}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// oneLine checks that stderr is a single "fibgate: " line containing want.
func oneLine(t *testing.T, stderr, want string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "fibgate: ") || !strings.Contains(stderr, want) {
		t.Errorf("stderr %q, want one fibgate: line containing %q", stderr, want)
	}
}

func cliPolicy() gate.Policy {
	hd := gate.DefaultScope().HoldDown
	return gate.Policy{Scopes: []gate.Scope{
		{Name: "hosts", Level: gate.LevelFIB, HoldDown: hd, Prefixes: []gate.PrefixRange{{Prefix: netip.MustParsePrefix("198.51.100.0/24"), MinLen: 32}}},
		{Name: "nets", HoldDown: hd, Prefixes: []gate.PrefixRange{{Prefix: netip.MustParsePrefix("203.0.113.0/24")}, {Prefix: netip.MustParsePrefix("2001:db8::/32")}}},
	}}
}

func startDaemon(t *testing.T) *apitest.Daemon {
	t.Helper()
	d := apitest.Start(t, apitest.Options{Policy: cliPolicy()})
	kerneltest.Batch(t, d.NS, []string{
		"route add 198.51.100.1/32 dev eth1",
		"route add 198.51.100.22/32 dev eth1",
		"route add 203.0.113.0/26 dev eth1",
		"route add 2001:db8:7::/48 dev eth1",
	})
	d.WaitState(t, fib.TableMain, "198.51.100.22/32", gate.Confirmed)
	d.WaitState(t, fib.TableMain, "203.0.113.0/26", gate.Pending)
	d.WaitState(t, fib.TableMain, "2001:db8:7::/48", gate.Pending)
	return d
}

func TestRoutesPrintsAlignedColumnsForPeople(t *testing.T) {
	d := startDaemon(t)
	code, out, stderr := cli(t, d, "routes")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("want a header and 4 routes:\n%s", out)
	}
	header := lines[0]
	for i, col := range []string{"PREFIX", "TABLE", "STATE", "IN STATE", "FLAGS", "SCOPE", "REASON"} {
		at := strings.Index(header, col)
		if at < 0 {
			t.Fatalf("header %q lacks %s", header, col)
		}
		at = utf8.RuneCountInString(header[:at])
		// Every row has its i-th field starting at the column's offset, in
		// characters: a duration under a millisecond has a µ, two bytes.
		for _, raw := range lines[1:] {
			l := []rune(raw)
			if i > 0 && (len(l) <= at || l[at-1] != ' ' || l[at] == ' ') {
				t.Errorf("column %s not aligned in %q", col, raw)
			}
		}
	}
	if !strings.Contains(lines[1], "198.51.100.1/32") || !strings.Contains(lines[1], "confirmed") ||
		!strings.Contains(out, "waiting for hardware") {
		t.Errorf("output:\n%s", out)
	}

	code, out, _ = cli(t, d, "routes", "--state", "pending", "--family", "ipv6")
	if code != 0 || !strings.Contains(out, "2001:db8:7::/48") || strings.Contains(out, "203.0.113.0/26") {
		t.Errorf("filtered routes (exit %d):\n%s", code, out)
	}
	code, out, _ = cli(t, d, "routes", "--prefix", "198.51.100.0/24", "--covered", "--table", "254")
	if code != 0 || strings.Count(out, "\n") != 3 {
		t.Errorf("covered routes (exit %d):\n%s", code, out)
	}
}

func TestRoutesJSONIsOneObjectPerLine(t *testing.T) {
	d := startDaemon(t)
	code, out, stderr := cli(t, d, "routes", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got []routeLine
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var r routeLine
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		got = append(got, r)
	}
	if len(got) != 4 || got[0].Prefix != "198.51.100.1/32" || got[0].State != "confirmed" || got[0].Scope != "hosts" ||
		got[0].Family != "ipv4" || got[0].SeenTime == "" || got[0].Flags == nil || got[3].State != "pending" {
		t.Errorf("got %+v", got)
	}
	if !strings.Contains(out, `"flags":[]`) || !strings.Contains(out, `"nexthop_flags":[[]]`) {
		t.Errorf("empty flags must print as [], not null:\n%s", out)
	}
}

func TestWatchPrintsTheSnapshotThenChanges(t *testing.T) {
	d := startDaemon(t)
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, []string{"watch", "--json", "--family", "ipv4", "--socket", d.Socket}, pw, &stderr)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	next := func() routeLine {
		t.Helper()
		if !sc.Scan() {
			t.Fatalf("watch ended early: %s", stderr.String())
		}
		var r routeLine
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		return r
	}
	var snap []string
	for range 3 {
		r := next()
		if !r.Snapshot {
			t.Fatalf("change before the snapshot: %+v", r)
		}
		snap = append(snap, r.Prefix)
	}
	if !slices.Equal(snap, []string{"198.51.100.1/32", "198.51.100.22/32", "203.0.113.0/26"}) {
		t.Errorf("snapshot %v", snap)
	}
	kerneltest.IP(t, d.NS, "route", "del", "198.51.100.22/32")
	if r := next(); r.Snapshot || r.Prefix != "198.51.100.22/32" || r.State != "withdrawn" {
		t.Errorf("change %+v, want 198.51.100.22/32 withdrawn", r)
	}
	cancel()
	go io.Copy(io.Discard, pr)
	if code := <-done; code != 0 {
		t.Errorf("watch exited %d after interrupt: %s", code, stderr.String())
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestPolicySetGetAndValidateWithAFile(t *testing.T) {
	d := startDaemon(t)
	example := filepath.Join("..", "..", "..", "deploy", "examples", "policy.yaml")
	code, out, stderr := cli(t, d, "policy", "validate", "-f", example)
	if code != 0 || !strings.Contains(out, "policy valid: 3 scope(s)") {
		t.Fatalf("validate the example: exit %d %q %q", code, out, stderr)
	}
	if code, _, stderr = cli(t, d, "policy", "set", "-f", example); code != 0 {
		t.Fatalf("set the example: exit %d %q", code, stderr)
	}
	if got := d.Tracker.Policy(); len(got.Scopes) != 3 || got.Scopes[2].Name != "customers-v6" || !got.Scopes[2].FailOpen {
		t.Errorf("the daemon has %+v", got)
	}
	code, out, _ = cli(t, d, "policy", "get")
	if code != 0 || !strings.Contains(out, "level: offload") || !strings.Contains(out, "pending_timeout: 30s") {
		t.Fatalf("get (exit %d):\n%s", code, out)
	}
	// What get prints can be given back unchanged.
	again := writeFile(t, out)
	if code, _, stderr = cli(t, d, "policy", "set", "-f", again); code != 0 {
		t.Fatalf("set what get printed: %s", stderr)
	}
	if _, out2, _ := cli(t, d, "policy", "get"); out2 != out {
		t.Errorf("get after set of get's output differs:\n%s\n---\n%s", out, out2)
	}
}

func TestAnInvalidPolicyFileNamesTheFieldPath(t *testing.T) {
	d := startDaemon(t)
	tests := []struct {
		name, body, want string
	}{
		{"a length beyond the family", "scopes:\n  - name: a\n    prefixes:\n      - prefix: 10.0.0.0/8\n        max_len: 33\n", "invalid policy in"},
		{"a duplicate scope", "scopes:\n  - name: a\n  - name: a\n", "scopes[1].name"},
		{"an unknown level", "scopes:\n  - name: a\n    level: hardwre\n", `scopes[0].level: unknown value "hardwre"`},
		{"a bad duration", "scopes:\n  - name: a\n    pending_timeout: 5 seconds\n", "scopes[0].pending_timeout"},
		{"an unknown key", "scopes:\n  - name: a\n    levle: fib\n", `line 3: unknown field levle`},
		{"broken YAML", "scopes: [\n", "line"},
		{"an empty file", "", "empty"},
		{"a hold-down multiplier of NaN", "scopes:\n  - name: a\n    hold_down: {initial: 1s, max: 1m, multiplier: .nan}\n", "scopes[0].hold_down.multiplier"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := writeFile(t, tt.body)
			code, _, stderr := cli(t, d, "policy", "validate", "-f", f)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			oneLine(t, stderr, tt.want)
		})
	}
	code, _, stderr := cli(t, d, "policy", "set", "-f", writeFile(t, "scopes:\n  - name: a\n    prefixes:\n      - prefix: 10.0.0.0/8\n        max_len: 33\n"))
	if code != exitUsage || !strings.Contains(stderr, "scopes[0].prefixes[0]") {
		t.Errorf("set of an invalid policy: exit %d %q", code, stderr)
	}
	if d.Tracker.Policy().Scopes[0].Name != "hosts" {
		t.Errorf("an invalid policy changed the one in force")
	}
}

func TestHwCommandsWithoutASim(t *testing.T) {
	d := startDaemon(t)
	for _, args := range [][]string{
		{"hw", "capacity", "--ipv4-prefix", "10", "--ipv4-host", "5", "--ipv6-prefix", "0", "--ipv6-host", "0"},
		{"hw", "capacity", "--ipv4-prefix", "10"},
		{"hw", "latency", "5ms", "1ms"},
		{"hw", "rate", "100", "--batch", "8"},
		{"hw", "fail", "203.0.113.0/26"},
		{"hw", "clear", "203.0.113.0/26"},
		{"hw", "probability", "0.25"},
		{"hw", "stats"},
	} {
		code, _, stderr := cli(t, d, args...)
		if code != exitError {
			t.Errorf("%v: exit %d", args, code)
		}
		oneLine(t, stderr, "no simulated ASIC in this daemon")
	}
}

func TestStatsPrintsTheGatesCounters(t *testing.T) {
	d := startDaemon(t)
	code, out, stderr := cli(t, d, "stats")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"pending 2", "confirmed 2", "gate      confirmations 2, failures 0\n",
		"bgp       advertisements 0, withdrawals 0\n", "hardware  time to program p50 ", "hold-down time held down no samples yet\n",
		"listener", "agents    0 connected"} {
		if !strings.Contains(out, want) {
			t.Errorf("stats lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = cli(t, d, "stats", "--json")
	var s statsLine
	if err := json.Unmarshal([]byte(out), &s); code != 0 || err != nil || s.RoutesByState["pending"] != 2 || s.Listener == nil {
		t.Errorf("stats --json (exit %d, %v): %s", code, err, out)
	}
}

func TestAnUnreachableDaemonIsOneLineNamingTheSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "nobody.sock")
	for _, args := range [][]string{{"routes"}, {"policy", "get"}, {"stats"}, {"watch"}, {"hw", "stats"}} {
		code, _, stderr := cli(t, nil, append(args, "--socket", sock)...)
		if code != exitError {
			t.Errorf("%v: exit %d, want %d", args, code, exitError)
		}
		oneLine(t, stderr, "cannot reach the fibgate daemon at unix socket "+sock)
	}
	// The socket as the daemon logs it ("fibgate API listening addr=unix:PATH").
	for _, s := range []string{"unix:" + sock, "unix://" + sock} {
		code, _, stderr := cli(t, nil, "routes", "--socket", s)
		if code != exitError {
			t.Errorf("--socket %s: exit %d, want %d", s, code, exitError)
		}
		oneLine(t, stderr, "cannot reach the fibgate daemon at unix socket "+sock)
	}
}

func TestAPICommandUsageErrorsExitWithStatus2(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"routes", "--state", "sleeping"}, "--state"},
		{[]string{"routes", "--family", "ipx"}, "--family"},
		{[]string{"routes", "--prefix", "10.0.0.1/8"}, "host bits"},
		{[]string{"routes", "--prefix", "nonsense"}, "CIDR"},
		{[]string{"routes", "--covered"}, "--covered needs --prefix"},
		{[]string{"routes", "extra"}, "takes no arguments"},
		{[]string{"routes", "--tls-ca", "ca.pem"}, "need --addr"},
		{[]string{"routes", "--addr", "127.0.0.1:1", "--tls-cert", "c.pem"}, "go together"},
		{[]string{"routes", "--addr", "unix:///run/fibgate/fibgate.sock"}, "a unix socket goes in --socket"},
		{[]string{"stats", "--addr", "/run/fibgate/fibgate.sock"}, "a unix socket goes in --socket"},
		{[]string{"watch", "--bogus"}, "flag provided but not defined"},
		{[]string{"policy"}, "subcommand"},
		{[]string{"policy", "apply"}, "unknown subcommand"},
		{[]string{"policy", "set"}, "needs -f FILE"},
		{[]string{"policy", "get", "-f", "x"}, "takes no -f"},
		{[]string{"policy", "validate", "-f", "/nonexistent/p.yaml"}, "read policy file"},
		{[]string{"hw"}, "subcommand"},
		{[]string{"hw", "explode"}, "unknown subcommand"},
		{[]string{"hw", "latency"}, "takes 1 to 2 arguments"},
		{[]string{"hw", "latency", "fast"}, "want a duration"},
		{[]string{"hw", "rate", "-5"}, "flag provided but not defined"},
		{[]string{"hw", "rate", "lots"}, "want routes per second"},
		{[]string{"hw", "fail", "10.0.0.1/8"}, "without host bits"},
		{[]string{"hw", "probability", "1.5"}, "from 0 to 1"},
		{[]string{"hw", "capacity"}, "at least one of"},
		{[]string{"stats", "now"}, "takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, _, stderr := cli(t, nil, tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d (%s)", code, exitUsage, stderr)
			}
			oneLine(t, stderr, tt.want)
		})
	}
}

func TestAPICommandsHaveHelp(t *testing.T) {
	for _, args := range [][]string{{"routes", "--help"}, {"watch", "-h"}, {"policy", "--help"}, {"hw", "--help"}, {"stats", "--help"}, {"hw", "rate", "--help"}} {
		code, out, _ := cli(t, nil, args...)
		if code != exitOK || !strings.Contains(out, "Usage") {
			t.Errorf("%v: exit %d\n%s", args, code, out)
		}
	}
}

func TestHwCommandsSteerTheSim(t *testing.T) {
	d := apitest.Start(t, apitest.Options{Sim: true, Policy: cliPolicy()})
	steps := [][]string{
		{"hw", "capacity", "--ipv4-prefix", "100", "--ipv4-host", "50", "--ipv6-prefix", "20", "--ipv6-host", "10"},
		{"hw", "capacity", "--ipv6-host", "7"}, // the others stay
		{"hw", "latency", "4ms", "1ms"},
		{"hw", "rate", "250", "--batch", "5"},
		{"hw", "probability", "0.5"},
		{"hw", "probability", "0"},
		{"hw", "fail", "203.0.113.0/26"},
	}
	for _, args := range steps {
		if code, _, stderr := cli(t, d, args...); code != 0 {
			t.Fatalf("%v: exit %d %s", args, code, stderr)
		}
	}
	kerneltest.IP(t, d.NS, "route", "add", "203.0.113.0/26", "dev", "eth1")
	d.WaitState(t, fib.TableMain, "203.0.113.0/26", gate.Failed)
	if code, _, stderr := cli(t, d, "hw", "clear", "203.0.113.0/26"); code != 0 {
		t.Fatal(stderr)
	}
	d.WaitState(t, fib.TableMain, "203.0.113.0/26", gate.Confirmed, gate.HeldDown)

	code, out, _ := cli(t, d, "hw", "stats")
	for _, want := range []string{"ipv4       prefix", "of 100, host ", " of 50", " of 7\n", "latency 4ms + jitter 1ms", "rate 250 routes/s in batches of 5"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("hw stats lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = cli(t, d, "hw", "stats", "--json")
	var s simStatsLine
	if err := json.Unmarshal([]byte(out), &s); code != 0 || err != nil || s.Capacity.IPv6Prefix != 20 || s.Batch != 5 || s.Programmed == 0 {
		t.Errorf("hw stats --json (exit %d, %v): %s", code, err, out)
	}
}

func TestCommandsReachADaemonOverTCPWithMutualTLS(t *testing.T) {
	d := startDaemon(t)
	p := apitest.NewPKI(t)
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
	tlsArgs := []string{"--addr", addr, "--tls-ca", p.CA}
	var code int
	var out, stderr string
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out, stderr = cli(t, nil, append([]string{"routes", "--tls-cert", p.ClientCert, "--tls-key", p.ClientKey}, tlsArgs...)...)
		if code == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the server may not listen yet; polling with a deadline
	}
	if code != 0 || !strings.Contains(out, "198.51.100.22/32") {
		t.Fatalf("routes over mTLS: exit %d %q %q", code, out, stderr)
	}
	code, _, stderr = cli(t, nil, append([]string{"stats"}, tlsArgs...)...)
	if code != exitError {
		t.Errorf("without a client certificate: exit %d", code)
	}
	oneLine(t, stderr, addr)
}

func TestWatchSaysSoWhenTheDaemonDropsItForReadingTooSlowly(t *testing.T) {
	d := apitest.Start(t, apitest.Options{Server: []api.Option{api.WithWatchLimit(100)}})
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(context.Background(), []string{"watch", "--socket", d.Socket}, pw, &stderr)
		pw.Close()
	}()
	// Nothing reads watch's output while the routes churn, so watch stops
	// reading its stream; once gRPC's flow-control windows are full (they
	// grow with the measured bandwidth, so how much that takes varies) the
	// daemon's queue for it passes the limit and the daemon drops it.
	var add, del []string
	for i := range 1000 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i / 256), byte(i % 256), 0}), 24).String()
		add = append(add, "route add "+p+" dev eth1")
		del = append(del, "route del "+p+" dev eth1")
	}
	for start := time.Now(); d.Tracker.Watchers() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("fibgate watch did not subscribe within 5 s")
		}
	}
	deadline := time.After(60 * time.Second)
	for d.Tracker.Watchers() > 0 {
		select {
		case <-deadline:
			t.Fatal("watch still subscribed after 60 s of churn: the daemon did not drop it")
		default:
		}
		kerneltest.Batch(t, d.NS, add)
		kerneltest.Batch(t, d.NS, del)
	}
	// Dropped: once watch prints what gRPC had buffered, it sees the end.
	go io.Copy(io.Discard, pr)
	select {
	case code := <-done:
		if code != 1 {
			t.Errorf("watch exited %d, want 1", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("watch still running 30 s after the daemon dropped it")
	}
	line := strings.TrimSpace(stderr.String())
	for _, want := range []string{"ended the watch", "read too slowly", "limit of 100", "were not shown", "run fibgate watch again"} {
		if !strings.Contains(line, want) {
			t.Errorf("stderr %q does not say %q", line, want)
		}
	}
	if strings.Count(line, "\n") > 0 {
		t.Errorf("stderr is more than one line: %q", line)
	}
	t.Logf("watch printed: %s", line)
}
