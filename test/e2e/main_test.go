// Package e2e runs the krait binary against real Python processes: every
// pyenv build on the machine plus Debian's python3.11, an executable that
// embeds libpython, and the ways a dump can go wrong (no such process,
// zombie, not Python, no permission, exit mid-dump, bad usage, krait killed
// while the target is paused).
//
// What krait prints is compared with what the target computed about itself
// (testdata/fixtures/dump_fixture.py writes it as JSON), never with values
// written into the tests.
//
// KRAIT_REQUIRE_PYTHONS lists interpreters that must be present, e.g.
// "2.7 3.6 3.7 3.8 3.9 3.10 3.11 3.12 3.13 system3.11": a missing one fails
// the tests. Without it, missing interpreters are skipped.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
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
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// The directory is world-enterable so that krait can also run as
	// another user (the permission tests run it as nobody).
	root, _, bin, cleanup, err := testkit.Setup("krait-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer cleanup()
	repoRoot, kraitBin = root, bin
	code := m.Run()
	// Whatever a test did to its processes (detached, killed krait, killed
	// the target), nothing of krait's stays in /tmp.
	if left := agentDirsLeft(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: krait left agent directories of the tests' processes in /tmp:\n  %s\n", strings.Join(left, "\n  "))
		if code == 0 {
			code = 1
		}
	}
	return code
}

// started maps the pid of every process the tests started (targets and
// krait itself) to its start time: the agent directories in /tmp whose
// owner file names one of them are the tests'.
var started sync.Map

// record notes a process the tests started.
func record(pid int) { started.Store(pid, startTime(pid)) }

// startTime is field 22 of /proc/PID/stat ("" if unreadable).
func startTime(pid int) string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(stat, ')')
	if f := strings.Fields(string(stat[i+1:])); i >= 0 && len(f) >= 20 {
		return f[19]
	}
	return ""
}

// startedAt says whether the tests started process pid at start.
func startedAt(pid int, start uint64) bool {
	v, ok := started.Load(pid)
	return ok && v == strconv.FormatUint(start, 10)
}

// agentDirsLeft lists the agent directories (/tmp/krait-<16 hex>) whose
// owner file names a process the tests started, as target or as krait,
// with what each holds. Other users of /tmp (other test runs) are left
// out.
func agentDirsLeft() []string {
	ents, _ := os.ReadDir("/tmp")
	var out []string
	for _, e := range ents {
		if !agentDirName.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join("/tmp", e.Name())
		data, err := os.ReadFile(filepath.Join(dir, "owner"))
		if err != nil {
			continue
		}
		var o struct {
			PID, Krait int
			Start      uint64
			KraitStart uint64 `json:"krait_start"`
		}
		if json.Unmarshal(data, &o) != nil || !startedAt(o.PID, o.Start) && !startedAt(o.Krait, o.KraitStart) {
			continue
		}
		var names []string
		files, _ := os.ReadDir(dir)
		for _, f := range files {
			names = append(names, f.Name())
		}
		out = append(out, fmt.Sprintf("%s (target %d, krait %d): %s", dir, o.PID, o.Krait, strings.Join(names, " ")))
	}
	return out
}

var agentDirName = regexp.MustCompile(`^krait-[0-9a-f]{16}$`)

// fixture returns the path of a file under testdata/fixtures.
func fixture(name string) string {
	return filepath.Join(repoRoot, "testdata", "fixtures", name)
}

// ---------------------------------------------------------------- running krait

// kraitResult is one run of krait.
type kraitResult struct {
	args   []string
	stdout string
	stderr string
	code   int // exit code; -1 if killed by a signal
}

func (r *kraitResult) String() string {
	return fmt.Sprintf("krait %s: exit %d\nstderr: %s", strings.Join(r.args, " "), r.code, r.stderr)
}

// krait runs the krait binary with args, as root (or whoever runs the
// tests), and waits at most a minute.
func krait(t *testing.T, args ...string) *kraitResult {
	t.Helper()
	return kraitAs(t, nil, args...)
}

// kraitAs runs krait behind the prefix command (e.g. setpriv …).
func kraitAs(t *testing.T, prefix []string, args ...string) *kraitResult {
	t.Helper()
	return runKrait(t, append(append([]string{}, prefix...), kraitBin), nil, time.Minute, args...)
}

// runKrait runs argv (a krait binary, behind a prefix command if any)
// with args, env added to the test's environment, for at most timeout.
func runKrait(t *testing.T, argv, env []string, timeout time.Duration, args ...string) *kraitResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	argv = append(append([]string{}, argv...), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Start()
	if err == nil {
		record(cmd.Process.Pid)
		err = cmd.Wait()
	}
	res := &kraitResult{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.code = exitErr.ExitCode()
	default:
		t.Fatalf("running krait %v: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("krait %v did not finish within %s", args, timeout)
	}
	return res
}

// dumpJSON runs krait dump --json with extra arguments and decodes it.
func dumpJSON(t *testing.T, pid int, extra ...string) *dumpResult {
	t.Helper()
	return dumpJSONArgs(t, append([]string{"dump", "--pid", strconv.Itoa(pid), "--json"}, extra...)...)
}

// dumpJSONArgs runs krait with args, which must ask for JSON, and decodes
// its output.
func dumpJSONArgs(t *testing.T, args ...string) *dumpResult {
	t.Helper()
	r := krait(t, args...)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	var res dumpResult
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("krait %v: decoding JSON: %v\n%s", args, err, r.stdout)
	}
	return &res
}

// checkOneLine fails unless s is exactly one non-empty line starting with
// "krait".
func checkOneLine(t *testing.T, what, s string) {
	t.Helper()
	line, ok := strings.CutSuffix(s, "\n")
	if !ok || line == "" || strings.Contains(line, "\n") {
		t.Errorf("%s: stderr is not exactly one line: %q", what, s)
		return
	}
	if !strings.HasPrefix(line, "krait") {
		t.Errorf("%s: error message does not start with krait: %q", what, line)
	}
}

// checkNoPanic fails if krait's stderr shows a Go panic or runtime crash.
func checkNoPanic(t *testing.T, what, stderr string) {
	t.Helper()
	for _, bad := range []string{"panic", "goroutine ", "runtime error", "SIGSEGV", "fatal error"} {
		if strings.Contains(stderr, bad) {
			t.Errorf("%s: krait crashed (%q in stderr):\n%s", what, bad, stderr)
			return
		}
	}
}

// ---------------------------------------------------------------- the JSON contract

// These mirror the JSON krait dump --json prints (internal/dump.Result),
// written out again here so that a change to the contract shows up as a
// failing test.
type dumpResult struct {
	PID           int           `json:"pid"`
	Command       []string      `json:"command"`
	PythonVersion string        `json:"python_version"`
	Binary        string        `json:"binary"`
	Layout        string        `json:"layout"`
	Paused        bool          `json:"paused"`
	PauseMillis   float64       `json:"pause_ms"`
	Interpreters  int           `json:"interpreters"`
	Threads       []*dumpThread `json:"threads"`
}

type dumpThread struct {
	ThreadID    uint64       `json:"thread_id"`
	NativeID    *int         `json:"native_id"`
	Name        *string      `json:"name"`
	OSName      string       `json:"os_name"`
	Interpreter int64        `json:"interpreter"`
	GIL         bool         `json:"gil"`
	Idle        bool         `json:"idle"`
	Frames      []*dumpFrame `json:"frames"`
	Error       string       `json:"error"`
}

func (t *dumpThread) name() string {
	if t.Name == nil {
		return "<unnamed>"
	}
	return *t.Name
}

type dumpFrame struct {
	Function string       `json:"function"`
	Qualname string       `json:"qualname"`
	File     string       `json:"file"`
	Line     int          `json:"line"`
	Locals   []*dumpLocal `json:"locals"`
	Error    string       `json:"error"`
}

func (f *dumpFrame) String() string {
	return fmt.Sprintf("%s (%s:%d)", f.Function, f.File, f.Line)
}

type dumpValue struct {
	Type       string     `json:"type"`
	Value      string     `json:"value"`
	Address    string     `json:"address"`
	Truncated  bool       `json:"truncated"`
	Error      string     `json:"error"`
	Length     int        `json:"length"`
	Attributes []dumpAttr `json:"attributes"`
}

type dumpLocal struct {
	Name string `json:"name"`
	Arg  bool   `json:"arg"`
	dumpValue
}

type dumpAttr struct {
	Name string `json:"name"`
	dumpValue
}

// threadNamed returns the thread called name, or nil.
func (r *dumpResult) threadNamed(name string) *dumpThread {
	for _, t := range r.Threads {
		if t.Name != nil && *t.Name == name {
			return t
		}
	}
	return nil
}

// ---------------------------------------------------------------- processes

// proc is a process started by a test; t.Cleanup kills and reaps it.
type proc struct {
	cmd    *exec.Cmd
	stdout *lineBuffer
	stderr *lineBuffer
	done   chan struct{} // closed once the process has been reaped
}

// lineBuffer collects output and remembers the last complete line.
type lineBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines int
	last  string
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if n := bytes.Count(p, []byte{'\n'}); n > 0 {
		b.lines += n
		s := strings.TrimSuffix(b.buf.String(), "\n")
		if i := strings.LastIndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
		b.last = s
		// Keep the buffer small: only the tail matters.
		if b.buf.Len() > 1<<16 {
			tail := append([]byte{}, b.buf.Bytes()[b.buf.Len()-4096:]...)
			b.buf.Reset()
			b.buf.Write(tail)
		}
	}
	return len(p), nil
}

func (b *lineBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines returns the number of complete lines and the last one.
func (b *lineBuffer) Lines() (int, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lines, b.last
}

// start starts argv with env added to the test's environment. The process
// is killed (SIGKILL) and reaped when the test ends, and also if the test
// binary dies first.
func start(t *testing.T, env []string, argv ...string) *proc {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{cmd: cmd, stdout: &lineBuffer{}, stderr: &lineBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", argv, err)
	}
	record(cmd.Process.Pid)
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("process %d (%v) could not be reaped", cmd.Process.Pid, argv)
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitFor polls cond every 10 ms until it holds, the process exits or
// timeout passes; it reports whether cond held.
func (p *proc) waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if p.exited() || time.Now().After(deadline) {
			return cond()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procState returns the state letter of /proc/PID/stat (0 if unreadable).
func procState(pid int) byte {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return 0
	}
	return stat[i+2]
}

// threadStates returns the state letter of every thread of pid.
func threadStates(pid int) map[int]byte {
	out := map[int]byte{}
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
		if err != nil {
			continue
		}
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
			out[tid] = stat[i+2]
		}
	}
	return out
}

// tracerPid returns TracerPid from /proc/PID/status of every thread of pid,
// by thread.
func tracerPids(pid int) map[int]int {
	out := map[int]int{}
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "TracerPid:"); ok {
				out[tid], _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
	}
	return out
}

// ---------------------------------------------------------------- interpreters

// python is one interpreter the tests run against.
type python struct {
	name  string // subtest name: the pyenv version ("3.12.1") or "system3.11"
	minor string // "3.12"
	path  string
}

var pyenvVersion = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)$`)

// pyenvRoot is $PYENV_ROOT, else ~/.pyenv.
func pyenvRoot() string {
	if r := os.Getenv("PYENV_ROOT"); r != "" {
		return r
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".pyenv")
}

// systemPythons are Debian's interpreters the tests also run against.
var systemPythons = []struct{ name, minor, path string }{
	{"system3.11", "3.11", "/usr/bin/python3.11"},
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// findPythons lists the interpreters present, and notes about what was
// passed over.
func findPythons() (found []python, notes []string) {
	root := pyenvRoot()
	ents, err := os.ReadDir(filepath.Join(root, "versions"))
	if err != nil {
		notes = append(notes, fmt.Sprintf("no pyenv versions: %v", err))
	}
	for _, e := range ents {
		m := pyenvVersion.FindStringSubmatch(e.Name())
		if m == nil {
			notes = append(notes, fmt.Sprintf("pyenv version %q is not a CPython release; skipped", e.Name()))
			continue
		}
		minor := m[1] + "." + m[2]
		path := filepath.Join(root, "versions", e.Name(), "bin", "python"+minor)
		if !isExecutable(path) {
			notes = append(notes, fmt.Sprintf("pyenv version %s has no %s; skipped", e.Name(), filepath.Base(path)))
			continue
		}
		found = append(found, python{name: e.Name(), minor: minor, path: path})
	}
	sort.Slice(found, func(i, j int) bool { return lessVersion(found[i].name, found[j].name) })
	for _, s := range systemPythons {
		if isExecutable(s.path) {
			found = append(found, python{name: s.name, minor: s.minor, path: s.path})
		} else {
			notes = append(notes, fmt.Sprintf("%s: no %s", s.name, s.path))
		}
	}
	return found, notes
}

func lessVersion(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) && i < len(pb); i++ {
		x, _ := strconv.Atoi(pa[i])
		y, _ := strconv.Atoi(pb[i])
		if x != y {
			return x < y
		}
	}
	return len(pa) < len(pb)
}

// expectedPythons are the interpreters the tests look for even when
// KRAIT_REQUIRE_PYTHONS does not name them; a missing one is a skipped
// subtest of TestDump.
var expectedPythons = []string{"2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "system3.11"}

// missingPythons returns the expected or required interpreters that found
// lacks.
func missingPythons(found []python) []string {
	var out []string
	for _, tok := range append(append([]string{}, expectedPythons...), required()...) {
		if slices.Contains(out, tok) || slices.ContainsFunc(found, func(p python) bool { return p.matches(tok) }) {
			continue
		}
		out = append(out, tok)
	}
	return out
}

// required returns the tokens of KRAIT_REQUIRE_PYTHONS.
func required() []string {
	return strings.Fields(os.Getenv("KRAIT_REQUIRE_PYTHONS"))
}

// matches says whether interpreter p satisfies a KRAIT_REQUIRE_PYTHONS
// token: "3.12" is any pyenv 3.12.x, "system3.11" is Debian's.
func (p python) matches(token string) bool {
	if strings.HasPrefix(token, "system") {
		return p.name == token
	}
	return !strings.HasPrefix(p.name, "system") && p.minor == token
}

// pythons returns the interpreters to test, failing the test if a required
// one is missing and skipping it if there are none.
func pythons(t *testing.T) []python {
	t.Helper()
	found, notes := findPythons()
	for _, n := range notes {
		t.Log(n)
	}
	var missing []string
	for _, tok := range required() {
		ok := false
		for _, p := range found {
			ok = ok || p.matches(tok)
		}
		if !ok {
			missing = append(missing, tok)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("KRAIT_REQUIRE_PYTHONS: required interpreters missing: %s (pyenv root %s)", strings.Join(missing, " "), pyenvRoot())
	}
	if len(found) == 0 {
		t.Skip("no Python interpreters found (set PYENV_ROOT or install pyenv builds)")
	}
	return found
}

// pickPython returns one interpreter for tests that need just one: the
// newest pyenv 3.12 if there is one, else the newest found.
func pickPython(t *testing.T) python {
	t.Helper()
	all := pythons(t)
	best := all[len(all)-1]
	for _, p := range all {
		if p.minor == "3.12" && !strings.HasPrefix(p.name, "system") {
			best = p
		}
	}
	return best
}
