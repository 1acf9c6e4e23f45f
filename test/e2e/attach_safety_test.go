package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// exitInjection: attach could not get in.
const exitInjection = 7

// agentDirsOf returns the agent directories in /tmp whose owner file
// names process pid as the target.
func agentDirsOf(pid int) []string {
	var out []string
	ents, _ := os.ReadDir("/tmp")
	for _, e := range ents {
		if !agentDirName.MatchString(e.Name()) {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/tmp", e.Name(), "owner"))
		var o struct{ PID int }
		if err == nil && json.Unmarshal(data, &o) == nil && o.PID == pid {
			out = append(out, filepath.Join("/tmp", e.Name()))
		}
	}
	return out
}

// checkNoAgentDir fails if an agent directory of process pid is in /tmp
// (after waiting a little for an agent that is leaving).
func checkNoAgentDir(t *testing.T, pid int) {
	t.Helper()
	var left []string
	for end := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if left = agentDirsOf(pid); len(left) == 0 {
			return
		}
		if time.Now().After(end) {
			break
		}
	}
	for _, d := range left {
		ents, _ := os.ReadDir(d)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("krait left its directory %s in /tmp: %v", d, names)
	}
}

// agentThreads returns how many threads of process pid are called
// krait-agent, as krait dump sees them.
func agentThreads(t *testing.T, pid int) int {
	t.Helper()
	n := 0
	for _, th := range dumpJSON(t, pid).Threads {
		if th.name() == "krait-agent" {
			n++
		}
	}
	return n
}

// TestAttachSecondSession (issue 14, item 8): a second krait attach to a
// process another krait is debugging is told so in one line, exit 7, at
// once; the first session carries on (a breakpoint stops, the thread
// continues) and detaches cleanly, and the process can be attached again.
func TestAttachSecondSession(t *testing.T) {
	for _, py := range pythons(t) {
		if py.minor == "2.7" {
			continue
		}
		py := py
		t.Run(py.name, func(t *testing.T) {
			srv := startAttachServer(t, py)
			pid := srv.p.pid()
			s := attach(t, pid)
			s.do(fmt.Sprintf("break views.py:%d", srv.marks["report_call"]))

			began := time.Now()
			r := krait(t, "attach", strconv.Itoa(pid), "--batch", "-ex", "info threads")
			took := time.Since(began)
			if r.code != exitInjection {
				t.Errorf("%v\nwant exit %d", r, exitInjection)
			}
			checkOneLine(t, "second attach", r.stderr)
			mustMatch(t, "second attach", fmt.Sprintf(`^krait: process %d is already being debugged by krait \(agent thread (\d+|0x[0-9a-f]+)\); detach that session first\n$`, pid), r.stderr)
			if took > 5*time.Second {
				t.Errorf("the second attach took %s to find the session", took)
			}

			out, resp := s.continueWith(srv, "/report?n=2")
			mustMatch(t, "first session after the second attach", `Breakpoint 1, report \(n=2\)`, out)
			mustMatch(t, "first session", `(?m)^n = 2$`, s.do("info args"))
			s.do("delete")
			s.interrupt("continue", resp)
			fmt.Fprintf(s.In, "detach\n")
			mustMatch(t, "detach", `\[Inferior 1 \(process \d+\) detached\]`, s.readUntil(func(l string) bool { return strings.Contains(l, "detached]") }, 30*time.Second))
			checkClean(t, srv)
			checkNoAgentDir(t, pid)

			// Once the first session is over, attaching works again.
			r = krait(t, "attach", strconv.Itoa(pid), "--batch", "-ex", "info threads")
			if r.code != 0 {
				t.Errorf("attach after the first session detached: %v", r)
			}
			checkClean(t, srv)
			checkNoAgentDir(t, pid)
		})
	}
}

// TestAttachOtherUser: krait (root) attaches to a process of another
// user: the agent's directory, its files and socket belong to that user,
// private (0700, 0600), krait accepts the socket only because the target
// listens on it (SO_PEERCRED), and nothing is left after detach. krait
// run as that user attaches as well.
func TestAttachOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv (util-linux)")
	}
	const python = "/usr/bin/python3.11" // pyenv's builds are in root's home
	if !isExecutable(python) {
		t.Skip("no " + python)
	}
	nobody := []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}
	p := start(t, nil, append(append([]string{}, nobody...), python, fixture("counter_fixture.py"))...)
	if !p.waitFor(30*time.Second, func() bool { n, _ := p.stdout.Lines(); return n > 0 }) {
		t.Fatalf("counter fixture printed nothing: %s", p.stderr)
	}
	s := attach(t, p.pid())
	dirs := agentDirsOf(p.pid())
	if len(dirs) != 1 {
		t.Fatalf("agent directories of process %d: %v, want one", p.pid(), dirs)
	}
	for _, c := range []struct {
		name string
		mode os.FileMode
	}{{"", os.ModeDir | 0o700}, {"owner", 0o600}, {"sock", os.ModeSocket | 0o600}} {
		fi, err := os.Lstat(filepath.Join(dirs[0], c.name))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 65534 || st.Gid != 65534 || fi.Mode() != c.mode {
			t.Errorf("%s/%s: owner %d:%d, mode %v; want 65534:65534, %v", dirs[0], c.name, st.Uid, st.Gid, fi.Mode(), c.mode)
		}
	}
	mustMatch(t, "info threads", `(?m)^\s+1\s+Thread .*"MainThread"`, s.do("info threads"))
	fmt.Fprintf(s.In, "detach\n")
	s.readUntil(func(l string) bool { return strings.Contains(l, "detached]") }, 30*time.Second)
	checkNoAgentDir(t, p.pid())

	r := kraitAs(t, nobody, "attach", strconv.Itoa(p.pid()), "--batch", "-ex", "info threads")
	if r.code != 0 {
		t.Errorf("krait as the target's user: %v", r)
	}
	checkNoAgentDir(t, p.pid())
	if p.exited() {
		t.Fatalf("the target died: %s", p.stderr)
	}
}

// holdGIL is a target that keeps krait's agent from starting for a while:
// its main thread sleeps (where krait enters), another thread holds the
// GIL in a C call (ctypes.PyDLL keeps it) for argv[1] seconds, so the
// entered thread waits for the GIL. It prints "holding" when the GIL is
// taken, "released" after, then a line every 10 ms.
const holdGIL = `import ctypes, sys, threading, time
def hold():
    time.sleep(0.2)
    print("holding", flush=True)
    ctypes.PyDLL(None).sleep(int(sys.argv[1]))
    print("released", flush=True)
    n = 0
    while True:
        n += 1
        print(n, flush=True)
        time.sleep(0.01)
threading.Thread(target=hold).start()
time.sleep(3600)
`

// startHolder starts holdGIL (for secs seconds) and waits until it holds
// the GIL.
func startHolder(t *testing.T, py python, secs int) *proc {
	t.Helper()
	p := start(t, nil, py.path, "-c", holdGIL, strconv.Itoa(secs))
	if !p.waitFor(30*time.Second, func() bool { return strings.Contains(p.stdout.String(), "holding") }) {
		t.Fatalf("the target did not start: %s", p.stderr)
	}
	time.Sleep(100 * time.Millisecond)
	return p
}

// startKrait starts krait attach --batch on pid without waiting.
func startKrait(t *testing.T, pid int) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(kraitBin, "attach", strconv.Itoa(pid), "--method", "ptrace", "--batch", "-ex", "info threads")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	record(cmd.Process.Pid)
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, &stderr
}

// exitCode waits for cmd (at most 30 s) and returns its exit code.
func exitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("krait did not end within 30 s")
	}
	return cmd.ProcessState.ExitCode()
}

// TestAttachTargetExitsDuringAttach (issue 14): the process exits while
// krait waits for its agent to start: "process exited", exit 3 (not "the
// agent exited", exit 1), and krait's directory is gone.
func TestAttachTargetExitsDuringAttach(t *testing.T) {
	py := pickPython(t)
	p := startHolder(t, py, 60)
	cmd, stderr := startKrait(t, p.pid())
	time.Sleep(700 * time.Millisecond)
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	code := exitCode(t, cmd)
	if code != exitNoProcess || !strings.Contains(stderr.String(), "process exited") {
		t.Errorf("krait: exit %d, stderr %q; want exit %d, process exited", code, stderr.String(), exitNoProcess)
	}
	checkOneLine(t, "attach to a process that exits", stderr.String())
	checkNoAgentDir(t, p.pid())
}

// TestAttachInterruptedWaiting (issue 14, item 6): Ctrl-C, SIGTERM or
// SIGHUP while krait waits for its agent: krait takes the attach back (the
// agent never starts, its directory goes) and says so, exit 128+signal;
// the process carries on as before.
func TestAttachInterruptedWaiting(t *testing.T) {
	py := pickPython(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		sig := sig
		t.Run(sig.String(), func(t *testing.T) {
			p := startHolder(t, py, 2)
			cmd, stderr := startKrait(t, p.pid())
			time.Sleep(500 * time.Millisecond)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if code := exitCode(t, cmd); code != 128+int(sig) || !strings.Contains(stderr.String(), "interrupted") {
				t.Errorf("krait: exit %d, stderr %q; want exit %d, interrupted", code, stderr.String(), 128+int(sig))
			}
			checkOneLine(t, "interrupted attach", stderr.String())
			checkNoAgentDir(t, p.pid())
			// The entered thread gets the GIL back, finds no agent to
			// start, and the process goes on.
			if !p.waitFor(10*time.Second, func() bool { n, _ := p.stdout.Lines(); return n > 20 }) {
				t.Fatalf("the target did not carry on: %q %q", p.stdout.String(), p.stderr.String())
			}
			time.Sleep(300 * time.Millisecond)
			if n := agentThreads(t, p.pid()); n != 0 {
				t.Errorf("the target runs %d krait-agent threads after an interrupted attach", n)
			}
			if e := p.stderr.String(); e != "" {
				t.Errorf("the target wrote to stderr: %s", e)
			}
			checkNoAgentDir(t, p.pid())
		})
	}
}

// TestDumpHidesToken (issue 14): krait dump --locals of a process with a
// krait session shows the agent's frames, but never the session's token:
// every value of krait's own frames that holds it shows as <redacted>.
func TestDumpHidesToken(t *testing.T) {
	for _, py := range pythons(t) {
		if py.minor == "2.7" {
			continue
		}
		py := py
		t.Run(py.name, func(t *testing.T) { testDumpHidesToken(t, py) })
	}
}

func testDumpHidesToken(t *testing.T, py python) {
	out := filepath.Join(t.TempDir(), "secrets.json")
	p := start(t, nil, py.path, fixture("secrets_fixture.py"), out)
	if !p.waitFor(30*time.Second, func() bool { return strings.Contains(p.stdout.String(), "ready") }) {
		t.Fatalf("the fixture did not start: %s", p.stderr)
	}
	s := attach(t, p.pid())
	js := krait(t, "dump", "--pid", strconv.Itoa(p.pid()), "--locals", "--json")
	text := krait(t, "dump", "--pid", strconv.Itoa(p.pid()), "--locals", "--width", "0")
	if js.code != 0 || text.code != 0 {
		t.Fatalf("%v\n%v", js, text)
	}
	// The token, as the process holds it.
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	var secrets []string
	if !p.waitFor(10*time.Second, func() bool {
		data, err := os.ReadFile(out)
		return err == nil && json.Unmarshal(data, &secrets) == nil
	}) {
		t.Fatalf("the fixture did not report: %s", p.stderr)
	}
	if len(secrets) == 0 {
		t.Fatal("the fixture found no token in the agent thread's frames: nothing to check")
	}
	for _, sec := range secrets {
		if strings.Contains(js.stdout, sec) || strings.Contains(text.stdout, sec) {
			t.Errorf("krait dump --locals shows the session's token %s", sec)
		}
	}
	var res dumpResult
	if err := json.Unmarshal([]byte(js.stdout), &res); err != nil {
		t.Fatal(err)
	}
	agent := res.threadNamed("krait-agent")
	if agent == nil {
		t.Fatal("no krait-agent thread in the dump")
	}
	own := regexp.MustCompile(`^<krait-(agent|loader)>$`)
	files, redacted := map[string]bool{}, 0
	for _, f := range agent.Frames {
		files[f.File] = true
		if !own.MatchString(f.File) {
			continue
		}
		for _, l := range f.Locals {
			redacted += strings.Count(l.Value, "<redacted>")
			b, _ := json.Marshal(l)
			redacted += strings.Count(string(b), `"value":"\u003credacted\u003e"`)
		}
	}
	t.Logf("the process holds %d token-like strings; the dump redacted %d values in the agent's frames (%v)", len(secrets), redacted, files)
	if !files["<krait-agent>"] || !files["<krait-loader>"] || redacted == 0 {
		t.Errorf("the agent thread's frames: files %v, %d values redacted; want <krait-agent> and <krait-loader> frames with redacted values", files, redacted)
	}
	fmt.Fprintf(s.In, "detach\n")
	s.readUntil(func(l string) bool { return strings.Contains(l, "detached]") }, 30*time.Second)
	checkNoAgentDir(t, p.pid())
}
