//go:build linux

package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/spawn"
)

// Process is a daemon started by a test in its own process group.
type Process struct {
	Cmd  *exec.Cmd
	Log  string // stdout and stderr
	name string
	done chan struct{}
}

// Start runs argv inside namespace ns (`ip netns exec`, which execs the
// command, so the pid is the daemon's; "" runs it in the test's own), in
// a new process group, with its
// output in dir/name.log. When the test ends the whole group gets SIGTERM,
// then SIGKILL after 5 s, and is waited for; on failure the log's tail is
// printed.
func Start(tb testing.TB, ns, dir, name string, argv ...string) *Process {
	tb.Helper()
	p := start(tb, ns, dir, name, argv...)
	tb.Cleanup(func() { p.cleanup(tb) })
	return p
}

// cleanup stops the process, printing its log's tail if the test failed.
func (p *Process) cleanup(tb testing.TB) {
	if tb.Failed() {
		tb.Logf("--- %s log (tail) ---\n%s", p.name, tail(p.Log, 40))
	}
	p.Stop(tb)
}

// start is Start without the cleanup.
func start(tb testing.TB, ns, dir, name string, argv ...string) *Process {
	tb.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	if ns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	// Killed if the test binary dies (spawn: from a thread that outlives
	// every namespace switch, which may end the thread it runs on).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := spawn.Start(cmd); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	p := &Process{Cmd: cmd, Log: logPath, name: name, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p
}

// Stop ends the process group (idempotent).
func (p *Process) Stop(tb testing.TB) {
	pgid := p.Cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Children that outlived the leader (none expected) go too.
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		tb.Errorf("kill process group of %s: %v", p.name, err)
	}
}

// Signal sends sig to the daemon itself.
func (p *Process) Signal(sig syscall.Signal) error { return p.Cmd.Process.Signal(sig) }

// SignalAndWait sends sig to the daemon and waits up to timeout for it to
// end (the test fails at once if it does not), returning its exit status:
// how the tests stop, kill and restart the daemons under test.
func (p *Process) SignalAndWait(tb testing.TB, sig syscall.Signal, timeout time.Duration) int {
	tb.Helper()
	if err := p.Signal(sig); err != nil {
		tb.Fatalf("%s: signal %v: %v", p.name, sig, err)
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		tb.Fatalf("%s still running %v after %v", p.name, timeout, sig)
	}
	return p.Cmd.ProcessState.ExitCode()
}

// Exited says whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// Eventually polls cond every 25 ms until it returns nil or timeout
// passes, then fails the test with cond's last error.
func Eventually(tb testing.TB, timeout time.Duration, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not after %v: %v", what, timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Never polls cond every 25 ms for d and fails the test at once if it
// returns an error (the thing that must not happen happened).
func Never(tb testing.TB, d time.Duration, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := cond(); err != nil {
			tb.Fatalf("%s: %v", what, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }
