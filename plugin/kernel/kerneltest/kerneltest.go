//go:build linux

// Package kerneltest gives tests a throwaway network namespace and a few
// iproute2 helpers, so tests of every fibgate package run against the real
// kernel without touching the host. Each helper fails the test with the
// command and its output; namespaces are removed when the test ends, also
// on failure.
package kerneltest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RequireNetAdmin skips the test unless it runs as root with iproute2,
// which creating namespaces needs.
func RequireNetAdmin(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: creates network namespaces (run `go test` as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("needs iproute2's ip command:", err)
	}
}

// NewNS creates a network namespace named fibgate-test-<random> with
// loopback up, and deletes it when the test ends. It skips when not root.
func NewNS(tb testing.TB) string {
	tb.Helper()
	RequireNetAdmin(tb)
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
	IP(tb, name, "link", "set", "lo", "up")
	return name
}

// IP runs `ip -n NS args...` and returns its output.
func IP(tb testing.TB, ns string, args ...string) string {
	tb.Helper()
	out, err := IPErr(ns, args...)
	if err != nil {
		tb.Fatalf("ip -n %s %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
	return out
}

// IPErr is IP for commands that may fail: it returns the error instead.
func IPErr(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	return string(out), err
}

// Exec runs a command inside the namespace (`ip netns exec NS cmd...`).
func Exec(tb testing.TB, ns string, cmd ...string) string {
	tb.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, cmd...)...).CombinedOutput()
	if err != nil {
		tb.Fatalf("ip netns exec %s %s: %v\n%s", ns, strings.Join(cmd, " "), err, out)
	}
	return string(out)
}

// Batch feeds lines to `ip -n NS -batch`, the fast way to change many
// routes (one process, one netlink socket).
func Batch(tb testing.TB, ns string, lines []string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "batch")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	IP(tb, ns, "-batch", path)
}

// AddLink creates an interface that is up with carrier, for routes to point
// at: a dummy device where the kernel has them, otherwise a veth pair whose
// peer (name+"p") is up in the same namespace (some kernels lack
// CONFIG_DUMMY).
func AddLink(tb testing.TB, ns, name string) {
	tb.Helper()
	if _, err := IPErr(ns, "link", "add", name, "type", "dummy"); err != nil {
		IP(tb, ns, "link", "add", name, "type", "veth", "peer", "name", name+"p")
		IP(tb, ns, "link", "set", name+"p", "up")
	}
	IP(tb, ns, "link", "set", name, "up")
}
