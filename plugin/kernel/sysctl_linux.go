//go:build linux

package kernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/fibgate/fibgate/plugin/fib"
)

// ErrInvalidNotifyMode is matched by the error SetNotifyMode returns for a
// mode outside 0..2; it is returned before the kernel is touched.
const ErrInvalidNotifyMode = constError("invalid fib_notify_on_flag_change mode")

// ErrFamilyDisabled is matched by the error NotifyMode returns for a
// family the kernel runs without (IPv6 disabled at boot, ipv6.disable=1:
// no /proc/sys/net/ipv6 at all). Such a family has no routes to gate, so
// callers skip it instead of refusing to start.
const ErrFamilyDisabled = constError("address family disabled in this kernel")

// ErrNotifyUnsupported is matched by the error NotifyMode returns on a
// kernel older than Linux 5.12, which has the family but no
// fib_notify_on_flag_change: it never announces hardware flag changes, as
// with the sysctl at 0, and no value can be set.
const ErrNotifyUnsupported = constError("kernel without fib_notify_on_flag_change (added in Linux 5.12)")

// procSys is where the sysctls are (a test points it at a directory that
// looks like an older kernel's).
var procSys = "/proc/sys"

// notifySysctl returns the /proc/sys path of net.ipv{4,6}.fib_notify_on_flag_change.
func notifySysctl(family fib.Family) (string, error) {
	switch family {
	case fib.IPv4:
		return procSys + "/net/ipv4/fib_notify_on_flag_change", nil
	case fib.IPv6:
		return procSys + "/net/ipv6/fib_notify_on_flag_change", nil
	}
	return "", fmt.Errorf("fib_notify_on_flag_change: unsupported family %d (want fib.IPv4 or fib.IPv6)", family)
}

// sysctlName turns a /proc/sys path into the dotted name sysctl(8) uses.
func sysctlName(path string) string {
	return strings.ReplaceAll(strings.TrimPrefix(path, procSys+"/"), "/", ".")
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
	return readSysctlInt(opts, path, func(err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return notifyMissing(family, path, err)
		}
		return err
	})
}

// NexthopCompatMode reads net.ipv4.nexthop_compat_mode in opts.NetNS (it
// covers IPv6 too): at 1, the default, routes over nexthop objects are
// shown with the objects' next hops and are announced when an object
// changes or goes; at 0 they show only the object's id, and are not.
func NexthopCompatMode(opts Options) (int, error) {
	return readSysctlInt(opts, procSys+"/net/ipv4/nexthop_compat_mode", func(err error) error { return err })
}

// readSysctlInt reads an integer sysctl at path inside opts.NetNS; why
// explains a failed read (a missing entry means different things).
func readSysctlInt(opts Options, path string, why func(error) error) (int, error) {
	var data []byte
	err := inNetNS(opts.NetNS, func() (err error) {
		data, err = os.ReadFile(path)
		if err != nil {
			return why(err)
		}
		return nil
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

// FamilyEnabled says whether the kernel runs with family: IPv6 may be
// disabled at boot (ipv6.disable=1), and then it has no IPv6 routes,
// rules or sockets at all, in any namespace. IPv4 always is.
func FamilyEnabled(family fib.Family) bool {
	if family != fib.IPv6 {
		return true
	}
	_, err := os.Stat(procSys + "/net/ipv6")
	return err == nil
}

// notifyMissing says why path, the family's fib_notify_on_flag_change,
// does not exist (err): only the entry is missing on a kernel older than
// 5.12, the whole net.ipv6 directory on a kernel with IPv6 disabled while
// net.ipv4 is there. Anything else (no /proc/sys at all) stays err.
func notifyMissing(family fib.Family, path string, err error) error {
	dir := filepath.Dir(path)
	if _, derr := os.Stat(dir); derr == nil {
		return fmt.Errorf("%w (%v)", ErrNotifyUnsupported, err)
	}
	if family == fib.IPv6 {
		if _, derr := os.Stat(filepath.Join(filepath.Dir(dir), "ipv4")); derr == nil {
			return fmt.Errorf("%w (%v)", ErrFamilyDisabled, err)
		}
	}
	return err
}

// SetNotifyMode writes fib_notify_on_flag_change (0, 1 or 2, see
// NotifyMode) for one family in opts.NetNS. fibgate needs 1 (or 2 if only
// failures matter) to learn of hardware flags without dumping. A mode
// outside 0..2 returns ErrInvalidNotifyMode without touching the kernel;
// a permission error says that root/CAP_NET_ADMIN is needed, a read-only
// /proc/sys that the host must set it. A mode already in place is not
// written again. A family the kernel runs without, or a kernel without the
// sysctl, returns NotifyMode's error (ErrFamilyDisabled,
// ErrNotifyUnsupported).
func SetNotifyMode(opts Options, family fib.Family, mode int) error {
	path, err := notifySysctl(family)
	if err != nil {
		return err
	}
	if mode < 0 || mode > 2 {
		return fmt.Errorf("set %s to %d: %w (want 0 = never notify, 1 = every flag change, 2 = offload_failed changes only)",
			sysctlName(path), mode, ErrInvalidNotifyMode)
	}
	cur, err := NotifyMode(opts, family)
	if errors.Is(err, ErrFamilyDisabled) || errors.Is(err, ErrNotifyUnsupported) {
		return fmt.Errorf("set %s to %d: %w", sysctlName(path), mode, err)
	}
	if err == nil && cur == mode {
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
