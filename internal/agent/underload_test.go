package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"krait/internal/cpython"
	"krait/internal/target/live"
)

// loadStatus is what testdata/fixtures/load_fixture.py reports.
type loadStatus struct {
	Pid     int            `json:"pid"`
	Counts  map[string]int `json:"counts"`
	Bad     []string       `json:"bad"`
	Errors  []string       `json:"errors"`
	Threads []string       `json:"threads"`
}

// startLoad runs load_fixture.py in mode with n worker threads and waits
// until it reports work done.
func startLoad(t *testing.T, python, mode string, n int) (int, func() loadStatus) {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "..", "testdata", "fixtures", "load_fixture.py"))
	if err != nil {
		t.Fatal(err)
	}
	status := filepath.Join(t.TempDir(), "status.json")
	var stderr strings.Builder
	cmd := exec.Command(python, script, mode, strconv.Itoa(n), status)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	read := func() loadStatus {
		var st loadStatus
		data, err := os.ReadFile(status)
		if err == nil {
			err = json.Unmarshal(data, &st)
		}
		if err != nil {
			st.Pid = 0
		}
		if stderr.Len() > 0 {
			t.Fatalf("load fixture wrote to stderr: %s", stderr.String())
		}
		return st
	}
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if st := read(); st.Pid == cmd.Process.Pid && st.Counts["cpu"]+st.Counts["io"] > 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("load fixture did not start; stderr: %s", stderr.String())
		}
	}
	return cmd.Process.Pid, read
}

// TestAttachUnderLoad: on a process whose threads are all busy in CPU
// loops or waiting for Python-level locks (no thread in a system call
// krait could enter through before this rule), ten attach/detach cycles
// with the real agent all succeed, through a lock wait, and the process
// runs on undisturbed: its waits come back neither early nor woken by
// nobody, its workers raise nothing, nothing of krait's is left.
func TestAttachUnderLoad(t *testing.T) {
	cycles := 10
	if testing.Short() {
		cycles = 3
	}
	for _, py := range testPythons(t) {
		py := py
		if !lockWaitBuild(py.name) {
			continue
		}
		t.Run(py.name, func(t *testing.T) {
			pid, status := startLoad(t, py.path, "cpu-lock", 3)
			proc, err := live.Open(pid)
			if err != nil {
				t.Fatal(err)
			}
			defer proc.Close()
			var took []time.Duration
			for i := 0; i < cycles; i++ {
				py3, err := cpython.Open(proc)
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				inj, sock, err := Start(proc, py3, -1, MethodPtrace, 30*time.Second)
				if err != nil {
					t.Fatalf("cycle %d: %v", i, err)
				}
				if !strings.HasPrefix(inj.Syscall, "futex in _thread.") {
					t.Errorf("cycle %d: entered via %s, not a lock wait", i, inj.Syscall)
				}
				c, _, err := inj.Dial(sock)
				if err != nil {
					inj.Abort()
					t.Fatalf("cycle %d: %v", i, err)
				}
				took = append(took, time.Since(start))
				if _, err := c.Call("threads", nil, 20*time.Second); err != nil {
					t.Errorf("cycle %d: threads: %v", i, err)
				}
				c.Call("detach", nil, 20*time.Second)
				c.Close()
				inj.Finish()
			}
			// The process works on: its CPU loops and its timed queue.get
			// both progress (polled: a loaded machine may take a while).
			before := status()
			var after loadStatus
			for end := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				after = status()
				if len(after.Bad) > 0 || len(after.Errors) > 0 {
					t.Fatalf("the process was disturbed: %+v", after)
				}
				if after.Counts["cpu"] > before.Counts["cpu"] && after.Counts["waits"] > before.Counts["waits"] {
					break
				}
				if time.Now().After(end) {
					t.Fatalf("the process stopped working: %+v then %+v", before.Counts, after.Counts)
				}
			}
			for end := time.Now().Add(5 * time.Second); hasThread(after.Threads, agentThread); time.Sleep(100 * time.Millisecond) {
				if time.Now().After(end) {
					t.Fatalf("agent thread still there: %v", after.Threads)
				}
				after = status()
			}
			if left := leftDirs(pid); len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
			t.Logf("%d cycles, attach times %v", cycles, took)
		})
	}
}

func hasThread(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// allBusyTarget never parks a thread where krait can enter once it has
// created the file ready (argv[2]): every thread, the main one too, runs
// Python in a loop (before, Thread.start waits on a lock, where krait may
// enter). It prints its count when the file stop (argv[1]) appears.
const allBusyTarget = `
import os, sys, threading
n = [0]
def spin():
    while True:
        n[0] += 1
        sum(range(100))
for _ in range(2):
    threading.Thread(target=spin, daemon=True).start()
open(sys.argv[2], "w").close()
while not os.path.exists(sys.argv[1]):
    n[0] += 1
    sum(range(100))
print("count", n[0] > 0, flush=True)
`

// TestAttachNoSafeThread: on a process none of whose threads ever stops
// where krait can enter, krait keeps trying until the timeout, says once
// (after a second) what it is waiting for, then fails with what each
// thread was doing; the process runs on, and nothing of krait's is left.
func TestAttachNoSafeThread(t *testing.T) {
	for _, py := range testPythons(t) {
		py := py
		if !lockWaitBuild(py.name) || py.name != "3.6" && py.name != "3.12" && py.name != "system3.11" {
			continue
		}
		t.Run(py.name, func(t *testing.T) {
			dir := t.TempDir()
			stop, ready := filepath.Join(dir, "stop"), filepath.Join(dir, "ready")
			tg := startTarget(t, py.path, nil, nil, allBusyTarget, 300*time.Millisecond, stop, ready)
			for end := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if _, err := os.Stat(ready); err == nil {
					break
				}
				if time.Now().After(end) {
					t.Fatal("the target did not start its threads")
				}
			}
			pid := tg.cmd.Process.Pid
			var lines []string
			start := time.Now()
			inj, _, err := StartWith(tg.proc, tg.py, -1, MethodPtrace, 2500*time.Millisecond, StartOptions{Progress: func(l string) { lines = append(lines, l) }})
			if inj != nil {
				inj.Abort()
				t.Fatalf("entered via %s, want ErrNoSafeThread", inj.Syscall)
			}
			took := time.Since(start)
			if !errors.Is(err, ErrNoSafeThread) {
				t.Fatalf("got %v, want ErrNoSafeThread", err)
			}
			if took < 2*time.Second {
				t.Errorf("gave up after %v, before the timeout", took)
			}
			if len(lines) != 1 || !strings.Contains(lines[0], "waiting until a thread of process "+strconv.Itoa(pid)) {
				t.Errorf("progress lines: %q", lines)
			}
			// Every thread is named in the error, with what it did.
			tids, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
			for _, tid := range tids {
				if !strings.Contains(err.Error(), tid.Name()) {
					t.Errorf("thread %s missing from the error: %v", tid.Name(), err)
				}
			}
			if !strings.Contains(err.Error(), "MainThread") {
				t.Errorf("no thread names in the error: %v", err)
			}
			if left := leftDirs(pid); len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
			os.WriteFile(stop, nil, 0o600)
			tg.finish(t, "count True\n", true)
			t.Logf("%v: %v", took.Round(time.Millisecond), err)
		})
	}
}

// leftDirs lists krait directories in the target's /tmp whose owner names
// pid.
func leftDirs(pid int) []string {
	owners, _ := filepath.Glob(fmt.Sprintf("/proc/%d/root/tmp/krait-*/owner", pid))
	var out []string
	for _, o := range owners {
		var own struct {
			PID int `json:"pid"`
		}
		if data, err := os.ReadFile(o); err == nil && json.Unmarshal(data, &own) == nil && own.PID == pid {
			out = append(out, filepath.Dir(o))
		}
	}
	return out
}
