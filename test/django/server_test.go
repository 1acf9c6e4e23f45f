package djangoe2e

import (
	"encoding/json"
	"fmt"
	"net"
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
)

// TestAttachServer attaches to a whole server by its master's PID — the
// gunicorn sync arbiter (two workers) and the Apache parent (the daemons
// of groups krait-main and krait-sub) — sets one breakpoint in the orders
// view, and drives requests: the first stops in whichever worker took it
// (the stop line names it); a second request, taken by the other worker
// while the first is examined, stops there too and is queued; continue
// resumes the first and reports the second. Both requests then complete.
func TestAttachServer(t *testing.T) {
	st := needStack(t)
	t.Run("gunicorn-sync", func(t *testing.T) {
		srv := st.server(t, "krait-sync")
		testAttachServer(t, st, srv.parent, srv.workers, srv.url, srv.url, st.env["KRAIT_DJANGO_DIR"],
			`\[gunicorn timeout 700s: [^\n]*krait keeps the heartbeat`)
	})
	t.Run("apache", func(t *testing.T) {
		main, sub := st.server(t, "krait-main"), st.server(t, "krait-sub")
		workers := append(append([]int{}, main.workers...), sub.workers...)
		// The stack's krait-main group has request-timeout=900; Apache's
		// Timeout (600) is mod_wsgi's socket-timeout.
		testAttachServer(t, st, main.parent, workers, main.url, sub.url, st.env["KRAIT_APACHE_APP_DIR"],
			`(?s)warning: mod_wsgi request-timeout 900s will fire by \d\d:\d\d:\d\d at the latest.*warning: mod_wsgi socket-timeout 600s`)
	})
}

var stopLine = regexp.MustCompile(`\[worker (\d+)\] Breakpoint (\d+), orders \(request=[^\n]*\) at \S*shop/views\.py:(\d+)`)

func testAttachServer(t *testing.T, st *stack, master int, workers []int, url1, url2, appDir, watchdogs string) {
	rowsLine := findLine(t, filepath.Join(appDir, "shop", "views.py"), "def orders(", "rows = list(queryset[")
	st.settle(t)
	s := attach(t, master)
	t.Cleanup(func() { _ = s.Cmd.Process.Kill() })
	out := s.do("info inferiors")
	for _, w := range workers {
		mustMatch(t, "info inferiors", fmt.Sprintf(`(?m)^[ *] \d+\s+process %d\s`, w), out)
	}
	if strings.Contains(out, fmt.Sprintf("process %d ", master)) {
		t.Errorf("the master itself is an inferior:\n%s", out)
	}
	out = s.do(fmt.Sprintf("break shop/views.py:%d", rowsLine))
	mustMatch(t, "break", fmt.Sprintf(`Breakpoint 1 at \S*shop/views\.py:%d`, rowsLine), out)

	first := getAsync(t, url1+"/orders/?limit=3")
	out = s.do("continue")
	m := stopLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no stop line naming the worker:\n%s", short(out))
	}
	mustMatch(t, "watchdogs under the stop line", watchdogs, out)
	w1, _ := strconv.Atoi(m[1])
	if !contains(workers, w1) || m[3] != strconv.Itoa(rowsLine) {
		t.Fatalf("stopped in process %s at line %s; workers %v, line %d", m[1], m[3], workers, rowsLine)
	}
	mustMatch(t, "print limit", `^\$1 = 3\.0$`, strings.TrimSpace(s.do("print limit")))
	// The process examined is the stopped one.
	mustMatch(t, "print os.getpid()", fmt.Sprintf(`^\$2 = %d$`, w1), strings.TrimSpace(s.do("print __import__('os').getpid()")))

	// A second request: the other worker takes it (the first is busy) and
	// stops as well; its stop waits while the first is examined.
	second := getAsync(t, url2+"/orders/?limit=4")
	var w2 int
	deadline := time.Now().Add(60 * time.Second)
	for w2 == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the second request stopped in no other worker within 60 s:\n%s", short(out))
		}
		time.Sleep(300 * time.Millisecond)
		out = s.do("info threads")
		for _, w := range workers {
			if w != w1 && regexp.MustCompile(fmt.Sprintf(`process %d Thread \S+ \(LWP \d+\)[^\n]* stopped: orders at`, w)).MatchString(out) {
				w2 = w
			}
		}
	}
	mustMatch(t, "info threads", fmt.Sprintf(`process %d Thread \S+ \(LWP \d+\)[^\n]* stopped: orders at`, w1), out)
	mustMatch(t, "info inferiors", fmt.Sprintf(`(?m)process %d\s.*\s1$`, w2), s.do("info inferiors"))

	out = s.do("continue")
	m = stopLine.FindStringSubmatch(out)
	if m == nil || m[1] != strconv.Itoa(w2) {
		t.Fatalf("continue did not report the stop in worker %d:\n%s", w2, short(out))
	}
	mustMatch(t, "print limit", `^\$\d+ = 4\.0$`, strings.TrimSpace(s.do("print limit")))
	if body := first.wait(t, 30*time.Second); !strings.Contains(body, "<h1>3 orders</h1>") {
		t.Errorf("the first request answered %q", short(body))
	}
	s.do("delete")
	out = s.detach() // lets the second request go
	for _, w := range workers {
		mustMatch(t, "detach", fmt.Sprintf(`\[Inferior \d+ \(process %d\) detached\]`, w), out)
	}
	if body := second.wait(t, 30*time.Second); !strings.Contains(body, "<h1>4 orders</h1>") {
		t.Errorf("the second request answered %q", short(body))
	}
}

func contains(list []int, x int) bool {
	for _, v := range list {
		if v == x {
			return true
		}
	}
	return false
}

// TestAttachServerNewWorker: a worker killed while krait is attached to
// its server's master is announced as exited; the master's replacement is
// announced, attached and given the breakpoint, and stops at it. For a
// gunicorn sync arbiter (two workers) and for the Apache parent (whose
// mod_wsgi process manager restarts the krait-main daemon).
func TestAttachServerNewWorker(t *testing.T) {
	st := needStack(t)
	t.Run("gunicorn-sync", func(t *testing.T) {
		srv := st.server(t, "krait-sync")
		testNewWorker(t, st, srv, srv.workers[0], st.env["KRAIT_DJANGO_DIR"], "gunicorn: worker")
	})
	t.Run("apache", func(t *testing.T) {
		srv := st.server(t, "krait-main")
		testNewWorker(t, st, srv, srv.workers[0], st.env["KRAIT_APACHE_APP_DIR"], "(wsgi:krait-main)")
	})
}

func testNewWorker(t *testing.T, st *stack, srv *server, victim int, appDir, title string) {
	rowsLine := findLine(t, filepath.Join(appDir, "shop", "views.py"), "def orders(", "rows = list(queryset[")
	st.settle(t)
	s := attach(t, srv.parent)
	t.Cleanup(func() { _ = s.Cmd.Process.Kill() })
	s.do(fmt.Sprintf("break shop/views.py:%d", rowsLine))
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The stack's record of the workers is now stale; later tests must
	// see the new one.
	t.Cleanup(func() {
		deadline := time.Now().Add(30 * time.Second)
		for {
			now := childrenTitled(srv.parent, title)
			if len(now) == len(srv.workers) || time.Now().After(deadline) {
				srv.workers = now
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	var newPID int
	var seen []string
	deadline := time.Now().Add(60 * time.Second)
	for newPID == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no new worker announced within 60 s:\n%s", short(strings.Join(seen, "\n")))
		}
		time.Sleep(200 * time.Millisecond)
		out := s.do("info inferiors")
		seen = append(seen, out)
		if m := regexp.MustCompile(`\[New worker (\d+)\]`).FindStringSubmatch(out); m != nil {
			newPID, _ = strconv.Atoi(m[1])
		}
	}
	all := strings.Join(seen, "\n")
	mustMatch(t, "exit", fmt.Sprintf(`\[Worker %d exited\]`, victim), all)
	if !contains(childrenTitled(srv.parent, title), newPID) {
		t.Errorf("the new worker %d is not one of %s's %q children", newPID, srv, title)
	}
	// A request stops in one of the workers; if not the new one, that
	// worker is now busy, so the next request goes to the new one (the
	// new worker selected, continue resumes nothing and waits). A mod_wsgi
	// daemon imports the views at its first request, in a thread whose
	// state Python made after krait attached: that first request may not
	// stop (see the report), so requests are sent until one does.
	out := continueUntilStop(t, s, srv.url+"/orders/?limit=2")
	m := stopLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no stop:\n%s", short(out))
	}
	if m[1] != strconv.Itoa(newPID) {
		num := mustMatch(t, "info inferiors", fmt.Sprintf(`(?m)^[ *] (\d+)\s+process %d\s`, newPID), s.do("info inferiors"))
		if num == nil {
			t.FailNow()
		}
		s.do("inferior " + num[1])
		out = continueUntilStop(t, s, srv.url+"/orders/?limit=2")
		m = stopLine.FindStringSubmatch(out)
		if m == nil || m[1] != strconv.Itoa(newPID) {
			t.Fatalf("the new worker %d did not stop at the breakpoint:\n%s", newPID, short(out))
		}
	}
	s.do("delete")
	s.detach()
}

// continueUntilStop sends continue, then a request to url every 2 s until
// a stop is reported (60 s at most), and returns continue's output.
func continueUntilStop(t *testing.T, s *session, url string) string {
	t.Helper()
	marker := s.Send("continue")
	var got []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("no stop within 60 s of requests:\n%s", short(strings.Join(got, "\n")))
		}
		getAsync(t, url)
		tick := time.After(2 * time.Second)
	read:
		for {
			select {
			case l, ok := <-s.Lines:
				if !ok {
					t.Fatalf("krait ended:\n%s", short(strings.Join(got, "\n")))
				}
				got = append(got, l)
				if stopLine.MatchString(l) {
					out := strings.Join(got, "\n") + "\n" + s.Output("continue", marker, 60*time.Second)
					t.Logf("(krait) continue, requests until a stop\n%s", short(out))
					return out
				}
			case <-tick:
				break read
			}
		}
	}
}

// childrenTitled lists parent's children whose process title starts with
// title.
func childrenTitled(parent int, title string) []int {
	var out []int
	for _, pid := range currentWorkers(nil, parent) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err == nil && strings.HasPrefix(string(data), title) {
			out = append(out, pid)
		}
	}
	return out
}

// currentWorkers lists a gunicorn master's workers now.
func currentWorkers(t *testing.T, master int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(master) {
			out = append(out, pid)
		}
	}
	return out
}

// startSyncGunicorn starts a gunicorn of the test's own with one sync
// worker (--timeout timeout) serving the shop, and waits until it answers;
// it is stopped at cleanup.
func startSyncGunicorn(t *testing.T, st *stack, name string, timeout int) (master, worker int, url string) {
	t.Helper()
	dir := st.env["KRAIT_DJANGO_DIR"]
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	tmp := t.TempDir()
	c := exec.Command("/usr/bin/python3.11", "-m", "gunicorn", "--bind", fmt.Sprintf("127.0.0.1:%d", port),
		"--name", name, "--worker-class", "sync", "--workers", "1", "--timeout", strconv.Itoa(timeout),
		"--error-logfile", filepath.Join(tmp, "error.log"), "shopsite.wsgi:application")
	c.Dir = dir
	c.Env = append(os.Environ(), "PYTHONPATH="+dir, "KRAIT_APP_NAME="+name)
	for k, v := range st.env {
		if strings.HasPrefix(k, "KRAIT_PG_") || strings.HasPrefix(k, "KRAIT_MEMCACHED_") {
			c.Env = append(c.Env, k+"="+v)
		}
	}
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	url = fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if body, err := get(url+"/health/", 5*time.Second); err == nil && body == "ok\n" {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(tmp, "error.log"))
			t.Fatalf("the test's gunicorn did not answer within 60 s:\n%s", log)
		}
		time.Sleep(250 * time.Millisecond)
	}
	workers := currentWorkers(t, c.Process.Pid)
	if len(workers) != 1 {
		t.Fatalf("want one worker, have %v", workers)
	}
	return c.Process.Pid, workers[0], url
}

// TestAttachSyncHeartbeat: a gunicorn sync worker (--timeout 5) held at a
// breakpoint for twice its timeout is not killed by its arbiter (krait
// keeps its heartbeat), and serves again once continued.
func TestAttachSyncHeartbeat(t *testing.T) {
	st := needStack(t)
	dir := st.env["KRAIT_DJANGO_DIR"]
	master, worker, url := startSyncGunicorn(t, st, "krait-heartbeat", 5)
	rowsLine := findLine(t, filepath.Join(dir, "shop", "views.py"), "def orders(", "rows = list(queryset[")
	s := attach(t, master)
	t.Cleanup(func() { _ = s.Cmd.Process.Kill() })
	s.do(fmt.Sprintf("break shop/views.py:%d", rowsLine))
	req := getAsync(t, url+"/orders/?limit=2")
	out := s.do("continue")
	mustMatch(t, "stop", fmt.Sprintf(`\[worker %d\] Breakpoint 1, orders`, worker), out)
	mustMatch(t, "stop", `\[gunicorn timeout 5s: [^\n]*krait keeps the heartbeat`, out)
	// Held for twice the timeout. (The arbiter checks every second or so.)
	time.Sleep(10 * time.Second)
	if now := currentWorkers(t, master); len(now) != 1 || now[0] != worker {
		t.Fatalf("the stopped worker %d was replaced: workers now %v", worker, now)
	}
	mustMatch(t, "print limit", `^\$1 = 2\.0$`, strings.TrimSpace(s.do("print limit")))
	s.do("delete")
	s.detach() // lets the request go
	if body := req.wait(t, 30*time.Second); !strings.Contains(body, "<h1>2 orders</h1>") {
		t.Errorf("the held request answered %q", short(body))
	}
	if body, err := get(url+"/orders/?limit=1", 20*time.Second); err != nil || !strings.Contains(body, "<h1>1 orders</h1>") {
		t.Errorf("after detach: %v %q", err, short(body))
	}
	if now := currentWorkers(t, master); len(now) != 1 || now[0] != worker {
		t.Errorf("the worker %d was replaced: workers now %v", worker, now)
	}
}

// TestAttachSyncBusy: a gunicorn sync worker busy in a CPU-bound view (no
// system call, no lock, no other thread: nothing the ptrace way can enter
// through) is entered through CPython's pending calls, at the view's next
// eval-breaker check: the attach line says so, info threads shows the
// view running; after detach the request completes, the worker serves on
// and is not replaced, and nothing of krait's is left in its /tmp.
func TestAttachSyncBusy(t *testing.T) {
	st := needStack(t)
	master, worker, url := startSyncGunicorn(t, st, "krait-busy", 60)
	req := getAsync(t, url+"/cpu/?ms=8000")
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r := krait(t, "dump", "--pid", strconv.Itoa(worker))
		if r.code == 0 && strings.Contains(r.stdout, "cpu (") {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the worker did not start the view: %v", r)
		}
	}
	r := krait(t, "attach", strconv.Itoa(worker), "--attach-timeout", "30s", "--batch", "-ex", "info threads")
	if r.code != 0 {
		t.Fatalf("%v\n%s", r, r.stdout)
	}
	mustMatch(t, "attach line", `entered via a pending call \(.*entered at the interpreter's next safe point \(pending call\)\)`, r.stdout)
	mustMatch(t, "info threads", `"MainThread"\s+running: cpu at .*views\.py:\d+`, r.stdout)
	if body := req.wait(t, 60*time.Second); !regexp.MustCompile(`^\d+ [0-9a-f]{16}\n$`).MatchString(body) {
		t.Errorf("the busy request answered %q", short(body))
	}
	if body, err := get(url+"/health/", 20*time.Second); err != nil || body != "ok\n" {
		t.Errorf("after detach: %v %q", err, short(body))
	}
	if now := currentWorkers(t, master); len(now) != 1 || now[0] != worker {
		t.Errorf("the worker %d was replaced: workers now %v", worker, now)
	}
	for end := time.Now().Add(5 * time.Second); len(agentDirsFor(worker)) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Errorf("left in the worker's /tmp: %v", agentDirsFor(worker))
			break
		}
	}
}

// agentDirsFor lists the agent directories in process pid's /tmp whose
// owner file names pid as the target.
func agentDirsFor(pid int) []string {
	var out []string
	for d := range kraitDirs(pid) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s/owner", pid, d))
		var o struct{ PID int }
		if err == nil && json.Unmarshal(data, &o) == nil && o.PID == pid {
			out = append(out, d)
		}
	}
	return out
}

// TestServerPID: krait dump and krait requests take a server's master for
// its workers: the Apache parent's dump is its mod_wsgi daemons', and a
// request parked in a gunicorn sync worker is found through the arbiter's
// PID.
func TestServerPID(t *testing.T) {
	st := needStack(t)
	main, sub := st.server(t, "krait-main"), st.server(t, "krait-sub")
	out := kraitOK(t, "dump", "--pid", strconv.Itoa(main.parent), "--json")
	var got []int
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var d dumpResult
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("krait dump --json: %v\n%s", err, short(out))
		}
		got = append(got, d.PID)
	}
	want := append(append([]int{}, main.workers...), sub.workers...)
	sort.Ints(got)
	sort.Ints(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("krait dump --pid %d (Apache's parent) dumped %v, want its daemons %v", main.parent, got, want)
	}

	srv := st.server(t, "krait-sync")
	st.settle(t)
	p := st.park(t, []*server{srv}, "/slow/?s=3", "pg_sleep(3")
	reqs := decodeRequests(t, kraitOK(t, "requests", "--pid", strconv.Itoa(srv.parent), "--json"))
	if len(reqs) != 1 || !contains(currentWorkers(t, srv.parent), reqs[0].PID) {
		t.Errorf("krait requests --pid %d (the arbiter): want the parked request in one of its workers, have %d requests", srv.parent, len(reqs))
		for _, r := range reqs {
			t.Logf("request in process %d", r.PID)
		}
	}
	p[srv].wait(t, 30*time.Second)
}
