//go:build linux

package lab

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// NSPrefix starts the name of every namespace this package creates,
// followed by the test process id, so a test binary can check that it
// left none behind (Leftovers) without counting other packages' tests.
const NSPrefix = "fgb-"

// RequireRoot skips the test unless it runs as root with iproute2 and can
// create a network namespace.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: builds network namespaces (run `go test` as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("needs iproute2's ip command:", err)
	}
}

// NewNS creates a network namespace with loopback up and deletes it when
// the test ends.
func NewNS(tb testing.TB, role string) string {
	tb.Helper()
	RequireRoot(tb)
	var r [3]byte
	_, _ = rand.Read(r[:])
	name := fmt.Sprintf("%s%d-%x-%s", NSPrefix, os.Getpid(), r, role)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add %s: %v\n%s", name, err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			tb.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	IP(tb, name, "link", "set", "lo", "up")
	// No duplicate address detection on the links to come: their IPv6
	// link-local addresses work at once (FRR refuses an IPv6 session
	// until the interface has one). A kernel without IPv6 has nothing to
	// disable.
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		return name
	}
	out, err := exec.Command("ip", "netns", "exec", name, "sysctl", "-q", "-w",
		"net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0").CombinedOutput()
	if err != nil {
		tb.Fatalf("disable DAD in %s: %v\n%s", name, err, out)
	}
	return name
}

// IP runs `ip -n NS args...`.
func IP(tb testing.TB, ns string, args ...string) {
	tb.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		tb.Fatalf("ip -n %s %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
}

// Link joins namespaces a and b with a veth pair (aIf in a, bIf in b) and
// gives each end an IPv4 /30 and an IPv6 /64 address (without duplicate
// address detection, so they work at once; none when a6 is empty, as on a
// kernel without IPv6).
func Link(tb testing.TB, a, aIf, a4, a6, b, bIf, b4, b6 string) {
	tb.Helper()
	IP(tb, a, "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b)
	IP(tb, a, "addr", "add", a4+"/30", "dev", aIf)
	IP(tb, b, "addr", "add", b4+"/30", "dev", bIf)
	if a6 != "" { // none on a kernel without IPv6
		IP(tb, a, "-6", "addr", "add", a6+"/64", "dev", aIf, "nodad")
		IP(tb, b, "-6", "addr", "add", b6+"/64", "dev", bIf, "nodad")
	}
	IP(tb, a, "link", "set", aIf, "up")
	IP(tb, b, "link", "set", bIf, "up")
}

// Leftovers lists namespaces of this process that still exist; a
// TestMain calls it after the tests to prove the cleanup.
func Leftovers() ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %v: %s", err, out)
	}
	var left []string
	mine := fmt.Sprintf("%s%d-", NSPrefix, os.Getpid())
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], mine) {
			left = append(left, f[0])
		}
	}
	return left, nil
}
