// Command benchrecord compares `krait record` with `py-spy record` and
// Austin on CPU-bound Python targets, in one run, and prints the result as
// Markdown (see BENCHMARKS.md).
//
//	go build -o krait ./cmd/krait
//	go run ./tools/benchrecord > result.md
//
// Without --py-spy and --austin it makes a virtualenv in a temporary
// directory with the target's interpreter and installs py-spy and
// austin-dist there with pip (versions --py-spy-version and
// --austin-version), removed at the end.
//
// For each thread count N it starts testdata/bench/record_target.py (N
// threads, each D frames deep, looping on CPU work and counting it; the
// main thread prints the count every 0.1 s) and then, R times round-robin,
// runs each profiler configuration for a few seconds, each preceded by a
// window with no profiler. It reports:
//
//   - samples taken per second: stacks in the tool's output (every thread
//     kept with --idle) over the target's threads, per second of recording;
//   - target slowdown: the target's work rate while the tool ran against
//     the mean of the windows without a tool just before and after;
//   - CPU per sample: the tool's user+system time over the samples taken.
//
// Then krait's resident memory over a longer recording (16 threads at
// 100 Hz, RSS every 2 s), and the "whole host": W targets of T threads
// recorded together by one krait at 100 Hz. Every process it starts is
// killed when it ends, fails or is interrupted (and dies with it).
//
// Standard library only.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"krait/tools/internal/benchkit"
)

type config struct {
	python        string
	threads       []int
	depth         int
	reps          int
	window        int // seconds a profiler runs
	maxRate       int
	tools         []string
	krait         string
	kraitBefore   string
	pyspy, austin string
	pyspyVersion  string
	austinVersion string
	target        string
	memDuration   time.Duration
	memThreads    int
	hostWorkers   int
	hostThreads   int
}

var procs = benchkit.NewProcs()

func main() { os.Exit(run()) }

func run() int {
	var c config
	var threads, tools string
	flag.StringVar(&c.python, "python", "/usr/bin/python3.11", "interpreter of the targets (and of the virtualenv for py-spy and Austin)")
	flag.StringVar(&threads, "threads", "1,10,100", "comma-separated thread counts")
	flag.IntVar(&c.depth, "depth", 30, "stack depth of each thread, in frames")
	flag.IntVar(&c.reps, "reps", 2, "repetitions of each configuration")
	flag.IntVar(&c.window, "window", 3, "seconds each profiler run is measured (it runs one second more)")
	flag.IntVar(&c.maxRate, "max-rate", 10000, "the rate asked for to find each tool's maximum")
	flag.StringVar(&tools, "tools", "krait,py-spy,austin", "comma-separated tools")
	flag.StringVar(&c.krait, "krait", "./krait", "krait binary")
	flag.StringVar(&c.kraitBefore, "krait-before", "", "another krait binary (e.g. an older commit) to compare in its default (pausing) mode, shown as krait-before")
	flag.StringVar(&c.pyspy, "py-spy", "", "py-spy binary (default: install into a temporary virtualenv)")
	flag.StringVar(&c.austin, "austin", "", "austin binary (default: install austin-dist into a temporary virtualenv)")
	flag.StringVar(&c.pyspyVersion, "py-spy-version", "0.4.3", "py-spy version to install")
	flag.StringVar(&c.austinVersion, "austin-version", "3.7.0", "austin-dist version to install (4.x needs glibc 2.38)")
	flag.StringVar(&c.target, "target", "", "record_target.py (default: testdata/bench/record_target.py in this module)")
	flag.DurationVar(&c.memDuration, "mem-duration", 60*time.Second, "length of the memory run (0: none)")
	flag.IntVar(&c.memThreads, "mem-threads", 16, "threads of the memory run's target")
	flag.IntVar(&c.hostWorkers, "host-workers", 8, "processes of the whole-host run (0: none)")
	flag.IntVar(&c.hostThreads, "host-threads", 8, "threads of each whole-host process")
	flag.Parse()
	c.tools = benchkit.SplitList(tools)
	for _, s := range benchkit.SplitList(threads) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "benchrecord: bad thread count %q\n", s)
			return 2
		}
		c.threads = append(c.threads, n)
	}
	if c.target == "" {
		c.target = filepath.Join("testdata", "bench", "record_target.py")
	}
	procs.KillOnSignal("benchrecord")
	defer procs.KillAll()
	if err := setup(&c); err != nil {
		fmt.Fprintf(os.Stderr, "benchrecord: %v\n", err)
		return 1
	}
	report(&c)
	return 0
}

func has(c *config, tool string) bool {
	for _, t := range c.tools {
		if t == tool {
			return true
		}
	}
	return false
}

// setup installs py-spy and Austin into a temporary virtualenv unless
// given.
func setup(c *config) error {
	needSpy := has(c, "py-spy") && c.pyspy == ""
	needAustin := has(c, "austin") && c.austin == ""
	if !needSpy && !needAustin {
		return nil
	}
	dir, err := os.MkdirTemp("", "benchrecord-venv-")
	if err != nil {
		return err
	}
	procs.AddDir(dir)
	progress("making a virtualenv with %s and installing the profilers", c.python)
	if out, err := exec.Command(c.python, "-m", "venv", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("venv: %v: %s", err, out)
	}
	pip := filepath.Join(dir, "bin", "pip")
	if needSpy {
		if out, err := exec.Command(pip, "install", "-q", "py-spy=="+c.pyspyVersion).CombinedOutput(); err != nil {
			return fmt.Errorf("pip install py-spy: %v: %s", err, out)
		}
		c.pyspy = filepath.Join(dir, "bin", "py-spy")
	}
	if needAustin {
		out, err := exec.Command(pip, "install", "-q", "austin-dist=="+c.austinVersion).CombinedOutput()
		if err == nil {
			c.austin = filepath.Join(dir, "bin", "austin")
			if out, err := exec.Command(c.austin, "--version").CombinedOutput(); err != nil {
				progress("austin does not run here (%v: %s); left out", err, strings.TrimSpace(string(out)))
				c.austin = ""
			}
		} else {
			progress("pip install austin-dist: %v: %s; left out", err, out)
		}
	}
	return nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchrecord: "+format+"\n", args...)
}

// target is one running record_target.py.
type target struct {
	cmd   *exec.Cmd
	pid   int
	mu    sync.Mutex
	ticks []tick
	ready chan struct{}
}

type tick struct {
	at    time.Time // when benchrecord read the line
	t     float64   // the target's monotonic clock
	count int64
}

func startTarget(c *config, n int) (*target, error) {
	cmd := exec.Command(c.python, c.target, strconv.Itoa(n), strconv.Itoa(c.depth))
	cmd.SysProcAttr = benchkit.OwnAttr()
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	procs.AddGroup(cmd.Process.Pid)
	t := &target{cmd: cmd, pid: cmd.Process.Pid, ready: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 2 && f[0] == "READY" {
				close(t.ready)
				continue
			}
			if len(f) != 2 {
				continue
			}
			tm, err1 := strconv.ParseFloat(f[0], 64)
			n, err2 := strconv.ParseInt(f[1], 10, 64)
			if err1 == nil && err2 == nil {
				t.mu.Lock()
				t.ticks = append(t.ticks, tick{time.Now(), tm, n})
				t.mu.Unlock()
			}
		}
	}()
	select {
	case <-t.ready:
	case <-time.After(60 * time.Second):
		t.stop()
		return nil, fmt.Errorf("target with %d threads did not get ready", n)
	}
	time.Sleep(500 * time.Millisecond)
	return t, nil
}

func (t *target) stop() {
	_ = syscall.Kill(-t.pid, syscall.SIGKILL)
	_ = t.cmd.Wait()
	procs.RemoveGroup(t.pid)
}

// rate is the target's work per second between from and to (by when the
// lines were read, measured on the target's own clock).
func (t *target) rate(from, to time.Time) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var first, last *tick
	for i := range t.ticks {
		k := &t.ticks[i]
		if k.at.Before(from) || k.at.After(to) {
			continue
		}
		if first == nil {
			first = k
		}
		last = k
	}
	if first == nil || last == first || last.t <= first.t {
		return math.NaN()
	}
	return float64(last.count-first.count) / (last.t - first.t)
}

// run is one profiler configuration.
type runConf struct {
	tool        string
	rate        int // 0: the maximum (c.maxRate asked)
	nonblocking bool
}

func (r runConf) String() string {
	rate := strconv.Itoa(r.rate) + " Hz"
	if r.rate == 0 {
		rate = "max"
	}
	mode := "default"
	if r.nonblocking {
		mode = "--nonblocking"
	}
	if r.tool == "austin" {
		mode = "(never pauses)"
	}
	return fmt.Sprintf("%s, %s, %s", r.tool, rate, mode)
}

func confs(c *config) []runConf {
	var out []runConf
	if c.kraitBefore != "" {
		out = append(out, runConf{"krait-before", 100, false}, runConf{"krait-before", 0, false})
	}
	for _, tool := range []string{"krait", "py-spy", "austin"} {
		if !has(c, tool) || tool == "py-spy" && c.pyspy == "" || tool == "austin" && c.austin == "" {
			continue
		}
		for _, rate := range []int{100, 0} {
			if tool == "austin" {
				out = append(out, runConf{tool, rate, true})
				continue
			}
			out = append(out, runConf{tool, rate, false}, runConf{tool, rate, true})
		}
	}
	return out
}

type result struct {
	samplesPerS float64
	slowdown    float64
	cpuPerS     float64 // tool CPU seconds per sample
	failed      string
}

// command builds the tool's command line, writing raw stacks to out.
func command(c *config, r runConf, pid int, out string) []string {
	rate := r.rate
	if rate == 0 {
		rate = c.maxRate
	}
	d := strconv.Itoa(c.window + 1)
	p := strconv.Itoa(pid)
	switch r.tool {
	case "krait", "krait-before":
		bin := c.krait
		if r.tool == "krait-before" {
			bin = c.kraitBefore
		}
		a := []string{bin, "record", "--pid", p, "--rate", strconv.Itoa(rate), "--duration", d, "--idle", "-f", "raw", "-o", out}
		if r.nonblocking {
			a = append(a, "--nonblocking")
		}
		return a
	case "py-spy":
		a := []string{c.pyspy, "record", "--pid", p, "--rate", strconv.Itoa(rate), "--duration", d, "--idle", "-f", "raw", "-o", out}
		if r.nonblocking {
			a = append(a, "--nonblocking")
		}
		return a
	default:
		return []string{c.austin, "-i", strconv.Itoa(1000000 / rate), "-x", d, "-p", p, "-o", out}
	}
}

// stacks counts the thread stacks in a tool's output: raw collapsed
// stacks with counts (krait, py-spy), or Austin's one line per thread
// sample.
func stacks(tool, path string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	var n int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if tool == "austin" {
			n++
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		k, err := strconv.ParseInt(l[i+1:], 10, 64)
		if err == nil {
			n += k
		}
	}
	return n
}

func cpuOf(ps *os.ProcessState) float64 {
	if ps == nil {
		return 0
	}
	return (ps.UserTime() + ps.SystemTime()).Seconds()
}

// measure runs one configuration against t (n worker threads), after a
// window without a tool, and returns its numbers.
func measure(c *config, t *target, n int, r runConf, dir string) result {
	w := time.Duration(c.window) * time.Second
	b0 := time.Now()
	time.Sleep(w)
	base1 := t.rate(b0, time.Now())
	out := filepath.Join(dir, "out.txt")
	_ = os.Remove(out)
	argv := command(c, r, t.pid, out)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = benchkit.OwnAttr()
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return result{failed: err.Error()}
	}
	procs.AddGroup(cmd.Process.Pid)
	time.Sleep(500 * time.Millisecond)
	m0 := time.Now()
	time.Sleep(w)
	during := t.rate(m0, time.Now())
	// A tool that falls behind may go on long after its duration: two
	// seconds later it gets SIGINT (each writes what it has), ten seconds
	// later it is killed and the run counted failed.
	killed := false
	intr := time.AfterFunc(time.Until(start.Add(time.Duration(c.window+3)*time.Second)), func() { _ = cmd.Process.Signal(syscall.SIGINT) })
	timer := time.AfterFunc(time.Until(start.Add(time.Duration(c.window+11)*time.Second)), func() { killed = true; _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err := cmd.Wait()
	intr.Stop()
	timer.Stop()
	procs.RemoveGroup(cmd.Process.Pid)
	took := time.Since(start)
	b1 := time.Now()
	time.Sleep(w)
	base2 := t.rate(b1, time.Now())
	if killed {
		return result{failed: fmt.Sprintf("still running 10 s after its %d s, killed", c.window+1)}
	}
	if err != nil {
		return result{failed: fmt.Sprintf("%v: %s", err, lastLine(stderr.String()))}
	}
	// Every tool keeps every thread (--idle; Austin always): N workers
	// and the main thread.
	samples := float64(stacks(r.tool, out)) / float64(n+1)
	// Per second of the duration asked, or of the time it actually ran
	// if it overran (stopped by SIGINT).
	d := float64(c.window + 1)
	if took.Seconds() > d+0.5 {
		d = took.Seconds()
	}
	res := result{samplesPerS: samples / d, slowdown: 1 - during/((base1+base2)/2)}
	if samples > 0 {
		res.cpuPerS = cpuOf(cmd.ProcessState) / samples
	}
	return res
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

func median(xs []float64) float64 {
	var v []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func report(c *config) {
	dir, err := os.MkdirTemp("", "benchrecord-")
	if err != nil {
		progress("%v", err)
		return
	}
	procs.AddDir(dir)
	loadStart := benchkit.Loadavg()
	began := time.Now().UTC()
	type row struct {
		n    int
		conf runConf
		res  []result
	}
	var rows []*row
	for _, n := range c.threads {
		t, err := startTarget(c, n)
		if err != nil {
			progress("%v", err)
			continue
		}
		cs := confs(c)
		rs := make([]*row, len(cs))
		for i, rc := range cs {
			rs[i] = &row{n: n, conf: rc}
		}
		for rep := 0; rep < c.reps; rep++ {
			for i, rc := range cs {
				progress("%d threads, rep %d: %s", n, rep+1, rc)
				rs[i].res = append(rs[i].res, measure(c, t, n, rc, dir))
			}
		}
		t.stop()
		rows = append(rows, rs...)
	}
	var mem *memResult
	if c.memDuration > 0 {
		mem = memRun(c, dir)
	}
	var host *hostResult
	if c.hostWorkers > 0 {
		host = hostRun(c, dir)
	}

	fmt.Printf("Run on %s UTC, %d repetitions of %d s windows.\n\n", began.Format("2006-01-02 15:04"), c.reps, c.window)
	fmt.Println("Machine and tools:")
	fmt.Println()
	for _, kv := range benchkit.MachineBasics() {
		fmt.Printf("- %s: %s\n", kv[0], kv[1])
	}
	fmt.Printf("- load average (1, 5, 15 min): start %s; end %s\n", loadStart, benchkit.Loadavg())
	fmt.Printf("- Go: %s\n", runtime.Version())
	fmt.Printf("- krait: %s\n", firstLine(benchkit.Output(c.krait, "version")))
	if c.pyspy != "" {
		fmt.Printf("- py-spy: %s\n", firstLine(benchkit.Output(c.pyspy, "--version")))
	}
	if c.austin != "" {
		fmt.Printf("- austin: %s\n", firstLine(benchkit.Output(c.austin, "--version")))
	} else if has(c, "austin") {
		fmt.Printf("- austin: not run (see stderr)\n")
	}
	fmt.Printf("- target: %s, %d frames deep\n", firstLine(benchkit.Output(c.python, "--version")), c.depth)
	fmt.Println()
	fmt.Println("| threads | tool, rate asked, mode | samples taken /s | target slowdown | CPU per sample | failed runs |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range rows {
		var sps, slow, cpu []float64
		var failed []string
		for _, x := range r.res {
			if x.failed != "" {
				failed = append(failed, x.failed)
				continue
			}
			sps = append(sps, x.samplesPerS)
			slow = append(slow, x.slowdown)
			cpu = append(cpu, x.cpuPerS)
		}
		f := "0"
		if len(failed) > 0 {
			f = fmt.Sprintf("%d (%s)", len(failed), strings.Join(failed, "; "))
		}
		fmt.Printf("| %d | %s | %.1f | %s | %s | %s |\n", r.n, r.conf, median(sps), pct(median(slow)), ms(median(cpu)), f)
	}
	fmt.Println()
	fmt.Println("Samples taken /s: thread stacks written over (threads + the main thread), per second asked (`--duration`; per second it ran if it overran and was stopped with SIGINT); median of the repetitions. Slowdown: 1 − the target's work rate during the run ÷ the mean of the windows without a tool before and after it. CPU per sample: the tool's user + system time ÷ samples taken.")
	if mem != nil {
		fmt.Println()
		fmt.Printf("Memory: `krait record --rate 100 --idle` of %d threads × %d frames for %s: resident %s.\n", c.memThreads, c.depth, c.memDuration, mem)
	}
	if host != nil {
		fmt.Println()
		fmt.Printf("Whole host: %d processes × %d threads × %d frames, one `krait record --rate 100` with a `--pid` each, %d s: %s.\n", c.hostWorkers, c.hostThreads, c.depth, c.window+1, host)
	}
}

func pct(x float64) string {
	if math.IsNaN(x) {
		return "—"
	}
	return fmt.Sprintf("%.1f %%", 100*x)
}

func ms(x float64) string {
	if math.IsNaN(x) || x == 0 {
		return "—"
	}
	return fmt.Sprintf("%.3f ms", 1000*x)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

type memResult struct {
	points []memPoint
}

type memPoint struct {
	at  time.Duration
	rss int64 // kB
}

func (m *memResult) String() string {
	if len(m.points) < 3 {
		return "not measured (the run ended early)"
	}
	var b strings.Builder
	first := m.points[0]
	for _, p := range m.points {
		if p.at >= 10*time.Second {
			first = p
			break
		}
	}
	last := m.points[len(m.points)-1]
	max := int64(0)
	for _, p := range m.points {
		if p.rss > max {
			max = p.rss
		}
	}
	fmt.Fprintf(&b, "%.1f MB after %s, %.1f MB at the end (%s), largest %.1f MB",
		float64(first.rss)/1024, first.at.Round(time.Second), float64(last.rss)/1024, last.at.Round(time.Second), float64(max)/1024)
	if span := (last.at - first.at).Minutes(); span > 0 {
		slope := float64(last.rss-first.rss) / 1024 / span
		extra := slope * (10 - last.at.Minutes())
		if extra < 0 {
			extra = 0
		}
		fmt.Fprintf(&b, "; growth after the first 10 s %.2f MB/min, so about %.1f MB at 10 minutes if it went on growing linearly", slope, float64(last.rss)/1024+extra)
	}
	return b.String()
}

func rssKB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
	}
	return 0
}

func memRun(c *config, dir string) *memResult {
	progress("memory: %d threads for %s", c.memThreads, c.memDuration)
	t, err := startTarget(c, c.memThreads)
	if err != nil {
		progress("%v", err)
		return nil
	}
	defer t.stop()
	cmd := exec.Command(c.krait, "record", "--pid", strconv.Itoa(t.pid), "--rate", "100", "--idle",
		"--duration", strconv.Itoa(int(c.memDuration.Seconds())), "-f", "raw", "-o", filepath.Join(dir, "mem.txt"))
	cmd.SysProcAttr = benchkit.OwnAttr()
	if err := cmd.Start(); err != nil {
		progress("%v", err)
		return nil
	}
	procs.AddGroup(cmd.Process.Pid)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	m := &memResult{}
	start := time.Now()
	tk := time.NewTicker(2 * time.Second)
	defer tk.Stop()
	for {
		select {
		case <-done:
			procs.RemoveGroup(cmd.Process.Pid)
			return m
		case <-tk.C:
			if kb := rssKB(cmd.Process.Pid); kb > 0 {
				m.points = append(m.points, memPoint{time.Since(start), kb})
			}
		}
	}
}

type hostResult struct {
	rate, cpu float64
	late      int64
	errors    int64
	failed    string
}

func (h *hostResult) String() string {
	if h.failed != "" {
		return "failed: " + h.failed
	}
	return fmt.Sprintf("%.1f rounds/s achieved (every process read in each), %d rounds skipped as late, %d read errors, krait's CPU %.0f %% of a core", h.rate, h.late, h.errors, 100*h.cpu)
}

func hostRun(c *config, dir string) *hostResult {
	progress("whole host: %d × %d threads", c.hostWorkers, c.hostThreads)
	var ts []*target
	defer func() {
		for _, t := range ts {
			t.stop()
		}
	}()
	args := []string{"record", "--rate", "100", "--duration", strconv.Itoa(c.window + 1), "-f", "raw", "-o", filepath.Join(dir, "host.txt"), "--json"}
	for i := 0; i < c.hostWorkers; i++ {
		t, err := startTarget(c, c.hostThreads)
		if err != nil {
			return &hostResult{failed: err.Error()}
		}
		ts = append(ts, t)
		args = append(args, "--pid", strconv.Itoa(t.pid))
	}
	cmd := exec.Command(c.krait, args...)
	cmd.SysProcAttr = benchkit.OwnAttr()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return &hostResult{failed: fmt.Sprintf("%v: %s", err, lastLine(stderr.String()))}
	}
	var sum struct {
		Rounds       int64   `json:"samples"`
		RateAchieved float64 `json:"rate_achieved"`
		Late         int64   `json:"late"`
		Errors       int64   `json:"errors"`
	}
	if err := json.Unmarshal([]byte(stdout.String()), &sum); err != nil {
		return &hostResult{failed: "krait's JSON: " + err.Error()}
	}
	return &hostResult{rate: sum.RateAchieved, late: sum.Late, errors: sum.Errors, cpu: cpuOf(cmd.ProcessState) / time.Since(start).Seconds()}
}
