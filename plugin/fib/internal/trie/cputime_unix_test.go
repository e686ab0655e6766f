//go:build unix

package trie

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user + system, all threads, so the GC's
// background work is included) this process has used. Benchmarks report it
// next to wall time because wall time is unreliable on a shared machine.
func cpuTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
