//go:build linux

package netdevsim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/lab"
)

// The host side: TestNetdevsim builds the binaries and the initramfs, boots
// the kernel under qemu, and reports what the guest's TestInsideVM found.

const (
	// kernelEnv names the bzImage; .ci/run sets it when
	// ../shared/netdevsim/bzImage exists.
	kernelEnv = "FIBGATE_NETDEVSIM_KERNEL"
	// runEnv narrows the checks run in the VM (a -run pattern below
	// TestInsideVM, such as "sidecar/kill"), for runs by hand.
	runEnv = "FIBGATE_NETDEVSIM_RUN"
	// accelEnv picks qemu's accelerator: tcg (the default, as in CI) or
	// kvm where /dev/kvm is usable, for faster runs by hand.
	accelEnv = "FIBGATE_NETDEVSIM_ACCEL"
	// guestEnv is set inside the VM only.
	guestEnv = "FIBGATE_NETDEVSIM_GUEST"

	// guestTimeout bounds the guest's test binary (-test.timeout), by the
	// guest's clock. That clock counts timer ticks, which a loaded host
	// delivers late, so it runs up to twice slower than the host's: qemu
	// is killed only after twice guestTimeout, plus vmSlack to boot and
	// report (and never after the host test's own deadline).
	guestTimeout = 300 * time.Second
	vmSlack      = 60 * time.Second
	guestBinDir  = "/fg"
)

// inGuest says whether this test binary runs inside the VM.
func inGuest() bool { return os.Getenv(guestEnv) == "1" }

// TestMain proves the cleanup, on the host and in the VM alike: no
// namespace and no child process is left.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if lab.LeftBehind() {
		code = 1
	}
	os.Exit(code)
}

// TestNetdevsim runs the gate on a real kernel driver: Linux 6.1 with
// netdevsim, booted under qemu (TCG: no KVM needed) with an initramfs of
// busybox, iproute2, this package's test binary and the daemons, all built
// here. Inside, TestInsideVM runs every scenario in one boot; each of its
// checks comes back as a subtest of this test.
func TestNetdevsim(t *testing.T) {
	bootVM(t, "TestInsideVM", "")
}

// TestNetdevsimWithoutIPv6 boots the same kernel with IPv6 disabled
// (ipv6.disable=1, as some operators run their switches): no
// /proc/sys/net/ipv6 at all, so no IPv6 fib_notify_on_flag_change, and an
// IPv4 fabric must still be gated as usual (TestInsideVMWithoutIPv6).
func TestNetdevsimWithoutIPv6(t *testing.T) {
	bootVM(t, "TestInsideVMWithoutIPv6", "ipv6.disable=1")
}

// TestRocker boots the kernel with qemu's rocker switch, whose mainline
// driver marks the next hops of the routes it programs (RTNH_F_OFFLOAD)
// and never flags a route: a driver the gate must not take at its marks'
// word (TestInsideVMWithRocker). Its two ports have no backend (qemu 7.2
// cannot set rocker's array of netdevs from the command line), so no
// traffic leaves the VM. A kernel without CONFIG_ROCKER
// (../shared/netdevsim's) skips it inside.
func TestRocker(t *testing.T) {
	bootVM(t, "TestInsideVMWithRocker", "", "-device", "rocker,name=sw0,len-ports=2")
}

// bootVM boots the netdevsim kernel, with args added to its command line
// and devices to qemu's, runs the guest test root in it, and replays the
// guest's checks as subtests of t.
func bootVM(t *testing.T, root, args string, devices ...string) {
	if inGuest() {
		t.Skip("the host's half: inside the VM " + root + " runs")
	}
	if testing.Short() {
		t.Skip("boots a kernel under qemu: skipped in -short mode")
	}
	kernel := os.Getenv(kernelEnv)
	if kernel == "" {
		t.Skipf("needs a Linux kernel with netdevsim: set %s to a bzImage (`make netdevsim-kernel` builds one; e2e/netdevsim/README.md)", kernelEnv)
	}
	if runtime.GOARCH != "amd64" {
		t.Skipf("the VM is x86-64 and runs this host's binaries: needs an amd64 host, not %s", runtime.GOARCH)
	}
	if _, err := os.Stat(kernel); err != nil {
		t.Fatalf("%s: %v", kernelEnv, err)
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal("qemu-system-x86_64 not found: install Debian's qemu-system-x86 (make deps)")
	}
	tools, err := findHostTools()
	if err != nil {
		t.Fatal(err)
	}
	run := "^" + root + "$"
	if r := os.Getenv(runEnv); r != "" {
		if _, err := regexp.Compile(r); err != nil || strings.ContainsAny(r, `'\`) {
			t.Fatalf("%s=%q: want a -run pattern without quotes or backslashes (%v)", runEnv, r, err)
		}
		run += "/" + r
	}
	accel := os.Getenv(accelEnv)
	switch accel {
	case "":
		accel = "tcg"
	case "tcg", "kvm":
	default:
		t.Fatalf("%s=%q: want tcg or kvm", accelEnv, accel)
	}

	dir := t.TempDir()
	began := time.Now()
	bin := builtOnce(t)
	built := time.Now()
	image := filepath.Join(dir, "initramfs.cpio")
	if err := writeInitramfs(image, tools, bin, initScript(run)); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(image)
	if err != nil {
		t.Fatal(err)
	}
	console, results := filepath.Join(dir, "console.log"), filepath.Join(dir, "results.log")
	limit := 2*guestTimeout + vmSlack
	if d, ok := t.Deadline(); ok && time.Until(d)-30*time.Second < limit {
		limit = time.Until(d) - 30*time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmdline := strings.TrimSpace("console=ttyS0 panic=-1 quiet " + args)
	cmd := exec.CommandContext(ctx, qemu, append([]string{
		"-nodefaults", "-display", "none", "-no-reboot", "-accel", accel,
		// Two sockets of one CPU: the kernel has no ACPI, and SeaBIOS's MP
		// table lists one CPU per socket, so "-smp 2" alone gives it one.
		"-m", "1024", "-smp", "2,sockets=2",
		"-kernel", kernel, "-initrd", image,
		"-append", cmdline,
		"-serial", "file:" + console, // the kernel's console
		"-serial", "file:" + results, // the guest's test output
	}, devices...)...)
	cmd.WaitDelay = 5 * time.Second
	booted := time.Now()
	out, err := cmd.CombinedOutput()
	ended := time.Now()
	b, rerr := os.ReadFile(results)
	if rerr != nil {
		t.Fatalf("qemu: %v\n%s\n(no guest output: %v)\nconsole:\n%s", err, out, rerr, tailFile(console, 40))
	}
	g := parseGuest(strings.Split(string(b), "\n"), root)
	t.Logf("built in %v, image %d MB; the VM (%s) ran %v (%s, guest: boot %.1fs, tests %.1fs); %s",
		built.Sub(began).Round(100*time.Millisecond), st.Size()>>20, cmdline, ended.Sub(booted).Round(100*time.Millisecond),
		accel, g.uptime[0], g.uptime[1]-g.uptime[0], g)
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		t.Errorf("the VM did not end within %v: killed", limit)
	case err != nil:
		t.Errorf("qemu: %v\n%s", err, out)
	}
	if !g.started {
		t.Fatalf("the guest never started its tests; console:\n%s", tailFile(console, 40))
	}
	replay(t, g.root)
	if g.exit != 0 && !g.root.failed() {
		t.Errorf("the guest's test binary exited %d with every check passed:\n%s\nconsole:\n%s",
			g.exit, strings.Join(g.other, "\n"), tailFile(console, 20))
	}
	if t.Failed() {
		t.Logf("console (tail):\n%s", tailFile(console, 20))
	}
}

// The binaries are built once for every boot of a run, into binDir, which
// TestMain removes.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  string
)

// builtOnce returns the directory of the guest's binaries, building them
// on its first call.
func builtOnce(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fibgate-netdevsim-bin-")
		if err != nil {
			buildErr = err.Error()
			return
		}
		binDir = dir
		buildErr = build(dir)
	})
	if buildErr != "" {
		t.Fatal(buildErr)
	}
	return binDir
}

// initScript is the VM's /init: mount what the kernel does not, run the
// test binary with its output on the second serial port, power off.
func initScript(run string) string {
	return fmt.Sprintf(`#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/sbin:/bin:%[1]s HOME=/tmp TMPDIR=/tmp %[2]s=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
/sbin/ip link set lo up
stty -F /dev/ttyS1 raw -echo
echo "%[3]s $(cat /proc/uptime)" > /dev/ttyS1
%[1]s/netdevsim.test -test.v -test.run '%[4]s' -test.timeout %[5]s > /dev/ttyS1 2>&1
echo "%[6]s $? $(cat /proc/uptime)" > /dev/ttyS1
reboot -f
`, guestBinDir, guestEnv, startMarker, run, guestTimeout, exitMarker)
}

// build compiles, statically (CGO_ENABLED=0: the image has no libc for
// them), the daemons, the CLI, stock gobgpd from the GoBGP module in go.mod
// (peer and observer: FRR would not fit; the test drives them over their
// API), and this package's test binary, which runs the scenarios inside.
func build(dir string) string {
	// go test puts its own GOROOT/bin first on the PATH: "go" is the
	// toolchain that built this test.
	goTool := "go"
	env := append(os.Environ(), "CGO_ENABLED=0")
	flags := []string{"-trimpath", "-ldflags=-s -w"}
	for _, args := range [][]string{
		append(append([]string{"build"}, flags...), "-o", dir+"/",
			"github.com/fibgate/fibgate/gobgpd-ext/cmd/gobgpd-ext",
			"github.com/fibgate/fibgate/gobgpd-ext/cmd/fibgated",
			"github.com/fibgate/fibgate/gobgpd-ext/cmd/fibgate",
			"github.com/osrg/gobgp/v3/cmd/gobgpd"),
		append(append([]string{"test", "-c"}, flags...), "-o", filepath.Join(dir, "netdevsim.test"),
			"github.com/fibgate/fibgate/e2e/netdevsim"),
	} {
		cmd := exec.Command(goTool, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Sprintf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return ""
}

func tailFile(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	l := strings.Split(strings.TrimRight(strings.ReplaceAll(string(b), "\r", ""), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
