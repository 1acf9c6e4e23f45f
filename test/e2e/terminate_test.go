package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTerminateWhileHeld (issue 14, item 7): a worker told to stop
// (SIGTERM, handled in Python as gunicorn's workers do: stop accepting,
// wait up to 30 s for the request in progress) while krait holds the
// request's thread at a breakpoint. The agent lets the thread go and
// leaves; krait says so at once and exits; the request finishes and the
// worker exits within seconds, not after its 30 s grace. Both the held
// thread being a request thread (gthread) and being the main thread, the
// one the handler runs in (sync).
func TestTerminateWhileHeld(t *testing.T) {
	for _, py := range pythons(t) {
		py := py
		if py.minor == "2.7" {
			continue
		}
		for _, mode := range []string{"thread", "main"} {
			mode := mode
			t.Run(py.name+"/"+mode, func(t *testing.T) {
				state := filepath.Join(t.TempDir(), "state.json")
				p := start(t, nil, py.path, fixture("term_worker.py"), state, mode)
				if !p.waitFor(20*time.Second, func() bool { _, err := os.Stat(state); return err == nil }) {
					t.Fatalf("worker did not start: %s", p.stderr.String())
				}
				line := markLine(t, fixture("term_worker.py"), "handle")
				s := attach(t, p.pid())
				s.do(fmt.Sprintf("break term_worker.py:%d", line))
				s.Send("continue")
				time.Sleep(200 * time.Millisecond)
				if err := os.WriteFile(state+".go", nil, 0o644); err != nil {
					t.Fatal(err)
				}
				s.readUntil(func(l string) bool { return strings.HasPrefix(l, "Breakpoint 1, handle") }, 20*time.Second)
				time.Sleep(300 * time.Millisecond) // held; the main thread has run the agent's pending call
				sent := time.Now()
				if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				out := s.ReadUntilEnd(20 * time.Second)
				if !strings.Contains(out, "was told to stop (SIGTERM)") {
					t.Errorf("krait did not say the process was told to stop:\n%s", out)
				}
				select {
				case <-p.done:
				case <-time.After(15 * time.Second):
					t.Fatalf("the worker did not exit within 15 s of SIGTERM; stdout %q", p.stdout.String())
				}
				took := time.Since(sent)
				if !strings.Contains(p.stdout.String(), "done") || !strings.Contains(p.stdout.String(), "exit after") {
					t.Errorf("worker output: %q (want the request done, then exit)", p.stdout.String())
				}
				if e := p.stderr.String(); e != "" {
					t.Errorf("worker's stderr: %s", e)
				}
				t.Logf("worker exited %v after SIGTERM: %q", took.Round(time.Millisecond), p.stdout.String())
			})
		}
	}
}

// markLine is the line of fixture file holding "# MARK:name".
func markLine(t *testing.T, file, name string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, "# MARK:"+name) {
			return i + 1
		}
	}
	t.Fatalf("%s: no MARK:%s", file, name)
	return 0
}
