package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// startProfileFixture starts testdata/fixtures/profile_fixture.py: a thread
// "busy" spending about 3/4 of its time in hot() and 1/4 in warm(), a
// thread "sleeper" and the main thread idle.
func startProfileFixture(t *testing.T, py python, seconds string) *proc {
	t.Helper()
	argv := []string{py.path, fixture("profile_fixture.py")}
	if seconds != "" {
		argv = append(argv, seconds)
	}
	p := start(t, nil, argv...)
	if !p.waitFor(30*time.Second, func() bool { n, _ := p.stdout.Lines(); return n > 0 }) {
		t.Fatalf("profile fixture did not start (exited: %v): %s", p.exited(), p.stderr)
	}
	return p
}

// recordSummary mirrors krait record --json.
type recordSummary struct {
	Output        string  `json:"output"`
	Format        string  `json:"format"`
	Samples       int64   `json:"samples"`
	ThreadSamples int64   `json:"thread_samples"`
	DurationS     float64 `json:"duration_s"`
	RateRequested float64 `json:"rate_requested"`
	RateAchieved  float64 `json:"rate_achieved"`
	Errors        int64   `json:"errors"`
	Processes     []struct {
		PID     int    `json:"pid"`
		Samples int64  `json:"samples"`
		Exited  bool   `json:"exited"`
		Error   string `json:"error"`
	} `json:"processes"`
	TopFunctions []struct {
		Function string  `json:"function"`
		Own      int64   `json:"own_samples"`
		OwnPct   float64 `json:"own_percent"`
	} `json:"top_functions"`
	Views []struct {
		View    string  `json:"view"`
		Samples int64   `json:"samples"`
		Percent float64 `json:"percent"`
	} `json:"views"`
}

// collapsed parses raw output: stack → count.
func collapsed(t *testing.T, data string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(data), "\n") {
		if line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		n, err := strconv.ParseInt(line[i+1:], 10, 64)
		if i < 0 || err != nil {
			t.Fatalf("raw output: bad line %q", line)
		}
		out[line[:i]] += n
	}
	return out
}

// share sums the samples of stacks whose frames match re, over all.
func share(stacks map[string]int64, re string) (float64, int64) {
	rx := regexp.MustCompile(re)
	var hit, all int64
	for s, n := range stacks {
		all += n
		if rx.MatchString(s) {
			hit += n
		}
	}
	if all == 0 {
		return 0, 0
	}
	return float64(hit) / float64(all), all
}

// leaf matches stacks whose innermost frame is function fn.
func leaf(fn string) string { return `(^|;)` + regexp.QuoteMeta(fn) + ` \([^;]*$` }

// TestRecordShares: on every interpreter, the recorded shares of hot() and
// warm() match the fixture's 3:1 within a tolerance; idle threads are
// absent unless --idle; --gil keeps only the GIL holder.
func TestRecordShares(t *testing.T) {
	for _, py := range pythons(t) {
		t.Run(py.name, func(t *testing.T) {
			p := startProfileFixture(t, py, "")
			pid := strconv.Itoa(p.pid())
			run := func(extra ...string) map[string]int64 {
				args := append([]string{"record", "--pid", pid, "--duration", "1.5", "--format", "raw", "-o", "-"}, extra...)
				r := krait(t, args...)
				if r.code != 0 {
					t.Fatalf("%v", r)
				}
				checkNoPanic(t, "record", r.stderr)
				return collapsed(t, r.stdout)
			}
			// Default: busy's samples only (idle threads left out).
			st := run()
			hot, all := share(st, leaf("hot"))
			warm, _ := share(st, leaf("warm"))
			t.Logf("%s: %d samples, hot %.2f warm %.2f", py.name, all, hot, warm)
			// (A loaded machine takes fewer: the floor is low.)
			if all < 50 {
				t.Errorf("only %d samples in 1.5 s at 100 Hz", all)
			}
			// Idle threads are left out; a few samples of them remain on a
			// loaded machine, where a thread woken from its system call by
			// krait's own pause may wait long to run and block again.
			if hw := hot + warm; hw < 0.8 {
				t.Errorf("hot+warm %.2f of the samples, want ≥ 0.8 (idle threads should be left out): %v", hw, st)
			} else if r := hot / hw; r < 0.62 || r > 0.88 {
				t.Errorf("hot is %.2f of hot+warm, want 0.75 ± 0.13", r)
			}
			if s, _ := share(st, `(^|;)sleeper \(`); s > 0.1 {
				t.Errorf("the idle thread sleeper has %.2f of the samples without --idle", s)
			}
			// --idle: the sleeper and the main thread show.
			st = run("--idle")
			if s, _ := share(st, `(^|;)sleeper \(`); s < 0.2 {
				t.Errorf("--idle: sleeper has %.2f of the samples, want about 1/3", s)
			}
			if s, _ := share(st, `(^|;)main \(`); s < 0.2 {
				t.Errorf("--idle: the main thread has %.2f of the samples, want about 1/3", s)
			}
			// --gil --idle: only the holder, which is busy (the others wait
			// in sleep or join without the GIL).
			st = run("--gil", "--idle")
			if s, _ := share(st, `(^|;)busy \(`); s < 0.9 {
				t.Errorf("--gil: busy has %.2f of the samples, want ≥ 0.9: %v", s, st)
			}
		})
	}
}

// speedscopeSchema is the file-format schema shipped in the npm package
// speedscope (.ci/run installs it).
func speedscopeSchema(t *testing.T) string {
	path := os.Getenv("KRAIT_SPEEDSCOPE_SCHEMA")
	if path == "" {
		home, _ := os.UserHomeDir()
		path = filepath.Join(home, ".cache", "krait-npm", "node_modules", "speedscope", "dist", "release", "file-format-schema.json")
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("speedscope's schema is missing (.ci/run installs it): %v", err)
		}
		t.Skipf("speedscope's schema not installed (npm install --prefix ~/.cache/krait-npm speedscope): %v", err)
	}
	return path
}

// TestRecordFormats: each output format is opened by its consumer — the
// pprof profile by go tool pprof (with its labels), the speedscope file
// against speedscope's own schema, the SVG in headless chromium where it
// renders and its search highlights hot() — and --json's summary agrees.
func TestRecordFormats(t *testing.T) {
	py := pickPython(t)
	p := startProfileFixture(t, py, "")
	pid := strconv.Itoa(p.pid())
	dir := t.TempDir()
	rec := func(format, out string, extra ...string) *recordSummary {
		args := append([]string{"record", "--pid", pid, "--duration", "1", "--format", format, "-o", out, "--json"}, extra...)
		r := krait(t, args...)
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		var sum recordSummary
		if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
			t.Fatalf("record --json: %v\n%s", err, r.stdout)
		}
		if sum.Output != out || sum.Format != format || sum.Samples < 50 || sum.RateAchieved < 50 || len(sum.Processes) != 1 {
			t.Errorf("record --json: %+v", sum)
		}
		if len(sum.TopFunctions) == 0 || sum.TopFunctions[0].Function != "hot" {
			t.Errorf("record --json: top function is not hot: %+v", sum.TopFunctions)
		}
		return &sum
	}

	t.Run("pprof", func(t *testing.T) {
		out := filepath.Join(dir, "p.pb.gz")
		rec("pprof", out)
		top, err := exec.Command("go", "tool", "pprof", "-top", out).CombinedOutput()
		if err != nil {
			t.Fatalf("go tool pprof -top: %v\n%s", err, top)
		}
		if !regexp.MustCompile(`(?m)\s+hot$`).Match(top) || !regexp.MustCompile(`(?m)\s+warm$`).Match(top) {
			t.Errorf("go tool pprof -top does not list hot and warm:\n%s", top)
		}
		tags, err := exec.Command("go", "tool", "pprof", "-tags", out).CombinedOutput()
		if err != nil {
			t.Fatalf("go tool pprof -tags: %v\n%s", err, tags)
		}
		for _, want := range []string{"pid:", pid, "thread:", "thread_name:", "busy", "view:", "(no request)"} {
			if !bytes.Contains(tags, []byte(want)) {
				t.Errorf("go tool pprof -tags: no %q:\n%s", want, tags)
			}
		}
	})

	t.Run("speedscope", func(t *testing.T) {
		schemaPath := speedscopeSchema(t)
		out := filepath.Join(dir, "p.speedscope.json")
		rec("speedscope", out, "--by", "view")
		c := jsonschema.NewCompiler()
		sch, err := c.Compile(schemaPath)
		if err != nil {
			t.Fatalf("compiling speedscope's schema: %v", err)
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		doc, err := jsonschema.UnmarshalJSON(f)
		if err != nil {
			t.Fatalf("speedscope output is not JSON: %v", err)
		}
		if err := sch.Validate(doc); err != nil {
			t.Errorf("speedscope output does not match speedscope's schema: %v", err)
		}
		data, _ := os.ReadFile(out)
		for _, want := range []string{`"name":"hot"`, `"name":"view (no request)"`, `"type":"sampled"`} {
			if !bytes.Contains(data, []byte(want)) {
				t.Errorf("speedscope output has no %s", want)
			}
		}
	})

	t.Run("raw", func(t *testing.T) {
		out := filepath.Join(dir, "p.txt")
		rec("raw", out, "--threads", "--by", "view")
		data, _ := os.ReadFile(out)
		st := collapsed(t, string(data))
		if s, _ := share(st, `^view \(no request\);thread "busy" \(tid \d+\);`); s < 0.75 {
			t.Errorf("raw --threads --by view: stacks do not start with the view and the thread: %v", st)
		}
	})

	t.Run("flamegraph", func(t *testing.T) {
		out := filepath.Join(dir, "p.svg")
		rec("flamegraph", out)
		data, _ := os.ReadFile(out)
		if !bytes.HasPrefix(data, []byte("<?xml")) || !bytes.Contains(data, []byte("<svg")) || !bytes.Contains(data, []byte("hot (")) {
			t.Fatalf("not an SVG flame graph with hot: %.300s", data)
		}
		chromium := ""
		for _, c := range []string{"chromium", "chromium-browser"} {
			if p, err := exec.LookPath(c); err == nil {
				chromium = p
			}
		}
		if chromium == "" {
			if os.Getenv("CI") != "" {
				t.Fatal("chromium is missing (.ci/run installs it)")
			}
			t.Skip("no chromium (apt-get install chromium)")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir="+t.TempDir(),
			"--virtual-time-budget=2000", "--dump-dom", "file://"+out+"#search=^hot%20")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium: %v\n%s", err, stderr.String())
		}
		dom := stdout.String()
		// The script ran: search marked hot's frames and reported the share.
		m := regexp.MustCompile(`data-matched="([0-9.]+)"`).FindStringSubmatch(dom)
		if m == nil {
			t.Fatalf("chromium: the flame graph's search did not run (no data-matched):\n%.2000s", dom)
		}
		pct, _ := strconv.ParseFloat(m[1], 64)
		if pct < 50 || pct > 95 {
			t.Errorf("search ^hot matched %.2f%% of the samples, want about 75%%", pct)
		}
		if !regexp.MustCompile(`class="f match"[^>]*><title>hot \(`).MatchString(dom) {
			t.Errorf("chromium: hot's frame is not highlighted:\n%.3000s", dom)
		}
	})
}

// TestRecordEnds: a recording ends, writes its output and exits 0 when the
// process exits midway, on Ctrl-C, and when the command it runs ends.
func TestRecordEnds(t *testing.T) {
	py := pickPython(t)
	dir := t.TempDir()

	t.Run("exit midway", func(t *testing.T) {
		p := startProfileFixture(t, py, "1")
		out := filepath.Join(dir, "exit.txt")
		began := time.Now()
		r := krait(t, "record", "--pid", strconv.Itoa(p.pid()), "--duration", "20", "-f", "raw", "-o", out, "--json")
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		if took := time.Since(began); took > 10*time.Second {
			t.Errorf("record went on %v after the process exited", took)
		}
		var sum recordSummary
		if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
			t.Fatal(err)
		}
		if len(sum.Processes) != 1 || !sum.Processes[0].Exited || sum.Processes[0].Samples < 30 {
			t.Errorf("summary: %+v", sum.Processes)
		}
		data, _ := os.ReadFile(out)
		if s, _ := share(collapsed(t, string(data)), leaf("hot")); s < 0.4 {
			t.Errorf("the samples before the exit were not kept: %s", data)
		}
	})

	t.Run("ctrl-c", func(t *testing.T) {
		p := startProfileFixture(t, py, "")
		out := filepath.Join(dir, "int.txt")
		cmd := exec.Command(kraitBin, "record", "--pid", strconv.Itoa(p.pid()), "-f", "raw", "-o", out)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		if err != nil {
			t.Fatalf("record after SIGINT: %v (want exit 0)\n%s", err, stderr.String())
		}
		data, _ := os.ReadFile(out)
		if s, _ := share(collapsed(t, string(data)), leaf("hot")); s < 0.4 {
			t.Errorf("output after Ctrl-C: %s", data)
		}
		if st := procState(p.pid()); st == 't' || st == 'T' {
			t.Errorf("the target was left stopped (%c)", st)
		}
	})

	t.Run("command", func(t *testing.T) {
		out := filepath.Join(dir, "cmd.txt")
		r := krait(t, "record", "-f", "raw", "-o", out, "--", py.path, fixture("profile_fixture.py"), "1.5")
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		data, _ := os.ReadFile(out)
		if s, _ := share(collapsed(t, string(data)), leaf("hot")); s < 0.4 {
			t.Errorf("record -- COMMAND: %s", data)
		}
	})
}

// TestRecordSubprocesses: --subprocesses follows a parent's children,
// one started after the recording began included.
func TestRecordSubprocesses(t *testing.T) {
	py := pickPython(t)
	p := start(t, nil, py.path, fixture("spawner.py"), "8")
	if !p.waitFor(30*time.Second, func() bool { n, _ := p.stdout.Lines(); return n > 0 }) {
		t.Fatalf("spawner did not start: %s", p.stderr)
	}
	r := krait(t, "record", "--pid", strconv.Itoa(p.pid()), "--subprocesses", "--duration", "3", "-f", "raw", "-o", filepath.Join(t.TempDir(), "s.txt"), "--json")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	var sum recordSummary
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatal(err)
	}
	children := regexp.MustCompile(`child (\d+)`).FindAllStringSubmatch(p.stdout.String(), -1)
	for _, c := range children {
		pid, _ := strconv.Atoi(c[1])
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if len(children) != 2 {
		t.Fatalf("spawner output: %q", p.stdout.String())
	}
	got := map[int]int64{}
	for _, pr := range sum.Processes {
		got[pr.PID] = pr.Samples
	}
	for _, c := range children {
		pid, _ := strconv.Atoi(c[1])
		if got[pid] < 20 {
			t.Errorf("child %d: %d samples, want it recorded (processes %+v)", pid, got[pid], sum.Processes)
		}
	}
	if _, ok := got[p.pid()]; !ok {
		t.Errorf("the parent %d is not among the processes: %+v", p.pid(), sum.Processes)
	}
}

// TestRecordUnreadable: of two processes, one krait may not read is one
// line on stderr and the other is recorded.
func TestRecordUnreadable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs krait as nobody against a root-owned process")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed: %v", err)
	}
	const sys = "/usr/bin/python3.11"
	if !isExecutable(sys) {
		t.Skip("no " + sys)
	}
	asNobody := []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}
	// The fixture where nobody can read it.
	dir, err := os.MkdirTemp("", "krait-record-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, _ := os.ReadFile(fixture("profile_fixture.py"))
	script := filepath.Join(dir, "profile_fixture.py")
	if err := os.WriteFile(script, src, 0o644); err != nil {
		t.Fatal(err)
	}
	mine := start(t, nil, append(asNobody, sys, script)...)
	root := start(t, nil, sys, script)
	for _, p := range []*proc{mine, root} {
		if !p.waitFor(30*time.Second, func() bool { n, _ := p.stdout.Lines(); return n > 0 }) {
			t.Fatalf("fixture did not start: %s", p.stderr)
		}
	}
	r := kraitAs(t, asNobody, "record", "--pid", strconv.Itoa(root.pid()), "--pid", strconv.Itoa(mine.pid()), "--duration", "1", "-f", "raw", "-o", "-")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	checkOneLine(t, "record as nobody", r.stderr)
	if !strings.Contains(r.stderr, "permission denied") || !strings.Contains(r.stderr, strconv.Itoa(root.pid())) {
		t.Errorf("stderr does not say which process krait may not read: %q", r.stderr)
	}
	if s, _ := share(collapsed(t, r.stdout), leaf("hot")); s < 0.4 {
		t.Errorf("the readable process was not recorded: %s", r.stdout)
	}
}

// TestTopJSON: krait top prints one JSON snapshot per interval when its
// output is not a terminal, and Ctrl-C ends it with exit 0.
func TestTopJSON(t *testing.T) {
	py := pickPython(t)
	p := startProfileFixture(t, py, "")
	cmd := exec.Command(kraitBin, "top", "--pid", strconv.Itoa(p.pid()), "--by", "view")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3500 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("top after SIGINT: %v\n%s", err, stderr.String())
	}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<22)
	lines := 0
	for sc.Scan() {
		var snap struct {
			Samples   int64 `json:"samples"`
			Functions []struct {
				Function string  `json:"function"`
				OwnPct   float64 `json:"own_percent"`
			} `json:"functions"`
			Views []struct {
				View string `json:"view"`
			} `json:"views"`
		}
		if err := json.Unmarshal(sc.Bytes(), &snap); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", lines+1, err, sc.Text())
		}
		lines++
		if snap.Samples < 20 || len(snap.Functions) == 0 || snap.Functions[0].Function != "hot" || len(snap.Views) == 0 || snap.Views[0].View != "(no request)" {
			t.Errorf("snapshot %d: %s", lines, sc.Text())
		}
	}
	if lines < 2 {
		t.Errorf("%d snapshots in 3.5 s, want one a second", lines)
	}
}
