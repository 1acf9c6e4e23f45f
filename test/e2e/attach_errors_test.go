package e2e

import (
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Bad input to krait attach: each a one-line error and its exit code,
// the target left running.
func TestAttachErrors(t *testing.T) {
	t.Run("no such process", func(t *testing.T) {
		checkError(t, exitNoProcess, "attach", strconv.Itoa(unusedPID(t)))
	})
	t.Run("not python", func(t *testing.T) {
		p := start(t, nil, "sleep", "60")
		time.Sleep(100 * time.Millisecond)
		checkError(t, exitNotPython, "attach", strconv.Itoa(p.pid()))
	})
	t.Run("usage", func(t *testing.T) {
		r := krait(t, "attach")
		if r.code != 2 {
			t.Errorf("%v: want exit 2", r)
		}
	})
	for _, py := range pythons(t) {
		if py.minor != "2.7" {
			continue
		}
		py := py
		t.Run("python 2", func(t *testing.T) {
			p := startCounter(t, py, "")
			r := checkError(t, 6, "attach", strconv.Itoa(p.pid()))
			if !strings.Contains(r.stderr, "3.6") {
				t.Errorf("the message does not say what attach needs: %q", r.stderr)
			}
			if p.exited() {
				t.Error("the target died")
			}
		})
	}
	// A 3.14+ target that opted out of remote debugging (PEP 768) is
	// refused, whichever way in is asked for.
	for _, py := range pythons(t) {
		if py.minor == "2.7" || !minorAtLeast(py.minor, 14) {
			continue
		}
		py := py
		t.Run("remote debugging disabled "+py.minor, func(t *testing.T) {
			p := start(t, []string{"PYTHON_DISABLE_REMOTE_DEBUG=1"}, py.path, fixture("counter_fixture.py"))
			if !p.waitFor(30*time.Second, func() bool { n, _ := p.stdout.Lines(); return n > 0 }) {
				t.Fatalf("counter fixture printed nothing: %s", p.stderr)
			}
			for _, m := range []string{"auto", "pep768", "ptrace"} {
				r := checkError(t, 6, "attach", strconv.Itoa(p.pid()), "--method", m, "--batch", "-ex", "info threads")
				if !strings.Contains(r.stderr, "PYTHON_DISABLE_REMOTE_DEBUG") {
					t.Errorf("--method %s: the message does not say why: %q", m, r.stderr)
				}
			}
			if p.exited() {
				t.Error("the target died")
			}
		})
	}
	t.Run("permission", func(t *testing.T) {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Fatalf("setpriv (util-linux) is needed: %v", err)
		}
		p := startCounter(t, pickPython(t), "")
		r := kraitAs(t, []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}, "attach", strconv.Itoa(p.pid()), "--batch", "-ex", "info threads")
		if r.code != exitPermission || !strings.Contains(r.stderr, "CAP_SYS_PTRACE") {
			t.Errorf("%v: want exit %d and advice", r, exitPermission)
		}
		checkOneLine(t, "attach as nobody", r.stderr)
		if p.exited() {
			t.Error("the target died")
		}
	})
}

// TestAttachTargetExits: the process dies while krait is attached, at the
// prompt or with a thread held at a breakpoint; krait says so at once,
// with no command typed, and exits with "no such process".
func TestAttachTargetExits(t *testing.T) {
	for _, p := range pythons(t) {
		py := p
		if py.minor != "3.12" && py.minor != "3.8" {
			continue
		}
		for _, held := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s held=%v", py.name, held), func(t *testing.T) {
				srv := startAttachServer(t, py)
				s := attach(t, srv.p.pid())
				s.do(fmt.Sprintf("break views.py:%d", srv.marks["report_call"]))
				if held {
					s.Send("continue")
					time.Sleep(200 * time.Millisecond)
					go http.Get(fmt.Sprintf("http://127.0.0.1:%d/report?n=2", srv.port)) // fails: the server dies
					s.readUntil(func(l string) bool { return strings.HasPrefix(l, "Breakpoint 1, report") }, 30*time.Second)
				}
				_ = srv.p.cmd.Process.Kill()
				<-srv.p.done
				killed := time.Now()
				out := s.ReadUntilEnd(15 * time.Second)
				if !strings.Contains(out, fmt.Sprintf("[Inferior 1 (process %d) exited]", srv.p.pid())) {
					t.Errorf("krait did not say the process exited:\n%s", out)
				}
				t.Logf("krait said so %v after the process died", time.Since(killed).Round(time.Millisecond))
				if err := s.Cmd.Wait(); err == nil || s.Cmd.ProcessState.ExitCode() != exitNoProcess {
					t.Errorf("krait exit: %v, want code %d", err, exitNoProcess)
				}
			})
		}
	}
}

// minorAtLeast: "3.14" ≥ 3.min.
func minorAtLeast(minor string, min int) bool {
	m, err := strconv.Atoi(strings.TrimPrefix(minor, "3."))
	return strings.HasPrefix(minor, "3.") && err == nil && m >= min
}
