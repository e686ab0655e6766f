//go:build linux

package lab

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Usage is what a process has used so far, from /proc: the figures a
// benchmark compares between routing daemons.
type Usage struct {
	// PeakRSS is the peak resident set size (VmHWM), in bytes.
	PeakRSS uint64
	// CPU is user plus system time, with that of children it waited for.
	CPU time.Duration
}

// ReadUsage reads pid's Usage. Read it before the process ends: /proc
// forgets it then.
func ReadUsage(pid int) (Usage, error) {
	var u Usage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, fmt.Errorf("usage of pid %d: %w", pid, err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return u, fmt.Errorf("usage of pid %d: VmHWM %q: %w", pid, l, err)
			}
			u.PeakRSS = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, fmt.Errorf("usage of pid %d: %w", pid, err)
	}
	// pid (comm) state ppid ...: utime is field 14, stime 15, cutime 16,
	// cstime 17; comm may contain spaces, so count after its ")".
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if i < 0 || len(f) < 15 {
		return u, fmt.Errorf("usage of pid %d: short /proc stat: %q", pid, s)
	}
	var ticks uint64
	for _, x := range f[11:15] { // fields 14-17; f[0] is field 3
		n, err := strconv.ParseUint(x, 10, 64)
		if err != nil {
			return u, fmt.Errorf("usage of pid %d: stat field %q: %w", pid, x, err)
		}
		ticks += n
	}
	u.CPU = time.Duration(ticks) * time.Second / time.Duration(clockTicks())
	return u, nil
}

// clockTicks is the kernel's USER_HZ, the unit of /proc's CPU times (100
// on every common Linux; getconf asks libc to be sure).
var clockTicks = sync.OnceValue(func() uint64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
})

// Listening says whether the network namespace of pid has a TCP socket
// listening on port (IPv4 or IPv6), read from /proc/PID/net: a test can
// let BGP peers connect the moment a daemon accepts, without guessing.
func Listening(pid, port int) bool {
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st ...; st 0A is LISTEN.
			if x := strings.Fields(l); len(x) > 3 && strings.HasSuffix(x[1], want) && x[3] == "0A" {
				return true
			}
		}
	}
	return false
}

// KernelRoutes counts the routes of ns's main table in both families that
// a routing daemon or an operator put there: every protocol but kernel
// (the routes of connected subnets).
func KernelRoutes(ns string) (int, error) {
	n := 0
	for _, fam := range []string{"-4", "-6"} {
		cmd := exec.Command("ip", "-n", ns, fam, "route", "show", "table", "main")
		out, err := cmd.StdoutPipe()
		if err != nil {
			return 0, err
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			return 0, fmt.Errorf("ip -n %s route: %w", ns, err)
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			l := sc.Text()
			if l != "" && !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "\t") && !strings.Contains(l, " proto kernel ") {
				n++
			}
		}
		if err := cmd.Wait(); err != nil {
			return 0, fmt.Errorf("ip -n %s %s route: %v: %s", ns, fam, err, stderr.String())
		}
	}
	return n, nil
}
