package djangoe2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"krait/internal/testkit"
)

// TestDumpNativeDB: krait dump --native of a worker whose request waits in
// PostgreSQL (pg_sleep), live and from a gcore core, on Debian's stripped
// python3.11 with Debian's psycopg2 and libpq (gunicorn gthread) and on the
// venv's pyenv 3.12 with psycopg2-binary's own libpq, and in mod_wsgi's
// sub-interpreter daemon (its request thread has a thread state in each
// interpreter; only the one running Django shows the native stack): the
// request thread's native frames are gdb's, in gdb's order, down from poll
// through libpq and psycopg2, with Django's Python frames where gdb has
// the evaluation loop.
func TestDumpNativeDB(t *testing.T) {
	st := needStack(t)
	if _, err := exec.LookPath("gdb"); err != nil {
		t.Fatalf("gdb is needed: %v", err)
	}
	for _, group := range []string{"krait-gthread", "krait-sub", "krait-venv"} {
		t.Run(group, func(t *testing.T) {
			s := st.server(t, group)
			st.settle(t)
			p := st.park(t, []*server{s}, "/slow/?s=15", "pg_sleep(15")[s]
			defer p.wait(t, time.Minute)

			var d struct {
				PythonVersion string `json:"python_version"`
				Threads       []struct {
					NativeID    *int                  `json:"native_id"`
					Frames      []testkit.NativeFrame `json:"frames"`
					NativeError string                `json:"native_error"`
				} `json:"threads"`
			}
			check := func(what string, gdb map[int][]string) {
				t.Helper()
				found := 0
				for _, th := range d.Threads {
					var fs []string
					for _, f := range th.Frames {
						fs = append(fs, f.Function)
					}
					joined := strings.Join(fs, " ")
					if th.NativeID == nil || !strings.Contains(joined, "PQgetResult") {
						continue
					}
					found++
					if th.NativeError != "" {
						t.Errorf("%s: %s: native_error %q", s, what, th.NativeError)
					}
					if !strings.HasPrefix(joined, "poll ") || !strings.Contains(joined, "_pq_execute_sync") || !strings.Contains(joined, "_execute") {
						t.Errorf("%s: %s: request thread's stack: %s", s, what, testkit.FrameList(th.Frames))
					}
					minor := strings.Join(strings.SplitN(d.PythonVersion, ".", 3)[:2], ".")
					want := testkit.GDBSequence(gdb[*th.NativeID], testkit.EvalFunction(minor))
					got := testkit.KraitSequence(th.Frames)
					if strings.Join(want, " ") != strings.Join(got, " ") {
						t.Errorf("%s: %s: krait's merged stack is\n  %s\ngdb's:\n  %s\nkrait: %s\ngdb: %s", s, what,
							strings.Join(got, " "), strings.Join(want, " "), testkit.FrameList(th.Frames), strings.Join(gdb[*th.NativeID], " "))
					}
				}
				if found != 1 {
					t.Errorf("%s: %s: %d threads wait in libpq's PQgetResult, want 1", s, what, found)
				}
			}

			worker := -1
			for _, w := range s.workers {
				kraitJSON(t, &d, "dump", "--native", "--json", "--pid", strconv.Itoa(w))
				for _, th := range d.Threads {
					for _, f := range th.Frames {
						if f.Function == "PQgetResult" {
							worker = w
						}
					}
				}
				if worker > 0 {
					break
				}
			}
			if worker < 0 {
				t.Fatalf("%s: no worker of %v has a thread in PQgetResult", s, s.workers)
			}
			// The core first, while the request surely still waits; then
			// gdb's view of the live worker, then of the core.
			core := filepath.Join(t.TempDir(), "core")
			if out, err := exec.Command("gcore", "-o", core, strconv.Itoa(worker)).CombinedOutput(); err != nil {
				t.Fatalf("gcore: %v\n%s", err, out)
			}
			core = fmt.Sprintf("%s.%d", core, worker)
			check("live", testkit.GDBStacks(t, "-p", strconv.Itoa(worker)))
			kraitJSON(t, &d, "dump", "--native", "--json", "--core", core)
			exe, err := filepath.EvalSymlinks(fmt.Sprintf("/proc/%d/exe", worker))
			if err != nil {
				t.Fatal(err)
			}
			check("core", testkit.GDBStacks(t, exe, core))
		})
	}
}
