package agent

// Tests of the agent itself (python/*.py, joined by source.go) inside real
// interpreters, without injection: testdata/agent/fixture.py loads the agent
// the way krait's bootstrap does, after starting its worker and counter
// threads, and reports what it sees from the inside every 100 ms. The test
// speaks the wire protocol (PROTOCOL.md) over the agent's socket.
//
// Interpreters: every 3.6+ build under $PYENV_ROOT (or ~/.pyenv) and
// /usr/bin/python3.11 ("system3.11"). KRAIT_REQUIRE_PYTHONS (e.g. "3.6 3.7
// … 3.13 system3.11") makes a missing one fatal; 2.7 in that list is
// ignored (the agent needs Python 3).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// agentPython is one interpreter to test the agent on.
type agentPython struct {
	name  string // "3.12" or "system3.11"
	minor int    // 3.x
	path  string
}

func agentPythons(t *testing.T) []agentPython {
	root := os.Getenv("PYENV_ROOT")
	if root == "" {
		home, _ := os.UserHomeDir()
		root = filepath.Join(home, ".pyenv")
	}
	found := map[string]agentPython{}
	dirs, _ := filepath.Glob(filepath.Join(root, "versions", "3.*"))
	sort.Strings(dirs)
	for _, d := range dirs {
		m := regexp.MustCompile(`^3\.(\d+)\.\d+$`).FindStringSubmatch(filepath.Base(d))
		if m == nil {
			continue
		}
		minor, _ := strconv.Atoi(m[1])
		py := filepath.Join(d, "bin", "python")
		if _, err := os.Stat(py); err == nil && minor >= 6 {
			name := "3." + m[1]
			if old, ok := found[name]; !ok || old.path < py {
				found[name] = agentPython{name, minor, py}
			}
		}
	}
	if _, err := os.Stat("/usr/bin/python3.11"); err == nil {
		found["system3.11"] = agentPython{"system3.11", 11, "/usr/bin/python3.11"}
	}
	for _, want := range strings.Fields(os.Getenv("KRAIT_REQUIRE_PYTHONS")) {
		if _, ok := found[want]; !ok && !strings.HasPrefix(want, "2.") {
			t.Errorf("KRAIT_REQUIRE_PYTHONS: interpreter %s not found", want)
		}
	}
	var out []agentPython
	for _, py := range found {
		out = append(out, py)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// ------------------------------------------------------------------ fixture

// agentFixture is a running testdata/agent/fixture.py.
type agentFixture struct {
	t       *testing.T
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	pid     int
	version string
	marks   map[string]int // "@name" marker → line, fixture.py and lazy_mod.py
	file    string         // fixture.py's absolute path
	trace   json.RawMessage
	stderr  bytes.Buffer
	evMax   int // the agent's probe event buffer (cfg "ev_max"); 0: its default

	mu     sync.Mutex
	status fixtureStatus
	seq    int // status lines seen
	counts chan fixtureCount
}

// fixtureCount is what the fixture holds, counted by itself (count()).
type fixtureCount struct {
	Funcs      int `json:"funcs"`       // function objects of its files (no collection)
	Codes      int `json:"codes"`       // code objects they reach
	KraitFuncs int `json:"krait_funcs"` // after a collection: krait's function objects
	KraitCodes int `json:"krait_codes"` // and code objects
	Krait      int `json:"krait"`       // objects of the agent's classes, and the classes
	RSSKB      int `json:"rss_kb"`      // resident set size
	Objects    int `json:"objects"`     // objects tracked by gc
}

type fixtureStatus struct {
	Count    int64             `json:"count"`
	Iter     int64             `json:"iter"`
	Flood    int64             `json:"flood"`
	Probes   map[string]string `json:"probes"`
	Traces   map[string]bool   `json:"traces"`
	Agents   []string          `json:"agents"`
	Tools    []*string         `json:"tools"`
	Loads    int               `json:"loads"`
	TP       []int64           `json:"tp"` // tracing_possible before the last load, now
	Page     uint64            `json:"page"`
	Wrapped  []string          `json:"wrapped"`
	Wrappers int               `json:"wrappers"`
}

func startAgentFixture(t *testing.T, py agentPython, krait string) *agentFixture {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "testdata", "agent"))
	if err != nil {
		t.Fatal(err)
	}
	fx := &agentFixture{t: t, file: filepath.Join(dir, "fixture.py"), marks: map[string]int{}, counts: make(chan fixtureCount, 1)}
	for _, name := range []string{"fixture.py", "lazy_mod.py"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			if m := regexp.MustCompile(`# @([a-z-]+)`).FindStringSubmatch(line); m != nil {
				fx.marks[m[1]] = i + 1
			}
		}
	}
	fx.cmd = exec.Command(py.path, fx.file)
	fx.cmd.Stderr = &fx.stderr
	fx.stdin, _ = fx.cmd.StdinPipe()
	out, _ := fx.cmd.StdoutPipe()
	if err := fx.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		fx.cmd.Process.Kill()
		fx.cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<16), 1<<22)
	if !sc.Scan() {
		t.Fatalf("fixture did not start: %s", fx.stderr.String())
	}
	var hello struct {
		Pid     int    `json:"pid"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal(sc.Bytes(), &hello); err != nil {
		t.Fatalf("fixture's first line %q: %v", sc.Text(), err)
	}
	fx.pid, fx.version = hello.Pid, hello.Version
	go func() {
		for sc.Scan() {
			var m struct {
				Status *fixtureStatus `json:"status"`
				Count  *fixtureCount  `json:"count"`
			}
			if json.Unmarshal(sc.Bytes(), &m) == nil && m.Count != nil {
				fx.counts <- *m.Count
			} else if m.Status != nil {
				fx.mu.Lock()
				fx.status, fx.seq = *m.Status, fx.seq+1
				fx.mu.Unlock()
			}
		}
	}()
	tc := exec.Command(krait, "debug-trace-config", "--pid", strconv.Itoa(fx.pid))
	data, err := tc.Output()
	if err != nil {
		t.Fatalf("krait debug-trace-config: %v", err)
	}
	fx.trace = json.RawMessage(bytes.TrimSpace(data))
	return fx
}

func (fx *agentFixture) send(line string) {
	if _, err := io.WriteString(fx.stdin, line+"\n"); err != nil {
		fx.t.Fatalf("writing to the fixture: %v", err)
	}
}

// line returns a marker's line number.
func (fx *agentFixture) line(mark string) int {
	n, ok := fx.marks[mark]
	if !ok {
		fx.t.Fatalf("no marker @%s", mark)
	}
	return n
}

// waitStatus waits for a status line printed after the call that satisfies
// ok, and returns it.
func (fx *agentFixture) waitStatus(timeout time.Duration, what string, ok func(fixtureStatus) bool) fixtureStatus {
	fx.t.Helper()
	fx.mu.Lock()
	from := fx.seq
	fx.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for {
		fx.mu.Lock()
		st, seq := fx.status, fx.seq
		fx.mu.Unlock()
		if seq > from && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			fx.t.Fatalf("after %s: %s; last status %+v; stderr: %s", timeout, what, st, fx.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// load makes the fixture exec the agent with a fresh directory and token,
// and returns the directory. With mmap, the fixture maps pages for the agent
// to unmap when it leaves.
func (fx *agentFixture) load(token string, connectTimeout int, mmap bool) string {
	fx.t.Helper()
	dir, err := os.MkdirTemp("", "krait-agent-test-")
	if err != nil {
		fx.t.Fatal(err)
	}
	fx.t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o700); err != nil {
		fx.t.Fatal(err)
	}
	agent := filepath.Join(dir, "agent.py")
	if err := os.WriteFile(agent, agentSource, 0o600); err != nil {
		fx.t.Fatal(err)
	}
	cfg := map[string]any{"dir": dir, "token": token, "page": 0, "page_size": 0,
		"trace": fx.trace, "connect_timeout": connectTimeout}
	if fx.evMax > 0 {
		cfg["ev_max"] = fx.evMax
	}
	req, _ := json.Marshal(map[string]any{"agent": agent, "cfg": cfg, "mmap": mmap})
	fx.mu.Lock()
	loads := fx.status.Loads
	fx.mu.Unlock()
	fx.send("load " + string(req))
	fx.waitStatus(5*time.Second, "the agent was not loaded", func(s fixtureStatus) bool { return s.Loads > loads })
	return dir
}

// gone checks that nothing of the agent is left in the process, within
// timeout: no agent thread, no trace function in any thread, no monitoring
// tool, tracing_possible as before, the directory removed, and the worker
// running.
func (fx *agentFixture) gone(dir string, timeout time.Duration) {
	fx.t.Helper()
	start := time.Now()
	st := fx.waitStatus(timeout, "the agent did not leave", func(s fixtureStatus) bool {
		for _, on := range s.Traces {
			if on {
				return false
			}
		}
		for _, tool := range s.Tools {
			if tool != nil {
				return false
			}
		}
		_, err := os.Stat(dir)
		return len(s.Agents) == 0 && os.IsNotExist(err) && (s.TP == nil || s.TP[0] == s.TP[1]) && len(s.Wrapped) == 0
	})
	fx.waitStatus(timeout, "the worker did not resume", func(s fixtureStatus) bool { return s.Iter > st.Iter+1 })
	if st.Page != 0 {
		for deadline := time.Now().Add(2 * time.Second); fx.mapped(st.Page); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				fx.t.Fatalf("page %#x still mapped", st.Page)
			}
		}
	}
	fx.t.Logf("agent gone after %v", time.Since(start).Round(time.Millisecond))
}

// mapped tells whether addr is in one of the fixture's mappings.
func (fx *agentFixture) mapped(addr uint64) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", fx.pid))
	if err != nil {
		fx.t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		var lo, hi uint64
		if n, _ := fmt.Sscanf(line, "%x-%x", &lo, &hi); n == 2 && lo <= addr && addr < hi {
			return true
		}
	}
	return false
}

// ------------------------------------------------------------------ client

// agentConn speaks the protocol: JSON lines both ways.
type agentConn struct {
	t    *testing.T
	conn net.Conn
	mu   sync.Mutex
	id   int
	rep  map[int]chan map[string]any
	evmu sync.Mutex
	evs  []map[string]any
	evc  chan struct{}
	done chan struct{}
}

// retry calls f every 10 ms until it succeeds, failing the test with its
// last error after timeout (the agent thread makes its socket after the
// load returns: krait's attach waits for it too).
func retry(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// eachFixture runs f in a subtest per interpreter attach supports (those
// keep accepts; nil: all), each with a fixture process of its own.
func eachFixture(t *testing.T, keep func(agentPython) bool, f func(t *testing.T, fx *agentFixture)) {
	pys := agentPythons(t)
	if len(pys) == 0 {
		t.Skip("no Python 3 interpreter found")
	}
	krait := buildKrait(t)
	for _, py := range pys {
		if keep != nil && !keep(py) {
			continue
		}
		py := py
		t.Run(py.name, func(t *testing.T) {
			fx := startAgentFixture(t, py, krait)
			fx.t = t
			f(t, fx)
		})
	}
}

// session loads the agent into the fixture, connects and says hello; it
// returns the connection and the agent's directory.
func (fx *agentFixture) session(t *testing.T) (*agentConn, string) {
	t.Helper()
	dir := fx.load("tok", 30, false)
	c := dialAgent(t, dir)
	c.call("hello", "token", "tok")
	return c, dir
}

func dialAgent(t *testing.T, dir string) *agentConn {
	t.Helper()
	sock := filepath.Join(dir, "sock")
	var conn net.Conn
	retry(t, 5*time.Second, "agent socket", func() (err error) {
		conn, err = net.Dial("unix", sock)
		return err
	})
	c := &agentConn{t: t, conn: conn, rep: map[int]chan map[string]any{}, evc: make(chan struct{}, 1), done: make(chan struct{})}
	t.Cleanup(func() { conn.Close() })
	go func() {
		defer close(c.done)
		dec := json.NewDecoder(conn)
		dec.UseNumber()
		for {
			var m map[string]any
			if dec.Decode(&m) != nil {
				return
			}
			if _, ok := m["event"]; ok {
				c.evmu.Lock()
				c.evs = append(c.evs, m)
				c.evmu.Unlock()
				select {
				case c.evc <- struct{}{}:
				default:
				}
				continue
			}
			id, _ := m["id"].(json.Number).Int64()
			c.mu.Lock()
			ch := c.rep[int(id)]
			c.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		}
	}()
	return c
}

// post sends a request and returns the channel its reply arrives on.
func (c *agentConn) post(cmd string, args ...any) chan map[string]any {
	req := map[string]any{"cmd": cmd}
	for i := 0; i+1 < len(args); i += 2 {
		req[args[i].(string)] = args[i+1]
	}
	ch := make(chan map[string]any, 1)
	c.mu.Lock()
	c.id++
	req["id"] = c.id
	c.rep[c.id] = ch
	c.mu.Unlock()
	data, _ := json.Marshal(req)
	if _, err := c.conn.Write(append(data, '\n')); err != nil {
		c.t.Fatalf("%s: %v", cmd, err)
	}
	return ch
}

// try sends a request and returns its reply and error message ("" if ok).
func (c *agentConn) try(cmd string, args ...any) (map[string]any, string) {
	c.t.Helper()
	ch := c.post(cmd, args...)
	var m map[string]any
	select {
	case m = <-ch:
	case <-c.done:
		select { // the reply may have come just before the end
		case m = <-ch:
		default:
			c.t.Fatalf("%s: connection closed", cmd)
		}
	case <-time.After(10 * time.Second):
		c.t.Fatalf("%s: no reply", cmd)
	}
	if m["ok"] != true {
		msg, _ := m["error"].(string)
		return m, "error: " + msg
	}
	return m, ""
}

// call sends a request that must succeed.
func (c *agentConn) call(cmd string, args ...any) map[string]any {
	c.t.Helper()
	m, err := c.try(cmd, args...)
	if err != "" {
		c.t.Fatalf("%s %v: %s", cmd, args, err)
	}
	return m
}

// event waits for the next event named name (others stay queued).
func (c *agentConn) event(name string, timeout time.Duration) map[string]any {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		c.evmu.Lock()
		for i, e := range c.evs {
			if e["event"] == name {
				c.evs = append(c.evs[:i], c.evs[i+1:]...)
				c.evmu.Unlock()
				return e
			}
		}
		c.evmu.Unlock()
		select {
		case <-c.evc:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			c.t.Fatalf("no %s event within %v (queued: %v)", name, timeout, c.evs)
		}
	}
}

// noEvent checks that no event named name arrives for d.
func (c *agentConn) noEvent(name string, d time.Duration) {
	c.t.Helper()
	time.Sleep(d)
	c.evmu.Lock()
	defer c.evmu.Unlock()
	for _, e := range c.evs {
		if e["event"] == name {
			c.t.Fatalf("unexpected %s event: %v", name, e)
		}
	}
}

// stop waits for a stop event and checks its reason, function and line.
func (c *agentConn) stop(reason, function string, line int) map[string]any {
	c.t.Helper()
	e := c.event("stop", 10*time.Second)
	if e["reason"] != reason || e["function"] != function || num(e["line"]) != int64(line) {
		c.t.Fatalf("stop: want %s in %s at line %d, got %v", reason, function, line, e)
	}
	return e
}

func num(v any) int64 {
	n, ok := v.(json.Number)
	if !ok {
		return -1 << 62
	}
	i, _ := n.Int64()
	return i
}

func str(v any) string { s, _ := v.(string); return s }

// ------------------------------------------------------------------ tests

func TestAgent(t *testing.T) {
	pys := agentPythons(t)
	if len(pys) == 0 {
		t.Skip("no Python 3 interpreter found")
	}
	krait := buildKrait(t)
	for _, py := range pys {
		py := py
		t.Run(py.name, func(t *testing.T) {
			t.Parallel()
			fx := startAgentFixture(t, py, krait)
			t.Run("session", func(t *testing.T) { agentSession(t, fx, py) })
			t.Run("client killed mid-command", func(t *testing.T) { agentKilled(t, fx) })
			t.Run("bad token", func(t *testing.T) { agentBadToken(t, fx) })
			t.Run("connect timeout", func(t *testing.T) {
				fx.t = t
				dir := fx.load("tok", 1, true)
				fx.gone(dir, 3*time.Second)
			})
		})
	}
}

// agentSession is a whole debugging session, ended by detach.
func agentSession(t *testing.T, fx *agentFixture, py agentPython) {
	fx.t = t
	dir := fx.load("s3cret", 30, true)
	c := dialAgent(t, dir)
	hello, err := c.try("hello", "token", "s3cret")
	if err != "" {
		t.Fatalf("hello: %s (trace configuration from krait: %s)", err, fx.trace)
	}
	backend := "settrace"
	if py.minor >= 12 {
		backend = "monitoring"
	}
	if num(hello["pid"]) != int64(fx.pid) || hello["version"] != fx.version || hello["backend"] != backend {
		t.Fatalf("hello: %v (want pid %d, version %s, backend %s)", hello, fx.pid, fx.version, backend)
	}
	if _, err := os.Stat(filepath.Join(dir, "agent.py")); !os.IsNotExist(err) {
		t.Errorf("agent.py still there: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "sock")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v, mode %v", err, fi.Mode())
	}
	if page := fx.waitStatus(time.Second, "page", func(s fixtureStatus) bool { return true }).Page; page == 0 || !fx.mapped(page) {
		t.Fatalf("fixture's page %#x not mapped", page)
	}
	// A thread that threading does not know, started now: the settrace
	// backend finds it by rescanning the thread states.
	fx.send("cthread")
	if backend == "settrace" {
		// Nothing is traced while there is nothing to stop at: a trace
		// function costs every call.
		time.Sleep(300 * time.Millisecond)
		st := fx.waitStatus(time.Second, "status", func(s fixtureStatus) bool { return true })
		for name, traced := range st.Traces {
			if traced {
				t.Errorf("thread %s traced with no breakpoint set", name)
			}
		}
	} else {
		tool := num(hello["tool_id"])
		st := fx.waitStatus(time.Second, "monitoring tool", func(s fixtureStatus) bool { return len(s.Tools) == 6 })
		if tool < 0 || tool > 5 || st.Tools[tool] == nil || *st.Tools[tool] != "krait" {
			t.Fatalf("tool_id %d, tools %v", tool, st.Tools)
		}
	}

	// A breakpoint in the worker's loop, whose frame was running before the
	// agent came (and has not been stepped through yet).
	c.call("break", "file", "fixture.py", "line", fx.line("worker-report"))
	th := c.stop("breakpoint", "worker", fx.line("worker-report"))["thread"]
	if backend == "settrace" {
		// The worker was running that code already, so its thread state
		// got the tracer; no other thread did.
		fx.waitStatus(time.Second, "counter and main untraced", func(s fixtureStatus) bool {
			return !s.Traces["counter"] && !s.Traces["main"]
		})
	}
	c.call("delete")
	c.call("next", "thread", th)
	c.stop("step", "worker", fx.line("worker-sleep"))
	c.call("continue")

	// A breakpoint in a function the already-running worker calls.
	bp := c.call("break", "file", "agent/fixture.py", "line", fx.line("compute-first"))["bp"].(map[string]any)
	if bp["file"] != fx.file || num(bp["line"]) != int64(fx.line("compute-first")) || bp["moved"] != false ||
		bp["function"] != "compute" || bp["pending"] != false {
		t.Fatalf("break: %v", bp)
	}
	ev := c.stop("breakpoint", "compute", fx.line("compute-first"))
	if backend == "settrace" {
		// compute's calls are traced through its wrapper, and nothing else:
		// the counter thread runs untraced.
		st := fx.waitStatus(time.Second, "counter untraced", func(s fixtureStatus) bool { return !s.Traces["counter"] })
		if fmt.Sprint(st.Wrapped) != "[compute]" || st.Wrappers != 1 {
			t.Errorf("wrapped functions with a breakpoint in compute: %v, %d wrappers", st.Wrapped, st.Wrappers)
		}
		// A second breakpoint in the file wraps helper too, and nothing
		// twice (not what compute's wrapper calls either).
		hb := c.call("break", "file", "fixture.py", "line", fx.line("helper-first"))["bp"].(map[string]any)
		time.Sleep(1200 * time.Millisecond) // a periodic pass too
		st = fx.waitStatus(time.Second, "status", func(s fixtureStatus) bool { return true })
		if fmt.Sprint(st.Wrapped) != "[compute helper]" || st.Wrappers != 2 {
			t.Errorf("wrapped with breakpoints in compute and helper: %v, %d wrappers", st.Wrapped, st.Wrappers)
		}
		c.call("delete", "bp", hb["id"])
	}
	if ev["thread"] != th || ev["thread_name"] != "worker" || ev["file"] != fx.file || num(ev["bp"]) != num(bp["id"]) {
		t.Fatalf("stop: %v", ev)
	}
	args := ev["args"].([]any)
	if len(args) != 1 || args[0].(map[string]any)["name"] != "x" {
		t.Fatalf("stop args: %v", args)
	}
	x, _ := strconv.Atoi(str(args[0].(map[string]any)["value"]))

	locals := c.call("locals", "thread", th, "frame", 0)["locals"].([]any)
	if want := fmt.Sprintf("[map[arg:true name:x type:int value:%d]]", x); fmt.Sprint(locals) != want {
		t.Errorf("locals: %v, want %s", locals, want)
	}
	evalIs := func(expr, mode, typ, value string) {
		t.Helper()
		r := c.call("eval", "thread", th, "frame", 0, "expr", expr, "mode", mode)
		if r["type"] != typ || !regexp.MustCompile("^"+value+"$").MatchString(str(r["value"])) {
			t.Errorf("eval %s (%s): %v, want %s %s", expr, mode, r, typ, value)
		}
	}
	evalIs("x * 2 + 1", "safe", "int", strconv.Itoa(2*x+1))
	evalIs("THING", "safe", "Thing", `<__main__\.Thing object at 0x[0-9a-f]+> \{a = 1, name = 'thing'\}`)
	evalIs("THING", "repr", "Thing", "Thing!")
	evalIs("CYCLE", "safe", "list", `\[1, \[\.\.\.\]\]`)
	evalIs("LONG", "safe", "str", "'x{1000}'\\.\\.\\.")
	evalIs("list(range(150))", "safe", "list", `\[0, 1, .*, 99, \.\.\.\]`)
	evalIs("[[[[1]]]]", "safe", "list", `\[\[\[\[\.\.\.\]\]\]\]`)
	evalIs("{'k': (1,), 's': {2}, 'f': frozenset()}", "safe", "dict", `\{'k': \(1,\), 's': \{2\}, 'f': frozenset\(\)\}`)
	if _, err := c.try("eval", "thread", th, "frame", 0, "expr", "x + 'a'", "mode", "safe"); !strings.HasPrefix(err, "error: TypeError: unsupported operand") {
		t.Errorf("failing eval: %q", err)
	}
	if _, err := c.try("eval", "thread", th, "frame", 0, "expr", "nope", "mode", "repr"); err != "error: NameError: name 'nope' is not defined" {
		t.Errorf("failing eval: %q", err)
	}
	// The other threads run while the worker is stopped.
	count := func() int64 {
		n, _ := strconv.ParseInt(str(c.call("eval", "thread", th, "frame", 1, "expr", "COUNT", "mode", "safe")["value"]), 10, 64)
		return n
	}
	c1 := count()
	time.Sleep(300 * time.Millisecond)
	if c2 := count(); c2 <= c1+10 {
		t.Errorf("counter thread stalled while the worker was stopped: %d then %d", c1, c2)
	}
	frames := c.call("stack", "thread", th)["frames"].([]any)
	f0, f1 := frames[0].(map[string]any), frames[1].(map[string]any)
	if f0["function"] != "compute" || num(f0["line"]) != int64(fx.line("compute-first")) ||
		f1["function"] != "worker" || num(f1["line"]) != int64(fx.line("worker-call")) || num(f1["index"]) != 1 {
		t.Errorf("stack: %v", frames)
	}
	var stopped, counter bool
	for _, x := range c.call("threads")["threads"].([]any) {
		d := x.(map[string]any)
		switch d["name"] {
		case "worker":
			stopped = d["stopped"] == true && num(d["line"]) == int64(fx.line("compute-first"))
		case "counter":
			counter = d["stopped"] == false && d["function"] == "counter"
		case "krait-agent":
			t.Errorf("threads lists the agent: %v", d)
		}
	}
	if !stopped || !counter {
		t.Errorf("threads: worker stopped %v, counter running %v", stopped, counter)
	}
	src := c.call("source", "file", fx.file, "line", fx.line("compute-first"), "count", 2)["lines"].([]any)
	if len(src) != 2 || !strings.Contains(fmt.Sprint(src[0]), "y = x * 2  # @compute-first") {
		t.Errorf("source: %v", src)
	}

	// next steps over the blank and comment lines, step enters helper,
	// finish returns to compute with helper's value, next goes on.
	c.call("delete")
	c.call("next", "thread", th)
	c.stop("step", "compute", fx.line("call-helper"))
	c.call("step", "thread", th)
	c.stop("step", "helper", fx.line("helper-first"))
	c.call("finish", "thread", th)
	ev = c.stop("finish", "compute", fx.line("call-helper"))
	if rv := fmt.Sprint(ev["return_value"]); rv != fmt.Sprintf("map[type:int value:%d]", 2*x+3) {
		t.Errorf("finish: return value %s, want %d", rv, 2*x+3)
	}
	c.call("next", "thread", th)
	c.stop("step", "compute", fx.line("compute-return"))
	c.call("continue")

	// A breakpoint on a comment line moves to the next line with code.
	bp = c.call("break", "file", "fixture.py", "line", fx.line("comment-line"))["bp"].(map[string]any)
	if num(bp["line"]) != int64(fx.line("call-helper")) || bp["moved"] != true || bp["function"] != "compute" {
		t.Fatalf("break on a comment: %v", bp)
	}
	c.stop("breakpoint", "compute", fx.line("call-helper"))
	// One on a def line, in the function's body.
	bp2 := c.call("break", "file", "fixture.py", "line", fx.line("def-helper"))["bp"].(map[string]any)
	if num(bp2["line"]) != int64(fx.line("helper-first")) || bp2["moved"] != true || bp2["function"] != "helper" {
		t.Fatalf("break on a def line: %v", bp2)
	}
	c.call("delete", "bp", bp2["id"])
	c.call("disable", "bp", bp["id"])
	c.call("continue")
	c.noEvent("stop", 200*time.Millisecond)
	c.call("enable", "bp", bp["id"])
	c.stop("breakpoint", "compute", fx.line("call-helper"))
	c.call("delete", "bp", bp["id"])
	c.call("continue")

	// until does not go back to the loop's head.
	c.call("break", "file", "fixture.py", "line", fx.line("loop-body"), "temporary", true)
	c.stop("breakpoint", "looper", fx.line("loop-body"))
	if bps := c.call("breakpoints")["bps"].([]any); len(bps) != 0 {
		t.Errorf("temporary breakpoint still listed: %v", bps)
	}
	c.call("next", "thread", th)
	c.stop("step", "looper", fx.line("loop-head"))
	c.call("next", "thread", th)
	c.stop("step", "looper", fx.line("loop-body"))
	c.call("until", "thread", th)
	c.stop("until", "looper", fx.line("loop-end"))
	if r := c.call("eval", "thread", th, "expr", "total", "mode", "safe"); r["value"] != "3" {
		t.Errorf("until stopped too early: total = %v", r["value"])
	}
	c.call("continue")

	// A conditional breakpoint stops only when its condition holds.
	bp = c.call("break", "file", "fixture.py", "line", fx.line("compute-first"), "cond", "x % 4 == 0")["bp"].(map[string]any)
	var xs []int
	for i := 0; i < 2; i++ {
		ev = c.stop("breakpoint", "compute", fx.line("compute-first"))
		n, _ := strconv.Atoi(str(ev["args"].([]any)[0].(map[string]any)["value"]))
		xs = append(xs, n)
		c.call("continue")
	}
	if xs[0]%4 != 0 || xs[1] != xs[0]+4 {
		t.Errorf("conditional breakpoint stopped at x = %v", xs)
	}
	// A condition that raises stops, and the stop says why.
	c.call("condition", "bp", bp["id"], "cond", "undefined_name > 1")
	if e := c.stop("breakpoint", "compute", fx.line("compute-first")); !strings.Contains(str(e["cond_error"]), "NameError: name 'undefined_name' is not defined") {
		t.Errorf("stop after a condition that raised: %v", e)
	}
	c.call("delete", "bp", bp["id"])
	c.call("continue")

	// break_func, on a method.
	bp = c.call("break_func", "name", "Thing.poke")["bp"].(map[string]any)
	if num(bp["line"]) != int64(fx.line("poke")) || bp["function"] != "Thing.poke" {
		t.Errorf("break_func: %v", bp)
	}
	c.stop("breakpoint", "Thing.poke", fx.line("poke"))
	c.call("delete")
	c.call("continue")

	// A method whose code has a free variable (super()'s __class__): its
	// wrapper has one too, and finish gets its return value.
	c.call("break", "file", "fixture.py", "line", fx.line("sub-poke"))
	ev = c.stop("breakpoint", "Sub.poke", fx.line("sub-poke"))
	if backend == "settrace" {
		// The fixture's reports come every so often, and one may have been
		// taken just before the stop: wait for one that shows the wrapper.
		fx.waitStatus(5*time.Second, "wrapped with a breakpoint in Sub.poke: [Sub.poke]", func(s fixtureStatus) bool {
			return fmt.Sprint(s.Wrapped) == "[Sub.poke]"
		})
	}
	if frames := c.call("stack", "thread", ev["thread"])["frames"].([]any); frames[1].(map[string]any)["function"] != "worker" {
		t.Errorf("stack under Sub.poke: %v", frames)
	}
	c.call("delete")
	c.call("finish", "thread", ev["thread"])
	if ev = c.stop("finish", "worker", fx.line("worker-sub")); fmt.Sprint(ev["return_value"]) != "map[type:int value:3]" {
		t.Errorf("finish from Sub.poke: %v", ev)
	}
	c.call("continue")

	// A line only a list comprehension's own code has (before 3.12): the
	// function around it is wrapped.
	c.call("break", "file", "fixture.py", "line", fx.line("comp-line"))
	comp := "evens.<locals>.<listcomp>"
	if py.minor >= 12 {
		comp = "evens" // comprehensions are inlined (PEP 709)
	}
	c.stop("breakpoint", comp, fx.line("comp-line"))
	c.call("delete")
	c.call("continue")

	// A generator: no wrapper can reach its frames, so every thread is
	// traced while the breakpoint exists.
	c.call("break", "file", "fixture.py", "line", fx.line("gen-body"))
	ev = c.stop("breakpoint", "gen", fx.line("gen-body"))
	if r := c.call("eval", "thread", ev["thread"], "expr", "i * 10", "mode", "safe"); r["value"] != "0" && r["value"] != "10" {
		t.Errorf("stop in gen: i * 10 = %v", r["value"])
	}
	c.call("continue")
	c.stop("breakpoint", "gen", fx.line("gen-body"))
	c.call("delete")
	c.call("continue")

	// The thread started with pthread_create.
	c.call("break", "file", "fixture.py", "line", fx.line("c-body"))
	if ev = c.stop("breakpoint", "c_body", fx.line("c-body")); ev["thread_name"] != nil {
		t.Errorf("C thread: %v", ev)
	}
	c.call("delete")
	c.call("continue")

	// Pending breakpoints, armed when the fixture imports their module:
	// before its body runs (the main thread stops there), and in a
	// function that the worker and a thread started after the agent both
	// stop in.
	for _, mark := range []string{"lazy-top", "lazy-body"} {
		bp = c.call("break", "file", "lazy_mod.py", "line", fx.line(mark))["bp"].(map[string]any)
		if bp["pending"] != true || bp["file"] != "lazy_mod.py" || bp["function"] != nil {
			t.Fatalf("pending breakpoint: %v", bp)
		}
	}
	fx.send("import")
	for _, mark := range []string{"lazy-top", "lazy-body"} {
		res := c.event("breakpoint_resolved", 5*time.Second)["bp"].(map[string]any)
		if res["pending"] != false || !strings.HasSuffix(str(res["file"]), "/testdata/agent/lazy_mod.py") ||
			num(res["line"]) != int64(fx.line(mark)) {
			t.Errorf("breakpoint_resolved: %v", res)
		}
	}
	if ev = c.stop("breakpoint", "<module>", fx.line("lazy-top")); ev["thread_name"] != "MainThread" {
		t.Errorf("stop at import: %v", ev)
	}
	c.call("continue", "thread", ev["thread"])
	names := map[any]bool{}
	for i := 0; i < 2; i++ {
		names[c.stop("breakpoint", "lazy_func", fx.line("lazy-body"))["thread_name"]] = true
	}
	if !names["worker"] || !names["late"] {
		t.Errorf("threads stopped in lazy_func: %v", names)
	}

	// Every thread, old or new, has the tracer (settrace backend) while the
	// breakpoint is pending and while threads are stopped.
	fx.waitStatus(time.Second, "five threads reporting", func(s fixtureStatus) bool {
		n := 0
		for _, on := range s.Traces {
			if on == (backend == "settrace") {
				n++
			}
		}
		return n == 5
	})
	if backend == "settrace" {
		// Once resolved and resumed, only lazy_func's calls are traced
		// again (through its wrapper), and it still stops.
		c.call("continue")
		st := fx.waitStatus(3*time.Second, "tracing every thread after the pending breakpoint resolved", func(s fixtureStatus) bool {
			return !s.Traces["counter"] && !s.Traces["main"]
		})
		if fmt.Sprint(st.Wrapped) != "[lazy_func]" {
			t.Errorf("wrapped after the pending breakpoint resolved: %v", st.Wrapped)
		}
		c.stop("breakpoint", "lazy_func", fx.line("lazy-body"))
		c.stop("breakpoint", "lazy_func", fx.line("lazy-body"))
	}

	// Detach with two threads stopped: they resume, and nothing is left.
	c.call("detach")
	fx.gone(dir, 2*time.Second)
}

// agentKilled: the client disappears while a stopped thread runs an eval.
func agentKilled(t *testing.T, fx *agentFixture) {
	fx.t = t
	dir := fx.load("tok2", 30, false)
	c := dialAgent(t, dir)
	c.call("hello", "token", "tok2")
	c.call("break", "file", "fixture.py", "line", fx.line("helper-first"))
	th := c.stop("breakpoint", "helper", fx.line("helper-first"))["thread"]
	c.post("eval", "thread", th, "expr", "__import__('time').sleep(0.3)", "mode", "repr")
	time.Sleep(50 * time.Millisecond)
	c.conn.Close()
	fx.gone(dir, 1500*time.Millisecond)
}

// agentBadToken: a wrong token closes the connection, and the agent leaves.
func agentBadToken(t *testing.T, fx *agentFixture) {
	fx.t = t
	dir := fx.load("right", 30, false)
	c := dialAgent(t, dir)
	c.post("hello", "token", "wrong")
	select {
	case <-c.done:
	case <-time.After(3 * time.Second):
		t.Fatal("connection not closed after a wrong token")
	}
	fx.gone(dir, time.Second)
}
