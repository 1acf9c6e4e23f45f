package djangoe2e

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRequests: with a /slow/?s=5 request parked in PostgreSQL on every
// server (both mod_wsgi groups, the sub-interpreter one too, gunicorn
// gthread, a gunicorn sync worker, the venv's gthread), krait requests
// finds each: method, path, query, Django view, the SQL running now with
// its parameter, what the thread waits on in C (libpq's PQgetResult down
// to poll), the thread, the interpreter, mod_wsgi's elapsed time;
// --all finds them all; the text output has a header and the path.
func TestRequests(t *testing.T) {
	st := needStack(t)
	st.settle(t)
	parked := st.park(t, st.servers, "/slow/?s=5", "pg_sleep(5")
	// A second in, mod_wsgi's elapsed time is clearly not zero.
	time.Sleep(time.Second)

	ours := map[int]*server{}
	var all []int
	for _, s := range st.servers {
		for _, w := range s.workers {
			ours[w] = s
			all = append(all, w)
		}
	}

	for _, s := range st.servers {
		t.Run(s.group, func(t *testing.T) {
			args := append([]string{"requests", "--json"}, pidArgs("--pid", s.workers)...)
			before := time.Now()
			out := kraitOK(t, args...)
			after := time.Now()
			t.Logf("krait %s\n%s", strings.Join(args, " "), out)
			checkKeys(t, "krait requests --json", out, "requests", requestKeys)
			reqs := decodeRequests(t, out)
			p := parked[s]
			if len(reqs) != 1 {
				t.Fatalf("%s: want the one parked request, krait found %d%s", s, len(reqs), finishedEarly(p, before))
			}
			checkSlowRequest(t, s, reqs[0], p, before, after)
		})
	}

	// Text: a header, one line per request with its path and query.
	args := append([]string{"requests"}, pidArgs("--pid", all)...)
	before := time.Now()
	out := kraitOK(t, args...)
	t.Logf("krait %s\n%s", strings.Join(args, " "), out)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if h := strings.Fields(lines[0]); strings.Join(h, " ") != "PID TID ELAPSED METHOD PATH VIEW WAITING SQL" {
		t.Errorf("text output: header %q, want PID TID ELAPSED METHOD PATH VIEW WAITING SQL", lines[0])
	}
	for _, s := range st.servers {
		var line string
		for _, l := range lines[1:] {
			if f := strings.Fields(l); len(f) > 0 && ours[atoi(f[0])] == s {
				line = l
			}
		}
		if line == "" {
			t.Errorf("text output: no line for %s (PIDs %v)%s", s, s.workers, finishedEarly(parked[s], before))
			continue
		}
		// mod_wsgi's start time, else an estimate from the client socket.
		elapsed := `~\d+\.\ds`
		if s.kind == "mod_wsgi daemon" {
			elapsed = `\d+\.\ds`
		}
		re := `^\d+\s+\d+\s+` + elapsed + `\s+GET\s+/slow/\?s=5\s+shop\.views\.slow\s+\S.* → PQgetResult → .*→ poll\s+SELECT pg_sleep\(%s\)\s+\[5(\.0)?\]$`
		if !regexp.MustCompile(re).MatchString(line) {
			t.Errorf("text output for %s: %q does not match %q", s, line, re)
		}
	}

	// --all: every Python process on the host; ours are among them.
	before = time.Now()
	out = kraitOK(t, "requests", "--all", "--json")
	after := time.Now()
	found := map[*server][]*request{}
	for _, r := range decodeRequests(t, out) {
		if s := ours[r.PID]; s != nil {
			found[s] = append(found[s], r)
		}
	}
	for _, s := range st.servers {
		t.Run("all/"+s.group, func(t *testing.T) {
			if len(found[s]) != 1 {
				t.Fatalf("krait requests --all: %d requests in %s's workers %v, want 1%s\n%s", len(found[s]), s, s.workers, finishedEarly(parked[s], before), out)
			}
			checkSlowRequest(t, s, found[s][0], parked[s], before, after)
		})
	}

	for _, s := range st.servers {
		if body := parked[s].wait(t, 30*time.Second); !strings.HasPrefix(body, "slept 5") {
			t.Errorf("%s: /slow/?s=5 answered %q", s, body)
		}
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func decodeRequests(t *testing.T, out string) []*request {
	t.Helper()
	var doc struct {
		Requests []*request `json:"requests"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("krait requests --json: %v\n%s", err, out)
	}
	return doc.Requests
}

// finishedEarly explains a missing request: it had already ended when
// krait looked (a machine too slow for the 5 s the request waits).
func finishedEarly(p *pending, before time.Time) string {
	select {
	case <-p.done:
		return fmt.Sprintf(" (the request had already finished %.1fs after it started: too slow a machine?)", before.Sub(p.start).Seconds())
	default:
		return ""
	}
}

// checkSlowRequest checks one /slow/?s=5 request that krait found between
// before and after.
func checkSlowRequest(t *testing.T, s *server, r *request, p *pending, before, after time.Time) {
	t.Helper()
	if !slices.Contains(s.workers, r.PID) {
		t.Errorf("%s: pid %d is not one of the workers %v", s, r.PID, s.workers)
	}
	eq := func(field string, got *string, want string) {
		t.Helper()
		if got == nil || *got != want {
			t.Errorf("%s: %s = %s, want %q", s, field, deref(got), want)
		}
	}
	eq("method", r.Method, "GET")
	eq("path", r.Path, "/slow/")
	eq("query", r.Query, "s=5")
	eq("view", r.View, "shop.views.slow")
	eq("server", r.Server, s.kind+" ("+s.group+")")
	if r.SQL == nil || !strings.Contains(*r.SQL, "pg_sleep") {
		t.Errorf("%s: sql = %s, want the pg_sleep statement", s, deref(r.SQL))
	}
	// In C: psycopg2's _pq_execute_sync → libpq (PQexec, which Debian's
	// build leaves by a tail call, then PQgetResult) → … → poll (libc),
	// waiting for PostgreSQL's answer.
	if r.Waiting == nil || !regexp.MustCompile(`_pq_execute_sync → .*PQgetResult → .*→ poll$`).MatchString(*r.Waiting) {
		t.Errorf("%s: waiting = %s, want psycopg2's _pq_execute_sync down to libpq's PQgetResult and poll", s, deref(r.Waiting))
	}
	if r.SQLParams == nil || !regexp.MustCompile(`^\[5(\.0)?\]$`).MatchString(*r.SQLParams) {
		t.Errorf("%s: sql_params = %s, want [5.0]", s, deref(r.SQLParams))
	}
	if s.subInterp && r.Interpreter == 0 {
		t.Errorf("%s: Django runs in a sub-interpreter, but interpreter = 0", s)
	}
	if !s.subInterp && r.Interpreter != 0 {
		t.Errorf("%s: Django runs in the main interpreter, but interpreter = %d", s, r.Interpreter)
	}
	if r.NativeID == nil || !isThreadOf(r.PID, *r.NativeID) {
		t.Errorf("%s: native_id %v is not a thread of PID %d", s, r.NativeID, r.PID)
	}
	if r.ThreadName == nil || *r.ThreadName == "" {
		t.Errorf("%s: no thread_name", s)
	}
	if r.ThreadID == 0 {
		t.Errorf("%s: thread_id 0", s)
	}
	// Where the thread is: Django's cursor wrapper, waiting for
	// PostgreSQL.
	if !strings.HasSuffix(r.File, "django/db/backends/utils.py") || r.Line <= 0 || r.Function == "" {
		t.Errorf("%s: thread at %s (%s:%d), want in django/db/backends/utils.py", s, r.Function, r.File, r.Line)
	}
	// mod_wsgi records when a request started; gunicorn does not, and
	// krait estimates it from the client socket (the kernel's last
	// receive on the connection).
	lo := before.Sub(p.start).Seconds() - 0.5
	hi := after.Sub(p.start).Seconds() + 0.05
	wantSource := "socket"
	if s.kind == "mod_wsgi daemon" {
		wantSource = "server"
	}
	switch {
	case r.ElapsedS == nil:
		t.Errorf("%s: elapsed_s is null, want it from the %s", s, wantSource)
	case r.ElapsedSource == nil || *r.ElapsedSource != wantSource:
		t.Errorf("%s: elapsed_source %s, want %q", s, deref(r.ElapsedSource), wantSource)
	case r.ElapsedS != nil && (*r.ElapsedS < lo || *r.ElapsedS > hi):
		t.Errorf("%s: elapsed_s %.3f, want between %.3f and %.3f (the time since the request was sent)", s, *r.ElapsedS, lo, hi)
	}
}
