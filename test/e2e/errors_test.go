package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Exit codes of krait (internal/cli).
const (
	exitOK         = 0
	exitError      = 1
	exitUsage      = 2
	exitNoProcess  = 3
	exitPermission = 4
	exitNotPython  = 5
)

// checkError runs krait and checks the exit code and a one-line message on
// stderr with nothing on stdout.
func checkError(t *testing.T, wantCode int, args ...string) *kraitResult {
	t.Helper()
	r := krait(t, args...)
	if r.code != wantCode {
		t.Errorf("%v\nwant exit %d", r, wantCode)
	}
	checkOneLine(t, "krait "+strings.Join(args, " "), r.stderr)
	checkNoPanic(t, "krait "+strings.Join(args, " "), r.stderr)
	if r.stdout != "" {
		t.Errorf("krait %s: stdout %q, want nothing", strings.Join(args, " "), r.stdout)
	}
	return r
}

// unusedPID returns a pid no process has.
func unusedPID(t *testing.T) int {
	t.Helper()
	max := 32768
	if data, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			max = n
		}
	}
	for pid := max - 1; pid > max-1000 && pid > 300; pid-- {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			return pid
		}
	}
	t.Fatalf("no unused pid below %d", max)
	return 0
}

func TestNoSuchProcess(t *testing.T) {
	pid := strconv.Itoa(unusedPID(t))
	checkError(t, exitNoProcess, "dump", "--pid", pid)
	checkError(t, exitNoProcess, "dump", "--pid", pid, "--locals", "--json")
	checkError(t, exitNoProcess, "dump", "--pid", pid, "--nonblocking")
}

func TestZombie(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Reaped only when the test is over: until then it is a zombie.
	t.Cleanup(func() { _ = cmd.Wait() })
	pid := cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for procState(pid) != 'Z' {
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not become a zombie (state %q)", pid, procState(pid))
		}
		time.Sleep(5 * time.Millisecond)
	}
	checkError(t, exitNoProcess, "dump", "--pid", strconv.Itoa(pid))
	checkError(t, exitNoProcess, "dump", "--pid", strconv.Itoa(pid), "--nonblocking", "--json")
}

func TestNotPython(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep command")
	}
	p := start(t, nil, sleep, "60")
	// Wait for the exec, so that krait sees sleep and not a copy of the
	// test binary.
	if !p.waitFor(10*time.Second, func() bool {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.pid()))
		return filepath.Base(exe) == filepath.Base(sleep)
	}) {
		t.Fatalf("sleep did not start")
	}
	checkError(t, exitNotPython, "dump", "--pid", strconv.Itoa(p.pid()))
	checkError(t, exitNotPython, "dump", "--pid", strconv.Itoa(p.pid()), "--nonblocking", "--json")
}

// startCounter starts counter_fixture.py under py and waits for its first
// line. lifetime, if not empty, makes it exit that many ms later.
func startCounter(t *testing.T, py python, lifetime string) *proc {
	t.Helper()
	argv := []string{py.path, fixture("counter_fixture.py")}
	if lifetime != "" {
		argv = append(argv, lifetime)
	}
	p := start(t, nil, argv...)
	if !p.waitFor(30*time.Second, func() bool { n, _ := p.stdout.Lines(); return n > 0 }) && lifetime == "" {
		t.Fatalf("counter fixture printed nothing (exited: %v): %s", p.exited(), p.stderr)
	}
	return p
}

func TestPermission(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs krait as nobody against a root-owned process")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv")
	}
	p := startCounter(t, pickPython(t), "")
	asNobody := []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}
	for _, extra := range [][]string{nil, {"--nonblocking"}, {"--locals", "--json"}} {
		args := append([]string{"dump", "--pid", strconv.Itoa(p.pid())}, extra...)
		r := kraitAs(t, asNobody, args...)
		what := "as nobody: krait " + strings.Join(args, " ")
		if r.code != exitPermission {
			t.Errorf("%s: exit %d, want %d; stderr: %s", what, r.code, exitPermission, r.stderr)
		}
		checkOneLine(t, what, r.stderr)
		checkNoPanic(t, what, r.stderr)
		if !strings.Contains(r.stderr, "CAP_SYS_PTRACE") {
			t.Errorf("%s: the message does not mention CAP_SYS_PTRACE: %q", what, r.stderr)
		}
	}
	if p.exited() {
		t.Errorf("the target died")
	}
}

// TestExitMidDump dumps Pythons that exit a few ms after starting: krait
// must report that they exited (or dump them in time), never crash.
func TestExitMidDump(t *testing.T) {
	pys := pythons(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	flags := [][]string{nil, {"--locals", "--json"}, {"--nonblocking", "--locals"}}
	const runs = 40
	counts := map[int]int{}
	for i := 0; i < runs; i++ {
		py := pys[i%len(pys)]
		lifetime := strconv.Itoa(rng.IntN(30))
		flag := flags[i%len(flags)]
		t.Run(fmt.Sprintf("%d_%s_%sms", i, py.name, lifetime), func(t *testing.T) {
			p := startCounter(t, py, lifetime)
			args := append([]string{"dump", "--pid", strconv.Itoa(p.pid())}, flag...)
			r := krait(t, args...)
			counts[r.code]++
			what := fmt.Sprintf("krait %s (Python exits after %s ms)", strings.Join(args, " "), lifetime)
			checkNoPanic(t, what, r.stderr)
			switch r.code {
			case exitOK:
				if !strings.Contains(r.stdout, "Python v") && !strings.Contains(r.stdout, `"python_version"`) {
					t.Errorf("%s: exit 0 but no dump:\n%s", what, r.stdout)
				}
			case exitNoProcess:
				checkOneLine(t, what, r.stderr)
			default:
				t.Errorf("%s: exit %d, want 0 or 3; stderr: %s", what, r.code, r.stderr)
			}
		})
	}
	t.Logf("exit codes over %d runs: %v", runs, counts)
}

func TestUsage(t *testing.T) {
	help := krait(t, "help")
	if help.code != exitOK || !strings.Contains(help.stdout, "Usage:") {
		t.Fatalf("krait help: %v\n%s", help, help.stdout)
	}
	usage := help.stdout
	for _, args := range [][]string{{"--help"}} {
		r := krait(t, args...)
		if r.code != exitOK || r.stdout != usage || r.stderr != "" {
			t.Errorf("krait %s: exit %d, stdout %q, stderr %q; want the usage on stdout", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
	for _, tc := range []struct {
		args []string
		// withUsage: the one-line message is followed by a blank line and
		// the usage text.
		withUsage bool
	}{
		{[]string{}, false},
		{[]string{"bogus"}, true},
		{[]string{"dump"}, false},
		{[]string{"dump", "--pid"}, false},
		{[]string{"dump", "--pid", "abc"}, false},
		{[]string{"dump", "--pid", "0"}, false},
		{[]string{"dump", "--pid", "-5"}, false},
		{[]string{"dump", "--bogus"}, false},
		{[]string{"dump", "--pid", "1", "--width", "x"}, false},
		{[]string{"dump", "--pid", "1", "unexpected"}, false},
		{[]string{"dump", "1", "2"}, false},
		{[]string{"dump", "1", "--bogus"}, false},
	} {
		r := krait(t, tc.args...)
		what := "krait " + strings.Join(tc.args, " ")
		if r.code != exitUsage {
			t.Errorf("%v\nwant exit %d", r, exitUsage)
		}
		checkNoPanic(t, what, r.stderr)
		if strings.Contains(r.stderr+r.stdout, "debug-hold-pause") {
			t.Errorf("%s: shows the hidden testing flag:\n%s", what, r.stderr)
		}
		switch {
		case len(tc.args) == 0:
			// No command at all: just the usage.
			if r.stderr != usage {
				t.Errorf("%s: stderr %q, want the usage text", what, r.stderr)
			}
		case tc.withUsage:
			msg, rest, _ := strings.Cut(r.stderr, "\n")
			checkOneLine(t, what, msg+"\n")
			if rest != "\n"+usage {
				t.Errorf("%s: after the message %q, want a blank line and the usage; got %q", what, msg, rest)
			}
		default:
			checkOneLine(t, what, r.stderr)
		}
	}
}

// TestPositionalPID: krait dump PID takes the pid first and flags after it.
func TestPositionalPID(t *testing.T) {
	p := startCounter(t, pickPython(t), "")
	res := dumpJSONArgs(t, "dump", strconv.Itoa(p.pid()), "--json", "--locals")
	if res.PID != p.pid() || len(res.Threads) != 1 {
		t.Errorf("krait dump PID --json: pid %d, %d threads; want pid %d, 1 thread", res.PID, len(res.Threads), p.pid())
	}
}

// TestBadPID: 0 and negative process ids are a bad command line (exit 2)
// with the same message for dump, attach and requests, however given.
func TestBadPID(t *testing.T) {
	for _, tc := range []struct {
		args []string
		bad  string
	}{
		{[]string{"dump", "0"}, "0"},
		{[]string{"dump", "--pid", "0"}, "0"},
		{[]string{"dump", "-p", "0", "--locals"}, "0"},
		{[]string{"dump", "-5"}, "-5"},
		{[]string{"dump", "--pid", "-5"}, "-5"},
		{[]string{"dump", "--", "-5"}, "-5"},
		{[]string{"dump", "--json", "-5"}, "-5"},
		{[]string{"attach", "0"}, "0"},
		{[]string{"attach", "--pid", "0"}, "0"},
		{[]string{"attach", "--batch", "0", "-ex", "bt"}, "0"},
		{[]string{"attach", "-5"}, "-5"},
		{[]string{"attach", "--pid", "-5"}, "-5"},
		{[]string{"attach", "--", "-5"}, "-5"},
		{[]string{"attach", "--batch", "-5"}, "-5"},
		{[]string{"attach", "x1"}, "x1"},
		{[]string{"requests", "--pid", "0"}, "0"},
		{[]string{"requests", "--pid", "-3"}, "-3"},
		{[]string{"requests", "-3"}, "-3"},
		{[]string{"requests", "--pid", "5x"}, "5x"},
	} {
		r := checkError(t, exitUsage, tc.args...)
		want := fmt.Sprintf("krait %s: bad process id %q (a process id is a positive number)\n", tc.args[0], tc.bad)
		if r.stderr != want {
			t.Errorf("krait %s: stderr %q, want %q", strings.Join(tc.args, " "), r.stderr, want)
		}
	}
	// A flag's own negative value is not taken for a process id.
	if r := krait(t, "attach", "--interpreter", "-1"); r.code != exitUsage || strings.Contains(r.stderr, "bad process id") {
		t.Errorf("krait attach --interpreter -1 (no pid): %v", r)
	}
}

// kernelThread finds a kernel thread (kthreadd is pid 2 on the host's pid
// namespace): PF_KTHREAD in its flags.
func kernelThread(t *testing.T) int {
	const pfKthread = 0x00200000
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if flags, err := strconv.ParseUint(f[6], 10, 64); err == nil && flags&pfKthread != 0 {
			return pid
		}
	}
	t.Skip("no kernel thread in this pid namespace")
	return 0
}

// TestKernelThread: a kernel thread is not a Python process (exit 5), for
// every command, and not "process exited".
func TestKernelThread(t *testing.T) {
	pid := strconv.Itoa(kernelThread(t))
	for _, args := range [][]string{
		{"dump", "--pid", pid}, {"dump", pid, "--nonblocking", "--json"},
		{"attach", pid, "--batch", "-ex", "bt"}, {"requests", "--pid", pid},
	} {
		r := checkError(t, exitNotPython, args...)
		if !strings.Contains(r.stderr, "kernel thread, not a Python process") {
			t.Errorf("krait %s: %q does not say it is a kernel thread", strings.Join(args, " "), r.stderr)
		}
	}
}
