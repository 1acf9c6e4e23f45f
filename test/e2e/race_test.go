package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"krait/internal/testkit"
)

// TestReadsRace runs the commands that read several processes side by side
// (dump, requests, record, top, attach with two processes) with a krait
// built by the race detector, against two processes of every interpreter
// (which share one cached executable and libpython): any data race exits
// krait non-zero. CI once met one as a crash ("concurrent map read and
// map write" in a shared ELF object's symbol table).
func TestReadsRace(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "krait-race")
	build := exec.Command("go", "build", "-race", "-o", bin, "./cmd/krait")
	build.Dir = repoRoot
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building krait with -race (needs gcc): %v\n%s", err, out)
	}
	// Two processes of each interpreter, side by side in the arguments:
	// krait reads them at the same time, through one cached object.
	all := pythons(t)
	var pids []string
	for _, py := range all {
		for range 2 {
			pids = append(pids, strconv.Itoa(startCounter(t, py, "").pid()))
		}
	}
	var each []string
	for _, p := range pids {
		each = append(each, "--pid", p)
	}
	run := func(args ...string) {
		t.Helper()
		r := runKrait(t, []string{bin}, []string{"GORACE=halt_on_error=1 exitcode=66"}, 3*time.Minute, args...)
		if r.code != 0 || strings.Contains(r.stderr, "DATA RACE") {
			t.Errorf("%s", testkit.Short(r.String()))
		}
	}
	run(append([]string{"dump", "--native", "--locals", "--json"}, each...)...)
	run(append([]string{"requests"}, each...)...)
	run(append([]string{"record", "--duration", "3", "--format", "raw", "-o", filepath.Join(dir, "raw.txt")}, each...)...)
	run(append([]string{"top", "--duration", "3", "--json"}, each...)...)

	// attach: one session over two processes of the newest and the
	// oldest Python 3.
	var py3 []string
	for i, py := range all {
		if py.minor != "2.7" {
			py3 = append(py3, pids[2*i])
		}
	}
	if len(py3) < 2 {
		t.Fatalf("need two Python 3 interpreters, have %v", py3)
	}
	t.Setenv("GORACE", "halt_on_error=1 exitcode=66")
	ts := testkit.AttachArgs(t, bin, py3[0], py3[len(py3)-1])
	record(ts.Cmd.Process.Pid)
	s := &session{ts}
	mustMatch(t, "info inferiors", `(?m)^  2\s+process `, s.do("info inferiors"))
	mustMatch(t, "info threads", `(?m)^. 1\.\d+\s+process `, s.do("info threads"))
	s.do("inferior 2")
	mustMatch(t, "info threads", `(?m)^. 2\.\d+\s+process `, s.do("info threads"))
	mustMatch(t, "thread apply all bt", `counter_fixture\.py`, s.do("thread apply all bt"))
	s.Send("detach")
	s.ReadUntilEnd(time.Minute)
	if err := ts.Cmd.Wait(); err != nil {
		t.Errorf("krait attach (race detector): %v (its report is on the test's stderr)", err)
	}
}
