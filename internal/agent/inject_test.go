package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"krait/internal/cpython"
	"krait/internal/cpython/layout"
	"krait/internal/target/live"
)

// TestInjectRunsBootstrap injects a stand-in agent that only records that it
// ran (and in which thread), into a process whose threads sleep, on every
// 3.x build, and checks that the target keeps running normally afterwards:
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
			cmd := exec.Command(py.path, "-c", script, out)
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			time.Sleep(700 * time.Millisecond)
			proc, err := live.Open(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			pyt, err := cpython.Open(proc)
			if err != nil {
				t.Fatal(err)
			}
			inj, err := Inject(proc, pyt, -1)
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(inj.HostDir)
			sock, err := inj.WaitSocket(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(sock)
			t.Logf("injected via thread %d parked in %s, paused %s: %s", inj.Thread, inj.Syscall, inj.Paused, data)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("target failed after injection: %v", err)
			}
			res, _ := os.ReadFile(out)
			f := strings.Fields(string(res))
			if len(f) != 2 || f[1] < "2.9" || f[1] > "3.6" {
				t.Fatalf("target's sleep was disturbed: %q", res)
			}
		})
	}
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
