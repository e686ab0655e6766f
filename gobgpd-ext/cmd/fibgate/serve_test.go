package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/syncbuf"
	"github.com/fibgate/fibgate/plugin/api/apitest"
	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
)

// TestServeGatesOnTheSimulatedASIC runs `fibgate serve` with the sim on a
// namespace and drives it with the CLI the way an operator would: a new
// route is pending until the sim programmed it, an injected failure marks
// it failed, clearing it confirms it again; a signal stops the daemon and
// the sim's rules are gone.
func TestServeGatesOnTheSimulatedASIC(t *testing.T) {
	ns := kerneltest.NewNS(t)
	kerneltest.AddLink(t, ns, "eth1")
	sock := filepath.Join(t.TempDir(), "fibgate.sock")
	metricsAddr := apitest.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var serveErr bytes.Buffer
	go func() {
		done <- run(ctx, []string{"serve", "--netns", ns, "--backend", "sim", "--sim-latency", "300ms",
			"--sim-ports", "eth1", "--socket", sock, "--set-notify", "1", "--metrics", metricsAddr}, io.Discard, &serveErr)
	}()
	stopped := false
	stop := func() int {
		if stopped {
			return exitOK
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(30 * time.Second):
			t.Fatal("serve did not stop within 30 s of its context ending")
			return -1
		}
	}
	t.Cleanup(func() { stop() })

	// The daemon is up once the CLI gets an answer.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var out, errb bytes.Buffer
		if run(context.Background(), []string{"stats", "--socket", sock}, &out, &errb) == exitOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not answering: %s; serve: %s", errb.String(), serveErr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}

	// Watch the prefix's states through the CLI.
	pr, pw := io.Pipe()
	wctx, wcancel := context.WithCancel(context.Background())
	go func() {
		run(wctx, []string{"watch", "--json", "--socket", sock}, pw, io.Discard)
		pw.Close()
	}()
	defer wcancel()
	states := make(chan routeLine, 64)
	subscribed := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		first := true
		for sc.Scan() {
			if first {
				// The snapshot (eth1's fe80::/64 is gated) says the watch is on.
				close(subscribed)
				first = false
			}
			var l routeLine
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.Prefix == "192.0.2.0/24" {
				states <- l
			}
		}
		close(states)
	}()
	next := func(want string) routeLine {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-states:
				if !ok {
					t.Fatalf("watch ended before state %s", want)
				}
				if l.State == want {
					return l
				}
			case <-timeout:
				t.Fatalf("no state %s for 192.0.2.0/24 within 20 s", want)
			}
		}
	}
	select {
	case <-subscribed:
	case <-time.After(20 * time.Second):
		t.Fatal("watch printed no snapshot within 20 s")
	}
	added := time.Now()
	kerneltest.IP(t, ns, "route", "add", "192.0.2.0/24", "dev", "eth1")
	pending := next("pending")
	if len(pending.Flags) != 0 {
		t.Errorf("pending with flags %v", pending.Flags)
	}
	confirmed := next("confirmed")
	if got := time.Since(added); got < 300*time.Millisecond {
		t.Errorf("confirmed %v after the add, before the sim's 300 ms latency", got)
	}
	if strings.Join(confirmed.Flags, ",") != "trap" {
		t.Errorf("confirmed with flags %v, want trap", confirmed.Flags)
	}
	// The latency reached Prometheus too.
	scrape := scrapeMetrics(t, metricsAddr)
	for _, want := range []string{`fibgate_routes{state="confirmed"}`, "fibgate_time_to_hardware_seconds_count", "fibgate_fib_routes", `fibgate_build_info{gobgp="v3.`, "go_goroutines", "process_resident_memory_bytes", "fibgate_hardware_flags_seen 1"} {
		if !strings.Contains(scrape, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(scrape, "fibgate_time_to_hardware_seconds_count 0") {
		t.Errorf("time to hardware not observed:\n%s", scrape)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"hw", "fail", "192.0.2.0/24", "--socket", sock}, &out, &errb); code != exitOK {
		t.Fatalf("hw fail: exit %d: %s", code, errb.String())
	}
	next("failed")
	if code := run(context.Background(), []string{"hw", "clear", "192.0.2.0/24", "--socket", sock}, &out, &errb); code != exitOK {
		t.Fatalf("hw clear: exit %d: %s", code, errb.String())
	}
	next("held_down") // it flapped: the default hold-down applies
	next("confirmed")

	wcancel()
	if code := stop(); code != exitOK {
		t.Fatalf("serve exited %d: %s", code, serveErr.String())
	}
	if rules := kerneltest.IP(t, ns, "rule"); strings.Contains(rules, "4242") {
		t.Errorf("sim rules left behind:\n%s", rules)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("API socket left behind: %v", err)
	}
}

func TestServeRejectsBadSettingsWithStatus2(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--backend", "asic"},
		{"serve", "--backend", "sim", "--sim-mode", "fast"},
		{"serve", "--listen", "127.0.0.1:0"},
		{"serve", "--set-notify", "5"},
		{"serve", "--policy", "/nonexistent/policy.yaml"},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), args, io.Discard, &stderr); code != exitUsage || strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line", args, code, stderr.String())
		}
	}
}

// TestServeStartUpErrorsAreOneLine: issue 12's three start-up errors of
// `fibgate serve` (a fresh namespace with the notify sysctl at 0, a missing
// TLS certificate, a key that does not match the certificate) exit 2 with
// one clear line instead of a Go panic string.
func TestServeStartUpErrorsAreOneLine(t *testing.T) {
	ns, ns2 := kerneltest.NewNS(t), kerneltest.NewNS(t)
	for _, fam := range []string{"ipv4", "ipv6"} {
		if out, err := exec.Command("ip", "netns", "exec", ns2, "sysctl", "-q", "-w", "net."+fam+".fib_notify_on_flag_change=2").CombinedOutput(); err != nil {
			t.Fatalf("sysctl: %v: %s", err, out)
		}
	}
	p := apitest.NewPKI(t)
	sock := filepath.Join(t.TempDir(), "fibgate.sock")
	tcp := func(cert, key string) []string {
		return []string{"serve", "--netns", ns, "--socket", sock, "--set-notify", "1", "--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key}
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"notify sysctl at 0", []string{"serve", "--netns", ns, "--socket", sock}, "fib_notify_on_flag_change is 0"},
		// 2 announces offload failures only: an offload never arrives.
		{"notify sysctl at 2", []string{"serve", "--netns", ns2, "--socket", sock}, "fib_notify_on_flag_change is 2"},
		{"--set-notify 2", []string{"serve", "--netns", ns, "--socket", sock, "--set-notify", "2"}, "notify_mode \"2\""},
		{"missing certificate", tcp(filepath.Join(t.TempDir(), "missing.pem"), p.ServerKey), "missing.pem"},
		{"mismatched key", tcp(p.ServerCert, p.ClientKey), "private key does not match public key"},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), c.args, io.Discard, &stderr)
		if code != exitUsage || strings.Contains(stderr.String(), "PANIC") {
			t.Errorf("%s: exit %d, %q; want %d", c.name, code, stderr.String(), exitUsage)
		}
		oneLine(t, stderr.String(), c.want)
	}
}

// TestServeWarnsWhenNoDriverFlagsARoute runs `fibgate serve` with the
// kernel backend on a namespace of this machine's kernel, which has no
// driver that offloads routes (as a new user's VM or server has none): a
// route stays pending, and once it has waited --warn-unconfirmed the log
// says why, once, instead of nothing at all.
func TestServeWarnsWhenNoDriverFlagsARoute(t *testing.T) {
	ns := kerneltest.NewNS(t)
	kerneltest.AddLink(t, ns, "eth1")
	sock := filepath.Join(t.TempDir(), "fibgate.sock")
	metricsAddr := apitest.FreeAddr(t)
	// Up before the route: the warning counts from the first pending
	// prefix it sees.
	stderr := serveInBackground(t, sock, "--netns", ns, "--backend", "kernel", "--set-notify", "1",
		"--warn-unconfirmed", "500ms", "--metrics", metricsAddr)
	waitRoute := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			var out bytes.Buffer
			if run(context.Background(), []string{"routes", "--socket", sock, "--prefix", "192.0.2.0/24"}, &out, io.Discard) == exitOK &&
				strings.Contains(out.String(), want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("192.0.2.0/24 not %s within 20 s: %s; serve: %s", want, out.String(), stderr.String())
			}
			time.Sleep(50 * time.Millisecond) // polling with a deadline
		}
	}
	added := time.Now()
	kerneltest.IP(t, ns, "route", "add", "192.0.2.0/24", "dev", "eth1")
	waitRoute("pending")
	const warning = "no route has shown a hardware flag"
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stderr.String(), warning) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning within 20 s of the route; serve: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
	if took := time.Since(added); took < 500*time.Millisecond {
		t.Errorf("warned %v after the route, before --warn-unconfirmed 500ms", took)
	}
	log := stderr.String()
	if !strings.Contains(log, "backend=kernel") || !strings.Contains(log, "switchdev driver") || strings.Count(log, warning) != 1 {
		t.Errorf("want one warning naming the backend and the driver:\n%s", log)
	}
	waitRoute("pending") // and the gate still holds it: a warning, not a release
	// An alert can see it too.
	if scrape := scrapeMetrics(t, metricsAddr); !strings.Contains(scrape, "fibgate_hardware_flags_seen 0") {
		t.Errorf("metrics lack fibgate_hardware_flags_seen 0")
	}
}

// serveInBackground runs `fibgate serve --socket sock args...` until the
// test ends (it must then stop within 30 s) and returns once the daemon
// answers the CLI, with what it writes to stderr.
func serveInBackground(t *testing.T, sock string, args ...string) *syncbuf.Buffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	stderr := &syncbuf.Buffer{}
	go func() {
		done <- run(ctx, append([]string{"serve", "--socket", sock}, args...), io.Discard, stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop within 30 s of its context ending")
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for run(context.Background(), []string{"stats", "--socket", sock}, io.Discard, io.Discard) != exitOK {
		if time.Now().After(deadline) {
			t.Fatalf("daemon not answering; serve: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
	return stderr
}

func scrapeMetrics(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape metrics: %s %v", resp.Status, err)
	}
	return string(b)
}

// TestServeRetriesAFailedRouteOnTheSim is issue 11's retry through a
// daemon: a route the sim failed to program (fail probability 1, which the
// sim never retries by itself, like a kernel driver) recovers once the sim
// accepts again, with nobody touching the route: the daemon writes it
// again with back-off. `hw retry` does it at once, and stats and metrics
// count the rewrites.
func TestServeRetriesAFailedRouteOnTheSim(t *testing.T) {
	ns := kerneltest.NewNS(t)
	kerneltest.AddLink(t, ns, "eth1")
	sock := filepath.Join(t.TempDir(), "fibgate.sock")
	metricsAddr := apitest.FreeAddr(t)
	serveErr := serveInBackground(t, sock, "--netns", ns, "--backend", "sim", "--sim-latency", "20ms",
		"--set-notify", "1", "--metrics", metricsAddr)
	cli := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := run(context.Background(), append(args, "--socket", sock), &out, &errb)
		return out.String() + errb.String(), code
	}
	state := func() routeLine {
		out, code := cli("routes", "--json", "--prefix", "192.0.2.0/24")
		var l routeLine
		if code == exitOK {
			_ = json.Unmarshal([]byte(strings.TrimSpace(out)), &l)
		}
		return l
	}
	wait := func(what string, cond func(routeLine) bool) routeLine {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			l := state()
			if cond(l) {
				return l
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20 s; last %+v; serve: %s", what, l, serveErr.String())
			}
			time.Sleep(50 * time.Millisecond) // polling with a deadline
		}
	}
	if out, code := cli("hw", "probability", "1"); code != exitOK {
		t.Fatalf("hw probability 1: %s", out)
	}
	kerneltest.IP(t, ns, "route", "add", "192.0.2.0/24", "dev", "eth1")
	failed := wait("failed", func(l routeLine) bool { return l.State == "failed" })
	if failed.NextRetryTime == "" || failed.Retries != 0 {
		t.Errorf("failed route %+v: want the next retry shown", failed)
	}
	// Still failing: the daemon writes it again (after about 1 s), and it
	// stays failed (not pending) while the sim programs it again.
	again := wait("a retry", func(l routeLine) bool { return l.Retries >= 1 })
	if again.State != "failed" {
		t.Errorf("during retries: %s (%s), want failed", again.State, again.Reason)
	}
	seen := failed.SeenTime

	// The sim accepts again: the next retry (within about 2 s) brings the
	// route back, nobody having touched it.
	if out, code := cli("hw", "probability", "0"); code != exitOK {
		t.Fatalf("hw probability 0: %s", out)
	}
	back := wait("recovered", func(l routeLine) bool { return l.State == "confirmed" })
	if strings.Join(back.Flags, ",") != "trap" || back.Retries != 0 {
		t.Errorf("recovered %+v, want confirmed on trap", back)
	}
	if back.SeenTime != seen {
		t.Errorf("seen %s, was %s: the retry must not look like a new route", back.SeenTime, seen)
	}

	// hw retry writes a failed route again at once, whatever its back-off
	// (the next automatic retry of a route that flapped is seconds away).
	for _, args := range [][]string{{"hw", "fail", "192.0.2.0/24"}, {"hw", "probability", "1"}, {"hw", "clear", "192.0.2.0/24"}} {
		if out, code := cli(args...); code != exitOK {
			t.Fatalf("%v: %s", args, out)
		}
	}
	wait("failed again", func(l routeLine) bool { return l.State == "failed" })
	time.Sleep(100 * time.Millisecond) // the sim's reprogram after clear (20 ms) fails too
	if out, code := cli("hw", "probability", "0"); code != exitOK {
		t.Fatalf("hw probability 0: %s", out)
	}
	asked := time.Now()
	// At least this route: with every write failing, another route the
	// sim programmed meanwhile may have failed too (seen once under load).
	if out, code := cli("hw", "retry", "--all"); code != exitOK || !regexp.MustCompile(`written again: [1-9][0-9]* failed, 0 refused`).MatchString(out) {
		t.Fatalf("hw retry --all: exit %d: %s", code, out)
	}
	wait("recovered at once", func(l routeLine) bool { return l.State == "held_down" || l.State == "confirmed" })
	if d := time.Since(asked); d > 1500*time.Millisecond {
		t.Errorf("recovered %s after hw retry, want at once", d)
	}
	if out, code := cli("hw", "retry", "192.0.2.0/24"); code == exitOK || !strings.Contains(out, "neither failed nor refused") {
		t.Errorf("hw retry of a route that is not failed: exit %d: %s", code, out)
	}
	out, _ := cli("stats", "--json")
	var st statsLine
	// At least the first automatic retry and hw retry's: the retry that
	// brought the route back may be the first one, when its programming
	// was still under way as the sim began to accept again.
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Rewrites < 2 {
		t.Errorf("stats %s: want at least 2 rewrites", out)
	}
	if scrape := scrapeMetrics(t, metricsAddr); !strings.Contains(scrape, "fibgate_rewrites_total") || strings.Contains(scrape, "fibgate_rewrites_total 0") {
		t.Errorf("metrics lack the rewrites:\n%s", scrape)
	}
}
