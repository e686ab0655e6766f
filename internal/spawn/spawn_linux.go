//go:build linux

// Package spawn starts child processes that die with the test or lab
// process that started them, and with nothing else.
//
// Linux's parent-death signal (SysProcAttr.Pdeathsig) fires when the
// *thread* that forked the child ends, not the process. A Go program
// forks on whatever OS thread its goroutine runs on, and any goroutine that
// exits while locked to its thread ends that thread, as plugin/kernel's
// namespace switch does on purpose (a thread left in another namespace must
// not be reused). A lab that forked a daemon from such a thread loses the
// daemon in the middle of a test (session 16: TestChurn's edge gobgpds).
// Start forks every child from one OS thread that stays locked and alive
// for the life of the process, so the signal means "the process died".
package spawn

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

var (
	once sync.Once
	reqs chan func()
)

// thread runs fns on the spawning thread, one at a time.
func thread() {
	runtime.LockOSThread() // never unlocked: the goroutine never returns
	for fn := range reqs {
		fn()
	}
}

// Start starts cmd, with SIGKILL as its parent-death signal, from the
// process's spawning thread. The rest of cmd's SysProcAttr is kept.
func Start(cmd *exec.Cmd) error {
	once.Do(func() {
		reqs = make(chan func())
		go thread()
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	errc := make(chan error, 1)
	reqs <- func() { errc <- cmd.Start() }
	return <-errc
}
