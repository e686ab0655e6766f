//go:build linux

package kernel

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Helpers for tests against the real kernel. Each test gets a throwaway
// network namespace, so tests run in parallel with each other and with the
// host untouched.

// requireNetAdmin skips the test unless it runs as root with iproute2, which
// creating namespaces needs.
func requireNetAdmin(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: creates network namespaces (run `go test` as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("needs iproute2's ip command:", err)
	}
}

// newTestNS creates a network namespace named fibgate-test-<random> with
// `ip netns add` and deletes it when the test ends, passed or failed. It
// skips the test when not root. Loopback is brought up.
func newTestNS(tb testing.TB) string {
	tb.Helper()
	requireNetAdmin(tb)
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := "fibgate-test-" + hex.EncodeToString(r[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add %s: %v\n%s", name, err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			tb.Logf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	ipn(tb, name, "link", "set", "lo", "up")
	return name
}

// ipn runs `ip -n NS args...` and returns its output; a failure fails the
// test with the command and its output.
func ipn(tb testing.TB, ns string, args ...string) string {
	tb.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		tb.Fatalf("ip -n %s %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ipnErr is ipn for commands expected to fail: it returns the output and the
// error instead of failing the test.
func ipnErr(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	return string(out), err
}

// nsExec runs a command inside the namespace (`ip netns exec NS cmd...`),
// e.g. sysctl, failing the test on error.
func nsExec(tb testing.TB, ns string, cmd ...string) string {
	tb.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, cmd...)...).CombinedOutput()
	if err != nil {
		tb.Fatalf("ip netns exec %s %s: %v\n%s", ns, strings.Join(cmd, " "), err, out)
	}
	return string(out)
}

// ipBatch feeds lines to `ip -n NS -batch`, the fast way to load many
// routes (one process, one netlink socket).
func ipBatch(tb testing.TB, ns string, lines []string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "batch")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	ipn(tb, ns, "-batch", path)
}

// addTestLink creates an interface that is up with carrier, for routes to
// point at. It uses a dummy device when the kernel has them and otherwise a
// veth pair whose peer (name+"p") is up in the same namespace (this
// machine's kernel is built without CONFIG_DUMMY).
func addTestLink(tb testing.TB, ns, name string) {
	tb.Helper()
	if _, err := ipnErr(ns, "link", "add", name, "type", "dummy"); err != nil {
		ipn(tb, ns, "link", "add", name, "type", "veth", "peer", "name", name+"p")
		ipn(tb, ns, "link", "set", name+"p", "up")
	}
	ipn(tb, ns, "link", "set", name, "up")
}

// linkIndex returns the ifindex of a link in the namespace.
func linkIndex(tb testing.TB, ns, name string) int {
	tb.Helper()
	links, err := DumpLinks(Options{NetNS: ns})
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range links {
		if l.Name == name {
			return l.Index
		}
	}
	tb.Fatalf("no link %q in netns %s", name, ns)
	return 0
}

// testSubscribe subscribes in ns with a default-sized buffer and closes the
// subscription when the test ends.
func testSubscribe(tb testing.TB, ns string) *Subscription {
	tb.Helper()
	s, err := Subscribe(Options{NetNS: ns})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// waitMessage receives until match accepts a decoded message or the
// deadline passes (a failure). Messages are decoded with Decode; skipped
// ones are ignored. It is how tests wait for the kernel without sleeping.
func waitMessage(tb testing.TB, s *Subscription, what string, match func(any) bool) any {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	if err := s.SetReadDeadline(deadline); err != nil {
		tb.Fatal(err)
	}
	defer s.SetReadDeadline(time.Time{})
	var seen []string
	for {
		msgs, err := s.Receive()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			tb.Fatalf("no %s within 5s; saw:\n%s", what, strings.Join(seen, "\n"))
		}
		if err != nil {
			tb.Fatalf("waiting for %s: %v", what, err)
		}
		for _, b := range msgs {
			v, err := Decode(b)
			if errors.Is(err, ErrSkip) {
				continue
			}
			if err != nil {
				tb.Fatalf("waiting for %s: %v", what, err)
			}
			if match(v) {
				return v
			}
			seen = append(seen, describe(v))
		}
	}
}

// drain returns the messages already queued on s, without waiting. The
// kernel queues notifications before it acknowledges the request that
// caused them, so after an `ip` command returns, its notifications are
// all there.
func drain(tb testing.TB, s *Subscription) [][]byte {
	tb.Helper()
	var out [][]byte
	for {
		msgs, err := s.receiveNow()
		if err != nil {
			tb.Fatal(err)
		}
		if len(msgs) == 0 {
			return out
		}
		for _, m := range msgs {
			out = append(out, append([]byte(nil), m...))
		}
	}
}

// describe renders a decoded message for test failures.
func describe(v any) string {
	switch m := v.(type) {
	case RouteMessage:
		kind := "NEWROUTE"
		if m.Type == rtmDelRoute {
			kind = "DELROUTE"
		}
		return kind + " nlflags=" + nlFlagsString(m.NLFlags) + " " + m.Route.String()
	case LinkMessage:
		return "LINK " + m.Name
	case AddrMessage:
		return "ADDR " + m.Prefix.String()
	}
	return "?"
}

// nlFlagsString names the nlmsg flags of change notifications.
func nlFlagsString(f uint16) string {
	var parts []string
	for _, n := range []struct {
		bit  uint16
		name string
	}{{0x100, "REPLACE"}, {0x200, "EXCL"}, {0x400, "CREATE"}, {0x800, "APPEND"}, {0x2, "MULTI"}} {
		if f&n.bit != 0 {
			parts = append(parts, n.name)
			f &^= n.bit
		}
	}
	if f != 0 {
		parts = append(parts, "0x"+hex.EncodeToString([]byte{byte(f >> 8), byte(f)}))
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, "|")
}
