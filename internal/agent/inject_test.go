package agent

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"krait/internal/cpython"
	"krait/internal/cpython/layout"
	"krait/internal/target/live"
)

// TestInjectRunsBootstrap injects (ptrace) a stand-in agent that only
// records that it ran (and in which thread), into a process whose threads
// sleep, on every 3.x build, and checks that the target keeps running normally afterwards:
// its sleeping main thread resumes its sleep, a counter thread keeps
// counting.
func TestInjectRunsBootstrap(t *testing.T) {
	saved := agentSource
	defer func() { agentSource = saved }()
	agentSource = []byte(`import os, threading
open(os.path.join(KRAIT["dir"], "sock"), "w").write(threading.current_thread().name + " " + str(KRAIT["page"]))
`)
	for _, py := range testPythons(t) {
		py := py
		t.Run(py.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			script := `
import threading, time, sys
n = [0]
def count():
    while True:
        n[0] += 1
        time.sleep(0.001)
threading.Thread(target=count, daemon=True).start()
t0 = time.time()
time.sleep(3)
open(sys.argv[1], "w").write("%d %.2f" % (n[0], time.time() - t0))
`
			tg := startTarget(t, py.path, nil, nil, script, 700*time.Millisecond, out)
			proc, pyt := tg.proc, tg.py
			inj, err := Inject(proc, pyt, -1, MethodPtrace)
			if err != nil {
				t.Fatal(err)
			}
			defer drop(inj)
			sock, err := inj.WaitSocket(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(sock)
			t.Logf("injected via thread %d parked in %s, paused %s: %s", inj.Thread, inj.Syscall, inj.Paused, data)
			tg.finish(t, "", true)
			res, _ := os.ReadFile(out)
			f := strings.Fields(string(res))
			if len(f) != 2 || f[1] < "2.9" || f[1] > "3.6" {
				t.Fatalf("target's sleep was disturbed: %q", res)
			}
		})
	}
}

// drop removes what an injection left in the target's /tmp, the stand-in
// agents' own files too, through krait's descriptors (so it works after
// the target exited, when /proc/PID/root is gone).
func drop(inj *Injection) {
	if inj.dir != nil {
		_ = unix.Unlinkat(inj.dir.fd, "ran", 0)
	}
	inj.Abort()
}

type testPython struct{ name, path string }

// testPythons lists the 3.x interpreters to test against.
func testPythons(t *testing.T) []testPython {
	var out []testPython
	prefixes, _ := layout.PyenvPrefixes()
	for _, p := range prefixes {
		minor, _, err := layout.PrefixVersion(p)
		if err != nil || strings.HasPrefix(minor, "2.") {
			continue
		}
		out = append(out, testPython{minor, filepath.Join(p, "bin", "python")})
	}
	if _, err := os.Stat("/usr/bin/python3.11"); err == nil {
		out = append(out, testPython{"system3.11", "/usr/bin/python3.11"})
	}
	return out
}

// testTarget is a Python process started for an injection test.
type testTarget struct {
	cmd    *exec.Cmd
	stdout *strings.Builder
	stderr *strings.Builder
	proc   *live.Process
	py     *cpython.Python
}

// startTarget runs `python [pre…] -c script args…` (env added to the
// environment), lets it settle, and opens it as krait does. It is killed
// when the test ends.
func startTarget(t *testing.T, python string, pre, env []string, script string, settle time.Duration, args ...string) *testTarget {
	t.Helper()
	tg := &testTarget{stdout: &strings.Builder{}, stderr: &strings.Builder{}}
	tg.cmd = exec.Command(python, append(append(append([]string{}, pre...), "-c", script), args...)...)
	tg.cmd.Env = append(os.Environ(), env...)
	tg.cmd.Stdout, tg.cmd.Stderr = tg.stdout, tg.stderr
	if err := tg.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.cmd.Process.Kill(); tg.cmd.Wait() })
	time.Sleep(settle)
	var err error
	if tg.proc, err = live.Open(tg.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.proc.Close() })
	if tg.py, err = cpython.Open(tg.proc); err != nil {
		t.Fatal(err)
	}
	return tg
}

// finish waits for the target to exit by itself and checks that it
// printed want on stdout and, with clean, nothing on stderr.
func (tg *testTarget) finish(t *testing.T, want string, clean bool) {
	t.Helper()
	if err := tg.cmd.Wait(); err != nil || tg.stdout.String() != want || clean && tg.stderr.String() != "" {
		t.Fatalf("target: %v, stdout %q (want %q), stderr %q", err, tg.stdout.String(), want, tg.stderr.String())
	}
}

// TestInjectPEP768 attaches through CPython's remote-debugging protocol on
// every build that has it (3.14+): the stand-in agent runs once, in a
// thread running Python code, the target carries on; a target that opted
// out is refused, whatever the method; on a target whose threads all stay
// idle the request is withdrawn, and nothing runs later.
func TestInjectPEP768(t *testing.T) {
	saved := agentSource
	defer func() { agentSource = saved }()
	agentSource = []byte(`import os, threading
with open(os.path.join(KRAIT["dir"], "ran"), "a") as f: f.write(threading.current_thread().name + "\n")
open(os.path.join(KRAIT["dir"], "sock"), "w").write(str(KRAIT["page"]))
`)
	any := false
	for _, py := range testPythons(t) {
		py := py
		v, err := layout.ParseVersion(py.name)
		if err != nil || v.Less(layout.Version{Major: 3, Minor: 14}) {
			continue
		}
		any = true
		t.Run(py.name, func(t *testing.T) {
			// busy: a thread that runs Python between short sleeps; idle:
			// every thread asleep for long.
			const busy = `
import threading, time, sys
n = [0]
def count():
    while True:
        n[0] += 1
        time.sleep(0.001)
threading.Thread(target=count, name="counter", daemon=True).start()
time.sleep(float(sys.argv[1]))
print("done", n[0], flush=True)
`
			t.Run("runs once", func(t *testing.T) {
				tg := startTarget(t, py.path, nil, nil, busy, 500*time.Millisecond, "2")
				inj, err := Inject(tg.proc, tg.py, -1, MethodAuto)
				if err != nil {
					t.Fatal(err)
				}
				defer drop(inj)
				if inj.Method != MethodPEP768 || inj.Paused > 100*time.Millisecond {
					t.Errorf("method %s, paused %v: want pep768 and a pause of a few ms at most", inj.Method, inj.Paused)
				}
				if _, err := inj.WaitSocket(5 * time.Second); err != nil {
					t.Fatal(err)
				}
				time.Sleep(200 * time.Millisecond)
				ran, _ := os.ReadFile(filepath.Join(inj.HostDir, "ran"))
				if string(ran) != "krait-agent\n" {
					t.Errorf("the agent ran in %q, want once, in its own thread", ran)
				}
				if err := tg.cmd.Wait(); err != nil || !strings.HasPrefix(tg.stdout.String(), "done ") || tg.stderr.String() != "" {
					t.Fatalf("target after attach: %v, stdout %q, stderr %q", err, tg.stdout.String(), tg.stderr.String())
				}
			})
			for _, c := range []struct {
				name  string
				extra []string
				env   []string
			}{
				{"opted out by -X disable-remote-debug", []string{"-X", "disable-remote-debug"}, nil},
				{"opted out by PYTHON_DISABLE_REMOTE_DEBUG", nil, []string{"PYTHON_DISABLE_REMOTE_DEBUG=1"}},
			} {
				t.Run(c.name, func(t *testing.T) {
					tg := startTarget(t, py.path, c.extra, c.env, busy, 500*time.Millisecond, "2")
					for _, m := range []string{MethodAuto, MethodPEP768, MethodPtrace} {
						inj, err := Inject(tg.proc, tg.py, -1, m)
						if err == nil {
							drop(inj)
							t.Fatalf("method %s: attached to a target that opted out", m)
						}
						if !errors.Is(err, ErrRemoteDebugDisabled) || !strings.Contains(err.Error(), "disable-remote-debug") {
							t.Errorf("method %s: %v", m, err)
						}
					}
				})
			}
			t.Run("idle target", func(t *testing.T) {
				tg := startTarget(t, py.path, nil, nil, "import time, sys\ntime.sleep(1.5)\nfor i in range(100000): pass\ntime.sleep(0.5)\nprint('done', flush=True)", 300*time.Millisecond)
				proc, pyt := tg.proc, tg.py
				inj, err := Inject(proc, pyt, -1, MethodAuto)
				if err != nil {
					t.Fatal(err)
				}
				_, err = inj.WaitSocket(300 * time.Millisecond)
				if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "--method ptrace") {
					t.Fatalf("idle target: %v", err)
				}
				if _, err := os.Stat(inj.HostDir); !os.IsNotExist(err) {
					t.Errorf("agent directory left behind: %v", err)
				}
				// The target wakes up and runs Python: nothing of krait's runs.
				tg.finish(t, "done\n", true)
			})
			t.Run("audit hook refuses", func(t *testing.T) {
				// A thread takes the request, the target's audit hook denies
				// the script: krait says so, and does not enter by ptrace.
				tg := startTarget(t, py.path, nil, nil, `
import sys, threading, time
def hook(event, args):
    if event == "cpython.remote_debugger_script":
        raise RuntimeError("no debuggers here")
sys.addaudithook(hook)
def count():
    while True:
        time.sleep(0.001)
threading.Thread(target=count, daemon=True).start()
time.sleep(4)
print("done", flush=True)
`, 300*time.Millisecond)
				proc, pyt := tg.proc, tg.py
				inj, _, err := Start(proc, pyt, -1, MethodAuto, 5*time.Second)
				if err == nil {
					drop(inj)
					t.Fatalf("attached (method %s) to a target whose audit hook refuses remote debugger scripts", inj.Method)
				}
				if !errors.Is(err, ErrRemoteDebugDisabled) || !strings.Contains(err.Error(), "audit hook") {
					t.Errorf("refusal: %v", err)
				}
				tg.finish(t, "done\n", false) // CPython reports the refused script on stderr
			})
			t.Run("idle target, auto: ptrace after the grace", func(t *testing.T) {
				tg := startTarget(t, py.path, nil, nil, "import time\ntime.sleep(3)\nfor i in range(100000): pass\nprint('done', flush=True)", 300*time.Millisecond)
				proc, pyt := tg.proc, tg.py
				inj, _, err := Start(proc, pyt, -1, MethodAuto, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer drop(inj)
				if inj.Method != MethodPtrace || !strings.Contains(inj.Note, "PEP 768") {
					t.Errorf("method %s, note %q: want ptrace, saying why", inj.Method, inj.Note)
				}
				if ran, _ := os.ReadFile(filepath.Join(inj.HostDir, "ran")); string(ran) != "krait-agent\n" {
					t.Errorf("the agent ran in %q, want once, in its own thread", ran)
				}
				tg.finish(t, "done\n", true)
			})
		})
	}
	if !any {
		t.Log("no Python 3.14+ build here: PEP 768 untested")
	}
}

// TestPEP768AgentWithdraws: the real agent, started through PEP 768,
// clears the requests krait left in the other threads itself (as if krait
// died before it could), and leaves on detach.
func TestPEP768AgentWithdraws(t *testing.T) {
	for _, py := range testPythons(t) {
		v, err := layout.ParseVersion(py.name)
		if err != nil || v.Less(layout.Version{Major: 3, Minor: 14}) {
			continue
		}
		py := py
		t.Run(py.name, func(t *testing.T) {
			tg := startTarget(t, py.path, nil, nil, `
import threading, time
def count():
    while True:
        time.sleep(0.001)
for i in range(3):
    threading.Thread(target=count, daemon=True).start()
time.sleep(30)
`, 500*time.Millisecond)
			proc, pyt := tg.proc, tg.py
			inj, err := Inject(proc, pyt, -1, MethodPEP768)
			if err != nil {
				t.Fatal(err)
			}
			defer drop(inj)
			sock := filepath.Join(inj.HostDir, "sock")
			pending := func() (n int) {
				interps, err := pyt.Interpreters()
				if err != nil {
					t.Fatal(err)
				}
				L := pyt.L
				for _, in := range interps {
					for _, th := range in.Threads {
						var b [4]byte
						if err := proc.ReadAt(b[:], th.TState+uint64(L.TstateRemoteSupport)+uint64(L.RemotePendingCall)); err != nil {
							t.Fatal(err)
						}
						if b != [4]byte{} {
							n++
						}
					}
				}
				return n
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				_, err := os.Stat(sock)
				if err == nil && pending() == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("socket %v, %d requests still pending", err, pending())
				}
				time.Sleep(5 * time.Millisecond)
			}
			c, _, err := Dial(sock, inj.Token, proc.PID())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Call("detach", nil, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			// The agent removes its files; krait, once its session is
			// over, the rest of its directory.
			for end := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if _, err := os.Lstat(sock); os.IsNotExist(err) {
					break
				}
				if time.Now().After(end) {
					t.Fatal("the agent's socket is still there after detach")
				}
			}
			c.Close()
			inj.Finish()
			if _, err := os.Stat(inj.HostDir); !os.IsNotExist(err) {
				t.Errorf("the agent's directory is still there after detach: %v", err)
			}
		})
	}
}

// TestInjectAgentError: an agent that fails to load is reported by krait
// with its error, and the target's stderr stays clean.
func TestInjectAgentError(t *testing.T) {
	saved := agentSource
	defer func() { agentSource = saved }()
	agentSource = []byte("def broken(:\n")
	pys := testPythons(t)
	if len(pys) == 0 {
		t.Fatal("no Python 3 interpreter")
	}
	for _, py := range []testPython{pys[0], pys[len(pys)-1]} {
		py := py
		t.Run(py.name, func(t *testing.T) {
			tg := startTarget(t, py.path, nil, nil, "import threading, time\ndef tick():\n    while True: time.sleep(0.001)\nthreading.Thread(target=tick, daemon=True).start()\ntime.sleep(2)\nprint('done', flush=True)", 300*time.Millisecond)
			proc, pyt := tg.proc, tg.py
			_, _, err := Start(proc, pyt, -1, MethodAuto, 5*time.Second)
			if err == nil || !strings.Contains(err.Error(), "failed to start") || !strings.Contains(err.Error(), "SyntaxError") {
				t.Fatalf("a broken agent: %v", err)
			}
			tg.finish(t, "done\n", true)
		})
	}
}
