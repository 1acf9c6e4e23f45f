package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startReady starts a fixture under py and waits for its "ready" line.
func startReady(t *testing.T, py python, env []string, argv ...string) *proc {
	t.Helper()
	p := start(t, env, append([]string{py.path}, argv...)...)
	if !p.waitFor(30*time.Second, func() bool { _, last := p.stdout.Lines(); return last == "ready" }) {
		t.Fatalf("%v did not get ready (exited: %v): %s", argv, p.exited(), p.stderr)
	}
	return p
}

// gcore takes a core of pid with gdb's gcore and returns its path.
func gcore(t *testing.T, pid int) string {
	t.Helper()
	bin, err := exec.LookPath("gcore")
	if err != nil {
		t.Fatalf("gcore (gdb) is needed: %v", err)
	}
	prefix := filepath.Join(t.TempDir(), "core")
	if out, err := exec.Command(bin, "-o", prefix, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		t.Fatalf("gcore: %v\n%s", err, out)
	}
	return fmt.Sprintf("%s.%d", prefix, pid)
}

// TestFramesNeverNull: a thread state with no Python frames (made with
// PyThreadState_New, as an embedding C program does) is in the JSON with
// "frames": [], never null, live and from a core, on every version.
func TestFramesNeverNull(t *testing.T) {
	for _, py := range pythons(t) {
		t.Run(py.name, func(t *testing.T) {
			p := startReady(t, py, nil, fixture("bare_tstate_fixture.py"))
			pid := strconv.Itoa(p.pid())
			for _, args := range [][]string{
				{"dump", "--pid", pid, "--json"},
				{"dump", "--pid", pid, "--json", "--locals", "--nonblocking"},
				{"dump", "--core", gcore(t, p.pid()), "--json"},
			} {
				r := krait(t, args...)
				if r.code != 0 {
					t.Fatalf("%v", r)
				}
				var raw struct {
					Threads []map[string]json.RawMessage `json:"threads"`
				}
				if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
					t.Fatalf("krait %s: %v\n%s", strings.Join(args, " "), err, r.stdout)
				}
				empty := 0
				for _, th := range raw.Threads {
					f, ok := th["frames"]
					if !ok || string(f) == "null" {
						t.Errorf("krait %s: a thread without \"frames\": [] (frames %s)", strings.Join(args, " "), f)
					}
					if string(f) == "[]" {
						empty++
					}
				}
				if empty == 0 {
					t.Errorf("krait %s: no thread without frames among %d; the fixture's bare thread state is missing", strings.Join(args, " "), len(raw.Threads))
				}
			}
		})
	}
}
