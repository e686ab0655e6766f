// Package nsrun runs a piece of a test or lab in another network
// namespace without moving the process: the lab's taps, probes and benchmark
// readers open their sockets inside the namespaces they watch, while the
// test itself stays in its own.
package nsrun

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on an OS thread in the named network namespace: sockets it
// opens stay there. If the thread cannot return to its own namespace it
// stays locked, so it dies with its goroutine instead of being reused.
// Otherwise the thread lives on and returns to the pool. (Ending it, as
// plugin/kernel's namespace switch does, is safe for the lab's daemons
// only because internal/spawn forks them from a thread that never ends:
// they die with the thread that forked them.)
func Do(ns string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("our network namespace: %w", err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("network namespace %s: %w", ns, err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", ns, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("back to our namespace: %w (the thread stays locked and dies)", err)
	}
	runtime.UnlockOSThread()
	return ferr
}
