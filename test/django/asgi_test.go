package djangoe2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRequestsASGI: uvicorn serves Django 5.2's ASGI application; its
// async view /aslow/ is parked twice, once in PostgreSQL through
// sync_to_async (?db=10) and once on an HTTP call to the venv's gunicorn
// (?http=10, itself parked in PostgreSQL); and the sync view /slow/ is
// parked too (Django runs it through sync_to_async). krait requests finds
// the requests from uvicorn's asyncio tasks: method, path, query, view, the
// event loop's thread, the task handling each and what it awaits, the SQL
// the sync_to_async thread runs for the first; the text output has a TASK
// column; krait dump shows the tasks under the loop's thread; and
// krait requests --core finds the same in a gcore of uvicorn.
func TestRequestsASGI(t *testing.T) {
	st := needStack(t)
	url := st.env["KRAIT_UVICORN_URL"]
	pid, err := strconv.Atoi(st.env["KRAIT_UVICORN_PID"])
	if url == "" || err != nil {
		t.Fatalf("scripts/stack.sh env: KRAIT_UVICORN_URL=%q KRAIT_UVICORN_PID=%q", url, st.env["KRAIT_UVICORN_PID"])
	}
	st.settle(t)
	off := st.logOffset(t)
	db := getAsync(t, url+"/aslow/?db=10")
	st.waitStatement(t, off, "krait-asgi", "pg_sleep(10", 20*time.Second)
	up := getAsync(t, url+"/aslow/?http=10")
	st.waitStatement(t, off, "krait-venv", "pg_sleep(10", 20*time.Second)
	// A sync view under ASGI: Django runs it through sync_to_async.
	off2 := st.logOffset(t)
	syncView := getAsync(t, url+"/slow/?s=9")
	st.waitStatement(t, off2, "krait-asgi", "pg_sleep(9", 20*time.Second)

	before := time.Now()
	out := kraitOK(t, "requests", "--pid", strconv.Itoa(pid), "--json")
	t.Logf("krait requests --pid %d --json\n%s", pid, out)
	checkKeys(t, "krait requests --json", out, "requests", append(requestKeys, "task", "task_id", "awaiting"))
	byQuery := map[string]*request{}
	for _, r := range decodeRequests(t, out) {
		byQuery[deref(r.Query)] = r
	}
	for _, q := range []string{"db=10", "http=10"} {
		r := byQuery[q]
		if r == nil {
			t.Errorf("no request ?%s in krait's answer", q)
			continue
		}
		eq := func(field string, got *string, want string) {
			t.Helper()
			if got == nil || *got != want {
				t.Errorf("?%s: %s = %s, want %q", q, field, deref(got), want)
			}
		}
		eq("method", r.Method, "GET")
		eq("path", r.Path, "/aslow/")
		eq("view", r.View, "shop.views.aslow")
		if r.PID != pid || r.NativeID == nil || *r.NativeID != pid {
			t.Errorf("?%s: pid %d native_id %v, want uvicorn's main thread %d (its event loop)", q, r.PID, r.NativeID, pid)
		}
		if r.Task == nil || r.TaskID == nil || *r.TaskID == 0 {
			t.Errorf("?%s: task %s task_id %v, want the task handling it", q, deref(r.Task), r.TaskID)
		}
		if r.Client == nil || !strings.HasPrefix(*r.Client, "127.0.0.1:") {
			t.Errorf("?%s: client %s, want 127.0.0.1:PORT", q, deref(r.Client))
		}
		if r.ElapsedS == nil || *r.ElapsedS < 0 || *r.ElapsedS > time.Since(db.start).Seconds()+1 {
			t.Errorf("?%s: elapsed_s %v, want the time since it was sent", q, r.ElapsedS)
		}
	}
	if r := byQuery["db=10"]; r != nil {
		if r.SQL == nil || !strings.Contains(*r.SQL, "pg_sleep") || r.SQLParams == nil || !regexp.MustCompile(`^\[10(\.0)?\]$`).MatchString(*r.SQLParams) {
			t.Errorf("?db=10: sql %s params %s, want the pg_sleep statement sync_to_async runs, with [10.0]", deref(r.SQL), deref(r.SQLParams))
		}
		if !strings.HasSuffix(r.File, "django/db/backends/utils.py") {
			t.Errorf("?db=10: at %s (%s:%d), want in django/db/backends/utils.py (the sync_to_async thread)", r.Function, r.File, r.Line)
		}
		if r.Awaiting == nil || !strings.HasPrefix(*r.Awaiting, "sync_to_async in thread ") {
			t.Errorf("?db=10: awaiting %s, want sync_to_async in thread N", deref(r.Awaiting))
		}
	}
	if r := byQuery["s=9"]; r == nil {
		t.Errorf("no request /slow/?s=9 (a sync view under ASGI) in krait's answer")
	} else if deref(r.View) != "shop.views.slow" || deref(r.Path) != "/slow/" || r.TaskID == nil || r.SQL == nil || !strings.Contains(*r.SQL, "pg_sleep") {
		t.Errorf("/slow/?s=9 under ASGI: view %s path %s task %v sql %s, want shop.views.slow, its task and the pg_sleep", deref(r.View), deref(r.Path), r.TaskID, deref(r.SQL))
	}
	if r := byQuery["http=10"]; r != nil {
		if r.SQL != nil {
			t.Errorf("?http=10: sql %s, want none (it waits on an HTTP call)", deref(r.SQL))
		}
		if r.Awaiting == nil || !strings.HasPrefix(*r.Awaiting, "stream ") {
			t.Errorf("?http=10: awaiting %s, want a stream read", deref(r.Awaiting))
		}
		if !strings.HasSuffix(r.File, "asyncio/streams.py") {
			t.Errorf("?http=10: at %s (%s:%d), want in asyncio/streams.py", r.Function, r.File, r.Line)
		}
	}

	text := kraitOK(t, "requests", "--pid", strconv.Itoa(pid))
	t.Logf("krait requests --pid %d\n%s", pid, text)
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if h := strings.Join(strings.Fields(lines[0]), " "); h != "PID TID TASK ELAPSED METHOD PATH VIEW SQL" {
		t.Errorf("text output: header %q, want PID TID TASK ELAPSED METHOD PATH VIEW SQL", lines[0])
	}
	if !strings.Contains(text, "/aslow/?http=10") || !strings.Contains(text, "(awaiting stream ") {
		t.Errorf("text output lacks the ?http=10 request awaiting a stream")
	}

	var d struct {
		Threads []struct {
			NativeID *int `json:"native_id"`
			Tasks    []struct {
				Stack []struct {
					Function string `json:"function"`
				} `json:"stack"`
			} `json:"tasks"`
		} `json:"threads"`
	}
	kraitJSON(t, &d, "dump", "--pid", strconv.Itoa(pid), "--json")
	views := 0
	for _, th := range d.Threads {
		for _, task := range th.Tasks {
			for _, f := range task.Stack {
				if f.Function == "aslow" {
					views++
					if th.NativeID == nil || *th.NativeID != pid {
						t.Errorf("dump: a task in aslow under thread %v, want the main thread %d", th.NativeID, pid)
					}
				}
			}
		}
	}
	if views != 2 {
		t.Errorf("dump: %d tasks in the view aslow, want 2", views)
	}
	t.Logf("checked in %s", time.Since(before).Round(time.Millisecond))

	// The same from a core of uvicorn.
	gcore, err := exec.LookPath("gcore")
	if err != nil {
		t.Fatalf("gcore (gdb) is needed: %v", err)
	}
	prefix := filepath.Join(t.TempDir(), "core")
	if out, err := exec.Command(gcore, "-o", prefix, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		t.Fatalf("gcore: %v\n%s", err, out)
	}
	out = kraitOK(t, "requests", "--core", fmt.Sprintf("%s.%d", prefix, pid), "--json")
	fromCore := map[string]*request{}
	for _, r := range decodeRequests(t, out) {
		fromCore[deref(r.Query)] = r
	}
	for _, q := range []string{"db=10", "http=10"} {
		r := fromCore[q]
		if r == nil || deref(r.View) != "shop.views.aslow" || r.TaskID == nil || byQuery[q] == nil || *r.TaskID != *byQuery[q].TaskID {
			t.Errorf("krait requests --core: ?%s missing, or not the view and task found live:\n%s", q, out)
		}
	}
	for _, p := range []*pending{db, up} {
		if body := p.wait(t, 60*time.Second); !strings.Contains(body, `"orders"`) {
			t.Errorf("%s answered %q", p.url, body)
		}
	}
	if body := syncView.wait(t, 60*time.Second); !strings.HasPrefix(body, "slept 9") {
		t.Errorf("%s answered %q", syncView.url, body)
	}
}
