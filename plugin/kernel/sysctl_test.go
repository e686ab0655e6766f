//go:build linux

package kernel

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/fibgate/fibgate/plugin/fib"
)

// TestNotifyModeIsPerNamespace reads and writes the sysctl in two fresh
// namespaces and checks each against `ip netns exec NS sysctl`, which is the
// proof that a thread that joined a namespace sees that namespace's
// /proc/sys/net.
func TestNotifyModeIsPerNamespace(t *testing.T) {
	t.Parallel()
	a, b := newTestNS(t), newTestNS(t)
	sysctl := func(ns string, fam fib.Family) int {
		out := nsExec(t, ns, "sysctl", "-n", "net."+fam.String()+".fib_notify_on_flag_change")
		v, err := strconv.Atoi(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("sysctl output %q: %v", out, err)
		}
		return v
	}
	for _, fam := range []fib.Family{fib.IPv4, fib.IPv6} {
		for _, ns := range []string{a, b} {
			got, err := NotifyMode(Options{NetNS: ns}, fam)
			if err != nil || got != 0 {
				t.Errorf("new netns %s: NotifyMode(%v) = %d, %v; want 0 (the per-netns default)", ns, fam, got, err)
			}
		}
		for mode := range 3 {
			if err := SetNotifyMode(Options{NetNS: a}, fam, mode); err != nil {
				t.Fatal(err)
			}
			got, err := NotifyMode(Options{NetNS: a}, fam)
			if err != nil || got != mode {
				t.Errorf("%v: after SetNotifyMode(%d): NotifyMode = %d, %v", fam, mode, got, err)
			}
			if v := sysctl(a, fam); v != mode {
				t.Errorf("%v: after SetNotifyMode(%d) sysctl in the netns shows %d", fam, mode, v)
			}
			if v := sysctl(b, fam); v != 0 {
				t.Errorf("%v: SetNotifyMode in %s changed %s to %d", fam, a, b, v)
			}
		}
	}
	// The process's own namespace is untouched too.
	host, err := NotifyMode(Options{}, fib.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetNotifyMode(Options{NetNS: a}, fib.IPv4, 1-min(host, 1)); err != nil {
		t.Fatal(err)
	}
	if again, _ := NotifyMode(Options{}, fib.IPv4); again != host {
		t.Errorf("host notify mode changed from %d to %d by a write in %s", host, again, a)
	}
}

func TestSetNotifyModeRejectsOutOfRange(t *testing.T) {
	t.Parallel()
	// Checked before the kernel is touched: no namespace, no root needed.
	for _, mode := range []int{-1, 3, 255} {
		err := SetNotifyMode(Options{NetNS: "fibgate-test-not-reached"}, fib.IPv4, mode)
		if !errors.Is(err, ErrInvalidNotifyMode) || !strings.Contains(err.Error(), strconv.Itoa(mode)) {
			t.Errorf("SetNotifyMode(%d) = %v, want ErrInvalidNotifyMode", mode, err)
		}
	}
	if err := SetNotifyMode(Options{}, 7, 1); err == nil {
		t.Error("SetNotifyMode(family 7) succeeded")
	}
}

// TestKernelRejectsNotifyMode3 confirms kernel-semantics.md item 2 with a
// raw write that bypasses SetNotifyMode's own check.
func TestKernelRejectsNotifyMode3(t *testing.T) {
	t.Parallel()
	ns := newTestNS(t)
	for _, fam := range []fib.Family{fib.IPv4, fib.IPv6} {
		path, _ := notifySysctl(fam)
		if err := writeSysctl(Options{NetNS: ns}, path, "3"); !errors.Is(err, unix.EINVAL) {
			t.Errorf("%v: kernel write of 3: %v, want EINVAL", fam, err)
		}
	}
}

// TestSetNotifyModePermissionError writes from a thread that switched to
// an unprivileged user (a raw setresuid affects only that thread) and
// expects the error to say what is needed.
func TestSetNotifyModePermissionError(t *testing.T) {
	requireNetAdmin(t)
	host, err := NotifyMode(Options{}, fib.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	other := (host + 1) % 3
	t.Cleanup(func() { // only if the write surprisingly succeeded
		if now, _ := NotifyMode(Options{}, fib.IPv4); now != host {
			_ = SetNotifyMode(Options{}, fib.IPv4, host)
		}
	})
	asNobody := func(mode int) error {
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread changed its user
			const nobody = 65534
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, nobody, nobody, nobody); e != 0 {
				errc <- e
				return
			}
			errc <- SetNotifyMode(Options{}, fib.IPv4, mode)
		}()
		return <-errc
	}
	err = asNobody(other)
	if !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
		t.Fatalf("write as nobody: %v, want EACCES or EPERM", err)
	}
	if !strings.Contains(err.Error(), "needs root/CAP_NET_ADMIN") {
		t.Errorf("error %q does not say what is needed", err)
	}
	// The mode in place needs no write, so no privilege (a container's
	// read-only /proc/sys with the host's sysctl set).
	if err := asNobody(host); err != nil {
		t.Errorf("setting the mode in place as nobody: %v, want nil", err)
	}
}

// fakeProcSys points the sysctls at a directory holding the given files
// (relative path, content) for the rest of the test: a kernel this
// machine does not run. It is not parallel: every test that runs meanwhile
// would read it.
func fakeProcSys(t *testing.T, dirs []string, files map[string]string) {
	t.Helper()
	root := t.TempDir()
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for f, v := range files {
		if err := os.WriteFile(filepath.Join(root, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := procSys
	procSys = root
	t.Cleanup(func() { procSys = old })
}

// TestNotifyModeOnKernelsWithoutIt tells apart the two kernels on which
// fib_notify_on_flag_change does not exist: one with IPv6 disabled at boot
// (no net/ipv6 at all; the netdevsim VM boots a real one in
// TestNetdevsimWithoutIPv6) and one older than Linux 5.12 (the family
// without the entry). Neither stops a listener; the older kernel is
// warned about.
func TestNotifyModeOnKernelsWithoutIt(t *testing.T) {
	t.Run("IPv6 disabled", func(t *testing.T) {
		fakeProcSys(t, []string{"net/ipv4"}, map[string]string{"net/ipv4/fib_notify_on_flag_change": "1\n"})
		if m, err := NotifyMode(Options{}, fib.IPv4); m != 1 || err != nil {
			t.Errorf("IPv4: %d, %v; want 1", m, err)
		}
		_, err := NotifyMode(Options{}, fib.IPv6)
		if !errors.Is(err, ErrFamilyDisabled) || errors.Is(err, ErrNotifyUnsupported) {
			t.Errorf("IPv6: %v; want ErrFamilyDisabled", err)
		}
		if err := SetNotifyMode(Options{}, fib.IPv6, 1); !errors.Is(err, ErrFamilyDisabled) {
			t.Errorf("SetNotifyMode(IPv6): %v; want ErrFamilyDisabled", err)
		}
		if warn, err := CheckNotifyModes(Options{}); len(warn) != 0 || err != nil {
			t.Errorf("CheckNotifyModes: %q, %v; want nothing", warn, err)
		}
		if FamilyEnabled(fib.IPv6) || !FamilyEnabled(fib.IPv4) {
			t.Errorf("FamilyEnabled: IPv6 %v, IPv4 %v; want false, true", FamilyEnabled(fib.IPv6), FamilyEnabled(fib.IPv4))
		}
	})
	t.Run("older than 5.12", func(t *testing.T) {
		fakeProcSys(t, []string{"net/ipv4", "net/ipv6"}, nil)
		if !FamilyEnabled(fib.IPv6) {
			t.Error("FamilyEnabled(IPv6) with net/ipv6 there: false")
		}
		for _, fam := range []fib.Family{fib.IPv4, fib.IPv6} {
			_, err := NotifyMode(Options{}, fam)
			if !errors.Is(err, ErrNotifyUnsupported) || errors.Is(err, ErrFamilyDisabled) {
				t.Errorf("%v: %v; want ErrNotifyUnsupported", fam, err)
			}
			if err := SetNotifyMode(Options{}, fam, 1); !errors.Is(err, ErrNotifyUnsupported) {
				t.Errorf("SetNotifyMode(%v): %v; want ErrNotifyUnsupported", fam, err)
			}
		}
		warn, err := CheckNotifyModes(Options{})
		if err != nil || len(warn) != 2 || !strings.Contains(warn[0], "5.12") {
			t.Errorf("CheckNotifyModes: %q, %v; want a warning per family naming 5.12", warn, err)
		}
	})
	t.Run("no /proc/sys", func(t *testing.T) {
		fakeProcSys(t, nil, nil)
		_, err := NotifyMode(Options{}, fib.IPv6)
		if err == nil || errors.Is(err, ErrFamilyDisabled) || errors.Is(err, ErrNotifyUnsupported) {
			t.Errorf("IPv6: %v; want the plain error, no family skipped", err)
		}
		if _, err := CheckNotifyModes(Options{}); err == nil {
			t.Error("CheckNotifyModes succeeded without /proc/sys")
		}
	})
	t.Run("a listener without IPv6", func(t *testing.T) {
		ns := newTestNS(t)
		fakeProcSys(t, []string{"net/ipv4"}, map[string]string{"net/ipv4/fib_notify_on_flag_change": "1\n"})
		addTestLink(t, ns, "dummy1")
		ipn(t, ns, "addr", "add", "10.1.0.1/24", "dev", "dummy1")
		// Set to the value it has, so nothing is written to the fake.
		_, evs := startListener(t, ns, WithSetNotifyMode(fib.NotifyAll))
		ipn(t, ns, "route", "add", "192.0.2.0/24", "via", "10.1.0.2")
		waitEvent(t, evs, "add 192.0.2.0/24", isEvent(Added, "192.0.2.0/24"))
	})
}
