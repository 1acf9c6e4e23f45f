// Command benchattach measures `krait attach` on a live CPython process: how
// long attaching takes and how long it freezes the process, and how much a
// breakpoint armed by krait slows a call-heavy workload down, next to
// debugpy and pdb with the same breakpoint. It prints a Markdown report
// (see BENCHMARKS.md).
//
//	go build -o krait ./cmd/krait
//	go run ./tools/benchattach > result.md
//
// The target is testdata/bench/attach_target.py: a worker thread calls
// small Python functions without end and the target reports its throughput
// over windows the benchmark opens and closes with signals (SIGUSR1,
// SIGUSR2); a ticker thread measures, from inside, the longest time the
// process could not run. For debugpy, benchattach makes a virtualenv per
// interpreter and pip-installs debugpy into it, starts the target with
// debugpy.listen() and attaches with its own small DAP client.
//
// Every process it starts is killed before it returns, also on errors and
// on SIGINT/SIGTERM (debugpy's adapter daemonizes itself: it is found by its
// port and killed too); the targets also exit by themselves if benchattach
// dies.
//
// Standard library only (and the helpers it shares with benchdump).
package main

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"krait/tools/internal/benchkit"
)

type config struct {
	pythons     []string
	parts       []string // attach, overhead
	tools       []string // krait, debugpy, pdb
	krait       string
	target      string
	reps        int
	warmup      int
	gapWindow   time.Duration
	window      time.Duration
	windows     int
	rounds      int
	settle      time.Duration
	timeout     time.Duration
	venvs       string
	debugpySpec string
	raw         string
	ticker      bool

	bpFlag string // --breakpoint
	bpFile string // absolute path of the breakpoint's file
	bpLine int    // its line: by default never_called()'s marked line
	bpSpec string // as given to krait and pdb: attach_target.py:LINE
}

func main() {
	os.Exit(run())
}

func run() int {
	var c config
	var pythons, parts, tools string
	flag.StringVar(&pythons, "python", "", "comma-separated interpreters: pyenv versions (3.12, 3.12.1; the newest installed match under $PYENV_ROOT or ~/.pyenv) or paths to python executables (default: every pyenv 3.x, plus /usr/bin/python3.11 if present)")
	flag.StringVar(&parts, "parts", "attach,overhead", "what to measure: attach (attach time and pause), overhead (throughput with a breakpoint armed)")
	flag.StringVar(&tools, "tools", "krait,debugpy,pdb", "debuggers to compare in the overhead part (krait, debugpy, pdb)")
	flag.StringVar(&c.krait, "krait", "./krait", "krait binary (build it with go build -o krait ./cmd/krait)")
	flag.StringVar(&c.target, "target", "", "attach_target.py (default: testdata/bench/attach_target.py in this module)")
	flag.IntVar(&c.reps, "reps", 10, "attach part: measured attaches per interpreter and target state")
	flag.IntVar(&c.warmup, "warmup", 1, "attach part: unmeasured attaches before those")
	flag.DurationVar(&c.gapWindow, "gap-window", 100*time.Millisecond, "attach part: also measure the target's largest gap over this window with nothing attached (0: skip)")
	flag.DurationVar(&c.window, "window", time.Second, "overhead part: length of one throughput window")
	flag.IntVar(&c.windows, "windows", 4, "overhead part: windows per configuration and round")
	flag.IntVar(&c.rounds, "rounds", 2, "overhead part: rounds; each round runs every configuration once, in turn")
	flag.DurationVar(&c.settle, "settle", 500*time.Millisecond, "overhead part: wait after starting, attaching or detaching before the next window")
	flag.DurationVar(&c.timeout, "timeout", time.Minute, "longest one krait command, debugger handshake or target start-up may take")
	flag.StringVar(&c.venvs, "venvs", "", "directory for the per-interpreter debugpy virtualenvs, reused if present (default: a temporary directory, removed at the end)")
	flag.StringVar(&c.debugpySpec, "debugpy", "debugpy", "pip requirement to install in each virtualenv")
	flag.StringVar(&c.raw, "raw", "", "also write every sample as JSON to this file")
	flag.BoolVar(&c.ticker, "ticker", false, "overhead part: run the ticker thread in every target too, and report the largest gap per window (it competes with the workload for the GIL)")
	flag.StringVar(&c.bpFlag, "breakpoint", "", "overhead part: ABSOLUTE_FILE:LINE to break at instead of never_called() (for a diagnosis, e.g. a line of a stdlib module the target imported but does not run; use with one --python)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "benchattach: unexpected arguments:", flag.Args())
		return 2
	}
	c.pythons = benchkit.SplitList(pythons)
	c.parts = benchkit.SplitList(parts)
	c.tools = benchkit.SplitList(tools)
	for _, p := range c.parts {
		if p != "attach" && p != "overhead" {
			fmt.Fprintf(os.Stderr, "benchattach: unknown part %q\n", p)
			return 2
		}
	}
	for _, t := range c.tools {
		if t != "krait" && t != "debugpy" && t != "pdb" {
			fmt.Fprintf(os.Stderr, "benchattach: unknown tool %q\n", t)
			return 2
		}
	}
	if len(c.parts) == 0 || c.reps < 1 || c.windows < 1 || c.rounds < 1 || c.window <= 0 {
		fmt.Fprintln(os.Stderr, "benchattach: need at least one part, repetition, window and round")
		return 2
	}

	// Whatever happens, the processes we started die with us.
	procs.KillOnSignal("benchattach")
	defer procs.KillAll()

	if err := bench(&c); err != nil {
		fmt.Fprintln(os.Stderr, "benchattach:", err)
		return 1
	}
	return 0
}

// ---- processes we own ----

var procs = benchkit.NewProcs()

// runCmd runs a short command we own (a venv or pip step) with a timeout
// and returns its combined output.
func runCmd(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = benchkit.OwnAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	procs.AddGroup(cmd.Process.Pid)
	err := cmd.Wait()
	procs.RemoveGroup(cmd.Process.Pid)
	if ctx.Err() != nil {
		err = fmt.Errorf("killed after %v", timeout)
	}
	return out.String(), err
}

// ---- interpreters ----

type python struct {
	arg     string // as given, or found
	exe     string
	version string // 3.12.1
	minor   int    // 12
	label   string // 3.12.1, or 3.11.2 (system) for a non-pyenv one
	backend string // as krait reports it, once known

	debugpyPy  string // the virtualenv's python, "" if none
	debugpyVer string
	debugpyErr string // why debugpy is not available
}

// defaultPythons is every pyenv 3.x build, oldest first, then the
// system's python3.11 if there is one.
func defaultPythons() []string {
	var vs []string
	ents, _ := os.ReadDir(filepath.Join(benchkit.PyenvRoot(), "versions"))
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, "3.") {
			continue
		}
		if _, err := os.Stat(filepath.Join(benchkit.PyenvRoot(), "versions", n, "bin", "python3")); err == nil {
			vs = append(vs, n)
		}
	}
	sort.Slice(vs, func(i, j int) bool { return benchkit.VersionLess(vs[i], vs[j]) })
	if _, err := os.Stat("/usr/bin/python3.11"); err == nil {
		vs = append(vs, "/usr/bin/python3.11")
	}
	return vs
}

func findPython(arg string) (*python, error) {
	p := &python{arg: arg}
	pyenv := !strings.ContainsRune(arg, '/')
	if !pyenv {
		p.exe = arg
	} else {
		exe, err := benchkit.PyenvPython(arg)
		if err != nil {
			return nil, err
		}
		p.exe = exe
	}
	out, err := exec.Command(p.exe, "-c", "import sys; print(sys.version_info[1]); print(sys.version.split()[0])").Output()
	if err != nil {
		return nil, fmt.Errorf("python %s: %v", arg, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return nil, fmt.Errorf("python %s: unexpected answer %q", arg, out)
	}
	p.minor, _ = strconv.Atoi(f[0])
	p.version = f[1]
	p.label = p.version
	if !pyenv || !strings.HasPrefix(p.exe, benchkit.PyenvRoot()) {
		p.label += " (" + tidy(p.exe) + ")"
	}
	return p, nil
}

// setupDebugpy makes (or reuses) a virtualenv for py under dir and installs
// debugpy in it. Failure is recorded, not fatal: the report says why.
func setupDebugpy(c *config, py *python, dir string) {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(strings.TrimPrefix(py.exe, "/"))
	venv := filepath.Join(dir, name)
	vpy := filepath.Join(venv, "bin", "python")
	if _, err := os.Stat(vpy); err != nil {
		fmt.Fprintf(os.Stderr, "python %s: making a virtualenv for debugpy\n", py.label)
		if out, err := runCmd(5*time.Minute, py.exe, "-m", "venv", venv); err != nil {
			py.debugpyErr = "venv failed: " + lastLine(out+"\n"+err.Error())
			return
		}
	}
	if out, err := runCmd(10*time.Second, vpy, "-c", "import debugpy; print(debugpy.__version__)"); err == nil {
		py.debugpyPy, py.debugpyVer = vpy, strings.TrimSpace(out)
		return
	}
	fmt.Fprintf(os.Stderr, "python %s: pip install %s\n", py.label, c.debugpySpec)
	if out, err := runCmd(10*time.Minute, vpy, "-m", "pip", "install", "--disable-pip-version-check", "-q", c.debugpySpec); err != nil {
		py.debugpyErr = "pip install failed: " + lastLine(out+"\n"+err.Error())
		return
	}
	out, err := runCmd(10*time.Second, vpy, "-c", "import debugpy; print(debugpy.__version__)")
	if err != nil {
		py.debugpyErr = "installed but does not import: " + lastLine(out)
		return
	}
	py.debugpyPy, py.debugpyVer = vpy, strings.TrimSpace(out)
}

// tidy is benchkit.Tidy, with this tool's temporary directories as $TMP.
func tidy(s string) string {
	s = benchkit.Tidy(s)
	if tmp := os.TempDir(); tmp != "" && tmp != "/" {
		s = regexp.MustCompile(regexp.QuoteMeta(strings.TrimRight(tmp, "/"))+`/benchattach-[^/ ]*`).ReplaceAllString(s, "$$TMP")
	}
	return s
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return firstLine(s)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return tidy(s)
}

// ---- the target ----

type targetOpts struct {
	python      string   // interpreter to run
	pre         []string // before the script: -m pdb
	idle        bool
	mainThread  bool
	ticker      bool
	debugpyPort int
	stdin       string // written to its standard input, which stays open
}

type target struct {
	cmd    *exec.Cmd
	dir    string
	pid    int
	done   chan struct{}
	stdout *lockedBuffer
	stderr *lockedBuffer
	stdin  io.WriteCloser
	extra  []int // processes it started that left its group
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startTarget(c *config, o targetOpts) (*target, error) {
	dir, err := os.MkdirTemp("", "benchattach-")
	if err != nil {
		return nil, err
	}
	procs.AddDir(dir)
	t := &target{dir: dir, done: make(chan struct{}), stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	args := append(append([]string(nil), o.pre...), c.target)
	if len(o.pre) > 0 {
		args = append(args, "--") // the debugger's options end here
	}
	args = append(args, "--report", filepath.Join(dir, "report"), "--ready", filepath.Join(dir, "ready"))
	if o.idle {
		args = append(args, "--idle")
	}
	if o.mainThread {
		args = append(args, "--main-thread")
	}
	if o.ticker {
		args = append(args, "--ticker")
	}
	if o.debugpyPort != 0 {
		args = append(args, "--debugpy-port", strconv.Itoa(o.debugpyPort))
	}
	t.cmd = exec.Command(o.python, args...)
	t.cmd.Dir = filepath.Dir(c.target)
	t.cmd.SysProcAttr = benchkit.OwnAttr()
	t.cmd.Stdout = t.stdout
	t.cmd.Stderr = t.stderr
	if t.stdin, err = t.cmd.StdinPipe(); err != nil {
		procs.RemoveDir(dir)
		return nil, err
	}
	if err := t.cmd.Start(); err != nil {
		procs.RemoveDir(dir)
		return nil, err
	}
	t.pid = t.cmd.Process.Pid
	procs.AddGroup(t.pid)
	go func() { _ = t.cmd.Wait(); close(t.done) }()
	if o.stdin != "" {
		if _, err := io.WriteString(t.stdin, o.stdin); err != nil {
			t.stop()
			return nil, err
		}
	}
	deadline := time.Now().Add(c.timeout)
	for {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			break
		}
		select {
		case <-t.done:
			err := fmt.Errorf("target exited before it was ready: %v: %s", t.cmd.ProcessState, lastLine(t.stderr.String()+"\n"+t.stdout.String()))
			t.stop()
			return nil, err
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.stop()
			return nil, fmt.Errorf("target not ready after %v: %s", c.timeout, lastLine(t.stderr.String()+"\n"+t.stdout.String()))
		}
	}
	if o.debugpyPort != 0 {
		// debugpy's adapter daemonizes (double fork, setsid): it leaves our
		// process group, so find it by the port it listens on.
		for _, pid := range findAdapters(o.debugpyPort) {
			t.extra = append(t.extra, pid)
			port := o.debugpyPort
			procs.AddSingle(pid, func() bool { return isAdapter(pid, port) })
		}
	}
	return t, nil
}

// findAdapters lists the debugpy adapter processes started for port: their
// command line runs debugpy's adapter with --port PORT.
func findAdapters(port int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && isAdapter(pid, port) {
			out = append(out, pid)
		}
	}
	return out
}

// isAdapter says whether process pid is debugpy's adapter for port.
func isAdapter(pid, port int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	adapter, hasPort := false, false
	for i, a := range args {
		if strings.Contains(a, "debugpy") && strings.Contains(a, "adapter") {
			adapter = true
		}
		if a == "--port" && i+1 < len(args) && args[i+1] == strconv.Itoa(port) {
			hasPort = true
		}
	}
	return adapter && hasPort
}

func (t *target) stop() {
	if t.stdin != nil {
		t.stdin.Close()
	}
	select {
	case <-t.done: // exited and reaped: its ids may be reused
	default:
		_ = syscall.Kill(-t.pid, syscall.SIGKILL)
		_ = syscall.Kill(t.pid, syscall.SIGKILL)
		select {
		case <-t.done:
		case <-time.After(10 * time.Second):
		}
	}
	procs.RemoveGroup(t.pid)
	for _, pid := range t.extra {
		procs.KillSingle(pid)
	}
	procs.RemoveDir(t.dir)
}

// signal sends sig and waits for the target's answer in the report file.
func (t *target) signal(sig syscall.Signal) (string, error) {
	rep := filepath.Join(t.dir, "report")
	if err := os.Remove(rep); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if err := syscall.Kill(t.pid, sig); err != nil {
		return "", fmt.Errorf("signal target: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(rep); err == nil {
			return strings.TrimSpace(string(b)), nil
		}
		select {
		case <-t.done:
			return "", errors.New("target exited")
		case <-time.After(200 * time.Microsecond):
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("target did not answer %v in 30s", sig)
		}
	}
}

// threads is the number of the target's threads.
func (t *target) threads() int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", t.pid))
	return len(ents)
}

// waitThreads waits until the target has n threads.
func (t *target) waitThreads(n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for t.threads() != n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// waitParked waits until the main thread sleeps outside a futex, i.e. in
// its time.sleep() again rather than waiting for the GIL.
func (t *target) waitParked(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		st := benchkit.ReadTrim(fmt.Sprintf("/proc/%d/task/%d/stat", t.pid, t.pid))
		wchan := benchkit.ReadTrim(fmt.Sprintf("/proc/%d/task/%d/wchan", t.pid, t.pid))
		if i := strings.LastIndexByte(st, ')'); i >= 0 && i+2 < len(st) && st[i+2] == 'S' && wchan != "" && wchan != "0" && !strings.Contains(wchan, "futex") {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// startWindow opens a window (and resets the ticker's largest gap).
func (t *target) startWindow() error {
	_, err := t.signal(syscall.SIGUSR1)
	return err
}

// endWindow closes it: calls/s, the largest gap in ms (-1 without a
// ticker), and its length in seconds, all measured inside the target.
func (t *target) endWindow() (rate, gap, secs float64, err error) {
	s, err := t.signal(syscall.SIGUSR2)
	if err != nil {
		return 0, 0, 0, err
	}
	f := strings.Fields(s)
	if len(f) != 3 {
		return 0, 0, 0, fmt.Errorf("bad report %q", s)
	}
	v := make([]float64, 3)
	for i := range f {
		if v[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			return 0, 0, 0, fmt.Errorf("bad report %q", s)
		}
	}
	return v[0], v[1], v[2], nil
}

// findTarget finds testdata/bench/attach_target.py in the enclosing module.
func findTarget() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "testdata", "bench", "attach_target.py")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("testdata/bench/attach_target.py not found: run from the module or pass --target")
}

// breakpointLine is the line of the target marked "# benchattach: breakpoint".
func breakpointLine(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "# benchattach: breakpoint") {
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("%s: no line marked \"# benchattach: breakpoint\"", path)
}

// ---- part 1: attach time ----

type attachSample struct {
	Python      string  `json:"python"`
	State       string  `json:"state"` // idle, busy
	Tool        string  `json:"tool"`  // krait, (no tool)
	Rep         int     `json:"rep"`   // < 0: warm-up
	WallMS      float64 `json:"wall_ms"`
	AttachMS    float64 `json:"krait_attach_ms,omitempty"` // "Attached … in N"
	KraitPause  float64 `json:"krait_pause_ms,omitempty"`  // "process paused N"
	GapMS       float64 `json:"target_gap_ms"`             // the ticker's largest gap
	Via         string  `json:"via,omitempty"`             // MainThread (clock_nanosleep)
	Backend     string  `json:"backend,omitempty"`
	Err         string  `json:"error,omitempty"`
	LoadAverage string  `json:"load_average,omitempty"`
}

const noTool = "(no tool)"

var attachedRE = regexp.MustCompile(`^Attached to process (\d+) \(Python (\S+), (\S+) backend\) in (\S+); process paused (\S+) while krait entered via (thread \d+|PEP 768) \((.*)\)\.(?:\n|$)`)

// parseAttached reads krait's first line.
func parseAttached(line string, pid int, s *attachSample) error {
	m := attachedRE.FindStringSubmatch(line)
	if m == nil {
		return fmt.Errorf("unexpected first line %q", firstLine(line))
	}
	s.Backend = m[3]
	d, err1 := time.ParseDuration(m[4])
	p, err2 := time.ParseDuration(m[5])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("unexpected durations in %q", firstLine(line))
	}
	s.AttachMS, s.KraitPause = ms(d), ms(p)
	via := m[6]
	if m[6] == "thread "+strconv.Itoa(pid) {
		via = "main thread"
	}
	s.Via = via + " (" + m[7] + ")"
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// attachOnce runs `krait attach PID --batch -ex 'info threads'`.
func attachOnce(c *config, pid int, s *attachSample) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.krait, "attach", strconv.Itoa(pid), "--batch", "-ex", "info threads")
	cmd.SysProcAttr = benchkit.OwnAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	procs.AddGroup(cmd.Process.Pid)
	err := cmd.Wait()
	s.WallMS = ms(time.Since(start))
	procs.RemoveGroup(cmd.Process.Pid)
	if ctx.Err() != nil {
		return fmt.Errorf("killed after %v", c.timeout)
	}
	if err != nil {
		return fmt.Errorf("%v: %s", err, lastLine(stderr.String()+"\n"+stdout.String()))
	}
	out := stdout.String()
	if err := parseAttached(out, pid, s); err != nil {
		return err
	}
	for _, want := range []string{`"worker"`, `"ticker"`, `"MainThread"`, "detached]"} {
		if !strings.Contains(out, want) {
			return fmt.Errorf("no %s in the output: %s", want, lastLine(out))
		}
	}
	return nil
}

func benchAttach(c *config, py *python) []attachSample {
	var out []attachSample
	for _, state := range []string{"idle", "busy"} {
		fmt.Fprintf(os.Stderr, "python %s, attach, %s target: starting it\n", py.label, state)
		fail := func(err error) {
			out = append(out, attachSample{Python: py.label, State: state, Tool: "krait", Err: err.Error()})
			fmt.Fprintf(os.Stderr, "  FAILED: %v\n", err)
		}
		t, err := startTarget(c, targetOpts{python: py.exe, idle: state == "idle", ticker: true})
		if err != nil {
			fail(err)
			continue
		}
		time.Sleep(300 * time.Millisecond)
		threads := t.threads()
		tools := []string{"krait"}
		if c.gapWindow > 0 {
			tools = []string{noTool, "krait"}
		}
	reps:
		for rep := -c.warmup; rep < c.reps; rep++ {
			for _, tool := range tools {
				s := attachSample{Python: py.label, State: state, Tool: tool, Rep: rep}
				if err := t.startWindow(); err != nil {
					fail(fmt.Errorf("reset: %v", err))
					break reps
				}
				var terr error
				// Our signal woke the main thread; let it go back to sleep
				// (on a busy target it waits for the GIL first), or krait
				// may find no thread parked in a system call.
				t.waitParked(time.Second)
				if tool == noTool {
					start := time.Now()
					time.Sleep(c.gapWindow)
					s.WallMS = ms(time.Since(start))
				} else {
					terr = attachOnce(c, t.pid, &s)
				}
				_, gap, _, err := t.endWindow()
				if err != nil {
					if terr == nil {
						terr = fmt.Errorf("target unresponsive afterwards: %v", err)
					}
					s.Err = terr.Error()
					out = append(out, s)
					fmt.Fprintf(os.Stderr, "  FAILED: %v; restarting the target\n", terr)
					t.stop()
					if t, err = startTarget(c, targetOpts{python: py.exe, idle: state == "idle", ticker: true}); err != nil {
						fail(err)
						t = nil
						break reps
					}
					continue
				}
				s.GapMS = gap
				if terr != nil {
					s.Err = terr.Error()
				}
				if s.Backend != "" {
					py.backend = s.Backend
				}
				label := "rep " + strconv.Itoa(rep+1)
				if rep < 0 {
					label = "warm-up"
				}
				fmt.Fprintf(os.Stderr, "  %-8s %-10s wall %7.1f ms  gap %7.2f ms", label, tool, s.WallMS, s.GapMS)
				if tool == "krait" {
					fmt.Fprintf(os.Stderr, "  (attach %.0f ms, pause %.2f ms, via %s)", s.AttachMS, s.KraitPause, s.Via)
				}
				if s.Err != "" {
					fmt.Fprintf(os.Stderr, "  FAILED: %s", s.Err)
				}
				fmt.Fprintln(os.Stderr)
				out = append(out, s)
				// The agent thread lives on for up to a second after
				// detach (it unmaps the trampoline last): let it end, so
				// that each run starts from the same process.
				if tool == "krait" && !t.waitThreads(threads, 5*time.Second) {
					fmt.Fprintf(os.Stderr, "  the target still has %d threads (not %d) 5 s after detach\n", t.threads(), threads)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		if t != nil {
			t.stop()
		}
	}
	return out
}

// ---- part 2: throughput with a breakpoint armed ----

// Configurations, in the order each round runs them.
const (
	cfgBaseline   = "baseline"
	cfgKrait      = "krait"
	cfgAfter      = "after krait detached"
	cfgListening  = "debugpy listening, no client"
	cfgDebugpy    = "debugpy"
	cfgPdb        = "pdb"
	cfgBaselineMT = "baseline, main thread"
	cfgPdbMT      = "pdb, main thread"
)

type window struct {
	Python      string  `json:"python"`
	Config      string  `json:"config"`
	Round       int     `json:"round"`
	Index       int     `json:"index"`
	CallsPerSec float64 `json:"calls_per_s"`
	Seconds     float64 `json:"seconds"`
	GapMS       float64 `json:"target_gap_ms,omitempty"` // with --ticker
	Err         string  `json:"error,omitempty"`
	LoadAverage string  `json:"load_average"`
}

// measure opens and closes n windows of c.window on t.
func measure(c *config, t *target, py *python, cfg string, round int, out *[]window) error {
	for i := 0; i < c.windows; i++ {
		if err := t.startWindow(); err != nil {
			return err
		}
		time.Sleep(c.window)
		rate, gap, secs, err := t.endWindow()
		if err != nil {
			return err
		}
		w := window{Python: py.label, Config: cfg, Round: round, Index: i, CallsPerSec: rate, Seconds: secs, LoadAverage: benchkit.Loadavg()}
		if c.ticker {
			w.GapMS = gap
		}
		*out = append(*out, w)
		fmt.Fprintf(os.Stderr, "  round %d %-30s %6.2f M calls/s  (%.3f s; load %s)", round+1, cfg, rate/1e6, secs, w.LoadAverage)
		if c.ticker {
			fmt.Fprintf(os.Stderr, "  largest gap %.1f ms", gap)
		}
		fmt.Fprintln(os.Stderr)
	}
	return nil
}

// kraitSession is an interactive `krait attach PID` fed on its standard
// input, as a person at a terminal would (minus the terminal).
type kraitSession struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan struct{}
	first string
}

// startKrait starts an interactive krait session on t. Our last signal
// woke t's main thread: krait is started once it sleeps again; if krait
// still finds no thread to enter through (it says so and exits), it is
// tried again, up to 5 times.
func startKrait(c *config, t *target) (*kraitSession, error) {
	var err error
	for try := 0; try < 5; try++ {
		t.waitParked(time.Second)
		var k *kraitSession
		if k, err = startKraitOnce(c, t.pid); err == nil {
			return k, nil
		}
		if !strings.Contains(err.Error(), "no thread is parked") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, err
}

func startKraitOnce(c *config, pid int) (*kraitSession, error) {
	k := &kraitSession{lines: make(chan string, 1024), done: make(chan struct{})}
	k.cmd = exec.Command(c.krait, "attach", strconv.Itoa(pid))
	k.cmd.SysProcAttr = benchkit.OwnAttr()
	var err error
	if k.stdin, err = k.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := k.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	k.cmd.Stderr = k.cmd.Stdout // both into the pipe: errors show in order
	if err := k.cmd.Start(); err != nil {
		return nil, err
	}
	procs.AddGroup(k.cmd.Process.Pid)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case k.lines <- sc.Text():
			default:
			}
		}
		close(k.lines)
	}()
	go func() { _ = k.cmd.Wait(); close(k.done) }()
	line, err := k.expect("Attached to process", c.timeout)
	if err != nil {
		k.kill()
		return nil, err
	}
	k.first = line
	return k, nil
}

// expect waits for a line starting with prefix.
func (k *kraitSession) expect(prefix string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	var seen []string
	for {
		select {
		case l, ok := <-k.lines:
			if !ok {
				return "", fmt.Errorf("krait exited waiting for %q: %s", prefix, lastLine(strings.Join(seen, "\n")))
			}
			if strings.HasPrefix(l, prefix) {
				return l, nil
			}
			seen = append(seen, l)
		case <-deadline:
			return "", fmt.Errorf("krait: no %q in %v: %s", prefix, timeout, lastLine(strings.Join(seen, "\n")))
		}
	}
}

func (k *kraitSession) send(line string) error {
	_, err := io.WriteString(k.stdin, line+"\n")
	return err
}

// detach asks krait to detach and waits for it to exit.
func (k *kraitSession) detach(timeout time.Duration) error {
	if err := k.send("detach"); err != nil {
		k.kill()
		return err
	}
	_, err := k.expect("[Inferior 1", timeout)
	k.stdin.Close()
	select {
	case <-k.done:
	case <-time.After(timeout):
		k.kill()
		return errors.New("krait did not exit after detach")
	}
	procs.RemoveGroup(k.cmd.Process.Pid)
	return err
}

// kill kills krait unless it has exited (its process group id could be
// another process's by now).
func (k *kraitSession) kill() {
	select {
	case <-k.done:
	default:
		_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-k.done:
		case <-time.After(5 * time.Second):
		}
	}
	procs.RemoveGroup(k.cmd.Process.Pid)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type overheadResult struct {
	windows []window
	errs    map[string]string // config → first error
}

func benchOverhead(c *config, py *python) overheadResult {
	res := overheadResult{errs: map[string]string{}}
	fail := func(cfg string, err error) {
		if _, ok := res.errs[cfg]; !ok {
			res.errs[cfg] = tidy(err.Error())
		}
		fmt.Fprintf(os.Stderr, "  %s FAILED: %v\n", cfg, err)
	}
	bp := c.bpSpec
	where := filepath.Base(c.bpFile) + ":" + strconv.Itoa(c.bpLine)
	for round := 0; round < c.rounds; round++ {
		fmt.Fprintf(os.Stderr, "python %s, overhead, round %d of %d (load %s)\n", py.label, round+1, c.rounds, benchkit.Loadavg())

		// Baseline, krait with a breakpoint, after detach: one process.
		func() {
			t, err := startTarget(c, targetOpts{python: py.exe, ticker: c.ticker})
			if err != nil {
				fail(cfgBaseline, err)
				return
			}
			defer t.stop()
			time.Sleep(c.settle)
			if err := measure(c, t, py, cfgBaseline, round, &res.windows); err != nil {
				fail(cfgBaseline, err)
				return
			}
			if !slices.Contains(c.tools, "krait") {
				return
			}
			k, err := startKrait(c, t)
			if err != nil {
				fail(cfgKrait, err)
				return
			}
			defer k.kill()
			var s attachSample
			if err := parseAttached(k.first, t.pid, &s); err == nil {
				py.backend = s.Backend
			}
			if err := k.send("break " + bp); err != nil {
				fail(cfgKrait, err)
				return
			}
			l, err := k.expect("Breakpoint 1 at", c.timeout)
			if err != nil {
				fail(cfgKrait, err)
				return
			}
			if !strings.Contains(l, where) {
				fail(cfgKrait, fmt.Errorf("breakpoint not where expected: %s", l))
				return
			}
			time.Sleep(c.settle)
			if err := measure(c, t, py, cfgKrait, round, &res.windows); err != nil {
				fail(cfgKrait, err)
				return
			}
			if err := k.detach(c.timeout); err != nil {
				fail(cfgAfter, err)
				return
			}
			time.Sleep(c.settle)
			if err := measure(c, t, py, cfgAfter, round, &res.windows); err != nil {
				fail(cfgAfter, err)
			}
		}()

		// debugpy: listening without a client, then with a breakpoint armed.
		if slices.Contains(c.tools, "debugpy") && py.debugpyPy != "" {
			func() {
				port, err := freePort()
				if err != nil {
					fail(cfgListening, err)
					return
				}
				t, err := startTarget(c, targetOpts{python: py.debugpyPy, debugpyPort: port, ticker: c.ticker})
				if err != nil {
					fail(cfgListening, err)
					fail(cfgDebugpy, err)
					return
				}
				defer t.stop()
				time.Sleep(c.settle)
				if err := measure(c, t, py, cfgListening, round, &res.windows); err != nil {
					fail(cfgListening, err)
					return
				}
				d, err := debugpyAttach(fmt.Sprintf("127.0.0.1:%d", port), c.bpFile, c.bpLine, c.bpFlag == "", c.timeout)
				if err != nil {
					fail(cfgDebugpy, err)
					return
				}
				defer d.close()
				time.Sleep(c.settle)
				if err := measure(c, t, py, cfgDebugpy, round, &res.windows); err != nil {
					fail(cfgDebugpy, err)
					return
				}
				if err := d.disconnect(5 * time.Second); err != nil {
					fmt.Fprintf(os.Stderr, "  debugpy disconnect: %v\n", err)
				}
			}()
		}

		// pdb, the workload on a worker thread (as for the others), then on
		// the main thread, the only one pdb traces, with its own baseline.
		if slices.Contains(c.tools, "pdb") {
			for _, mt := range []bool{false, true} {
				if mt {
					func() {
						t, err := startTarget(c, targetOpts{python: py.exe, mainThread: true, ticker: c.ticker})
						if err != nil {
							fail(cfgBaselineMT, err)
							return
						}
						defer t.stop()
						time.Sleep(c.settle)
						if err := measure(c, t, py, cfgBaselineMT, round, &res.windows); err != nil {
							fail(cfgBaselineMT, err)
						}
					}()
				}
				cfg := cfgPdb
				if mt {
					cfg = cfgPdbMT
				}
				func() {
					t, err := startTarget(c, targetOpts{python: py.exe, pre: []string{"-m", "pdb"}, mainThread: mt, ticker: c.ticker,
						stdin: "break " + bp + "\ncontinue\n"})
					if err != nil {
						fail(cfg, err)
						return
					}
					defer t.stop()
					if out := t.stdout.String(); !strings.Contains(out, "Breakpoint 1 at ") || !strings.Contains(out, where) {
						fail(cfg, fmt.Errorf("pdb did not set the breakpoint: %s", lastLine(out)))
						return
					}
					time.Sleep(c.settle)
					if err := measure(c, t, py, cfg, round, &res.windows); err != nil {
						fail(cfg, err)
					}
				}()
			}
		}
	}
	return res
}

// ---- the benchmark ----

type result struct {
	py       *python
	attach   []attachSample
	overhead overheadResult
}

func bench(c *config) error {
	if c.target == "" {
		t, err := findTarget()
		if err != nil {
			return err
		}
		c.target = t
	}
	abs, err := filepath.Abs(c.target)
	if err != nil {
		return err
	}
	c.target = abs
	if c.bpFlag == "" {
		if c.bpLine, err = breakpointLine(c.target); err != nil {
			return err
		}
		c.bpFile, c.bpSpec = c.target, "attach_target.py:"+strconv.Itoa(c.bpLine)
	} else {
		i := strings.LastIndexByte(c.bpFlag, ':')
		if i < 0 || !filepath.IsAbs(c.bpFlag[:i]) {
			return fmt.Errorf("--breakpoint %q: want ABSOLUTE_FILE:LINE", c.bpFlag)
		}
		if c.bpLine, err = strconv.Atoi(c.bpFlag[i+1:]); err != nil || c.bpLine < 1 {
			return fmt.Errorf("--breakpoint %q: bad line", c.bpFlag)
		}
		c.bpFile, c.bpSpec = c.bpFlag[:i], c.bpFlag
	}
	if c.krait, err = exec.LookPath(c.krait); err != nil {
		return fmt.Errorf("krait: %v (see --krait)", err)
	}
	if c.krait, err = filepath.Abs(c.krait); err != nil {
		return err
	}
	if len(c.pythons) == 0 {
		c.pythons = defaultPythons()
		if len(c.pythons) == 0 {
			return errors.New("no interpreters found: pass --python")
		}
	}
	var pys []*python
	for _, a := range c.pythons {
		py, err := findPython(a)
		if err != nil {
			return err
		}
		pys = append(pys, py)
	}
	overhead := slices.Contains(c.parts, "overhead")
	if overhead && slices.Contains(c.tools, "debugpy") {
		dir := c.venvs
		if dir == "" {
			if dir, err = os.MkdirTemp("", "benchattach-venvs-"); err != nil {
				return err
			}
			procs.AddDir(dir)
			defer procs.RemoveDir(dir)
		} else if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for _, py := range pys {
			setupDebugpy(c, py, dir)
			if py.debugpyErr != "" {
				fmt.Fprintf(os.Stderr, "python %s: no debugpy: %s\n", py.label, py.debugpyErr)
			}
		}
	}

	loadStart := benchkit.Loadavg()
	started := time.Now()
	var results []*result
	for _, py := range pys {
		r := &result{py: py}
		if slices.Contains(c.parts, "attach") {
			r.attach = benchAttach(c, py)
		}
		if overhead {
			r.overhead = benchOverhead(c, py)
		}
		results = append(results, r)
	}
	info := machineInfo(c, pys)
	info = append(info, [2]string{"load average (1, 5, 15 min)", "start " + loadStart + "; end " + benchkit.Loadavg()})
	info = append(info, [2]string{"run", fmt.Sprintf("%s, took %v", started.UTC().Format("2006-01-02 15:04 MST"), time.Since(started).Round(time.Second))})
	if c.raw != "" {
		type rawPy struct {
			Python   string            `json:"python"`
			Attach   []attachSample    `json:"attach"`
			Windows  []window          `json:"windows"`
			Failures map[string]string `json:"failures,omitempty"`
		}
		var raw []rawPy
		for _, r := range results {
			raw = append(raw, rawPy{r.py.label, r.attach, r.overhead.windows, r.overhead.errs})
		}
		b, _ := json.MarshalIndent(raw, "", " ")
		if err := os.WriteFile(c.raw, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	report(os.Stdout, c, info, results)
	return nil
}

// ---- machine ----

func machineInfo(c *config, pys []*python) [][2]string {
	var info [][2]string
	add := func(k, v string) { info = append(info, [2]string{k, v}) }
	info = append(info, benchkit.MachineBasics()...)
	add("Go (benchattach)", runtime.Version())
	v := firstLine(benchkit.Output(c.krait, "version"))
	if bi, err := buildinfo.ReadFile(c.krait); err == nil {
		rev, dirty := "", ""
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = ", with uncommitted changes"
				}
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			v += fmt.Sprintf(" — commit %s%s", rev, dirty)
		}
		v += ", built with " + bi.GoVersion
	}
	add("krait", v)
	for _, py := range pys {
		s := fmt.Sprintf("`%s`", tidy(py.exe))
		if py.backend != "" {
			s += ", krait's " + py.backend + " backend"
		}
		if slices.Contains(c.parts, "overhead") && slices.Contains(c.tools, "debugpy") {
			if py.debugpyVer != "" {
				s += ", debugpy " + py.debugpyVer
			} else {
				s += ", no debugpy: " + py.debugpyErr
			}
		}
		add("Python "+py.label, s)
	}
	return info
}

// ---- report ----

func report(w io.Writer, c *config, info [][2]string, results []*result) {
	fmt.Fprintf(w, "Machine and tools:\n\n")
	for _, kv := range info {
		fmt.Fprintf(w, "- %s: %s\n", kv[0], kv[1])
	}
	var failures []string
	if slices.Contains(c.parts, "attach") {
		reportAttach(w, c, results, &failures)
	}
	if slices.Contains(c.parts, "overhead") {
		reportOverhead(w, c, results, &failures)
	}
	if len(failures) > 0 {
		fmt.Fprintf(w, "\nFailures:\n\n%s\n", strings.Join(failures, "\n"))
	}
}

func reportAttach(w io.Writer, c *config, results []*result, failures *[]string) {
	fmt.Fprintf(w, "\nAttach time: `krait attach PID --batch -ex 'info threads'`, %d measured runs per row after %d warm-up run(s), 100 ms apart; target idle (worker parked on an Event) or busy (worker running the workload), with the ticker thread.", c.reps, c.warmup)
	if c.gapWindow > 0 {
		fmt.Fprintf(w, " \"gap floor\" is the ticker's largest gap over a %v window with nothing attached, interleaved with the runs: the noise floor of the target's pause column.", c.gapWindow)
	}
	fmt.Fprintf(w, "\n\n")
	fmt.Fprintln(w, "| Python | target | ok runs | wall median | wall p90 | krait's attach time median | krait's pause median | krait's pause p90 | pause median (target) | pause p90 (target) | gap floor median | entered via |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	for _, r := range results {
		for _, state := range []string{"idle", "busy"} {
			var wall, att, kp, gap, floor []float64
			runs, ok := 0, 0
			via := map[string]int{}
			firstErr := ""
			for _, s := range r.attach {
				if s.State != state || s.Rep < 0 {
					continue
				}
				if s.Tool == noTool {
					if s.Err == "" {
						floor = append(floor, s.GapMS)
					}
					continue
				}
				runs++
				if s.Err != "" {
					if firstErr == "" {
						firstErr = s.Err
					}
					continue
				}
				ok++
				wall = append(wall, s.WallMS)
				att = append(att, s.AttachMS)
				kp = append(kp, s.KraitPause)
				gap = append(gap, s.GapMS)
				via[s.Via]++
			}
			if runs == 0 && firstErr == "" {
				continue
			}
			var vias []string
			for v, n := range via {
				vias = append(vias, fmt.Sprintf("%s ×%d", v, n))
			}
			sort.Strings(vias)
			fmt.Fprintf(w, "| %s | %s | %d/%d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.py.label, state, ok, runs,
				benchkit.FmtMS(benchkit.Percentile(wall, 50)), benchkit.FmtMS(benchkit.Percentile(wall, 90)), benchkit.FmtMS(benchkit.Percentile(att, 50)),
				benchkit.FmtMS(benchkit.Percentile(kp, 50)), benchkit.FmtMS(benchkit.Percentile(kp, 90)),
				benchkit.FmtMS(benchkit.Percentile(gap, 50)), benchkit.FmtMS(benchkit.Percentile(gap, 90)), benchkit.FmtMS(benchkit.Percentile(floor, 50)), strings.Join(vias, ", "))
			if firstErr != "" {
				*failures = append(*failures, fmt.Sprintf("- Python %s, attach, %s target: %d of %d runs failed; first: %s",
					r.py.label, state, runs-ok, runs, tidy(firstErr)))
			}
		}
	}
}

// rates is the throughput of every window of one configuration.
func rates(r *result, cfg string) []float64 {
	var out []float64
	for _, w := range r.overhead.windows {
		if w.Config == cfg {
			out = append(out, w.CallsPerSec)
		}
	}
	return out
}

// slowdown is 1 - median(cfg) / median(base), in percent.
func slowdown(r *result, cfg, base string) float64 {
	x, b := benchkit.Percentile(rates(r, cfg), 50), benchkit.Percentile(rates(r, base), 50)
	return (1 - x/b) * 100
}

func fmtPct(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	return fmt.Sprintf("%.1f %%", v)
}

func reportOverhead(w io.Writer, c *config, results []*result, failures *[]string) {
	fmt.Fprintf(w, "\nBreakpoint overhead: slowdown = 1 − throughput / baseline throughput, medians of %d windows of %v each (%d rounds × %d; every configuration runs once per round, in turn), breakpoint at `%s`%s. The baseline of \"pdb, main thread\" is the same workload run on the main thread without a debugger; every other row's baseline is the worker thread without a debugger, the `baseline` column.\n\n",
		c.rounds*c.windows, c.window, c.rounds, c.windows, tidy(c.bpSpec), bpNote(c))
	cols := []struct{ cfg, head, base string }{
		{cfgKrait, "krait", cfgBaseline},
		{cfgAfter, "after krait detached", cfgBaseline},
		{cfgListening, "debugpy listening, no client", cfgBaseline},
		{cfgDebugpy, "debugpy", cfgBaseline},
		{cfgPdb, "pdb (worker thread)", cfgBaseline},
		{cfgPdbMT, "pdb, main thread", cfgBaselineMT},
	}
	var shown []int
	for i, col := range cols {
		switch {
		case col.cfg == cfgKrait || col.cfg == cfgAfter:
			if !slices.Contains(c.tools, "krait") {
				continue
			}
		case col.cfg == cfgListening || col.cfg == cfgDebugpy:
			if !slices.Contains(c.tools, "debugpy") {
				continue
			}
		default:
			if !slices.Contains(c.tools, "pdb") {
				continue
			}
		}
		shown = append(shown, i)
	}
	fmt.Fprintf(w, "| Python | krait backend | baseline (M calls/s) |")
	for _, i := range shown {
		fmt.Fprintf(w, " %s |", cols[i].head)
	}
	fmt.Fprintf(w, " goal |\n|---|---|---:|")
	for range shown {
		fmt.Fprintf(w, "---:|")
	}
	fmt.Fprintf(w, "---|\n")
	for _, r := range results {
		base := benchkit.Percentile(rates(r, cfgBaseline), 50)
		fmt.Fprintf(w, "| %s | %s | %s |", r.py.label, orDash(r.py.backend), fmtRate(base))
		for _, i := range shown {
			col := cols[i]
			cell := fmtPct(slowdown(r, col.cfg, col.base))
			if len(rates(r, col.cfg)) == 0 {
				switch {
				case (col.cfg == cfgDebugpy || col.cfg == cfgListening) && r.py.debugpyErr != "":
					cell = "no debugpy"
				case r.overhead.errs[col.cfg] != "":
					cell = "failed"
				}
			}
			fmt.Fprintf(w, " %s |", cell)
		}
		fmt.Fprintf(w, " %s |\n", goal(c, r))
	}

	fmt.Fprintf(w, "\nThroughput per configuration (M calls/s: median, and the lowest and highest window):\n\n")
	if c.ticker {
		fmt.Fprintln(w, "| Python | configuration | windows | median | min | max | largest gap per window, median (target) | largest gap, max (target) |")
		fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|")
	} else {
		fmt.Fprintln(w, "| Python | configuration | windows | median | min | max |")
		fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|")
	}
	for _, r := range results {
		for _, cfg := range []string{cfgBaseline, cfgKrait, cfgAfter, cfgListening, cfgDebugpy, cfgPdb, cfgBaselineMT, cfgPdbMT} {
			xs := rates(r, cfg)
			if len(xs) == 0 {
				continue
			}
			s := append([]float64(nil), xs...)
			sort.Float64s(s)
			fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s |", r.py.label, cfg, len(xs), fmtRate(benchkit.Percentile(xs, 50)), fmtRate(s[0]), fmtRate(s[len(s)-1]))
			if c.ticker {
				var gaps []float64
				for _, x := range r.overhead.windows {
					if x.Config == cfg {
						gaps = append(gaps, x.GapMS)
					}
				}
				fmt.Fprintf(w, " %s | %s |", benchkit.FmtMS(benchkit.Percentile(gaps, 50)), benchkit.FmtMS(benchkit.Percentile(gaps, 100)))
			}
			fmt.Fprintln(w)
		}
	}
	for _, r := range results {
		var cfgs []string
		for cfg := range r.overhead.errs {
			cfgs = append(cfgs, cfg)
		}
		sort.Strings(cfgs)
		for _, cfg := range cfgs {
			*failures = append(*failures, fmt.Sprintf("- Python %s, %s: %s", r.py.label, cfg, r.overhead.errs[cfg]))
		}
		if r.py.debugpyErr != "" && slices.Contains(c.tools, "debugpy") {
			*failures = append(*failures, fmt.Sprintf("- Python %s, debugpy: %s", r.py.label, r.py.debugpyErr))
		}
	}
}

// goal: under 3% slowdown on 3.12+; on older versions at most half of
// debugpy's slowdown.
func goal(c *config, r *result) string {
	if !slices.Contains(c.tools, "krait") || len(rates(r, cfgKrait)) == 0 {
		return "—"
	}
	k := slowdown(r, cfgKrait, cfgBaseline)
	if r.py.minor >= 12 {
		return fmt.Sprintf("%s (< 3 %%)", yesNo(k < 3))
	}
	if len(rates(r, cfgDebugpy)) == 0 {
		return "— (no debugpy to compare)"
	}
	d := slowdown(r, cfgDebugpy, cfgBaseline)
	return fmt.Sprintf("%s (≤ ½ debugpy's: %s)", yesNo(k <= d/2), fmtPct(d/2))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func fmtRate(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	m := v / 1e6
	if m >= 10 {
		return fmt.Sprintf("%.1f", m)
	}
	return fmt.Sprintf("%.2f", m)
}

func bpNote(c *config) string {
	if c.bpFlag == "" {
		return " in `never_called()`, which nothing calls"
	}
	return ""
}
