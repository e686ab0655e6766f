//go:build linux

package spawn

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startFromDoomedThread starts a sleeping child through start on an OS
// thread that ends right after (its goroutine exits locked to it), waits
// until that thread is gone, and says whether the child still runs.
func startFromDoomedThread(t *testing.T, start func(*exec.Cmd) error) bool {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	type started struct {
		tid int
		err error
	}
	res := make(chan started, 1)
	var r started
	for {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			if unix.Gettid() == os.Getpid() {
				// The main thread is parked, not ended, by the runtime;
				// it stays locked, so the next try runs elsewhere.
				res <- started{tid: -1}
				return
			}
			res <- started{unix.Gettid(), start(cmd)}
		}()
		if r = <-res; r.tid != -1 {
			break
		}
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	task := fmt.Sprintf("/proc/self/task/%d", r.tid)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(task); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %d still there after 10 s", r.tid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The signal is sent as the thread ends; the child is reaped soon
	// after. Give it a bounded while to go.
	select {
	case <-exited:
		return false
	case <-time.After(500 * time.Millisecond):
		return true
	}
}

// TestChildOutlivesTheThreadThatAskedForIt: a child started through Start
// from a thread that then ends keeps running; started directly from it,
// the same child is killed, which is what Start exists to prevent.
func TestChildOutlivesTheThreadThatAskedForIt(t *testing.T) {
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Skip(err)
	}
	if !startFromDoomedThread(t, Start) {
		t.Error("a child started through Start died with the thread that called Start")
	}
	if startFromDoomedThread(t, (*exec.Cmd).Start) {
		t.Error("control: a child forked by a thread that ended still runs, so this test cannot tell")
	}
}
