//go:build linux

package kernel

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/fibgate/fibgate/plugin/fib"
)

// ErrInvalidNotifyMode is matched by the error SetNotifyMode returns for a
// mode outside 0..2; it is returned before the kernel is touched.
const ErrInvalidNotifyMode = constError("invalid fib_notify_on_flag_change mode")

// notifySysctl returns the /proc/sys path of net.ipv{4,6}.fib_notify_on_flag_change.
func notifySysctl(family fib.Family) (string, error) {
	switch family {
	case fib.IPv4:
		return "/proc/sys/net/ipv4/fib_notify_on_flag_change", nil
	case fib.IPv6:
		return "/proc/sys/net/ipv6/fib_notify_on_flag_change", nil
	}
	return "", fmt.Errorf("fib_notify_on_flag_change: unsupported family %d (want fib.IPv4 or fib.IPv6)", family)
}

// sysctlName turns a /proc/sys path into the dotted name sysctl(8) uses.
func sysctlName(path string) string {
	return strings.ReplaceAll(strings.TrimPrefix(path, "/proc/sys/"), "/", ".")
}

// NotifyMode reads net.ipv4.fib_notify_on_flag_change or its IPv6 twin in
// opts.NetNS. The sysctl is per network namespace and decides whether the
// kernel announces hardware-flag changes at all: 0 never (the default in
// every new namespace), 1 on every change, 2 only when offload_failed
// changes. The value is read by a thread that joined the namespace, which is
// what /proc/sys/net shows (verified against `ip netns exec NS sysctl`).
func NotifyMode(opts Options, family fib.Family) (int, error) {
	path, err := notifySysctl(family)
	if err != nil {
		return 0, err
	}
	var data []byte
	err = inNetNS(opts.NetNS, func() error {
		data, err = os.ReadFile(path)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read %s in %s: %w", sysctlName(path), opts.where(), err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("read %s in %s: %w", sysctlName(path), opts.where(), err)
	}
	return v, nil
}

// SetNotifyMode writes fib_notify_on_flag_change (0, 1 or 2, see
// NotifyMode) for one family in opts.NetNS. fibgate needs 1 (or 2 if only
// failures matter) to learn of hardware flags without dumping. A mode
// outside 0..2 returns ErrInvalidNotifyMode without touching the kernel;
// a permission error says that root/CAP_NET_ADMIN is needed, a read-only
// /proc/sys that the host must set it. A mode already in place is not
// written again.
func SetNotifyMode(opts Options, family fib.Family, mode int) error {
	path, err := notifySysctl(family)
	if err != nil {
		return err
	}
	if mode < 0 || mode > 2 {
		return fmt.Errorf("set %s to %d: %w (want 0 = never notify, 1 = every flag change, 2 = offload_failed changes only)",
			sysctlName(path), mode, ErrInvalidNotifyMode)
	}
	if cur, err := NotifyMode(opts, family); err == nil && cur == mode {
		return nil // nothing to write: a read-only /proc/sys (containers) is fine then
	}
	if err := writeSysctl(opts, path, strconv.Itoa(mode)); err != nil {
		return fmt.Errorf("set %s to %d: %w", sysctlName(path), mode, err)
	}
	return nil
}

// writeSysctl writes value to a /proc/sys file inside opts.NetNS, without
// checking the value (tests use it to observe the kernel's own checks).
func writeSysctl(opts Options, path, value string) error {
	err := inNetNS(opts.NetNS, func() error {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, werr := f.WriteString(value)
		cerr := f.Close()
		return errors.Join(werr, cerr)
	})
	if errors.Is(err, unix.EROFS) {
		return fmt.Errorf("in %s: /proc/sys is read-only here (a container): set it on the host or in the pod's sysctls, and leave notify_mode unset: %w", opts.where(), err)
	}
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		return fmt.Errorf("in %s: needs root/CAP_NET_ADMIN in the namespace's owner: %w", opts.where(), err)
	}
	if err != nil {
		return fmt.Errorf("in %s: %w", opts.where(), err)
	}
	return nil
}
