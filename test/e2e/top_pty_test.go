package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// vtScreen replays what a program wrote to a terminal onto a rows × cols
// grid, understanding the few escape sequences a screen library uses
// (cursor positioning, clearing, erasing; colours and modes ignored), so
// that a test can read the screen as the user sees it.
func vtScreen(out string, rows, cols int) []string {
	grid := make([][]rune, rows)
	for i := range grid {
		grid[i] = []rune(strings.Repeat(" ", cols))
	}
	r, c := 0, 0
	clamp := func() {
		r = min(max(r, 0), rows-1)
		c = min(max(c, 0), cols-1)
	}
	rs := []rune(out)
	for i := 0; i < len(rs); i++ {
		ch := rs[i]
		switch {
		case ch == 0x1b && i+1 < len(rs) && rs[i+1] == '[':
			j := i + 2
			for j < len(rs) && (rs[j] >= '0' && rs[j] <= '9' || rs[j] == ';' || rs[j] == '?' || rs[j] == '>' || rs[j] == '=') {
				j++
			}
			if j >= len(rs) {
				i = j
				continue
			}
			var ps []int
			for _, f := range strings.Split(strings.TrimLeft(string(rs[i+2:j]), "?>="), ";") {
				n, _ := strconv.Atoi(f)
				ps = append(ps, n)
			}
			p := func(k, def int) int {
				if k < len(ps) && ps[k] > 0 {
					return ps[k]
				}
				return def
			}
			switch rs[j] {
			case 'H', 'f':
				r, c = p(0, 1)-1, p(1, 1)-1
			case 'A':
				r -= p(0, 1)
			case 'B':
				r += p(0, 1)
			case 'C':
				c += p(0, 1)
			case 'D':
				c -= p(0, 1)
			case 'G':
				c = p(0, 1) - 1
			case 'd':
				r = p(0, 1) - 1
			case 'J':
				if p(0, 0) == 2 || p(0, 0) == 0 && r == 0 && c == 0 {
					for k := range grid {
						grid[k] = []rune(strings.Repeat(" ", cols))
					}
				} else if p(0, 0) == 0 {
					for k := r; k < rows; k++ {
						for x := range grid[k] {
							if k > r || x >= c {
								grid[k][x] = ' '
							}
						}
					}
				}
			case 'K':
				clamp()
				for x := c; x < cols; x++ {
					grid[r][x] = ' '
				}
			case 'X':
				clamp()
				for x := c; x < cols && x < c+p(0, 1); x++ {
					grid[r][x] = ' '
				}
			}
			clamp()
			i = j
		case ch == 0x1b && i+1 < len(rs) && rs[i+1] == ']':
			for i < len(rs) && rs[i] != 0x07 && !(rs[i] == 0x1b && i+1 < len(rs) && rs[i+1] == '\\') {
				i++
			}
		case ch == 0x1b && i+1 < len(rs) && (rs[i+1] == '(' || rs[i+1] == ')'):
			i += 2
		case ch == 0x1b:
			i++
		case ch == '\r':
			c = 0
		case ch == '\n':
			r++
			clamp()
		case ch == '\b':
			c--
			clamp()
		case ch < 0x20 || ch == 0x7f:
		default:
			clamp()
			grid[r][c] = ch
			if c < cols-1 {
				c++
			}
		}
	}
	lines := make([]string, rows)
	for i := range grid {
		lines[i] = strings.TrimRight(string(grid[i]), " ")
	}
	return lines
}

// TestTopScreen drives the interactive krait top through a pseudo-terminal:
// the functions table shows the fixture's hot() first by own time; keys 1–4
// change the sort column (marked [like this]) and the order; v shows views;
// p pauses; q quits, leaving the target running.
func TestTopScreen(t *testing.T) {
	py := pickPython(t)
	p := startProfileFixture(t, py, "")
	const rows, cols = 40, 200
	s := startPTY(t, t.TempDir(), cols, "top", "--pid", strconv.Itoa(p.pid()), "--delay", "0.5")
	screen := func() []string { return vtScreen(s.text(), rows, cols) }
	waitScreen := func(what string, cond func([]string) bool) []string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			sc := screen()
			if cond(sc) {
				return sc
			}
			if time.Now().After(deadline) {
				t.Fatalf("the screen never showed %s; it shows:\n%s", what, strings.Join(sc, "\n"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	header := func(sc []string) string { return sc[3] }
	firstRow := func(sc []string) string { return sc[4] }
	pct := func(row string, col int) float64 {
		f := strings.Fields(row)
		if len(f) <= col {
			return -1
		}
		v, _ := strconv.ParseFloat(strings.TrimSuffix(f[col], "%"), 64)
		return v
	}
	sc := waitScreen("hot() first by %Own", func(sc []string) bool {
		return strings.Contains(header(sc), "[%Own]") && strings.Contains(firstRow(sc), " hot (")
	})
	if !strings.HasPrefix(sc[0], "krait top  1 processes") {
		t.Errorf("title line: %q", sc[0])
	}
	// %Total: the first row is a function on every busy stack (100 %).
	s.typeKeys("2")
	waitScreen("the %Total sort", func(sc []string) bool {
		return strings.Contains(header(sc), "[%Total]") && pct(firstRow(sc), 1) >= 99
	})
	s.typeKeys("4")
	waitScreen("the TotalTime sort", func(sc []string) bool {
		return strings.Contains(header(sc), "[TotalTime]") && pct(firstRow(sc), 1) >= 99
	})
	s.typeKeys("3")
	waitScreen("the OwnTime sort", func(sc []string) bool {
		return strings.Contains(header(sc), "[OwnTime]") && strings.Contains(firstRow(sc), " hot (")
	})
	s.typeKeys("1")
	waitScreen("the %Own sort again", func(sc []string) bool {
		return strings.Contains(header(sc), "[%Own]") && strings.Contains(firstRow(sc), " hot (")
	})
	s.typeKeys("v")
	waitScreen("the views", func(sc []string) bool {
		return strings.Contains(header(sc), "View") && strings.Contains(firstRow(sc), "(no request)")
	})
	s.typeKeys("v")
	s.typeKeys("p")
	waitScreen("the pause", func(sc []string) bool { return strings.Contains(sc[0], "(paused)") })
	s.typeKeys("p")
	waitScreen("sampling again", func(sc []string) bool { return strings.Contains(sc[0], "(sampling)") })
	s.typeKeys("q")
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Signal(syscall.SIGQUIT)
		time.Sleep(time.Second)
		t.Fatalf("krait top did not quit on q:\n%s", strings.Join(screen(), "\n"))
	}
	_ = s.cmd.Wait()
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("krait top quit with %d, want 0", code)
	}
	// (Another package's krait requests --all may hold it a moment.)
	stopped := func() bool {
		for _, st := range threadStates(p.pid()) {
			if st == 't' || st == 'T' {
				return true
			}
		}
		return false
	}
	if waitUntil(2*time.Second, func() bool { return !stopped() }) {
		return
	}
	for tid, st := range threadStates(p.pid()) {
		if st == 't' || st == 'T' {
			t.Errorf("thread %d left stopped (%c) after top quit", tid, st)
		}
	}
}

// TestRecordAllServer: record --all --server NAME records the processes of
// that server (a celery worker and its pool child here) and no other.
func TestRecordAllServer(t *testing.T) {
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
	celery := startReady(t, py, nil, script("celery"), "-A", "proj", "worker", "-l", "info")
	daphne := startReady(t, py, nil, script("daphne"), "proj.asgi:application")
	plain := startProfileFixture(t, py, "")
	kids := childPIDs(celery.pid())
	if len(kids) != 1 {
		t.Fatalf("celery fixture: children %v, want one pool child", kids)
	}
	out := filepath.Join(dir, "celery.txt")
	r := krait(t, "record", "--all", "--server", "celery", "--idle", "--duration", "1", "-f", "raw", "-o", out, "--json")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	var sum recordSummary
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	got := map[int]int64{}
	for _, pr := range sum.Processes {
		got[pr.PID] = pr.Samples
	}
	for _, pid := range []int{celery.pid(), kids[0]} {
		if got[pid] < 10 {
			t.Errorf("celery process %d: %d samples (processes %+v)", pid, got[pid], sum.Processes)
		}
	}
	for _, pid := range []int{daphne.pid(), plain.pid()} {
		if _, ok := got[pid]; ok {
			t.Errorf("process %d is not celery's but was recorded", pid)
		}
	}
	data, _ := os.ReadFile(out)
	if !strings.Contains(string(data), "sleep_forever") {
		t.Errorf("record --all --server celery --idle: no sleep_forever stack:\n%s", data)
	}
	// A server with no process: one clear line, exit 3.
	r = krait(t, "record", "--all", "--server", "no-such-server", "--duration", "1", "-f", "raw", "-o", filepath.Join(dir, "none.txt"))
	if r.code != 3 {
		t.Errorf("record --all --server no-such-server: %v (want exit 3)", r)
	}
	checkOneLine(t, "record --all --server no-such-server", r.stderr)
}

// childPIDs lists the processes whose parent is pid.
func childPIDs(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c))
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}

// TestRecordWSGI: samples inside a plain WSGI app's request (no Django;
// wsgiref here, gunicorn's workers the same way) are charged to the app
// callable as the view, with the request's method and PATH_INFO as the
// route; the slow path gets most of them.
func TestRecordWSGI(t *testing.T) {
	py := pickPython(t)
	if py.minor == "2.7" {
		t.Skip("the fixture's wsgiref server is Python 3")
	}
	p := start(t, nil, py.path, fixture("wsgi_app.py"))
	var port string
	if !p.waitFor(30*time.Second, func() bool {
		_, last := p.stdout.Lines()
		port = strings.TrimPrefix(last, "port ")
		return strings.HasPrefix(last, "port ")
	}) {
		t.Fatalf("wsgi fixture did not start: %s", p.stderr)
	}
	t.Run("wsgiref", func(t *testing.T) { checkWSGI(t, p.pid(), port, false) })
	t.Run("gunicorn", func(t *testing.T) {
		// Debian's gunicorn (scripts/stack-deps.sh installs it).
		const gpy = "/usr/bin/python3.11"
		if err := exec.Command(gpy, "-c", "import gunicorn").Run(); err != nil {
			if os.Getenv("KRAIT_REQUIRE_DJANGO_STACK") == "1" {
				t.Fatalf("gunicorn for %s is missing: %v", gpy, err)
			}
			t.Skipf("gunicorn for %s is missing: %v", gpy, err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gport := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		l.Close()
		g := start(t, nil, gpy, "-m", "gunicorn", "--chdir", filepath.Dir(fixture("wsgi_app.py")), "-w", "1", "-b", "127.0.0.1:"+gport, "wsgi_app:application")
		// The worker holds the output pipes: stop the master gracefully
		// (it stops its worker) before the default kill.
		t.Cleanup(func() {
			_ = syscall.Kill(g.pid(), syscall.SIGTERM)
			g.waitFor(10*time.Second, func() bool { return false })
		})
		ok := g.waitFor(30*time.Second, func() bool {
			resp, err := http.Get("http://127.0.0.1:" + gport + "/fast")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil
		})
		if !ok {
			t.Fatalf("gunicorn did not start: %s", g.stderr)
		}
		checkWSGI(t, g.pid(), gport, true)
	})
}

// checkWSGI records pid (with --subprocesses for a server's master) while
// a client hits /slow and /fast on port, and checks the attribution to
// the app callable (wsgi_app.application when imported by name).
func checkWSGI(t *testing.T, pid int, port string, master bool) {
	app := `(__main__|wsgi_app)\.application`
	var extra []string
	if master {
		extra = []string{"--subprocesses"}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, path := range []string{"/slow", "/fast"} {
		wg.Add(1)
		go func(url string) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if resp, err := http.Get(url); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}("http://127.0.0.1:" + port + path)
	}
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(300 * time.Millisecond)
	dir := t.TempDir()
	raw := filepath.Join(dir, "wsgi.txt")
	r := krait(t, append([]string{"record", "--pid", strconv.Itoa(pid), "--duration", "2", "--by", "view", "-f", "raw", "-o", raw}, extra...)...)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	data, _ := os.ReadFile(raw)
	st := collapsed(t, string(data))
	view, all := share(st, `^view `+app+`;`)
	slow, _ := share(st, `^view `+app+`;.*;slow_work \(`)
	t.Logf("%d samples: view %.2f, slow_work %.2f", all, view, slow)
	if view < 0.6 || slow < 0.4 {
		t.Errorf("samples not charged to the WSGI app (view %.2f, slow_work %.2f of %d):\n%s", view, slow, all, data)
	}
	prof := filepath.Join(dir, "wsgi.pprof")
	if r := krait(t, append([]string{"record", "--pid", strconv.Itoa(pid), "--duration", "2", "-f", "pprof", "-o", prof}, extra...)...); r.code != 0 {
		t.Fatalf("%v", r)
	}
	tags, err := exec.Command("go", "tool", "pprof", "-tags", prof).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof -tags: %v\n%s", err, tags)
	}
	for _, want := range []string{"/slow", "GET", ".application"} {
		if !strings.Contains(string(tags), want) {
			t.Errorf("pprof labels lack %q:\n%s", want, tags)
		}
	}
}
