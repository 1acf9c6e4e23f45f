package djangoe2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// expectedMinor is the Python minor version a server must run: Debian's
// 3.11 everywhere but in the venv (pyenv 3.12, or KRAIT_STACK_VENV_PYTHON).
func expectedMinor(s *server) string {
	if s.group == "krait-venv" {
		if v := os.Getenv("KRAIT_STACK_VENV_PYTHON"); v != "" {
			return v
		}
		return "3.12"
	}
	return "3.11"
}

func psByPID(t *testing.T) (map[int]*psEntry, string) {
	t.Helper()
	out := kraitOK(t, "ps", "--json")
	checkKeys(t, "krait ps --json", out, "processes", psKeys)
	var doc struct {
		Processes []*psEntry `json:"processes"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("krait ps --json: %v\n%s", err, out)
	}
	m := map[int]*psEntry{}
	for _, e := range doc.Processes {
		m[e.PID] = e
	}
	return m, out
}

func deref(s *string) string {
	if s == nil {
		return "<null>"
	}
	return *s
}

// TestPs: krait ps names every process of the stack (mod_wsgi daemons
// with their group, gunicorn masters and workers with their name), with
// the Python version the server reports for itself, the Django settings
// module, the user from /proc, and busy threads: none while idle, at least
// one in a worker while a request is parked in it.
func TestPs(t *testing.T) {
	st := needStack(t)
	st.settle(t)
	ps, raw := psByPID(t)
	t.Logf("krait ps --json (idle):\n%s", raw)

	check := func(s *server, pid int, kind string, parent int, django bool) {
		t.Helper()
		e := ps[pid]
		if e == nil {
			t.Errorf("%s: PID %d (%s) missing from krait ps", s, pid, kind)
			return
		}
		if e.Error != "" {
			t.Errorf("%s: PID %d: krait ps error %q", s, pid, e.Error)
		}
		if e.Server != kind {
			t.Errorf("%s: PID %d: server %q, want %q", s, pid, e.Server, kind)
		}
		if deref(e.Group) != s.group {
			t.Errorf("%s: PID %d: group %s, want %q", s, pid, deref(e.Group), s.group)
		}
		if e.PPID != parent {
			t.Errorf("%s: PID %d: ppid %d, want %d", s, pid, e.PPID, parent)
		}
		if want := procUser(t, pid); e.User != want {
			t.Errorf("%s: PID %d: user %q, want %q (/proc)", s, pid, e.User, want)
		}
		if e.PythonVersion != s.info.Python || !strings.HasPrefix(e.PythonVersion, expectedMinor(s)+".") {
			t.Errorf("%s: PID %d: python_version %q, want %q (the server's own sys.version_info, %s.x)",
				s, pid, e.PythonVersion, s.info.Python, expectedMinor(s))
		}
		if django && deref(e.DjangoSettings) != "shopsite.settings" {
			t.Errorf("%s: PID %d: django_settings %s, want \"shopsite.settings\"", s, pid, deref(e.DjangoSettings))
		}
		if e.Threads < 1 {
			t.Errorf("%s: PID %d: threads %d", s, pid, e.Threads)
		}
		if e.BusyThreads != 0 {
			t.Errorf("%s: PID %d is idle but krait ps says busy_threads %d", s, pid, e.BusyThreads)
		}
		var title string
		if kind == "mod_wsgi daemon" {
			title = "(wsgi:" + s.group + ")"
		} else {
			title = "gunicorn: " + strings.TrimPrefix(kind, "gunicorn ") + " [" + s.group + "]"
		}
		if !strings.HasPrefix(e.Command, title) {
			t.Errorf("%s: PID %d: command %q, want it to start with %q", s, pid, e.Command, title)
		}
	}
	for _, s := range st.servers {
		for _, w := range s.workers {
			check(s, w, s.kind, s.parent, true)
		}
		if s.kind == "gunicorn worker" {
			// Masters load no application (no --preload): Django's
			// settings are not checked there.
			check(s, s.parent, "gunicorn master", 1, false)
		}
	}
	if t.Failed() {
		return
	}

	// Busy: a /slow/ request parked in PostgreSQL on every server.
	st.park(t, st.servers, "/slow/?s=3", "pg_sleep(3")
	ps, raw = psByPID(t)
	t.Logf("krait ps --json (one /slow/ request per server):\n%s", raw)
	for _, s := range st.servers {
		busy := 0
		for _, w := range s.workers {
			e := ps[w]
			if e == nil {
				t.Errorf("%s: PID %d missing from krait ps", s, w)
				continue
			}
			if e.BusyThreads > 0 {
				busy++
			}
		}
		// One request per server: its one worker (threaded servers), or
		// exactly one of gunicorn sync's two single-threaded workers.
		if busy != 1 {
			var got []int
			for _, w := range s.workers {
				if e := ps[w]; e != nil {
					got = append(got, e.BusyThreads)
				}
			}
			t.Errorf("%s: one request parked, but busy_threads per worker %v is not ≥ 1 in exactly one of %v", s, got, s.workers)
		}
		if s.kind == "gunicorn worker" {
			if e := ps[s.parent]; e != nil && e.BusyThreads != 0 {
				t.Errorf("%s: the master serves no request, but busy_threads %d", s, e.BusyThreads)
			}
		}
	}
}
