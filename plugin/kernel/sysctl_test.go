//go:build linux

package kernel

import (
	"errors"
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
