//go:build linux

package netdevsim

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/lab"
)

// rockerPolicy gates IPv4 at level hardware with ECMP any: the rule under
// which one marked next hop of a multipath route confirmed it before.
const rockerPolicy = `scopes:
  - name: v4
    family: ipv4
    level: hardware
    ecmp: any
`

// TestInsideVMWithRocker runs in the VM TestRocker boots, in the initial
// namespace (rocker follows that one's FIB only). rocker's
// ofdpa_fib4_add sets RTNH_F_OFFLOAD on the first next hop of a route it
// has programmed and never sets a route's flags, so `ip route` shows
// `offload` beside the next hop, shared by every route through it. The
// gate must confirm no route by that, and its warning must name the marks
// instead of asking for a driver.
func TestInsideVMWithRocker(t *testing.T) {
	if !inGuest() {
		t.Skip("runs inside the VM that TestRocker boots")
	}
	ports := rockerPorts(t)
	if len(ports) == 0 {
		links, _ := filepath.Glob("/sys/class/net/*")
		t.Skipf("no rocker port among %v: this kernel lacks CONFIG_ROCKER (or CONFIG_PCI_MSI, which rocker needs); `make netdevsim-kernel` builds one with them", links)
	}
	port := ports[0]
	ip0(t, "link", "set", port, "up")
	ip0(t, "addr", "add", "10.1.0.1/24", "dev", port)

	dir := t.TempDir()
	sock, policy := filepath.Join(dir, "fibgate.sock"), filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(rockerPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	serve := lab.Start(t, "", dir, "fibgate-serve", bin("fibgate"), "serve", "--socket", sock, "--backend", "kernel",
		"--set-notify", "1", "--policy", policy, "--warn-unconfirmed", "3s")
	fibgate := func(args ...string) (string, error) {
		out, err := exec.Command(bin("fibgate"), append(args, "--socket", sock)...).CombinedOutput()
		return string(out), err
	}
	lab.Eventually(t, 30*time.Second, "fibgate serve answering", func() error {
		if serve.Exited() {
			b, _ := os.ReadFile(serve.Log)
			t.Fatalf("fibgate serve exited:\n%s", b)
		}
		_, err := fibgate("stats")
		return err
	})

	// Marks are set after the route's notification and never announced,
	// so the gate meets them on a route that joins a marked fib_info: one
	// added through the same next hops as a route rocker has programmed.
	first := []string{"192.0.2.0/24", "198.51.100.0/24"}
	joined := []string{"203.0.113.0/24", "198.51.100.128/25"}
	addRoutes := func(t *testing.T, single, multi string) {
		ip0(t, "route", "add", single, "via", "10.1.0.2", "dev", port)
		ip0(t, "route", "add", multi, "nexthop", "via", "10.1.0.2", "dev", port, "nexthop", "via", "10.1.0.3", "dev", port)
	}
	t.Run("rocker marks the next hops of its routes and flags no route", func(t *testing.T) {
		addRoutes(t, first[0], first[1])
		lab.Eventually(t, 30*time.Second, "both routes' next hops marked offload", func() error {
			for _, p := range first {
				if out := ip0(t, "route", "show", p); !strings.Contains(out, " offload") {
					return fmt.Errorf("%s: %q", p, out)
				}
			}
			return nil
		})
		addRoutes(t, joined[0], joined[1])
		for _, p := range append(first, joined...) {
			out := ip0(t, "route", "show", p)
			if !strings.Contains(out, " offload") {
				t.Errorf("%s shares a programmed route's next hops, yet they are not marked: %q", p, out)
			}
			if strings.Contains(out, "rt_offload") || strings.Contains(out, "rt_trap") {
				t.Errorf("%s has a route flag, which rocker never sets: %q", p, out)
			}
		}
	})
	t.Run("the gate confirms neither by the marks, and the warning names them", func(t *testing.T) {
		routes := func(p string) string {
			out, err := fibgate("routes", "--prefix", p, "--json")
			if err != nil {
				return fmt.Sprintf("%v: %s", err, out)
			}
			return out
		}
		// The routes added beside marked next hops carry the marks from
		// their add on: the ECMP one has its first path marked, which
		// ecmp any took for a confirmation before.
		const reason = "next hops are marked in hardware"
		lab.Eventually(t, 30*time.Second, "the routes added beside marks pending, their marks named", func() error {
			for _, p := range joined {
				if out := routes(p); !strings.Contains(out, `"state":"pending"`) || !strings.Contains(out, reason) {
					return fmt.Errorf("%s: %s", p, out)
				}
			}
			return nil
		})
		const warning = "the driver marks next hops and not routes"
		lab.Eventually(t, 30*time.Second, "the warning", func() error {
			if b, _ := os.ReadFile(serve.Log); !bytes.Contains(b, []byte(warning)) {
				return fmt.Errorf("not in the log yet")
			}
			return nil
		})
		for _, p := range append(first, joined...) {
			if out := routes(p); !strings.Contains(out, `"state":"pending"`) {
				t.Errorf("%s after the warning: %s, want still pending", p, out)
			}
		}
	})
}

// rockerPorts lists the interfaces of the rocker driver, by name.
func rockerPorts(t *testing.T) []string {
	t.Helper()
	links, err := filepath.Glob("/sys/class/net/*/device/driver")
	if err != nil {
		t.Fatal(err)
	}
	var ports []string
	for _, l := range links {
		if d, err := os.Readlink(l); err == nil && filepath.Base(d) == "rocker" {
			ports = append(ports, filepath.Base(filepath.Dir(filepath.Dir(l))))
		}
	}
	slices.Sort(ports)
	return ports
}

// ip0 runs iproute2's ip in the initial namespace and returns its output.
func ip0(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
