// Command benchdump compares `krait dump --locals` with `py-spy dump --locals`
// and gdb's `py-bt` on a live CPython process, and prints the result as
// Markdown (see BENCHMARKS.md). With --native it compares native stacks
// instead: `krait dump --native`, `py-spy dump --native` and `pystack
// remote --native`.
//
//	go build -o krait ./cmd/krait
//	go run ./tools/benchdump --py-spy "$VENV/bin/py-spy" > result.md
//	go run ./tools/benchdump --native --py-spy "$VENV/bin/py-spy" --pystack "$VENV/bin/pystack" > result.md
//
// For each interpreter and each thread count it starts
// testdata/bench/bench_target.py (N threads, each D frames deep, plus a
// ticker thread that measures from inside the target how long it was
// frozen), then runs every tool R times, round-robin: reset the target's
// largest gap (SIGUSR1), run the tool and time it, read the largest gap
// (SIGUSR2). Every process it starts is killed before it returns, also on
// errors and on SIGINT/SIGTERM; the target also exits by itself if
// benchdump dies.
//
// Standard library only.
package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
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
	pythons  []string
	threads  []int
	depth    int
	reps     int
	warmup   int
	tools    []string
	krait    string
	pyspy    string
	pystack  string
	native   bool
	gdb      string
	gdbExt   string
	target   string
	timeout  time.Duration
	baseline time.Duration
	settle   time.Duration
	raw      string
}

func main() {
	os.Exit(run())
}

func run() int {
	var c config
	var pythons, threads, tools string
	flag.StringVar(&pythons, "python", "3.12", "comma-separated interpreters: pyenv versions (3.12, 3.12.1; the newest installed match under $PYENV_ROOT or ~/.pyenv) or paths to python executables")
	flag.StringVar(&threads, "threads", "1,10,100", "comma-separated thread counts")
	flag.IntVar(&c.depth, "depth", 50, "stack depth of each thread, in frames")
	flag.IntVar(&c.reps, "reps", 10, "measured repetitions per tool and configuration")
	flag.IntVar(&c.warmup, "warmup", 1, "unmeasured repetitions before those")
	flag.StringVar(&tools, "tools", "", "comma-separated tools to run (krait, py-spy, gdb, pystack; default krait,py-spy,gdb, with --native krait,py-spy,pystack)")
	flag.BoolVar(&c.native, "native", false, "compare native stacks merged with Python ones (krait dump --native, py-spy dump --native, pystack remote --native), no locals")
	flag.StringVar(&c.pystack, "pystack", "", "pystack binary (default: pystack on PATH)")
	flag.StringVar(&c.krait, "krait", "./krait", "krait binary (build it with go build -o krait ./cmd/krait)")
	flag.StringVar(&c.pyspy, "py-spy", "", "py-spy binary (default: py-spy on PATH)")
	flag.StringVar(&c.gdb, "gdb", "", "gdb binary (default: gdb on PATH)")
	flag.StringVar(&c.gdbExt, "gdb-ext", "", "the interpreter's gdb extension, pythonX.Y-gdb.py (default: found under the interpreter's prefix or in $(pyenv root)/shims; only with one --python)")
	flag.StringVar(&c.target, "target", "", "bench_target.py (default: testdata/bench/bench_target.py in this module)")
	flag.DurationVar(&c.timeout, "timeout", 2*time.Minute, "longest one tool run may take before it is killed")
	flag.DurationVar(&c.baseline, "baseline", 100*time.Millisecond, "also measure the target's largest gap over this window with no tool running (0: skip)")
	flag.DurationVar(&c.settle, "settle", 50*time.Millisecond, "pause between runs")
	flag.StringVar(&c.raw, "raw", "", "also write every sample as JSON to this file")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "benchdump: unexpected arguments:", flag.Args())
		return 2
	}
	c.pythons = benchkit.SplitList(pythons)
	if tools == "" {
		tools = "krait,py-spy,gdb"
		if c.native {
			tools = "krait,py-spy,pystack"
		}
	}
	c.tools = benchkit.SplitList(tools)
	for _, t := range benchkit.SplitList(threads) {
		n, err := strconv.Atoi(t)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "benchdump: bad thread count %q\n", t)
			return 2
		}
		c.threads = append(c.threads, n)
	}
	for _, t := range c.tools {
		if t != "krait" && t != "py-spy" && t != "gdb" && t != "pystack" {
			fmt.Fprintf(os.Stderr, "benchdump: unknown tool %q\n", t)
			return 2
		}
		if c.native && t == "gdb" {
			fmt.Fprintln(os.Stderr, "benchdump: gdb's py-bt has no merged native stack: leave gdb out with --native")
			return 2
		}
	}
	if len(c.pythons) == 0 || len(c.threads) == 0 || len(c.tools) == 0 || c.reps < 1 || c.depth < 1 {
		fmt.Fprintln(os.Stderr, "benchdump: need at least one interpreter, thread count, tool, repetition and frame")
		return 2
	}
	if c.gdbExt != "" && len(c.pythons) > 1 {
		fmt.Fprintln(os.Stderr, "benchdump: --gdb-ext needs exactly one --python")
		return 2
	}

	// Whatever happens, the processes we started die with us.
	procs.KillOnSignal("benchdump")
	defer procs.KillAll()

	if err := bench(&c); err != nil {
		fmt.Fprintln(os.Stderr, "benchdump:", err)
		return 1
	}
	return 0
}

// ---- processes we own ----

var procs = benchkit.NewProcs()

// ---- the interpreter ----

type python struct {
	arg      string // as given on the command line
	exe      string
	version  string // 3.12.1
	short    string // 3.12
	prefix   string // sys.base_prefix
	gdbExt   string
	gdbError string // why there is no gdb extension
}

func findPython(arg, gdbExt string) (*python, error) {
	p := &python{arg: arg}
	if strings.ContainsRune(arg, '/') {
		p.exe = arg
	} else {
		exe, err := benchkit.PyenvPython(arg)
		if err != nil {
			return nil, err
		}
		p.exe = exe
	}
	out, err := exec.Command(p.exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.version.split()[0]); print(sys.base_prefix)").Output()
	if err != nil {
		return nil, fmt.Errorf("python %s: %v", arg, err)
	}
	f := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(f) != 3 {
		return nil, fmt.Errorf("python %s: unexpected answer %q", arg, out)
	}
	p.short, p.version, p.prefix = f[0], f[1], f[2]
	if gdbExt != "" {
		p.gdbExt = gdbExt
	} else {
		p.gdbExt, p.gdbError = findGDBExt(p)
	}
	return p, nil
}

// isGDBExt says whether path is a CPython gdb extension (and not, say, a
// pyenv shim of the same name).
func isGDBExt(path string) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Contains(b, []byte("import gdb")) && bytes.Contains(b, []byte("py-bt"))
}

// findGDBExt looks for pythonX.Y-gdb.py: under the interpreter's prefix
// (pyenv builds install it in bin/), then in $(pyenv root)/shims, where it
// is usually a shim that `pyenv which` resolves.
func findGDBExt(p *python) (string, string) {
	name := "python" + p.short + "-gdb.py"
	cands := []string{filepath.Join(p.prefix, "bin", name)}
	if m, _ := filepath.Glob(filepath.Join(p.prefix, "lib", "libpython"+p.short+"*-gdb.py")); len(m) > 0 {
		cands = append(cands, m...)
	}
	for _, c := range cands {
		if isGDBExt(c) {
			return c, ""
		}
	}
	shim := filepath.Join(benchkit.PyenvRoot(), "shims", name)
	if isGDBExt(shim) {
		return shim, ""
	}
	if _, err := os.Stat(shim); err == nil {
		cmd := exec.Command("pyenv", "which", name)
		cmd.Env = append(os.Environ(), "PYENV_VERSION="+filepath.Base(p.prefix))
		if out, err := cmd.Output(); err == nil {
			if c := strings.TrimSpace(string(out)); isGDBExt(c) {
				return c, ""
			}
		}
	}
	return "", fmt.Sprintf("no %s under %s or in $(pyenv root)/shims", name, benchkit.Tidy(p.prefix))
}

// ---- the target ----

type target struct {
	cmd    *exec.Cmd
	dir    string
	pid    int
	done   chan struct{}
	stderr *bytes.Buffer
}

func startTarget(c *config, py *python, n int) (*target, error) {
	dir, err := os.MkdirTemp("", "benchdump-")
	if err != nil {
		return nil, err
	}
	procs.AddDir(dir)
	t := &target{dir: dir, done: make(chan struct{}), stderr: &bytes.Buffer{}}
	t.cmd = exec.Command(py.exe, c.target, strconv.Itoa(n), strconv.Itoa(c.depth),
		"--gap-file", filepath.Join(dir, "gap"), "--ready-file", filepath.Join(dir, "ready"))
	t.cmd.SysProcAttr = benchkit.OwnAttr()
	t.cmd.Stdout = io.Discard
	t.cmd.Stderr = &lockedWriter{w: t.stderr}
	if err := t.cmd.Start(); err != nil {
		procs.RemoveDir(dir)
		return nil, err
	}
	t.pid = t.cmd.Process.Pid
	procs.AddGroup(t.pid)
	go func() { _ = t.cmd.Wait(); close(t.done) }()
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			return t, nil
		}
		select {
		case <-t.done:
			err := fmt.Errorf("target exited before it was ready: %v %s", t.cmd.ProcessState, strings.TrimSpace(t.stderr.String()))
			t.stop()
			return nil, err
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.stop()
			return nil, errors.New("target not ready after a minute")
		}
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (t *target) stop() {
	_ = syscall.Kill(-t.pid, syscall.SIGKILL)
	_ = syscall.Kill(t.pid, syscall.SIGKILL)
	select {
	case <-t.done:
	case <-time.After(10 * time.Second):
	}
	procs.RemoveGroup(t.pid)
	procs.RemoveDir(t.dir)
}

// signal sends sig and waits for the target's answer in the gap file.
func (t *target) signal(sig syscall.Signal) (float64, error) {
	gap := filepath.Join(t.dir, "gap")
	if err := os.Remove(gap); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	if err := syscall.Kill(t.pid, sig); err != nil {
		return 0, fmt.Errorf("signal target: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(gap); err == nil {
			return strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
		}
		select {
		case <-t.done:
			return 0, errors.New("target exited")
		case <-time.After(200 * time.Microsecond):
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("target did not answer %v in 10s; its threads' states: %s", sig, t.states())
		}
	}
}

// states counts the target's threads by scheduler state (R, S, T, t, …),
// from /proc: a process left stopped shows T or t.
func (t *target) states() string {
	dir := fmt.Sprintf("/proc/%d/task", t.pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	count := map[string]int{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "stat"))
		if err != nil {
			continue
		}
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
			count[string(b[i+2])]++
		}
	}
	var out []string
	for st, n := range count {
		out = append(out, fmt.Sprintf("%d %s", n, st))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// ---- tools ----

type sample struct {
	Python       string  `json:"python"`
	Threads      int     `json:"threads"`
	Tool         string  `json:"tool"`
	Rep          int     `json:"rep"` // < 0: warm-up
	WallMillis   float64 `json:"wall_ms"`
	PauseMillis  float64 `json:"pause_ms"`                 // the target's largest gap
	KraitPauseMS float64 `json:"krait_pause_ms,omitempty"` // krait's own pause_ms
	Frames       int     `json:"frames"`                   // recurse frames seen
	Err          string  `json:"error,omitempty"`
}

const baselineTool = "(no tool)"

// runTool runs one tool against pid and checks its output. It returns the
// wall time, and for krait its self-reported pause.
func runTool(c *config, py *python, tool string, pid, n int) (wall time.Duration, kraitPause float64, frames int, err error) {
	var args []string
	switch tool {
	case "krait":
		args = []string{c.krait, "dump", "--pid", strconv.Itoa(pid), "--locals", "--json"}
		if c.native {
			args = []string{c.krait, "dump", "--pid", strconv.Itoa(pid), "--native", "--json"}
		}
	case "py-spy":
		args = []string{c.pyspy, "dump", "--pid", strconv.Itoa(pid), "--locals"}
		if c.native {
			args = []string{c.pyspy, "dump", "--pid", strconv.Itoa(pid), "--native"}
		}
	case "pystack":
		args = []string{c.pystack, "remote", "--native", strconv.Itoa(pid)}
	case "gdb":
		if py.gdbExt == "" {
			return 0, 0, 0, errors.New(py.gdbError)
		}
		args = gdbArgs(c.gdb, py.gdbExt, pid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.SysProcAttr = benchkit.OwnAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	procs.AddGroup(cmd.Process.Pid)
	err = cmd.Wait()
	wall = time.Since(start)
	procs.RemoveGroup(cmd.Process.Pid)
	if ctx.Err() != nil {
		return wall, 0, 0, fmt.Errorf("killed after %v", c.timeout)
	}
	if err != nil {
		return wall, 0, 0, fmt.Errorf("%v: %s", err, lastLine(stderr.String()))
	}
	want := n * c.depth
	switch tool {
	case "krait":
		var res struct {
			PauseMillis float64 `json:"pause_ms"`
			Threads     []struct {
				Frames []struct {
					Function string `json:"function"`
					Native   bool   `json:"native"`
				} `json:"frames"`
			} `json:"threads"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			return wall, 0, 0, fmt.Errorf("bad JSON: %v", err)
		}
		kraitPause = res.PauseMillis
		native := 0
		for _, t := range res.Threads {
			for _, f := range t.Frames {
				if f.Function == "recurse" && !f.Native {
					frames++
				}
				if f.Native {
					native++
				}
			}
		}
		if c.native && native == 0 {
			return wall, kraitPause, frames, errors.New("no native frames")
		}
	case "py-spy":
		frames = strings.Count(stdout.String(), "recurse (")
	case "pystack":
		// (Python) File "…/bench_target.py", line L, in recurse
		frames = strings.Count(stdout.String(), ", in recurse")
	case "gdb":
		// py-bt prints `File "…/bench_target.py", line L, in recurse` per frame.
		frames = strings.Count(stdout.String(), ", in recurse")
		if frames == 0 {
			return wall, 0, 0, fmt.Errorf("no Python frames in py-bt output: %s", lastLine(stdout.String()+"\n"+stderr.String()))
		}
	}
	if frames < want {
		return wall, kraitPause, frames, fmt.Errorf("saw %d of %d recurse frames", frames, want)
	}
	return wall, kraitPause, frames, nil
}

func gdbArgs(gdb, ext string, pid int) []string {
	return []string{gdb, "-nx", "-batch", "-iex", "set debuginfod enabled off",
		"-p", strconv.Itoa(pid), "-ex", "source " + ext, "-ex", "thread apply all py-bt"}
}

// lastLine is the last non-empty line of s: where gdb puts its error.
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
	return benchkit.Tidy(s)
}

// ---- the benchmark ----

func bench(c *config) error {
	if c.target == "" {
		t, err := findTarget()
		if err != nil {
			return err
		}
		c.target = t
	}
	for _, t := range c.tools {
		var p *string
		var name string
		switch t {
		case "krait":
			p, name = &c.krait, "krait"
		case "py-spy":
			p, name = &c.pyspy, "py-spy"
		case "pystack":
			p, name = &c.pystack, "pystack"
		case "gdb":
			p, name = &c.gdb, "gdb"
		}
		if *p == "" {
			*p = name
		}
		path, err := exec.LookPath(*p)
		if err != nil {
			return fmt.Errorf("%s: %v (see --%s)", name, err, name)
		}
		*p = path
	}
	var pys []*python
	for _, a := range c.pythons {
		py, err := findPython(a, c.gdbExt)
		if err != nil {
			return err
		}
		pys = append(pys, py)
	}

	info := machineInfo(c, pys)
	loadStart := benchkit.Loadavg()
	started := time.Now()
	var all []sample
	for _, py := range pys {
		for _, n := range c.threads {
			s, err := benchOne(c, py, n)
			if err != nil {
				return fmt.Errorf("python %s, %d threads: %v", py.version, n, err)
			}
			all = append(all, s...)
		}
	}
	info = append(info, [2]string{"load average (1, 5, 15 min)", "start " + loadStart + "; end " + benchkit.Loadavg()})
	info = append(info, [2]string{"run", fmt.Sprintf("%s, took %v", started.Format("2006-01-02 15:04 MST"), time.Since(started).Round(time.Second))})
	if c.raw != "" {
		b, _ := json.MarshalIndent(all, "", " ")
		if err := os.WriteFile(c.raw, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	report(os.Stdout, c, pys, info, all)
	return nil
}

// findTarget finds testdata/bench/bench_target.py in the enclosing module.
func findTarget() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "testdata", "bench", "bench_target.py")
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
	return "", errors.New("testdata/bench/bench_target.py not found: run from the module or pass --target")
}

func benchOne(c *config, py *python, n int) ([]sample, error) {
	fmt.Fprintf(os.Stderr, "python %s, %d threads × %d frames: starting target\n", py.version, n, c.depth)
	t, err := startTarget(c, py, n)
	if err != nil {
		return nil, err
	}
	defer func() {
		if t != nil {
			t.stop()
		}
	}()
	time.Sleep(200 * time.Millisecond)

	tools := append([]string(nil), c.tools...)
	if c.baseline > 0 {
		tools = append([]string{baselineTool}, tools...)
	}
	var out []sample
	for rep := -c.warmup; rep < c.reps; rep++ {
		for _, tool := range tools {
			s := sample{Python: py.version, Threads: n, Tool: tool, Rep: rep}
			if _, err := t.signal(syscall.SIGUSR1); err != nil {
				return nil, fmt.Errorf("reset: %v", err)
			}
			var wall time.Duration
			var terr error
			if tool == baselineTool {
				start := time.Now()
				time.Sleep(c.baseline)
				wall = time.Since(start)
			} else {
				wall, s.KraitPauseMS, s.Frames, terr = runTool(c, py, tool, t.pid, n)
			}
			s.WallMillis = ms(wall)
			gap, err := t.signal(syscall.SIGUSR2)
			if err != nil {
				// A tool that failed may have left the target stopped or
				// dead: start a fresh one.
				fmt.Fprintf(os.Stderr, "  target did not answer after %s (%v): restarting it\n", tool, err)
				t.stop()
				if terr == nil {
					terr = fmt.Errorf("target unresponsive afterwards: %v", err)
				}
				fresh, err := startTarget(c, py, n)
				if err != nil {
					t = nil
					return nil, err
				}
				t = fresh
			}
			s.PauseMillis = gap
			if terr != nil {
				s.Err = terr.Error()
			}
			label := "rep " + strconv.Itoa(rep+1)
			if rep < 0 {
				label = "warm-up"
			}
			fmt.Fprintf(os.Stderr, "  %-8s %-10s wall %9.1f ms  pause %9.1f ms", label, tool, s.WallMillis, s.PauseMillis)
			if tool == "krait" {
				fmt.Fprintf(os.Stderr, "  (pause_ms %.1f)", s.KraitPauseMS)
			}
			if s.Err != "" {
				fmt.Fprintf(os.Stderr, "  FAILED: %s", s.Err)
			}
			fmt.Fprintln(os.Stderr)
			out = append(out, s)
			time.Sleep(c.settle)
		}
	}
	return out, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ---- machine ----

func machineInfo(c *config, pys []*python) [][2]string {
	var info [][2]string
	add := func(k, v string) { info = append(info, [2]string{k, v}) }
	info = append(info, benchkit.MachineBasics()...)
	add("Go (benchdump)", runtime.Version())
	for _, t := range c.tools {
		switch t {
		case "krait":
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
		case "py-spy":
			add("py-spy", firstLine(benchkit.Output(c.pyspy, "--version")))
		case "pystack":
			add("pystack", firstLine(benchkit.Output(c.pystack, "--version")))
		case "gdb":
			add("gdb", firstLine(benchkit.Output(c.gdb, "--version")))
		}
	}
	for _, py := range pys {
		ext := "gdb extension: " + benchkit.Tidy(py.gdbExt)
		if py.gdbExt == "" {
			ext = "no gdb extension: " + py.gdbError
		}
		add("Python "+py.version, fmt.Sprintf("`%s` (%s)", benchkit.Tidy(py.exe), ext))
	}
	return info
}

// ---- report ----

type stats struct {
	ok, runs                       int
	wallMed, wallP90               float64
	pauseMed, pauseP90, kraitPause float64
	firstErr                       string
}

func summarize(all []sample, py string, n int, tool string) stats {
	var wall, pause, kp []float64
	st := stats{}
	for _, s := range all {
		if s.Python != py || s.Threads != n || s.Tool != tool || s.Rep < 0 {
			continue
		}
		st.runs++
		if s.Err != "" {
			if st.firstErr == "" {
				st.firstErr = s.Err
			}
			continue
		}
		st.ok++
		wall = append(wall, s.WallMillis)
		pause = append(pause, s.PauseMillis)
		if tool == "krait" {
			kp = append(kp, s.KraitPauseMS)
		}
	}
	st.wallMed, st.wallP90 = benchkit.Percentile(wall, 50), benchkit.Percentile(wall, 90)
	st.pauseMed, st.pauseP90 = benchkit.Percentile(pause, 50), benchkit.Percentile(pause, 90)
	st.kraitPause = benchkit.Percentile(kp, 50)
	return st
}

func report(w io.Writer, c *config, pys []*python, info [][2]string, all []sample) {
	fmt.Fprintf(w, "Machine and tools:\n\n")
	for _, kv := range info {
		fmt.Fprintf(w, "- %s: %s\n", kv[0], kv[1])
	}
	fmt.Fprintf(w, "\nEach thread %d frames deep; %d measured runs per cell after %d warm-up run(s), tools interleaved round-robin.", c.depth, c.reps, c.warmup)
	if c.native {
		fmt.Fprintf(w, " Native stacks merged with Python ones, no locals.")
	}
	if c.baseline > 0 {
		fmt.Fprintf(w, " \"%s\" is the target's largest gap over a %v window with nothing attached: the noise floor of the pause column.", baselineTool, c.baseline)
	}
	fmt.Fprintf(w, "\n\n")
	fmt.Fprintln(w, "| Python | threads | tool | ok runs | wall median | wall p90 | pause median (target) | pause p90 (target) | pause_ms median (krait's own) |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---:|---:|---:|")
	tools := append([]string(nil), c.tools...)
	if c.baseline > 0 {
		tools = append([]string{baselineTool}, tools...)
	}
	var failures []string
	for _, py := range pys {
		for _, n := range c.threads {
			for _, tool := range tools {
				st := summarize(all, py.version, n, tool)
				kp := ""
				if tool == "krait" {
					kp = benchkit.FmtMS(st.kraitPause)
				}
				wallMed, wallP90 := benchkit.FmtMS(st.wallMed), benchkit.FmtMS(st.wallP90)
				if tool == baselineTool {
					wallMed, wallP90 = "", ""
				}
				fmt.Fprintf(w, "| %s | %d | %s | %d/%d | %s | %s | %s | %s | %s |\n", py.version, n, tool, st.ok, st.runs,
					wallMed, wallP90, benchkit.FmtMS(st.pauseMed), benchkit.FmtMS(st.pauseP90), kp)
				if st.firstErr != "" {
					failures = append(failures, fmt.Sprintf("- Python %s, %d threads, %s: %d of %d runs failed; first: %s",
						py.version, n, tool, st.runs-st.ok, st.runs, benchkit.Tidy(st.firstErr)))
				}
			}
		}
	}
	if len(failures) > 0 {
		fmt.Fprintf(w, "\nFailures:\n\n%s\n", strings.Join(failures, "\n"))
	}
	if c.native {
		nativeRatios(w, c, pys, all)
		return
	}
	if !slices.Contains(c.tools, "krait") || !slices.Contains(c.tools, "py-spy") {
		return
	}
	fmt.Fprintf(w, "\nkrait / py-spy (medians; goal: wall ≤ 0.5, pause ≤ 0.2):\n\n")
	fmt.Fprintln(w, "| Python | threads | wall ratio | pause ratio (target) | krait pause_ms / py-spy pause (target) | goal met |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---|")
	for _, py := range pys {
		for _, n := range c.threads {
			k := summarize(all, py.version, n, "krait")
			s := summarize(all, py.version, n, "py-spy")
			wr, pr, kr := k.wallMed/s.wallMed, k.pauseMed/s.pauseMed, k.kraitPause/s.pauseMed
			met := "no"
			switch {
			case k.ok == 0 || s.ok == 0:
				met = "—"
			case wr <= 0.5 && pr <= 0.2:
				met = "yes"
			case wr <= 0.5:
				met = "wall only"
			case pr <= 0.2:
				met = "pause only"
			}
			fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s |\n", py.version, n, ratio(wr), ratio(pr), ratio(kr), met)
		}
	}
}

// nativeRatios compares krait's medians with each other tool's.
func nativeRatios(w io.Writer, c *config, pys []*python, all []sample) {
	if !slices.Contains(c.tools, "krait") {
		return
	}
	fmt.Fprintf(w, "\nkrait / other tool (medians):\n\n")
	fmt.Fprintln(w, "| Python | threads | vs | wall ratio | pause ratio (target) | krait pause_ms / its pause (target) |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|")
	for _, py := range pys {
		for _, n := range c.threads {
			k := summarize(all, py.version, n, "krait")
			for _, other := range c.tools {
				if other == "krait" {
					continue
				}
				o := summarize(all, py.version, n, other)
				fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s |\n", py.version, n, other,
					ratio(k.wallMed/o.wallMed), ratio(k.pauseMed/o.pauseMed), ratio(k.kraitPause/o.pauseMed))
			}
		}
	}
}

func ratio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	return fmt.Sprintf("%.2f", v)
}
