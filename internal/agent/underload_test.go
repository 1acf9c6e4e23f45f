package agent

import (
	"encoding/json"
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
			before := status()
			time.Sleep(600 * time.Millisecond)
			after := status()
			if len(after.Bad) > 0 || len(after.Errors) > 0 {
				t.Fatalf("the process was disturbed: %+v", after)
			}
			if after.Counts["cpu"] <= before.Counts["cpu"] || after.Counts["waits"] <= before.Counts["waits"] {
				t.Fatalf("the process stopped working: %+v then %+v", before.Counts, after.Counts)
			}
			for end := time.Now().Add(5 * time.Second); hasThread(after.Threads, agentThread); time.Sleep(100 * time.Millisecond) {
				if time.Now().After(end) {
					t.Fatalf("agent thread still there: %v", after.Threads)
				}
				after = status()
			}
			if left, _ := filepath.Glob("/tmp/krait-*/owner"); len(left) > 0 {
				for _, f := range left {
					if data, err := os.ReadFile(f); err == nil && strings.Contains(string(data), `"pid":`+strconv.Itoa(pid)+`,`) {
						t.Errorf("left behind: %s", filepath.Dir(f))
					}
				}
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
