package agent

import (
	"bufio"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"krait/internal/cpython"
	"krait/internal/target/live"
)

// killedTarget is a process with several threads asleep in system calls
// (candidates for the ptrace way in) and one counting, which runs until
// the file stop appears and then prints its count. The stand-in agent
// logs each run to $KRAIT_TEST_LOG and removes its directory.
const killedTarget = `
import os, sys, threading, time
n = [0]
def count():
    while True:
        n[0] += 1
        time.sleep(0.001)
def nap():
    while True:
        time.sleep(0.2)
threading.Thread(target=count, daemon=True).start()
for _ in range(3):
    threading.Thread(target=nap, daemon=True).start()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
print("count", n[0], flush=True)
`

const killedAgent = `import os, shutil, threading
with open(os.environ["KRAIT_TEST_LOG"], "a") as f:
    f.write(threading.current_thread().name + "\n")
shutil.rmtree(KRAIT["dir"], ignore_errors=True)
`

// TestInjectHelperProcess is not a test: TestInjectKilled runs the test
// binary as a separate krait that injects into KRAIT_INJECT_PID and is
// killed while doing so. KRAIT_INJECT_STAGE makes it stop and wait (to be
// killed) at a stage: "pending" (a pending call queued, method auto),
// "before" (block and code written, the thread not yet
// sent), "after" (the thread sent, the process still paused); "" runs
// through.
func TestInjectHelperProcess(t *testing.T) {
	pidS := os.Getenv("KRAIT_INJECT_PID")
	if pidS == "" {
		t.Skip("helper process for TestInjectKilled")
	}
	pid, _ := strconv.Atoi(pidS)
	orphan := os.Getenv("KRAIT_INJECT_STAGE") == "orphan"
	if !orphan {
		agentSource = []byte(killedAgent)
	}
	stall := func(stage string) func(int, string) {
		return func(_ int, via string) {
			fmt.Printf("via %s\n", strings.ReplaceAll(via, " ", "_"))
			fmt.Printf("stage %s\n", stage)
			os.Stdout.Sync()
			time.Sleep(time.Hour)
		}
	}
	switch os.Getenv("KRAIT_INJECT_STAGE") {
	case "before":
		hookBeforeEnter = stall("before")
	case "after":
		hookAfterEnter = stall("after")
	case "pending":
		hookAfterQueue = func() { stall("pending")(0, "pending_call") }
	}
	proc, err := live.Open(pid)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	py, err := cpython.Open(proc)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	method := MethodPtrace
	if os.Getenv("KRAIT_INJECT_STAGE") == "pending" {
		method = MethodAuto
	}
	inj, err := Inject(proc, py, -1, method)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	if orphan { // the real agent, up and listening, and its krait gone
		if _, err := inj.WaitSocket(10 * time.Second); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
	}
	fmt.Println("via", strings.ReplaceAll(inj.Syscall, " ", "_"))
	fmt.Println("dir", inj.HostDir)
	os.Exit(0)
}

// TestOrphanDismissed: a krait killed after its agent came up but before
// it connected leaves an agent waiting (10 s) for a connection that will
// never come. The next attach is not refused as "already being debugged":
// krait sees that agent's krait is dead, tells the agent to leave, and
// gets in.
func TestOrphanDismissed(t *testing.T) {
	for _, py := range testPythons(t) {
		py := py
		if py.name != "3.12" && py.name != "3.11" {
			continue
		}
		t.Run(py.name, func(t *testing.T) {
			tg := startTarget(t, py.path, nil, nil, killedTarget, 500*time.Millisecond, filepath.Join(t.TempDir(), "stop"))
			pid := tg.cmd.Process.Pid
			h := exec.Command(os.Args[0], "-test.run=^TestInjectHelperProcess$")
			h.Env = append(os.Environ(), "KRAIT_INJECT_PID="+strconv.Itoa(pid), "KRAIT_INJECT_STAGE=orphan")
			out, err := h.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "dir ") {
				t.Fatalf("helper: %v: %s", err, out)
			}
			start := time.Now()
			inj, sock, err := Start(tg.proc, tg.py, -1, MethodPtrace, 10*time.Second)
			if err != nil {
				t.Fatalf("attach after a killed krait's agent: %v", err)
			}
			c, _, err := inj.Dial(sock)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("got in %v after the orphan", time.Since(start).Round(time.Millisecond))
			c.Call("detach", nil, 5*time.Second)
			c.Close()
			inj.Finish()
		})
	}
}

// TestInjectKilled kills the injecting krait (SIGKILL, SIGINT, SIGTERM,
// SIGHUP) at every stage of the ptrace way in and at random instants
// during it, many times over on one target per build; the target must
// never die (it once did, of a SIGTRAP left by a single step), stop, or
// be disturbed, and an agent sent on its way must run exactly once.
func TestInjectKilled(t *testing.T) {
	tries := 12
	if testing.Short() {
		tries = 4
	}
	for _, py := range testPythons(t) {
		py := py
		t.Run(py.name, func(t *testing.T) {
			injectKilled(t, py, killedTarget, tries, "", func(out string) bool { return strings.HasPrefix(out, "count ") })
		})
	}
}

// killedLockTarget has no thread in a system call krait enters through:
// one counts in a CPU loop, the others wait for Python-level locks, with
// and without a timeout (queue.get, a timed Lock.acquire, Event.wait in
// the main thread). When the file stop appears it prints its count, what
// the queue reader got, and every timed acquire that came back early or
// acquired a lock nobody released (none may).
const killedLockTarget = `
import os, sys, threading, time, queue
n = [0]
def count():
    while True:
        n[0] += 1
        sum(range(50))
q = queue.Queue()
got = []
def getter():
    got.append(q.get())
ev = threading.Event()
bad = []
def timed():
    lk = threading.Lock()
    lk.acquire()
    while not ev.is_set():
        t0 = time.monotonic()
        r = lk.acquire(timeout=0.2)
        dt = time.monotonic() - t0
        if r or dt < 0.195:
            bad.append((r, round(dt, 3)))
threading.Thread(target=count, daemon=True).start()
g = threading.Thread(target=getter, daemon=True)
g.start()
tm = threading.Thread(target=timed, daemon=True)
tm.start()
while not os.path.exists(sys.argv[1]):
    ev.wait(0.05)
ev.set()
q.put("item")
g.join()
tm.join()
print("count", n[0] > 0, got, bad, flush=True)
`

// TestInjectKilledLockWait is TestInjectKilled on a target where krait
// can enter only through a thread waiting for a Python-level lock: the
// waits must come back neither early nor with a lock nobody released,
// and the queue reader must get its item. (3.6-3.13: from 3.14 a
// threading lock is a PyMutex, which the rule does not cover; krait uses
// PEP 768 there.)
func TestInjectKilledLockWait(t *testing.T) {
	for _, py := range testPythons(t) {
		py := py
		if !lockWaitBuild(py.name) {
			continue
		}
		t.Run(py.name, func(t *testing.T) {
			injectKilled(t, py, killedLockTarget, 4, "futex_in_", func(out string) bool {
				return out == "count True ['item'] []\n"
			})
		})
	}
}

// lockWaitBuild says whether the lock-wait rule covers a testPythons
// build: 3.6-3.13.
func lockWaitBuild(name string) bool {
	var minor int
	_, err := fmt.Sscanf(strings.TrimPrefix(name, "system"), "3.%d", &minor)
	return err == nil && minor >= 6 && minor <= 13
}

// injectKilled runs the kills of TestInjectKilled on script; every attach
// that got through must have entered through a thread described by a
// "via" starting with via (if set); the target's output must satisfy ok.
func injectKilled(t *testing.T, py testPython, script string, tries int, via string, ok func(string) bool) {
	dir := t.TempDir()
	stop, log := filepath.Join(dir, "stop"), filepath.Join(dir, "log")
	tg := startTarget(t, py.path, nil, []string{"KRAIT_TEST_LOG=" + log}, script, 500*time.Millisecond, stop)
	pid := tg.cmd.Process.Pid
	runs := 0 // agents that must have run
	kill := func(stage string, sig syscall.Signal, delay time.Duration) {
		t.Helper()
		h := exec.Command(os.Args[0], "-test.run=^TestInjectHelperProcess$")
		h.Env = append(os.Environ(), "KRAIT_INJECT_PID="+strconv.Itoa(pid), "KRAIT_INJECT_STAGE="+stage)
		out, err := h.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 16)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		want := "ready"
		if stage != "" {
			want = "stage " + stage
		}
		var got []string
		for l := range lines {
			got = append(got, l)
			if l == want {
				break
			}
		}
		if len(got) == 0 || got[len(got)-1] != want {
			h.Process.Kill()
			h.Wait()
			t.Fatalf("helper (stage %q) said %q, not %q", stage, got, want)
		}
		time.Sleep(delay)
		h.Process.Signal(sig)
		h.Wait()
		for l := range lines {
			got = append(got, l)
		}
		done := len(got) > 0 && strings.HasPrefix(got[len(got)-1], "dir ")
		for _, l := range got {
			if strings.HasPrefix(l, "via ") && via != "" && !strings.HasPrefix(l, "via "+via) {
				t.Errorf("entered %s, not through a lock wait", l)
			}
		}
		if stage == "after" || done {
			// The agent sent on its way runs, before the next krait
			// could take its directory for a dead krait's leftover.
			runs++
			for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				data, _ := os.ReadFile(log)
				if n := len(strings.Fields(string(data))); n >= runs {
					runs = n
					break
				}
				if time.Now().After(end) {
					t.Errorf("the agent sent on its way (stage %q, %v) did not run", stage, sig)
					break
				}
			}
		}
		// The target runs on, not stopped, not traced (another package's
		// krait requests --all may hold it for a moment: what must not
		// last is a stop or a tracer).
		var st, status string
		for end := time.Now().Add(2 * time.Second); ; {
			time.Sleep(50 * time.Millisecond)
			stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				t.Fatalf("target gone after krait was killed (stage %q, %v, after %v): %v; stderr %q", stage, sig, delay, err, tg.stderr.String())
			}
			st = statField(stat, 3)
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			status = string(b)
			if st != "t" && st != "T" && strings.Contains(status, "\nTracerPid:\t0\n") || st == "Z" || time.Now().After(end) {
				break
			}
		}
		if st == "t" || st == "T" || st == "Z" {
			t.Fatalf("target in state %s after krait was killed (stage %q, %v)", st, stage, sig)
		}
		if !strings.Contains(status, "\nTracerPid:\t0\n") {
			t.Fatalf("target still traced after krait was killed")
		}
	}
	sigs := []syscall.Signal{syscall.SIGKILL, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}
	for _, stage := range []string{"before", "after"} {
		for _, sig := range sigs {
			kill(stage, sig, 0)
		}
	}
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := 0; i < tries; i++ {
		kill("", sigs[i%len(sigs)], time.Duration(r.Intn(25000))*time.Microsecond)
	}
	// Every agent sent on its way has run, once each, and the
	// target ends normally.
	deadline := time.Now().Add(5 * time.Second)
	var ran []string
	for {
		data, _ := os.ReadFile(log)
		ran = strings.Fields(string(data))
		if len(ran) >= runs || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(ran) < runs {
		t.Errorf("%d agents ran, want at least %d", len(ran), runs)
	}
	os.WriteFile(stop, nil, 0o600)
	if err := tg.cmd.Wait(); err != nil || !ok(tg.stdout.String()) || tg.stderr.String() != "" {
		t.Fatalf("target: %v, stdout %q, stderr %q", err, tg.stdout.String(), tg.stderr.String())
	}
	t.Logf("%d kills, %d agents ran", 8+tries, len(ran))
	cleanKraitDirs(t, pid)
}

// statField returns field n (1-based) of a /proc stat line.
func statField(stat []byte, n int) string {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if n-3 < 0 || n-3 >= len(f) {
		return ""
	}
	return f[n-3]
}

// cleanKraitDirs removes agent directories that killed helpers left in
// /tmp (the process is gone now, so its /proc root is too: /tmp is ours).
func cleanKraitDirs(t *testing.T, pid int) {
	ents, _ := filepath.Glob("/tmp/krait-*")
	for _, d := range ents {
		if data, err := os.ReadFile(filepath.Join(d, "agent.py")); err == nil && string(data) == killedAgent {
			os.RemoveAll(d)
		}
	}
}
