package testsvc

import (
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// stopTimeout bounds how long Stop waits after SIGTERM before it kills.
const stopTimeout = 20 * time.Second

// Process is a program a test started. Its stdout and stderr go to Output;
// t.Cleanup stops it and, when the test failed, logs the tail of Output.
type Process struct {
	Name   string  // the program's file name
	Output *Buffer // stdout and stderr together
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	err    error         // Wait's result; read after exited is closed
}

// StartProcess runs path with args until t ends. The process dies with the
// test binary (Pdeathsig) even when no cleanup runs.
func StartProcess(t testing.TB, path string, args ...string) *Process {
	t.Helper()
	return startProcess(t, nil, path, args...)
}

// startProcess is StartProcess with the environment env (nil: the test's).
func startProcess(t testing.TB, env []string, path string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: filepath.Base(path), Output: &Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.Output, p.Output
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.Name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = p.Stop() // a test that cares about the exit status calls Stop itself
		if t.Failed() {
			t.Logf("%s %v output:\n%s", p.Name, args, Tail(p.Output.String(), 16<<10))
		}
	})
	return p
}

// Stop sends SIGTERM, waits for the exit (killing the process when it has
// not exited after 20s) and returns the process's exit error: nil when it
// exited with status 0. It is safe to call more than once.
func (p *Process) Stop() error {
	select {
	case <-p.exited:
		return p.err
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.exited
	}
	return p.err
}

// Kill sends SIGKILL and waits for the exit.
func (p *Process) Kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Wait waits for the process to exit by itself and returns its exit error.
func (p *Process) Wait() error {
	<-p.exited
	return p.err
}

// Tail is the last n bytes of s, marked when cut.
func Tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
