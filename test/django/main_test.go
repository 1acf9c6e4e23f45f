// Package djangoe2e runs krait against the real Django production stack
// of scripts/stack.sh: Apache mod_wsgi (a daemon group in the main
// interpreter and one in a sub-interpreter), gunicorn gthread and sync on
// Debian's python3.11 + Django 3.2, and gunicorn gthread in a venv on
// pyenv 3.12 + Django 5.2, with PostgreSQL and memcached behind them.
//
// TestMain builds krait and brings up a private stack in a fresh temporary
// KRAIT_STACK_DIR (the script picks a free port base), and takes it down at
// the end. A helper process started with the stack takes it down too if the
// test binary dies first (panic, timeout, Ctrl-C).
//
// If the stack cannot come up, the tests skip, unless
// KRAIT_REQUIRE_DJANGO_STACK=1 (CI sets it): then they fail with the
// script's output.
//
// What krait reports is checked against the servers' own account of
// themselves (the /info/ view), /proc, and PostgreSQL's statement log
// (log_statement = 'all', each server with its own application_name), not
// against values written into the tests where the stack can tell.
package djangoe2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"krait/internal/testkit"
)

var (
	// kraitBin is the krait binary built by TestMain.
	kraitBin string
	// repoRoot is the module's root directory.
	repoRoot string
	// theStack is the stack TestMain brought up; nil if it did not come up.
	theStack *stack
	// stackErr and stackOut say why the stack did not come up.
	stackErr error
	stackOut string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	// PostgreSQL (user postgres) and Apache (www-data) must be able to
	// enter the stack directory's parents: testkit makes it so.
	root, tmp, bin, cleanup, err := testkit.Setup("krait-django-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "django:", err)
		return 1
	}
	defer cleanup()
	repoRoot, kraitBin = root, bin

	env := stackEnviron(filepath.Join(tmp, "stack"))
	watcher := startWatcher(env, tmp)
	t0 := time.Now()
	out, err := stackScript(env, 5*time.Minute, "up")
	if err == nil {
		theStack, err = loadStack(env)
	}
	if err != nil {
		stackErr, stackOut = err, out
	} else if testing.Verbose() {
		fmt.Printf("django: stack up in %s in %s (port base %s)\n",
			time.Since(t0).Round(100*time.Millisecond), theStack.env["KRAIT_STACK_DIR"], theStack.env["KRAIT_STACK_PORT_BASE"])
	}

	code := m.Run()

	// Down even after a failed up: that leaves what did start running.
	t1 := time.Now()
	if out, err := stackScript(env, 3*time.Minute, "down"); err != nil {
		fmt.Fprintf(os.Stderr, "django: scripts/stack.sh down: %v\n%s", err, out)
		code = 1
	} else if testing.Verbose() {
		fmt.Printf("django: stack down in %s\n", time.Since(t1).Round(100*time.Millisecond))
	}
	if watcher != nil {
		_ = watcher.Process.Kill()
		_ = watcher.Wait()
	}
	return code
}

// stackEnviron is the environment for scripts/stack.sh: ours, with the
// stack directory replaced and no port base inherited (from an `eval` of
// another stack's env, say), so that the script chooses a free one.
func stackEnviron(dir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "KRAIT_STACK_DIR=") || strings.HasPrefix(kv, "KRAIT_STACK_PORT_BASE=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "KRAIT_STACK_DIR="+dir)
}

// stackScript runs scripts/stack.sh CMD and returns its combined output.
func stackScript(env []string, timeout time.Duration, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot, "scripts", "stack.sh"), cmd)
	c.Dir = repoRoot
	c.Env = env
	var buf bytes.Buffer
	c.Stdout, c.Stderr = &buf, &buf
	// The script's servers run in their own sessions; only the script
	// itself is killed on a timeout.
	c.WaitDelay = 10 * time.Second
	err := c.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("scripts/stack.sh %s did not finish within %s", cmd, timeout)
	} else if err != nil {
		err = fmt.Errorf("scripts/stack.sh %s: %w", cmd, err)
	}
	return buf.String(), err
}

// startWatcher starts a process, in its own session and away from our
// output, that waits for this test binary to exit and then takes the stack
// down and removes dir: the stack's servers outlive us otherwise if we die
// before TestMain's own `down` (a panic, go test's -timeout, Ctrl-C).
// TestMain kills it after a normal `down`.
func startWatcher(env []string, dir string) *exec.Cmd {
	script := `while kill -0 "$1" 2>/dev/null; do sleep 0.5; done; bash "$2" down; rm -rf "$3"`
	c := exec.Command("bash", "-c", script, "krait-django-watcher",
		strconv.Itoa(os.Getpid()), filepath.Join(repoRoot, "scripts", "stack.sh"), dir)
	c.Dir = repoRoot
	c.Env = env
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil { // stdin/stdout/stderr: /dev/null
		fmt.Fprintln(os.Stderr, "django: cannot start the clean-up watcher:", err)
		return nil
	}
	return c
}

// needStack returns the stack, or skips the test (fails it with
// KRAIT_REQUIRE_DJANGO_STACK=1) when the stack did not come up.
func needStack(t *testing.T) *stack {
	t.Helper()
	if theStack != nil {
		return theStack
	}
	tail := stackOut
	if lines := strings.Split(strings.TrimRight(tail, "\n"), "\n"); len(lines) > 40 {
		tail = "…\n" + strings.Join(lines[len(lines)-40:], "\n")
	}
	if os.Getenv("KRAIT_REQUIRE_DJANGO_STACK") == "1" {
		t.Fatalf("the Django stack is required (KRAIT_REQUIRE_DJANGO_STACK=1) but did not come up: %v\nscripts/stack.sh output:\n%s", stackErr, tail)
	}
	t.Skipf("the Django stack did not come up, skipping (set KRAIT_REQUIRE_DJANGO_STACK=1 to fail instead; scripts/stack-deps.sh installs what it needs; it runs as root): %v\nscripts/stack.sh output:\n%s", stackErr, tail)
	return nil
}

// ---------------------------------------------------------------- the stack

type stack struct {
	env     map[string]string
	servers []*server
	pgLog   string
}

// server is one of the stack's five WSGI servers.
type server struct {
	name      string // e.g. "apache krait-main", for messages
	kind      string // krait ps's server name of its workers
	group     string // mod_wsgi process group or gunicorn --name
	url       string
	parent    int   // Apache parent or gunicorn master
	workers   []int // mod_wsgi daemons or gunicorn workers
	subInterp bool  // Django runs in a sub-interpreter
	info      serverInfo
}

// serverInfo is what the server says about itself (the /info/ view).
type serverInfo struct {
	PID     int    `json:"pid"`
	Python  string `json:"python"`
	Django  string `json:"django"`
	AppName string `json:"app_name"`
	Group   string `json:"mod_wsgi_process_group"`
	AppGrp  string `json:"mod_wsgi_application_group"`
}

func (s *server) String() string { return s.name }

// loadStack reads scripts/stack.sh env and asks each server who it is.
func loadStack(env []string) (*stack, error) {
	out, err := stackScript(env, time.Minute, "env")
	if err != nil {
		return nil, fmt.Errorf("%v\n%s", err, out)
	}
	st := &stack{env: map[string]string{}}
	re := regexp.MustCompile(`^export ([A-Z0-9_]+)=(.*)$`)
	for _, line := range strings.Split(out, "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			st.env[m[1]] = strings.Trim(m[2], "'")
		}
	}
	st.pgLog = st.env["KRAIT_PG_LOG"]
	if st.pgLog == "" {
		return nil, fmt.Errorf("scripts/stack.sh env printed no KRAIT_PG_LOG:\n%s", out)
	}
	mk := func(name, kind, group, prefix, parentKey, workersKey string, sub bool) error {
		s := &server{name: name, kind: kind, group: group, url: st.env[prefix+"_URL"], subInterp: sub}
		var err error
		if s.parent, err = strconv.Atoi(st.env[parentKey]); err != nil {
			return fmt.Errorf("%s: %s=%q", name, parentKey, st.env[parentKey])
		}
		for _, f := range strings.Fields(st.env[workersKey]) {
			n, err := strconv.Atoi(f)
			if err != nil {
				return fmt.Errorf("%s: %s=%q", name, workersKey, st.env[workersKey])
			}
			s.workers = append(s.workers, n)
		}
		if len(s.workers) == 0 || s.url == "" {
			return fmt.Errorf("%s: no worker PIDs or URL in scripts/stack.sh env:\n%s", name, out)
		}
		st.servers = append(st.servers, s)
		return nil
	}
	for _, e := range []error{
		mk("apache krait-main", "mod_wsgi daemon", "krait-main", "KRAIT_APACHE_MAIN", "KRAIT_APACHE_PID", "KRAIT_APACHE_MAIN_PIDS", false),
		mk("apache krait-sub", "mod_wsgi daemon", "krait-sub", "KRAIT_APACHE_SUB", "KRAIT_APACHE_PID", "KRAIT_APACHE_SUB_PIDS", true),
		mk("gunicorn gthread", "gunicorn worker", "krait-gthread", "KRAIT_GUNICORN_GTHREAD", "KRAIT_GUNICORN_GTHREAD_PID", "KRAIT_GUNICORN_GTHREAD_WORKER_PIDS", false),
		mk("gunicorn sync", "gunicorn worker", "krait-sync", "KRAIT_GUNICORN_SYNC", "KRAIT_GUNICORN_SYNC_PID", "KRAIT_GUNICORN_SYNC_WORKER_PIDS", false),
		mk("gunicorn venv", "gunicorn worker", "krait-venv", "KRAIT_GUNICORN_VENV", "KRAIT_GUNICORN_VENV_PID", "KRAIT_GUNICORN_VENV_WORKER_PIDS", false),
	} {
		if e != nil {
			return nil, e
		}
	}
	c := httpClient(20 * time.Second)
	for _, s := range st.servers {
		resp, err := c.Get(s.url + "/info/")
		if err != nil {
			return nil, fmt.Errorf("%s: GET /info/: %v", s, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := json.Unmarshal(body, &s.info); err != nil || resp.StatusCode != 200 {
			return nil, fmt.Errorf("%s: GET /info/: %s: %v\n%s", s, resp.Status, err, body)
		}
	}
	return st, nil
}

// server returns the server whose mod_wsgi group or gunicorn name is group.
func (st *stack) server(t *testing.T, group string) *server {
	t.Helper()
	for _, s := range st.servers {
		if s.group == group {
			return s
		}
	}
	t.Fatalf("no server %q in the stack", group)
	return nil
}

// pythonPIDs lists every Python process of the stack: mod_wsgi daemons,
// gunicorn masters and workers.
func (st *stack) pythonPIDs() []int {
	var out []int
	seen := map[int]bool{}
	for _, s := range st.servers {
		pids := s.workers
		if s.kind == "gunicorn worker" {
			pids = append([]int{s.parent}, pids...)
		}
		for _, p := range pids {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// appNames are the application_names the servers connect to PostgreSQL
// with (each server reports its own in /info/).
func (st *stack) appNames() []string {
	var out []string
	for _, s := range st.servers {
		out = append(out, s.info.AppName)
	}
	return out
}

// ---------------------------------------------------------------- HTTP

func httpClient(timeout time.Duration) *http.Client {
	// No keep-alive: an idle connection would hold a gthread worker's
	// attention and muddy "idle".
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
}

// get fetches url and returns its body; the status must be 200.
func get(url string, timeout time.Duration) (string, error) {
	resp, err := httpClient(timeout).Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), err
}

// pending is a request running in the background.
type pending struct {
	url    string
	start  time.Time
	cancel context.CancelFunc
	done   chan struct{}
	body   string
	err    error
}

// getAsync starts GET url in a goroutine. When the test ends, the request
// is waited for (at most a minute), so that no test leaves a request
// running into the next one.
func getAsync(t *testing.T, url string) *pending {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	p := &pending{url: url, start: time.Now(), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			p.err = err
			return
		}
		resp, err := httpClient(0).Do(req)
		if err != nil {
			p.err = err
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		p.body, p.err = string(b), err
		if err == nil && resp.StatusCode != 200 {
			p.err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		case <-time.After(time.Minute):
			t.Errorf("GET %s still running a minute after the test", url)
		}
		cancel()
	})
	return p
}

// wait waits for the request to finish and returns its body.
func (p *pending) wait(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("GET %s did not complete within %s", p.url, timeout)
	}
	if p.err != nil {
		t.Fatalf("GET %s: %v", p.url, p.err)
	}
	return p.body
}

// ---------------------------------------------------------------- PostgreSQL's statement log

// logOffset is the statement log's current size: where new lines begin.
func (st *stack) logOffset(t *testing.T) int64 {
	t.Helper()
	fi, err := os.Stat(st.pgLog)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// logSince returns the statement log's complete lines after offset.
func (st *stack) logSince(t *testing.T, off int64) []string {
	t.Helper()
	f, err := os.Open(st.pgLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	} else {
		return nil
	}
	return strings.Split(s, "\n")
}

// statements returns the log lines after off that app logged (each line
// of log_line_prefix carries app=APPLICATION_NAME).
func (st *stack) statements(t *testing.T, off int64, apps ...string) []string {
	t.Helper()
	var out []string
	for _, l := range st.logSince(t, off) {
		for _, a := range apps {
			if strings.Contains(l, " app="+a+" ") {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

// waitStatement waits until app has logged a statement containing substr
// after off: then the server's thread is inside that statement.
func (st *stack) waitStatement(t *testing.T, off int64, app, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range st.statements(t, off, app) {
			if strings.Contains(l, "statement: ") && strings.Contains(l, substr) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log a statement with %q within %s; its statements since:\n%s",
				app, substr, timeout, strings.Join(st.statements(t, off, app), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settle waits until the statement log has not grown for a second: no
// request of an earlier test still talks to PostgreSQL.
func (st *stack) settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last, since := st.logOffset(t), time.Now()
	for time.Since(since) < time.Second {
		if time.Now().After(deadline) {
			t.Fatalf("the statement log is still growing after 30 s:\n%s", strings.Join(st.logSince(t, last), "\n"))
		}
		time.Sleep(100 * time.Millisecond)
		if n := st.logOffset(t); n != last {
			last, since = n, time.Now()
		}
	}
}

// ---------------------------------------------------------------- running krait

type kraitResult struct {
	args   []string
	stdout string
	stderr string
	code   int
}

func (r *kraitResult) String() string {
	return fmt.Sprintf("krait %s: exit %d\nstderr: %s\nstdout: %s", strings.Join(r.args, " "), r.code, r.stderr, r.stdout)
}

// krait runs the krait binary and waits at most a minute.
func krait(t *testing.T, args ...string) *kraitResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kraitBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := &kraitResult{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("krait %v did not finish within a minute", args)
	case err == nil:
	case errors.As(err, &exitErr):
		res.code = exitErr.ExitCode()
	default:
		t.Fatalf("running krait %v: %v", args, err)
	}
	return res
}

// kraitOK runs krait, which must succeed.
func kraitOK(t *testing.T, args ...string) string {
	t.Helper()
	r := krait(t, args...)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	return r.stdout
}

// kraitJSON runs krait, which must succeed, and decodes its JSON output
// into v.
func kraitJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := kraitOK(t, args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("krait %v: decoding JSON: %v\n%s", args, err, out)
	}
}

func pidArgs(flagName string, pids []int) []string {
	var out []string
	for _, p := range pids {
		out = append(out, flagName, strconv.Itoa(p))
	}
	return out
}

// ---------------------------------------------------------------- JSON contracts

// psEntry mirrors krait ps --json, written out again here so that a change
// to the contract shows up as a failing test.
type psEntry struct {
	PID            int     `json:"pid"`
	PPID           int     `json:"ppid"`
	User           string  `json:"user"`
	PythonVersion  string  `json:"python_version"`
	Server         string  `json:"server"`
	Group          *string `json:"group"`
	DjangoSettings *string `json:"django_settings"`
	Threads        int     `json:"threads"`
	BusyThreads    int     `json:"busy_threads"`
	Command        string  `json:"command"`
	Error          string  `json:"error"`
}

var psKeys = []string{"pid", "ppid", "user", "python_version", "server", "group", "django_settings", "threads", "busy_threads", "command"}

// request mirrors krait requests --json.
type request struct {
	PID           int      `json:"pid"`
	ThreadID      uint64   `json:"thread_id"`
	NativeID      *int     `json:"native_id"`
	ThreadName    *string  `json:"thread_name"`
	Interpreter   int64    `json:"interpreter"`
	Method        *string  `json:"method"`
	Path          *string  `json:"path"`
	Query         *string  `json:"query"`
	View          *string  `json:"view"`
	ElapsedS      *float64 `json:"elapsed_s"`
	ElapsedSource *string  `json:"elapsed_source"`
	SQL           *string  `json:"sql"`
	SQLParams     *string  `json:"sql_params"`
	Server        *string  `json:"server"`
	Client        *string  `json:"client"`
	Task          *string  `json:"task"`
	TaskID        *uint64  `json:"task_id"`
	Awaiting      *string  `json:"awaiting"`
	Function      string   `json:"function"`
	File          string   `json:"file"`
	Line          int      `json:"line"`
}

var requestKeys = []string{"pid", "thread_id", "native_id", "thread_name", "interpreter", "method", "path", "query", "view", "elapsed_s", "elapsed_source", "client", "sql", "sql_params", "server", "function", "file", "line"}

// checkKeys fails unless every object in the JSON array doc[list] has all
// of keys (null is fine: present and unknown).
func checkKeys(t *testing.T, what, out, list string, keys []string) {
	t.Helper()
	var doc map[string][]map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, out)
	}
	items, ok := doc[list]
	if !ok {
		t.Fatalf("%s: no %q list in %s", what, list, out)
	}
	for _, it := range items {
		for _, k := range keys {
			if _, ok := it[k]; !ok {
				t.Errorf("%s: key %q missing from %v", what, k, it)
			}
		}
	}
}

// dumpResult mirrors krait dump --json (the parts these tests read).
type dumpResult struct {
	PID          int           `json:"pid"`
	Interpreters int           `json:"interpreters"`
	Threads      []*dumpThread `json:"threads"`
}

type dumpThread struct {
	ThreadID    uint64       `json:"thread_id"`
	NativeID    *int         `json:"native_id"`
	Name        *string      `json:"name"`
	Interpreter int64        `json:"interpreter"`
	Frames      []*dumpFrame `json:"frames"`
	Error       string       `json:"error"`
}

type dumpFrame struct {
	Function string       `json:"function"`
	Qualname string       `json:"qualname"`
	File     string       `json:"file"`
	Line     int          `json:"line"`
	Locals   []*dumpLocal `json:"locals"`
}

type dumpLocal struct {
	Name    string `json:"name"`
	Arg     bool   `json:"arg"`
	Type    string `json:"type"`
	Value   string `json:"value"`
	Address string `json:"address"`
	Error   string `json:"error"`
}

func (f *dumpFrame) local(name string) *dumpLocal {
	for _, l := range f.Locals {
		if l.Name == name {
			return l
		}
	}
	return nil
}

func (d *dumpResult) dumpFrames(function, fileSuffix string) []*dumpFrame {
	var out []*dumpFrame
	for _, th := range d.Threads {
		for _, f := range th.Frames {
			if f.Function == function && strings.HasSuffix(f.File, fileSuffix) {
				out = append(out, f)
			}
		}
	}
	return out
}

// ---------------------------------------------------------------- /proc

// procUser is the name of the user PID runs as (real uid), from /proc.
func procUser(t *testing.T, pid int) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
			uid := strings.Fields(rest)[0]
			if u, err := user.LookupId(uid); err == nil {
				return u.Username
			}
			return uid
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return ""
}

// isThreadOf says whether tid is one of pid's threads.
func isThreadOf(pid, tid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", pid, tid))
	return err == nil
}

// park starts GET path on each server and waits until each has logged a
// statement containing sql: then the request is parked in PostgreSQL.
func (st *stack) park(t *testing.T, servers []*server, path, sql string) map[*server]*pending {
	t.Helper()
	off := st.logOffset(t)
	out := map[*server]*pending{}
	for _, s := range servers {
		out[s] = getAsync(t, s.url+path)
	}
	for _, s := range servers {
		st.waitStatement(t, off, s.info.AppName, sql, 20*time.Second)
	}
	return out
}
