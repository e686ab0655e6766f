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
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
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

// AddMarkedRoute adds dst through the gateways on dev, as proto bgp, with
// RTNH_F_OFFLOAD on each next hop: the mark a driver sets on the next hops
// it has written (mlxsw on an adjacency group's, rocker on every route's).
// User space may set the bit on a route it adds, and the kernel keeps it
// on the route's fib_info, which a later route with the same next hops,
// protocol and metric shares: that route shows the marks from its add on,
// as one does on a switch before its driver has written it.
func AddMarkedRoute(tb testing.TB, ns, dst, dev string, gateways ...string) {
	tb.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		tb.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		tb.Fatal(err)
	}
	defer nl.Close()
	link, err := nl.LinkByName(dev)
	if err != nil {
		tb.Fatalf("%s in %s: %v", dev, ns, err)
	}
	_, d, err := net.ParseCIDR(dst)
	if err != nil {
		tb.Fatal(err)
	}
	idx := link.Attrs().Index
	r := &netlink.Route{Dst: d, Protocol: unix.RTPROT_BGP}
	if len(gateways) == 1 {
		r.LinkIndex, r.Gw, r.Flags = idx, net.ParseIP(gateways[0]), unix.RTNH_F_OFFLOAD
	} else {
		for _, gw := range gateways {
			r.MultiPath = append(r.MultiPath, &netlink.NexthopInfo{LinkIndex: idx, Gw: net.ParseIP(gw), Flags: unix.RTNH_F_OFFLOAD})
		}
	}
	if err := nl.RouteAdd(r); err != nil {
		tb.Fatalf("adding %s with marked next hops in %s: %v", dst, ns, err)
	}
}
