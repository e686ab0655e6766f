package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/kernel/kerneltest"
)

func TestUsageErrorsExitWithStatus2AndOneLine(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"an unknown flag", []string{"monitor", "--bogus"}, "flag provided but not defined: -bogus"},
		{"a notify mode out of range", []string{"monitor", "--set-notify", "3"}, "out of range"},
		{"a notify mode that is no number", []string{"monitor", "--set-notify", "on"}, "want 0, 1 or 2"},
		{"a tiny receive buffer", []string{"monitor", "--rcvbuf", "10"}, "too small"},
		{"an argument", []string{"monitor", "extra"}, "takes no arguments"},
		{"an unknown command", []string{"frobnicate"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit status %d, want %d", code, exitUsage)
			}
			first, _, _ := strings.Cut(stderr.String(), "\n")
			if !strings.HasPrefix(first, "fibgate: ") || !strings.Contains(first, tt.want) {
				t.Errorf("stderr first line %q, want a fibgate: line containing %q", first, tt.want)
			}
		})
	}
}

func TestHelpGoesToStdoutAndExitsZero(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"monitor", "--help"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit status %d", code)
	}
	for _, want := range []string{"--netns", "--json", "--dump", "fib_notify_on_flag_change", "Exit status"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestMonitorOfAMissingNamespaceExitsWithStatus2(t *testing.T) {
	kerneltest.RequireNetAdmin(t)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"monitor", "--netns", "fibgate-test-absent"}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), `"fibgate-test-absent" does not exist`) {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

// TestMonitorPrintsJSONLines runs the monitor on a namespace and checks the
// documented JSON of the --dump snapshot and of live add and delete events.
func TestMonitorPrintsJSONLines(t *testing.T) {
	ns := kerneltest.NewNS(t)
	kerneltest.AddLink(t, ns, "eth1")
	kerneltest.IP(t, ns, "route", "add", "198.51.100.0/24", "dev", "eth1", "metric", "7")

	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- run(ctx, []string{"monitor", "--netns", ns, "--json", "--dump"}, pw, &stderr)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("monitor exit status %d, stderr %s", code, stderr.String())
		}
	})
	lines := make(chan monitorLine)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var l monitorLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Errorf("not a JSON line: %q: %v", sc.Text(), err)
				continue
			}
			lines <- l
		}
		close(lines)
	}()
	next := func(what string, match func(monitorLine) bool) monitorLine {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("output ended before %s; stderr: %s", what, stderr.String())
				}
				if match(l) {
					return l
				}
			case <-deadline:
				t.Fatalf("no line for %s within 20 s", what)
			}
		}
	}

	l := next("the dumped route", func(l monitorLine) bool { return l.Prefix == "198.51.100.0/24" })
	if l.Event != "add" || l.Priority != 7 || l.Table != 254 || l.Family != "ipv4" {
		t.Errorf("dump line = %+v", l)
	}
	kerneltest.IP(t, ns, "route", "add", "192.0.2.0/24", "dev", "eth1")
	l = next("the added route", func(l monitorLine) bool { return l.Prefix == "192.0.2.0/24" })
	want := monitorLine{Event: "add", Family: "ipv4", Table: 254, Prefix: "192.0.2.0/24", Type: "unicast",
		Protocol: "boot", Flags: []string{}, Nexthops: []nexthopLine{{Dev: "eth1", Weight: 1, Flags: []string{}}}}
	if _, err := time.Parse(time.RFC3339Nano, l.Time); err != nil {
		t.Errorf("time %q is not RFC 3339: %v", l.Time, err)
	}
	l.Time = ""
	if !equalLines(l, want) {
		t.Errorf("add line = %+v\nwant        %+v", l, want)
	}
	kerneltest.IP(t, ns, "-6", "route", "add", "2001:db8::/64", "dev", "eth1")
	l = next("the IPv6 route", func(l monitorLine) bool { return l.Prefix == "2001:db8::/64" })
	if l.Family != "ipv6" || l.Priority != 1024 {
		t.Errorf("IPv6 line = %+v", l)
	}
	kerneltest.IP(t, ns, "route", "del", "192.0.2.0/24")
	next("the delete", func(l monitorLine) bool { return l.Prefix == "192.0.2.0/24" && l.Event == "delete" })
}

func equalLines(a, b monitorLine) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return slices.Equal(ja, jb)
}

// TestMain lets a test run the command itself as another user: with
// FIBGATE_TEST_MAIN set, the test binary is fibgate.
func TestMain(m *testing.M) {
	if os.Getenv("FIBGATE_TEST_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

func TestMonitorWithoutPrivilegesExitsWithStatus2(t *testing.T) {
	ns := kerneltest.NewNS(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux) to drop privileges")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary lives in a 0700 build directory: copy it where
	// nobody may run it.
	dir, err := os.MkdirTemp("", "fibgate-priv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "fibgate")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", bin, "monitor", "--netns", ns)
	cmd.Env = append(os.Environ(), "FIBGATE_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitUsage {
		t.Fatalf("exit: %v, want status %d; output:\n%s", err, exitUsage, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "run as root or with CAP_NET_ADMIN") {
		t.Errorf("want one line naming the missing privilege, got:\n%s", out)
	}
}
