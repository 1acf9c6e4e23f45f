package agent

import (
	"bufio"
	"bytes"
	"errors"
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

// pendingTarget runs Python in its main thread only and never waits: no
// thread is ever parked where the ptrace way enters. It prints its count
// once the file stop appears.
const pendingTarget = `
import os, sys
n = 0
while not (n % 4096 == 0 and os.path.exists(sys.argv[1])):
    n += 1
print("count", n > 0, flush=True)
`

// stuckTarget holds the GIL in one long C call (sum over a huge range)
// from its main thread, its only one: a pending call queued now runs only
// when the call returns, long after any attach timeout.
const stuckTarget = `
print("go", flush=True)
sum(range(10 ** 12))
`

// pendingPythons are the test interpreters with a pending-call way in
// (3.7–3.13; 3.14+ enters through PEP 768).
func pendingTestPythons(t *testing.T) []testPython {
	var out []testPython
	for _, py := range testPythons(t) {
		if py.name == "3.6" || strings.HasPrefix(py.name, "3.14") {
			continue
		}
		out = append(out, py)
	}
	return out
}

// TestPendingKilled: a krait killed (SIGKILL) right after it queued its
// pending call, the process still held, leaves a call that runs later.
// It runs the bootstrap once (the stand-in agent logs one run, from the
// krait-agent thread, and removes its directory), raises nothing in the
// application (no SystemError on its stderr), and the process runs on to
// its normal end.
func TestPendingKilled(t *testing.T) {
	for _, py := range pendingTestPythons(t) {
		py := py
		t.Run(py.name, func(t *testing.T) {
			dir := t.TempDir()
			stop, log := filepath.Join(dir, "stop"), filepath.Join(dir, "log")
			tg := startTarget(t, py.path, nil, []string{"KRAIT_TEST_LOG=" + log}, pendingTarget, 300*time.Millisecond, stop)
			if tg.py.L.PendingCalls < 0 || hasPEP768(tg.py) {
				t.Skipf("Python %s has no pending-call way in", tg.py.Version)
			}
			pid := tg.cmd.Process.Pid
			begin, dirsBefore := time.Now(), pendingDirs()
			h := exec.Command(os.Args[0], "-test.run=^TestInjectHelperProcess$")
			h.Env = append(os.Environ(), "KRAIT_INJECT_PID="+strconv.Itoa(pid), "KRAIT_INJECT_STAGE=pending")
			out, err := h.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := h.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Process.Kill(); h.Wait() })
			sc := bufio.NewScanner(out)
			var got []string
			for sc.Scan() {
				got = append(got, sc.Text())
				if sc.Text() == "stage pending" {
					break
				}
			}
			if len(got) == 0 || got[len(got)-1] != "stage pending" {
				t.Fatalf("helper said %q, not %q", got, "stage pending")
			}
			queued := time.Now()
			h.Process.Kill() // SIGKILL, the process held and its call queued
			h.Wait()
			defer func() {
				t.Logf("queued after %v, ran %v later", queued.Sub(begin).Round(time.Millisecond), time.Since(queued).Round(time.Millisecond))
			}()
			for end := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				data, _ := os.ReadFile(log)
				if strings.TrimSpace(string(data)) == "krait-agent" && len(dirsOf(pid)) == 0 && len(newPendingDirs(dirsBefore)) == 0 {
					break
				}
				if time.Now().After(end) {
					t.Fatalf("the queued call did not start the agent once and leave nothing: log %q, dirs %v, stderr %q", data, dirsOf(pid), tg.stderr.String())
				}
			}
			if err := os.WriteFile(stop, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			tg.finish(t, "count True\n", true)
		})
	}
}

// pendingDirs lists the agent directories in /tmp holding a pending.py
// (only the pending-call way makes one): once krait removed the owner
// file, nothing else says whose a directory is.
func pendingDirs() map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir("/tmp")
	for _, e := range ents {
		if isDirName(e.Name()) {
			if _, err := os.Lstat(filepath.Join("/tmp", e.Name(), "pending.py")); err == nil {
				out[e.Name()] = true
			}
		}
	}
	return out
}

// newPendingDirs lists those of pendingDirs not in before.
func newPendingDirs(before map[string]bool) []string {
	var out []string
	for d := range pendingDirs() {
		if !before[d] {
			out = append(out, d)
		}
	}
	return out
}

// dirsOf lists krait's agent directories in /tmp for target pid.
func dirsOf(pid int) []string {
	var out []string
	ents, _ := os.ReadDir("/tmp")
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "krait-") || len(e.Name()) != len("krait-")+16 {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/tmp", e.Name(), "owner"))
		if err == nil && bytes.Contains(data, []byte(`"pid":`+strconv.Itoa(pid)+`,`)) {
			out = append(out, e.Name())
		}
	}
	return out
}

// pendingBytes reads interpreter 0's whole pending-call queue with the
// process held.
func pendingBytes(t *testing.T, tg *testTarget) []byte {
	t.Helper()
	p, err := live.Pause(tg.cmd.Process.Pid, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	tg.py.Reset()
	interps, err := tg.py.Interpreters()
	if err != nil {
		t.Fatal(err)
	}
	var in *cpython.Interpreter
	for _, i := range interps {
		if i.ID == 0 {
			in = i
		}
	}
	q, ok := tg.py.PendingCalls(in)
	if !ok {
		t.Fatal("no pending-call queue")
	}
	b, err := p.ReadMem(q.Addr, int(tg.py.L.PendingLast+4))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPendingWithdrawn: a pending call the interpreter does not run by
// the attach's deadline (its only thread is in one long C call, holding
// the GIL), or when the attach is interrupted, is taken back: attach fails with ErrTimeout saying so, the
// queue is byte for byte as krait found it, the cave's bytes are back,
// nothing is left in /tmp, and the process runs on with nothing on its
// stderr.
func TestPendingWithdrawn(t *testing.T) {
	for _, py := range pendingTestPythons(t) {
		py := py
		t.Run(py.name, func(t *testing.T) {
			tg := startTarget(t, py.path, nil, nil, stuckTarget, 300*time.Millisecond)
			if tg.py.L.PendingCalls < 0 || hasPEP768(tg.py) {
				t.Skipf("Python %s has no pending-call way in", tg.py.Version)
			}
			cave, err := pendingCave(tg.proc, tg.py)
			if err != nil {
				t.Fatal(err)
			}
			caveBefore := make([]byte, pendingRoom)
			if err := tg.proc.ReadAt(caveBefore, cave); err != nil {
				t.Fatal(err)
			}
			before := pendingBytes(t, tg)
			dirsBefore := pendingDirs()
			_, _, err = Start(tg.proc, tg.py, -1, MethodAuto, time.Second)
			if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "did not reach a safe point") {
				t.Fatalf("attach: %v; want the pending call withdrawn", err)
			}
			if after := pendingBytes(t, tg); !bytes.Equal(before, after) {
				t.Errorf("the pending-call queue differs after the withdrawal:\n%x\n%x", before, after)
			}
			caveAfter := make([]byte, pendingRoom)
			if err := tg.proc.ReadAt(caveAfter, cave); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(caveBefore, caveAfter) {
				t.Errorf("the cave was not restored:\n%q\n%q", caveBefore, caveAfter)
			}
			if d := append(dirsOf(tg.cmd.Process.Pid), newPendingDirs(dirsBefore)...); len(d) > 0 {
				t.Errorf("left in /tmp: %v", d)
			}
			// Interrupted (Ctrl-C) while the call waits: the same.
			cancel := make(chan struct{})
			time.AfterFunc(1500*time.Millisecond, func() { close(cancel) })
			_, _, err = StartCancel(tg.proc, tg.py, -1, MethodAuto, 30*time.Second, cancel)
			if !errors.Is(err, ErrInterrupted) {
				t.Fatalf("interrupted attach: %v", err)
			}
			if after := pendingBytes(t, tg); !bytes.Equal(before, after) {
				t.Errorf("the pending-call queue differs after the interrupted attach:\n%x\n%x", before, after)
			}
			if err := tg.proc.ReadAt(caveAfter, cave); err != nil || !bytes.Equal(caveBefore, caveAfter) {
				t.Errorf("the cave was not restored after the interrupted attach: %v", err)
			}
			if d := append(dirsOf(tg.cmd.Process.Pid), newPendingDirs(dirsBefore)...); len(d) > 0 {
				t.Errorf("left in /tmp: %v", d)
			}
			if !tg.proc.Alive() || tg.stderr.Len() > 0 {
				t.Errorf("the target died or wrote to stderr: %q", tg.stderr.String())
			}
		})
	}
}
