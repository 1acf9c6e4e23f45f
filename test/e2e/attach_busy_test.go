package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pendingPythons are the interpreters krait enters through the pending
// calls when no thread is parked: 3.7–3.13 (3.14+ uses PEP 768).
func pendingPythons(t *testing.T) []python {
	var out []python
	for _, py := range pythons(t) {
		if minorAtLeast(py.minor, 7) && !minorAtLeast(py.minor, 14) {
			out = append(out, py)
		}
	}
	return out
}

// startBusy starts a fixture that prints "busy" once its threads run,
// and says which agent directories holding a pending.py there are before
// krait attaches (see checkBusyAfter).
func startBusy(t *testing.T, py python, name string, args ...string) (*proc, map[string]bool) {
	t.Helper()
	p := start(t, nil, append([]string{py.path, fixture(name)}, args...)...)
	if !p.waitFor(30*time.Second, func() bool { n, _ := p.stdout.Lines(); return n > 0 }) {
		t.Fatalf("%s printed nothing: %s", name, p.stderr)
	}
	return p, pendingDirs()
}

// pendingDirs lists the agent directories in /tmp holding a pending.py
// (only the pending-call way makes one): once krait removed the owner
// file, nothing else says whose a directory is.
func pendingDirs() map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir("/tmp")
	for _, e := range ents {
		if agentDirName.MatchString(e.Name()) {
			if _, err := os.Lstat(filepath.Join("/tmp", e.Name(), "pending.py")); err == nil {
				out[e.Name()] = true
			}
		}
	}
	return out
}

// checkBusyAfter checks that a busy fixture krait detached from runs on,
// with nothing of krait's left in /tmp (nor a directory with a pending.py
// that was not there before) and nothing on its stderr (no SystemError
// from a failed pending call, no traceback).
func checkBusyAfter(t *testing.T, p *proc, before map[string]bool) {
	t.Helper()
	checkNoAgentDir(t, p.pid())
	for end := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var left []string
		for d := range pendingDirs() {
			if !before[d] {
				left = append(left, d)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(end) {
			t.Errorf("krait left %v (with its pending.py) in /tmp", left)
			break
		}
	}
	time.Sleep(300 * time.Millisecond)
	if p.exited() {
		t.Fatalf("the target died: %s", p.stderr)
	}
	if s := p.stderr.String(); s != "" {
		t.Errorf("the target wrote to its stderr: %q", s)
	}
	if left := agentDirsLeft(); len(left) > 0 {
		t.Errorf("left in /tmp: %v", left)
	}
}

// A process none of whose threads ever stops where krait can enter
// through ptrace (every thread runs Python, the main one too): krait
// queues its bootstrap in the interpreter's pending calls and is in at
// the next eval-breaker check, on every build 3.7–3.13 (Debian's
// stripped one too). The attach line says how; info threads works;
// detach leaves the process running, unharmed and clean.
func TestAttachAllBusy(t *testing.T) {
	for _, py := range pendingPythons(t) {
		py := py
		t.Run(py.name, func(t *testing.T) {
			p, before := startBusy(t, py, "all_busy.py")
			r := krait(t, "attach", strconv.Itoa(p.pid()), "--attach-timeout", "30s", "--batch", "-ex", "info threads")
			checkNoPanic(t, "attach", r.stderr)
			if r.code != 0 {
				t.Fatalf("%v\n%s", r, r.stdout)
			}
			mustMatch(t, "attach line", `entered via a pending call \(.*entered at the interpreter's next safe point \(pending call\)\)`, r.stdout)
			mustMatch(t, "info threads", `(?m)"MainThread"\s+running: spin at .*all_busy\.py:\d+$`, r.stdout)
			mustMatch(t, "detach", `\[Inferior 1 \(process \d+\) detached\]`, r.stdout)
			checkBusyAfter(t, p, before)
		})
	}
}

// Where entry is impossible krait keeps trying until --attach-timeout,
// says after a second what it waits for (one line), then fails with exit
// 7 and one line naming each thread and what it was doing; the process
// runs on and nothing of krait's is left in /tmp. So it is when the user
// asks for the ptrace way only (--method ptrace), and on 3.6, which has no
// pending-call entry.
func TestAttachAllBusyImpossible(t *testing.T) {
	type tc struct {
		name string
		py   python
		args []string
	}
	var cases []tc
	py := pickPython(t)
	if !minorAtLeast(py.minor, 14) {
		cases = append(cases, tc{"ptrace " + py.name, py, []string{"--method", "ptrace"}})
	}
	for _, py := range pythons(t) {
		if py.minor == "3.6" {
			cases = append(cases, tc{py.name, py, nil})
		}
	}
	for _, c := range cases {
		c := c
		t.Run(c.name, func(t *testing.T) {
			p, before := startBusy(t, c.py, "all_busy.py")
			begin := time.Now()
			args := append([]string{"attach", strconv.Itoa(p.pid()), "--attach-timeout", "3s", "--batch", "-ex", "info threads"}, c.args...)
			r := krait(t, args...)
			took := time.Since(begin)
			if r.code != 7 {
				t.Fatalf("%v: want exit 7", r)
			}
			if took < 3*time.Second {
				t.Errorf("gave up after %v, before --attach-timeout", took)
			}
			lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], "krait: waiting until a thread of process") ||
				!strings.HasPrefix(lines[1], "krait: no thread stopped where krait can safely enter") || !strings.Contains(lines[1], "MainThread") {
				t.Errorf("stderr is not the wait line and the error: %q", r.stderr)
			}
			checkNoPanic(t, "attach", r.stderr)
			checkBusyAfter(t, p, before)
		})
	}
}

// A breakpoint in a single-threaded process that never sleeps: krait gets
// in through the pending calls, the breakpoint is hit, continue runs on
// to the next hit, and detach leaves the loop running.
func TestAttachBusyBreak(t *testing.T) {
	line := markLine(t, fixture("one_busy.py"), "step")
	for _, py := range pendingPythons(t) {
		py := py
		t.Run(py.name, func(t *testing.T) {
			p, before := startBusy(t, py, "one_busy.py")
			r := krait(t, "attach", strconv.Itoa(p.pid()), "--attach-timeout", "30s", "--batch", "--timeout", "30s",
				"-ex", fmt.Sprintf("break one_busy.py:%d", line), "-ex", "continue", "-ex", "print n % 1225",
				"-ex", "continue", "-ex", "info breakpoints")
			checkNoPanic(t, "attach", r.stderr)
			if r.code != 0 {
				t.Fatalf("%v\n%s", r, r.stdout)
			}
			mustMatch(t, "attach line", `entered via a pending call`, r.stdout)
			if hits := strings.Count(r.stdout, "Breakpoint 1, step (n="); hits != 2 {
				t.Errorf("%d breakpoint hits, want 2:\n%s", hits, r.stdout)
			}
			mustMatch(t, "print", `(?m)^\$1 = 0$`, r.stdout)
			mustMatch(t, "info breakpoints", `already hit 2 times`, r.stdout)
			mustMatch(t, "detach", `\[Inferior 1 \(process \d+\) detached\]`, r.stdout)
			checkBusyAfter(t, p, before)
		})
	}
}

// A process whose main thread waits where krait cannot enter (flock)
// while another thread runs Python: from 3.12 any thread of the
// interpreter runs its pending calls, so krait gets in through the
// spinning thread; before 3.12 only the main thread runs them, and krait
// fails after --attach-timeout saying so. Either way the process runs on,
// unharmed and clean.
func TestAttachMainBlocked(t *testing.T) {
	lock := filepath.Join(t.TempDir(), "lock")
	f, err := os.Create(lock)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	for _, py := range pendingPythons(t) {
		py := py
		t.Run(py.name, func(t *testing.T) {
			p, before := startBusy(t, py, "main_blocked.py", lock)
			r := krait(t, "attach", strconv.Itoa(p.pid()), "--attach-timeout", "4s", "--batch", "-ex", "info threads")
			checkNoPanic(t, "attach", r.stderr)
			if minorAtLeast(py.minor, 12) {
				if r.code != 0 {
					t.Fatalf("%v\n%s", r, r.stdout)
				}
				mustMatch(t, "attach line", `entered via a pending call`, r.stdout)
				mustMatch(t, "info threads", `(?m)"spinner"\s+running: spin at .*main_blocked\.py:\d+$`, r.stdout)
			} else {
				if r.code != 7 || !strings.Contains(r.stderr, "before Python 3.12 only it runs pending calls") {
					t.Fatalf("%v: want exit 7 saying that only the main thread runs pending calls", r)
				}
			}
			checkBusyAfter(t, p, before)
		})
	}
}
