package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
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

// TestCommandHelp: krait CMD --help, krait CMD -h and krait help CMD print
// that command's help (its own usage line, not the whole usage) on stdout
// and exit 0; krait help BOGUS is a bad command line.
func TestCommandHelp(t *testing.T) {
	all := krait(t, "help").stdout
	for _, cmd := range []string{"dump", "attach", "record", "top", "cache", "ps", "requests", "dap", "version"} {
		want := krait(t, "help", cmd)
		if want.code != exitOK || !strings.HasPrefix(want.stdout, "Usage:\n  krait "+cmd) || want.stdout == all {
			t.Errorf("krait help %s: exit %d, stdout %q; want %s's own help", cmd, want.code, want.stdout, cmd)
			continue
		}
		for _, h := range []string{"--help", "-h"} {
			r := krait(t, cmd, h)
			if r.code != exitOK || r.stdout != want.stdout || r.stderr != "" {
				t.Errorf("krait %s %s: exit %d, stdout %q, stderr %q; want the help of krait help %s", cmd, h, r.code, r.stdout, r.stderr, cmd)
			}
		}
	}
	r := krait(t, "help", "bogus")
	if r.code != exitUsage {
		t.Errorf("%v\nwant exit %d", r, exitUsage)
	}
	checkOneLine(t, "krait help bogus", r.stderr)
}

// TestVersion: krait version says krait's own version and the Go version
// it was built with, and the Python versions it knows; --json too.
func TestVersion(t *testing.T) {
	r := krait(t, "version")
	if r.code != exitOK {
		t.Fatalf("%v", r)
	}
	for _, want := range []string{"krait ", "built with go1.", "Python versions: 2.7, 3.6,", "3.14"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("krait version: no %q in\n%s", want, r.stdout)
		}
	}
	j := krait(t, "version", "--json")
	var v struct {
		Version string   `json:"version"`
		Go      string   `json:"go"`
		Pythons []string `json:"pythons"`
	}
	if err := json.Unmarshal([]byte(j.stdout), &v); err != nil || v.Version == "" || !strings.HasPrefix(v.Go, "go1.") || len(v.Pythons) < 10 {
		t.Errorf("krait version --json: %v, %+v\n%s", err, v, j.stdout)
	}
}

// TestBadFlagValues: a flag given a value it cannot take is a bad command
// line (exit 2, one line), checked before krait touches any process.
func TestBadFlagValues(t *testing.T) {
	for _, args := range [][]string{
		{"attach", "1", "--method", "bogus"},
		{"attach", "1", "--interpreter", "-5"},
		{"attach", "1", "--timeout", "-1s"},
		{"attach", "1", "--attach-timeout", "0s"},
		{"attach", "1", "--timeout", "x"},
		{"requests", "--all", "--interval", "-1s"},
		{"requests", "--all", "--interval", "0s"},
		{"dump", "1", "--width", "-3"},
		{"dump", "1", "--native", "--nonblocking"},
		{"ps", "--bogus"},
		{"ps", "extra"},
		{"requests", "--pid", "1", "--core", "x"},
	} {
		r := krait(t, args...)
		what := "krait " + strings.Join(args, " ")
		if r.code != exitUsage {
			t.Errorf("%v\nwant exit %d", r, exitUsage)
		}
		checkOneLine(t, what, r.stderr)
		checkNoPanic(t, what, r.stderr)
	}
}

// djangoPython is an interpreter that has Django installed (Debian's
// python3.11 with python3-django), or the test is skipped.
func djangoPython(t *testing.T) python {
	t.Helper()
	for _, py := range pythons(t) {
		if exec.Command(py.path, "-c", "import django").Run() == nil {
			return py
		}
	}
	t.Skip("no interpreter with Django")
	return python{}
}

// djangoSite starts testdata/fixtures/django_site.py and returns it and
// its port.
func djangoSite(t *testing.T) (*proc, int) {
	t.Helper()
	py := djangoPython(t)
	p := startReady(t, py, nil, fixture("django_site.py"))
	port := 0
	for _, l := range strings.Split(p.stdout.String(), "\n") {
		if v, ok := strings.CutPrefix(l, "port "); ok {
			port, _ = strconv.Atoi(v)
		}
	}
	if port == 0 {
		t.Fatalf("django_site.py printed no port: %q", p.stdout.String())
	}
	return p, port
}

// get sends a GET with a cookie and an Authorization header in the
// background; the channel closes when it is answered.
func get(t *testing.T, port int, path string) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Cookie", "sessionid=cookie-s3cr3t")
	req.Header.Set("Authorization", "Bearer header-s3cr3t")
	go func() {
		defer close(done)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	return done
}

type requestDoc struct {
	Requests []struct {
		PID           int      `json:"pid"`
		Path          *string  `json:"path"`
		Query         *string  `json:"query"`
		View          *string  `json:"view"`
		ElapsedS      *float64 `json:"elapsed_s"`
		ElapsedSource *string  `json:"elapsed_source"`
		Client        *string  `json:"client"`
	} `json:"requests"`
}

func str(p *string) string {
	if p == nil {
		return "<null>"
	}
	return *p
}

// TestRequestsEstimate: on a server that records no start time (Django's
// threaded development server, as runserver), krait requests estimates
// each request's elapsed time from its client socket (the kernel's last
// receive on that connection, through sock_diag) and says so
// ("elapsed_source": "socket", "~" in text); a class-based view is named
// by its class, not View.as_view.<locals>.view; a query-string value that
// looks secret is <redacted> unless --show-secrets.
// TestRequestsAllTraced: krait requests --all reads a process that
// another tracer holds (here krait record, which keeps its threads seized)
// without pausing it, says so, and shows its requests, instead of
// counting it as a process it may not read.
func TestRequestsAllTraced(t *testing.T) {
	p, port := djangoSite(t)
	get(t, port, "/slow/?s=6")
	out := filepath.Join(t.TempDir(), "profile.txt")
	rec := exec.Command(kraitBin, "record", "--pid", strconv.Itoa(p.pid()), "--duration", "30", "--format", "raw", "-o", out)
	if err := rec.Start(); err != nil {
		t.Fatal(err)
	}
	record(rec.Process.Pid)
	t.Cleanup(func() { rec.Process.Signal(syscall.SIGINT); rec.Wait() })
	deadline := time.Now().Add(15 * time.Second)
	for tracerOf(p.pid()) != rec.Process.Pid {
		if time.Now().After(deadline) {
			t.Fatalf("krait record did not hold process %d", p.pid())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	r := krait(t, "requests", "--all")
	want := fmt.Sprintf("(process %d is traced by process %d: krait read it without pausing it)", p.pid(), rec.Process.Pid)
	if !strings.Contains(r.stdout, want) || !regexp.MustCompile(`GET\s+/slow/\?s=6\s+__main__\.slow`).MatchString(r.stdout) {
		t.Errorf("krait requests --all: want %q and /slow/ in __main__.slow:\n%s\nstderr: %s", want, r.stdout, r.stderr)
	}
	if strings.Contains(r.stderr, strconv.Itoa(p.pid())) {
		t.Errorf("krait requests --all named the traced process as unreadable: %s", r.stderr)
	}
	// Named with another process, it is read the same way (several
	// processes are a survey), and the other is read paused as usual.
	other := startCounter(t, pickPython(t), "")
	two := krait(t, "requests", "--pid", strconv.Itoa(other.pid()), "--pid", strconv.Itoa(p.pid()))
	if two.code != 0 || !strings.Contains(two.stdout, want) || strings.Contains(two.stdout, fmt.Sprintf("process %d is traced", other.pid())) {
		t.Errorf("krait requests --pid OTHER --pid TRACED: want exit 0 and %q:\n%v", want, two)
	}
	// Named alone, it is refused, with the tracer named.
	one := krait(t, "requests", "--pid", strconv.Itoa(p.pid()))
	if one.code == 0 || !strings.Contains(one.stderr, fmt.Sprintf("already traced by process %d", rec.Process.Pid)) {
		t.Errorf("krait requests --pid of a traced process: %v", one)
	}
}

// tracerOf is the process tracing pid (its TracerPid's process), 0 if none.
func tracerOf(pid int) int {
	return tgid(tracerPids(pid)[pid])
}

func TestRequestsEstimate(t *testing.T) {
	p, port := djangoSite(t)
	start := time.Now()
	fn := get(t, port, "/slow/?s=4&token=qs-s3cr3t")
	cbv := get(t, port, "/cbv/?s=4")
	time.Sleep(1500 * time.Millisecond)
	pid := strconv.Itoa(p.pid())
	r := krait(t, "requests", "--pid", pid, "--json")
	upper := time.Since(start).Seconds()
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	var doc requestDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	views := map[string]bool{}
	for _, q := range doc.Requests {
		views[str(q.View)] = true
		if q.ElapsedS == nil || str(q.ElapsedSource) != "socket" || *q.ElapsedS < 1.2 || *q.ElapsedS > upper+0.1 {
			t.Errorf("%s: elapsed_s %v source %s, want an estimate from the socket between 1.2 and %.1f s", str(q.Path), q.ElapsedS, str(q.ElapsedSource), upper)
		}
		if q.Client == nil || !strings.HasPrefix(*q.Client, "127.0.0.1:") {
			t.Errorf("%s: client %s, want 127.0.0.1:PORT", str(q.Path), str(q.Client))
		}
		if str(q.Path) == "/slow/" && str(q.Query) != "s=4&token=<redacted>" {
			t.Errorf("/slow/: query %q, want the token redacted", str(q.Query))
		}
	}
	if len(doc.Requests) != 2 || !views["__main__.slow"] || !views["__main__.SlowView"] {
		t.Errorf("krait requests: want /slow/ in __main__.slow and /cbv/ in __main__.SlowView; got\n%s", r.stdout)
	}
	text := krait(t, "requests", "--pid", pid, "--show-secrets")
	if !regexp.MustCompile(`(?m)~\d+\.\ds\s+GET\s+/slow/\?s=4&token=qs-s3cr3t\s+__main__\.slow`).MatchString(text.stdout) ||
		!strings.Contains(text.stdout, "estimated") {
		t.Errorf("krait requests --show-secrets (text): want ~N.Ns, the token shown and a note on estimates:\n%s", text.stdout)
	}
	<-fn
	<-cbv
}

// TestDumpSecrets: dump --locals shows values that look secret — a local
// named password, a dict's "PASSWORD", Django's SECRET_KEY and the
// database password in settings, the request's Cookie and Authorization
// headers in request.META, os.environ's *_TOKEN — as <redacted>, in text
// and JSON; --show-secrets shows them.
func TestDumpSecrets(t *testing.T) {
	p, port := djangoSite(t)
	done := get(t, port, "/slow/?s=4")
	time.Sleep(time.Second)
	pid := strconv.Itoa(p.pid())
	secrets := []string{"local-s3cr3t", "dict-s3cr3t", "settings-s3cr3t", "dbpassword-s3cr3t", "cookie-s3cr3t", "header-s3cr3t", "envtoken-s3cr3t"}
	for _, args := range [][]string{{"dump", "--pid", pid, "--locals"}, {"dump", "--pid", pid, "--locals", "--json"}} {
		r := krait(t, args...)
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		for _, s := range secrets {
			if strings.Contains(r.stdout, s) {
				t.Errorf("krait %s: shows %q", strings.Join(args, " "), s)
			}
		}
		if !strings.Contains(r.stdout, "<redacted>") && !strings.Contains(r.stdout, `\u003credacted\u003e`) {
			t.Errorf("krait %s: no <redacted> in the output", strings.Join(args, " "))
		}
		shown := krait(t, append(args, "--show-secrets")...)
		for _, s := range []string{"local-s3cr3t", "dict-s3cr3t"} {
			if !strings.Contains(shown.stdout, s) {
				t.Errorf("krait %s --show-secrets: does not show %q", strings.Join(args, " "), s)
			}
		}
	}
	<-done
}

// TestPauseNote: when a dump or requests pause holds the process longer
// than 50 ms, the text output says how long; a short one says nothing.
func TestPauseNote(t *testing.T) {
	py := pickPython(t)
	p := startCounter(t, py, "")
	pid := strconv.Itoa(p.pid())
	held := regexp.MustCompile(`(?m)^Process held (\d+\.\d)ms while krait read it$`)
	r := krait(t, "dump", "--pid", pid, "--debug-hold-pause", "120ms")
	if m := held.FindStringSubmatch(r.stdout); r.code != 0 || m == nil {
		t.Errorf("krait dump holding 120 ms: no note of the pause:\n%s", r.stdout)
	} else if ms, _ := strconv.ParseFloat(m[1], 64); ms < 120 || ms > 2000 {
		t.Errorf("krait dump holding 120 ms: says %s ms", m[1])
	}
	if r := krait(t, "dump", "--pid", pid); held.MatchString(r.stdout) {
		t.Errorf("krait dump (a short pause): notes the pause:\n%s", r.stdout)
	}
	r = krait(t, "requests", "--pid", pid, "--debug-hold-pause", "120ms")
	if !regexp.MustCompile(`(?m)^\(process \d+ was held \d+(\.\d+)?ms while krait read it\)$`).MatchString(r.stdout) {
		t.Errorf("krait requests holding 120 ms: no note of the pause:\n%s", r.stdout)
	}
}

// TestDumpSeveralPIDs: several --pid are dumped in turn (text: one after
// the other; JSON: one document per line), not just the last; one that
// fails is reported and the others still dumped, with the failure's exit
// status.
func TestDumpSeveralPIDs(t *testing.T) {
	py := pickPython(t)
	a, b := startCounter(t, py, ""), startCounter(t, py, "")
	r := krait(t, "dump", "--pid", strconv.Itoa(a.pid()), "-p", strconv.Itoa(b.pid()))
	for _, p := range []*proc{a, b} {
		if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("Process %d:", p.pid())) {
			t.Errorf("krait dump --pid %d --pid %d: process %d missing (exit %d):\n%s", a.pid(), b.pid(), p.pid(), r.code, r.stdout)
		}
	}
	r = krait(t, "dump", "--pid", strconv.Itoa(a.pid()), "--pid", strconv.Itoa(b.pid()), "--json")
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	var got []int
	for {
		var doc struct {
			PID int `json:"pid"`
		}
		if err := dec.Decode(&doc); err != nil {
			break
		}
		got = append(got, doc.PID)
	}
	if fmt.Sprint(got) != fmt.Sprint([]int{a.pid(), b.pid()}) {
		t.Errorf("krait dump --json with two --pid: documents for %v, want %v:\n%s", got, []int{a.pid(), b.pid()}, r.stdout)
	}
	gone := unusedPID(t)
	r = krait(t, "dump", "--pid", strconv.Itoa(gone), "--pid", strconv.Itoa(a.pid()))
	if r.code != exitNoProcess || !strings.Contains(r.stdout, fmt.Sprintf("Process %d:", a.pid())) {
		t.Errorf("krait dump with a gone pid first: exit %d (want %d) and the other dumped:\n%s\n%s", r.code, exitNoProcess, r.stdout, r.stderr)
	}
	checkOneLine(t, "krait dump with a gone pid", r.stderr)
}

// TestRequestsCore: krait requests --core reads the requests a core file
// of a server was serving (gcore taken while two were in flight).
func TestRequestsCore(t *testing.T) {
	p, port := djangoSite(t)
	fn := get(t, port, "/slow/?s=3")
	cbv := get(t, port, "/cbv/?s=3")
	time.Sleep(time.Second)
	core := gcore(t, p.pid())
	r := krait(t, "requests", "--core", core, "--json")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	var doc requestDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	views := map[string]bool{}
	for _, q := range doc.Requests {
		views[str(q.Path)+" "+str(q.View)] = q.PID == p.pid()
	}
	if !views["/slow/ __main__.slow"] || !views["/cbv/ __main__.SlowView"] {
		t.Errorf("krait requests --core: want /slow/ and /cbv/ of process %d:\n%s", p.pid(), r.stdout)
	}
	text := krait(t, "requests", "--core", core)
	if text.code != 0 || !strings.Contains(text.stdout, "Core file "+core) || !strings.Contains(text.stdout, "/cbv/") {
		t.Errorf("krait requests --core (text): %v\n%s", text, text.stdout)
	}
	<-fn
	<-cbv
}

type psDoc struct {
	Processes []struct {
		PID     int    `json:"pid"`
		PPID    int    `json:"ppid"`
		Server  string `json:"server"`
		Command string `json:"command"`
		Error   string `json:"error"`
	} `json:"processes"`
}

func psJSON(t *testing.T) psDoc {
	t.Helper()
	r := krait(t, "ps", "--json")
	var doc psDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("krait ps --json: %v (exit %d)\n%s", err, r.code, r.stdout)
	}
	return doc
}

// TestPsServers: krait ps names the processes of uvicorn and hypercorn
// (a supervisor and its spawned workers), daphne, celery (a worker, its
// pool child, beat) and uWSGI (master and worker), from their real
// command lines (testdata/fixtures/server_like.py makes them); PIDs come
// in numeric order; a command line holding a newline or a tab stays on
// one line, escaped.
func TestPsServers(t *testing.T) {
	py := pickPython(t)
	dir := t.TempDir()
	src, err := os.ReadFile(fixture("server_like.py"))
	if err != nil {
		t.Fatal(err)
	}
	script := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, src, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// uWSGI embeds Python in its own executable: a copy of the
	// interpreter named uwsgi.
	exe, err := os.ReadFile(py.path)
	if err != nil {
		t.Fatal(err)
	}
	uwsgi := filepath.Join(dir, "uwsgi")
	if err := os.WriteFile(uwsgi, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	home := []string{"PYTHONHOME=" + filepath.Dir(filepath.Dir(py.path))}
	type tree struct {
		p            *proc
		parent, kids string
	}
	trees := []tree{
		{startReady(t, py, nil, script("uvicorn"), "app:app", "--workers", "2"), "uvicorn master", "uvicorn worker"},
		{startReady(t, py, nil, script("hypercorn"), "app:app", "-w", "2"), "hypercorn master", "hypercorn worker"},
		{startReady(t, py, nil, script("daphne"), "proj.asgi:application"), "daphne", ""},
		{startReady(t, py, nil, script("celery"), "-A", "proj", "worker", "-l", "info"), "celery worker", "celery pool worker"},
		{startReady(t, py, nil, script("celery"), "-A", "proj", "beat"), "celery beat", ""},
	}
	u := start(t, home, uwsgi, fixture("server_like.py"), "uwsgi")
	if !u.waitFor(30*time.Second, func() bool { _, last := u.stdout.Lines(); return last == "ready" }) {
		t.Fatalf("the uwsgi-named interpreter did not get ready: %s", u.stderr)
	}
	trees = append(trees, tree{u, "uwsgi master", "uwsgi worker"})
	odd := startReady(t, py, nil, fixture("server_like.py"), "line one\nline two\tafter a tab")

	doc := psJSON(t)
	byPID := map[int]string{}
	kids := map[int][]string{}
	var order []int
	for _, e := range doc.Processes {
		byPID[e.PID] = e.Server
		order = append(order, e.PID)
		if strings.Contains(e.Command, "resource_tracker") {
			// multiprocessing's spawn starts this helper beside the
			// workers.
			if e.Server != "multiprocessing resource tracker" {
				t.Errorf("process %d (%q): server %q, want multiprocessing resource tracker", e.PID, e.Command, e.Server)
			}
			continue
		}
		kids[e.PPID] = append(kids[e.PPID], e.Server)
	}
	for _, tr := range trees {
		if got := byPID[tr.p.pid()]; got != tr.parent {
			t.Errorf("process %d (%s): server %q, want %q", tr.p.pid(), tr.parent, got, tr.parent)
		}
		if tr.kids == "" {
			continue
		}
		if len(kids[tr.p.pid()]) == 0 {
			t.Errorf("%s %d: no children in krait ps", tr.parent, tr.p.pid())
		}
		for _, k := range kids[tr.p.pid()] {
			if k != tr.kids {
				t.Errorf("a child of %s %d: server %q, want %q", tr.parent, tr.p.pid(), k, tr.kids)
			}
		}
	}
	if !sort.IntsAreSorted(order) {
		t.Errorf("krait ps --json: PIDs not in numeric order: %v", order)
	}
	text := krait(t, "ps")
	var textPIDs []int
	oddLines := 0
	for _, l := range strings.Split(strings.TrimRight(text.stdout, "\n"), "\n")[1:] {
		f := strings.Fields(l)
		n, err := 0, fmt.Errorf("empty")
		if len(f) > 0 {
			n, err = strconv.Atoi(f[0])
		}
		if err != nil {
			t.Errorf("krait ps: a line that does not start with a PID: %q", l)
			continue
		}
		textPIDs = append(textPIDs, n)
		if n == odd.pid() {
			oddLines++
			if !strings.Contains(l, `line one\nline two\tafter a tab`) {
				t.Errorf("krait ps: the newline and tab are not escaped: %q", l)
			}
		}
	}
	if oddLines != 1 || !sort.IntsAreSorted(textPIDs) {
		t.Errorf("krait ps: want one line for %d and PIDs in numeric order:\n%s", odd.pid(), text.stdout)
	}
}

// TestNotRoot: krait ps and krait requests run as nobody, with a
// root-owned Python running, name the processes they could not read on
// stderr (one line, with advice) and exit 4 instead of printing an empty
// table with exit 0. The advice for a root-owned target says whose it is
// and mentions kernel.yama.ptrace_scope only where the kernel has Yama.
func TestNotRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs krait as nobody against a root-owned process")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed: %v", err)
	}
	asNobody := []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}
	p := startCounter(t, pickPython(t), "")
	pid := strconv.Itoa(p.pid())
	_, yama := os.Stat("/proc/sys/kernel/yama/ptrace_scope")
	for _, args := range [][]string{{"ps"}, {"ps", "--json"}, {"requests", "--all"}, {"requests", "--all", "--json"}, {"requests", "--pid", pid, "--pid", pid}} {
		r := kraitAs(t, asNobody, args...)
		what := "as nobody: krait " + strings.Join(args, " ")
		if r.code != exitPermission {
			t.Errorf("%s: exit %d, want %d; stderr: %s", what, r.code, exitPermission, r.stderr)
		}
		checkOneLine(t, what, r.stderr)
		checkNoPanic(t, what, r.stderr)
		// A survey of the host also finds other packages' processes
		// (test/django's stack, www-data's and root's): the line names the
		// first 8 by PID and the owners of all.
		survey := args[0] == "ps" || args[1] == "--all"
		named := strings.Contains(r.stderr, pid+" (") || survey && regexp.MustCompile(`, and \d+ more — `).MatchString(r.stderr)
		owner := regexp.MustCompile(`(it belongs|they belong) to ([^:]*, )?root(, [^:]*)?:`).MatchString(r.stderr)
		if !strings.Contains(r.stderr, "could not be read") || !named || !owner {
			t.Errorf("%s: stderr does not name process %s and its owner: %q", what, pid, r.stderr)
		}
		if strings.Contains(r.stderr, "ptrace_scope") != (yama == nil) {
			t.Errorf("%s: mentions ptrace_scope: %v, Yama present: %v: %q", what, strings.Contains(r.stderr, "ptrace_scope"), yama == nil, r.stderr)
		}
	}
	r := kraitAs(t, asNobody, "dump", "--pid", pid)
	if r.code != exitPermission || !strings.Contains(r.stderr, "CAP_SYS_PTRACE") || strings.Contains(r.stderr, "ptrace_scope") != (yama == nil) {
		t.Errorf("as nobody: krait dump: %v", r)
	}
}

// TestWatchRedraws: krait requests --watch at a terminal redraws the
// table in place (cursor home, clear) on each refresh instead of
// scrolling; into a pipe it appends, without escape sequences.
func TestWatchRedraws(t *testing.T) {
	p := startCounter(t, pickPython(t), "")
	args := []string{"requests", "--pid", strconv.Itoa(p.pid()), "--watch", "--interval", "200ms", "--nonblocking"}
	cmd := exec.Command(kraitBin, args...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var out strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	time.Sleep(1500 * time.Millisecond)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	tty.Close()
	<-done
	if n := strings.Count(out.String(), "\x1b[H\x1b[2J"); n < 3 || strings.Count(out.String(), "PID") < 3 {
		t.Errorf("krait %s at a terminal: %d redraws in 1.5 s, want at least 3:\n%q", strings.Join(args, " "), n, out.String())
	}
	piped := exec.Command(kraitBin, args...)
	var buf bytes.Buffer
	piped.Stdout = &buf
	if err := piped.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	_ = piped.Process.Kill()
	_ = piped.Wait()
	if strings.Contains(buf.String(), "\x1b") || strings.Count(buf.String(), "PID") < 2 {
		t.Errorf("krait %s into a pipe: want plain refreshes one after the other:\n%q", strings.Join(args, " "), buf.String())
	}
}

// TestCoreOtherBuild: a core read against a libpython that is not the
// build the process ran (upgraded on disk since, or a core from another
// machine: here --sysroot holds another version's libpython at the
// path) is refused in one line naming both build ids and --sysroot,
// instead of "the Python runtime has no interpreter" from reading the
// runtime at the wrong address.
func TestCoreOtherBuild(t *testing.T) {
	libOf := func(pid int) string {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
		for _, l := range strings.Split(string(data), "\n") {
			if f := strings.Fields(l); len(f) >= 6 && strings.Contains(filepath.Base(f[5]), "libpython") {
				return f[5]
			}
		}
		return ""
	}
	var target *proc
	var lib, other string
	for _, py := range pythons(t) {
		if strings.HasPrefix(py.name, "system") {
			continue
		}
		libs, _ := filepath.Glob(filepath.Join(filepath.Dir(filepath.Dir(py.path)), "lib", "libpython*.so.1.0"))
		if len(libs) == 0 {
			continue
		}
		if target == nil {
			p := startCounter(t, py, "")
			if l := libOf(p.pid()); l != "" {
				target, lib = p, l
				continue
			}
		}
		if target != nil && libs[0] != lib {
			other = libs[0]
			break
		}
	}
	if target == nil || other == "" {
		t.Skip("needs two pyenv builds with a shared libpython")
	}
	core := gcore(t, target.pid())
	sysroot := t.TempDir()
	dst := filepath.Join(sysroot, lib)
	data, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := krait(t, "dump", "--core", core, "--sysroot", sysroot)
	what := "krait dump --core with another build's libpython in --sysroot"
	checkOneLine(t, what, r.stderr)
	checkNoPanic(t, what, r.stderr)
	if r.code != 1 || !strings.Contains(r.stderr, "build id") || !strings.Contains(r.stderr, "--sysroot") || !strings.Contains(r.stderr, dst) {
		t.Errorf("%s: %v\nwant exit 1 naming %s, the build ids and --sysroot", what, r, dst)
	}
	if ok := krait(t, "dump", "--core", core); ok.code != 0 {
		t.Errorf("the same core with the right files: %v", ok)
	}
}
