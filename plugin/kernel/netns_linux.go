//go:build linux

package kernel

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

// netnsDir is where `ip netns add` bind-mounts named network namespaces.
const netnsDir = "/run/netns"

// inNetNS runs fn in the named network namespace, or directly when name is
// "" (the caller's namespace).
//
// fn runs on a fresh goroutine locked to its OS thread, which joins the
// namespace with setns(2) and is never unlocked: when the goroutine ends the
// Go runtime terminates the thread, so a thread in a foreign namespace never
// runs anything else and the rest of the process stays where it was, even if
// switching back would have failed. What fn creates keeps its namespace:
// a socket belongs to the namespace it was opened in, and /proc/sys/net
// shows the values of the namespace of the thread that opens it.
func inNetNS(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	if name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid network namespace name %q (want a name under %s)", name, netnsDir)
	}
	h, err := netns.GetFromPath(filepath.Join(netnsDir, name))
	if err != nil {
		// err is the bare errno; ENOENT matches os.ErrNotExist.
		return fmt.Errorf("open network namespace %q (%s): %w", name, filepath.Join(netnsDir, name), err)
	}
	defer h.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Deliberately no UnlockOSThread: see above.
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter network namespace %q: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// where names the namespace in error messages.
func (o Options) where() string {
	if o.NetNS == "" {
		return "the current netns"
	}
	return fmt.Sprintf("netns %q", o.NetNS)
}
