package agent

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAgentExitPaths: the agent stops what it does when its client is gone,
// and removes its directory, whatever is in it, on every way out (issue 14,
// items 5 and 6): detach, interpreter exit with a non-daemon thread held at
// a breakpoint; a forked child closes its copies of the agent's sockets and
// leaves the parent's directory alone.
func TestAgentExitPaths(t *testing.T) {
	pys := agentPythons(t)
	if len(pys) == 0 {
		t.Skip("no Python 3 interpreter found")
	}
	krait := buildKrait(t)
	for _, py := range pys {
		py := py
		t.Run(py.name, func(t *testing.T) {
			t.Parallel()
			t.Run("client gone during a long eval", func(t *testing.T) { exitClientGone(t, py, krait) })
			t.Run("directory emptied", func(t *testing.T) { exitDirEmptied(t, py, krait) })
			t.Run("interpreter exit", func(t *testing.T) { exitInterpreter(t, py, krait) })
			t.Run("fork", func(t *testing.T) { exitFork(t, py, krait) })
		})
	}
}

// agentLeft waits until the agent thread has ended and its directory is gone.
func (fx *busyFixture) agentLeft(dir string, timeout time.Duration, what string) {
	fx.t.Helper()
	fx.wait(timeout, what, func(s busyStatus) bool {
		_, err := os.Stat(dir)
		return len(s.Agents) == 0 && os.IsNotExist(err)
	})
}

// exitClientGone: krait gives up while a stopped thread runs a 3 s eval; the
// agent stops waiting for it and leaves at once (it used to wait for the
// eval to end).
func exitClientGone(t *testing.T, py agentPython, krait string) {
	fx := startBusy(t, py, krait, map[string]int{})
	dir := fx.load("tok")
	c := dialAgent(t, dir)
	c.call("hello", "token", "tok")
	c.call("break", "file", "busy.py", "line", fx.line)
	th := c.event("stop", 10*time.Second)["thread"]
	c.post("eval", "thread", th, "expr", "__import__('time').sleep(3)", "mode", "repr")
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	c.conn.Close()
	fx.agentLeft(dir, 1500*time.Millisecond, "the agent did not leave while the eval ran")
	t.Logf("agent left %v after its client closed the connection", time.Since(start).Round(time.Millisecond))
	// The thread resumes once its eval returns.
	st := fx.wait(5*time.Second, "status", func(busyStatus) bool { return true })
	fx.wait(5*time.Second, "the stopped thread did not resume", func(s busyStatus) bool { return s.Calls > st.Calls+1 })
}

// exitDirEmptied: files the agent did not make (krait's "owner") go too.
func exitDirEmptied(t *testing.T, py agentPython, krait string) {
	fx := startBusy(t, py, krait, map[string]int{})
	dir := fx.load("tok")
	for _, name := range []string{"owner", "something-else"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := dialAgent(t, dir)
	c.call("hello", "token", "tok")
	c.call("detach")
	fx.agentLeft(dir, 3*time.Second, "the directory was not removed")
}

// exitInterpreter: the program exits while a non-daemon thread is stopped
// at a breakpoint (krait still connected): threading's shutdown would wait
// for it for ever; the agent lets it go, and removes its directory.
func exitInterpreter(t *testing.T, py agentPython, krait string) {
	fx := startBusy(t, py, krait, map[string]int{})
	fx.send("held")
	dir := fx.load("tok")
	c := dialAgent(t, dir)
	c.call("hello", "token", "tok")
	c.call("break", "file", "busy.py", "line", fx.marks["busy-held"])
	if ev := c.event("stop", 10*time.Second); ev["thread_name"] != "held" {
		t.Fatalf("stop: %v", ev)
	}
	fx.send("exit")
	select {
	case <-fx.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("the program did not exit with a thread held; stderr: %s", fx.stderr.String())
	}
	if code := fx.cmd.ProcessState.ExitCode(); code != 0 || fx.stderr.Len() != 0 {
		t.Errorf("exit code %d, stderr %q", code, fx.stderr.String())
	}
	select {
	case <-c.done: // the connection ended
	case <-time.After(2 * time.Second):
		t.Errorf("the connection is still open")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory left after exit: %v", err)
	}
}

// exitFork: a child forked while krait is attached holds none of the agent's
// sockets (3.7+: os.register_at_fork) and, exiting, leaves the parent's
// directory; the parent's session goes on.
func exitFork(t *testing.T, py agentPython, krait string) {
	fx := startBusy(t, py, krait, map[string]int{})
	dir := fx.load("tok")
	c := dialAgent(t, dir)
	c.call("hello", "token", "tok")
	ours := unixSocketInodes(t, filepath.Join(dir, "sock"))
	if len(ours) < 2 {
		t.Fatalf("agent's sockets (listening, connected): %v", ours)
	}
	fx.send("fork")
	var child busyChild
	select {
	case child = <-fx.child:
	case <-time.After(10 * time.Second):
		t.Fatalf("no report from the child; stderr: %s", fx.stderr.String())
	}
	if py.minor >= 7 {
		for _, ino := range child.Sockets {
			if ours[ino] {
				t.Errorf("the child holds the agent's socket %d", ino)
			}
		}
	}
	fx.wait(5*time.Second, "status", func(busyStatus) bool { return true }) // the child has been reaped
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the parent's directory after the child exited: %v", err)
	}
	c.call("break", "file", "busy.py", "line", fx.line)
	c.event("stop", 10*time.Second)
	c.call("detach")
	fx.agentLeft(dir, 3*time.Second, "the agent did not leave")
	if fx.stderr.Len() != 0 {
		t.Errorf("stderr: %s", fx.stderr.String())
	}
}

// unixSocketInodes returns the inodes of the unix sockets bound to path
// (listening and accepted), from /proc/net/unix.
func unixSocketInodes(t *testing.T, path string) map[uint64]bool {
	data, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 8 && f[7] == path {
			if ino, err := strconv.ParseUint(f[6], 10, 64); err == nil {
				out[ino] = true
			}
		}
	}
	return out
}
