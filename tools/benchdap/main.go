// Command benchdap times a DAP attach by pid, krait dap next to debugpy's
// adapter, as an editor does it: both adapters are run on stdin/stdout and
// sent the same messages (go-dap's framing): initialize, attach
// {processId, justMyCode}; on the initialized event, setBreakpoints on a
// line the target's worker thread runs every 50 ms, then
// configurationDone. It reports, from the attach request: the initialized
// event, and the first stopped event at the breakpoint. Each run attaches
// to a fresh target (testdata/fixtures/dap_target.py): debugpy stays in a
// process it attached to.
//
//	go build -o krait ./cmd/krait
//	go run ./tools/benchdap --krait ./krait --py PYTHON [--py PYTHON]... [--runs N] > bench-dap.md
//
// For debugpy it makes a virtualenv per interpreter in a temporary
// directory (removed at the end; --venvs DIR keeps them) and pip-installs
// debugpy there; the adapter is that venv's `python -m debugpy.adapter`.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-dap"

	"krait/tools/internal/benchkit"
)

type pyList []string

func (p *pyList) String() string     { return strings.Join(*p, ",") }
func (p *pyList) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	var pys pyList
	krait := flag.String("krait", "./krait", "the krait binary")
	flag.Var(&pys, "py", "a Python interpreter to run the target with (repeatable)")
	runs := flag.Int("runs", 5, "runs per adapter and interpreter")
	venvs := flag.String("venvs", "", "where the debugpy virtualenvs are (made if missing; default: a temporary directory, removed)")
	timeout := flag.Duration("timeout", 60*time.Second, "how long one run may take")
	flag.Parse()
	if len(pys) == 0 {
		fmt.Fprintln(os.Stderr, "benchdap: give at least one --py")
		os.Exit(2)
	}
	root, err := os.Getwd()
	if err != nil {
		fatal(err)
	}
	fixture := filepath.Join(root, "testdata", "fixtures", "dap_target.py")
	line, err := markerLine(fixture, "# LINE work")
	if err != nil {
		fatal(err)
	}
	kraitBin, err := filepath.Abs(*krait)
	if err != nil {
		fatal(err)
	}
	if *venvs == "" {
		d, err := os.MkdirTemp("", "benchdap-venvs-")
		if err != nil {
			fatal(err)
		}
		defer os.RemoveAll(d)
		*venvs = d
	}

	fmt.Printf("# krait dap vs debugpy: attach by pid\n\n")
	fmt.Printf("`go run ./tools/benchdap --krait ./krait %s --runs %d`\n\n", flagsPy(pys), *runs)
	for _, kv := range benchkit.MachineBasics() {
		fmt.Printf("- %s: %s\n", kv[0], kv[1])
	}
	fmt.Printf("- load average at start: %s\n\n", benchkit.Loadavg())
	fmt.Println("| Python | adapter | attach → initialized (median, min–max) | attach → first stopped (median, min–max) | runs |")
	fmt.Println("|---|---|---|---|---|")
	var notes []string
	for _, py := range pys {
		ver := strings.TrimSpace(benchkit.Output(py, "-c", "import platform; print(platform.python_version())"))
		vpy, dver, err := debugpyVenv(py, *venvs)
		if err != nil {
			notes = append(notes, fmt.Sprintf("Python %s: no debugpy: %v", ver, err))
		}
		adapters := []struct {
			name string
			argv []string
		}{{"krait dap", []string{kraitBin, "dap"}}}
		if vpy != "" {
			adapters = append(adapters, struct {
				name string
				argv []string
			}{"debugpy " + dver, []string{vpy, "-m", "debugpy.adapter"}})
		}
		for _, a := range adapters {
			var inits, stops []float64
			var failed []string
			for i := 0; i < *runs; i++ {
				init, stop, err := run(a.argv, py, fixture, line, *timeout)
				if err != nil {
					failed = append(failed, err.Error())
					continue
				}
				inits, stops = append(inits, init), append(stops, stop)
			}
			fmt.Printf("| %s | %s | %s | %s | %d of %d |\n", ver, a.name, stat(inits), stat(stops), len(inits), *runs)
			for _, f := range failed {
				notes = append(notes, fmt.Sprintf("Python %s, %s: a run failed: %s", ver, a.name, f))
			}
		}
	}
	if len(notes) > 0 {
		fmt.Println()
		for _, n := range notes {
			fmt.Printf("- %s\n", n)
		}
	}
}

func flagsPy(pys []string) string {
	var out []string
	root := benchkit.PyenvRoot()
	for _, p := range pys {
		if root != "" && strings.HasPrefix(p, root+"/") {
			p = `"$PYENV_ROOT"` + p[len(root):]
		}
		out = append(out, "--py "+p)
	}
	return strings.Join(out, " ")
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "benchdap: %v\n", err)
	os.Exit(1)
}

func markerLine(file, marker string) (int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	for i, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, marker) {
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("%s: no %q", file, marker)
}

// debugpyVenv makes (once) a virtualenv of py with debugpy and returns its
// python and debugpy's version.
func debugpyVenv(py, dir string) (string, string, error) {
	name := strings.ReplaceAll(strings.TrimPrefix(py, "/"), "/", "_")
	v := filepath.Join(dir, name)
	vpy := filepath.Join(v, "bin", "python")
	if _, err := os.Stat(vpy); err != nil {
		if out, err := exec.Command(py, "-m", "venv", v).CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("venv: %v: %s", err, out)
		}
	}
	if exec.Command(vpy, "-c", "import debugpy").Run() != nil {
		if out, err := exec.Command(vpy, "-m", "pip", "install", "--disable-pip-version-check", "-q", "debugpy").CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("pip install debugpy: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	ver := strings.TrimSpace(benchkit.Output(vpy, "-c", "import debugpy; print(debugpy.__version__)"))
	return vpy, ver, nil
}

// run starts a target and an adapter, attaches and returns the
// milliseconds from the attach request to the initialized event and to
// the first stopped event.
func run(argv []string, py, fixture string, line int, timeout time.Duration) (float64, float64, error) {
	target := exec.Command(py, fixture)
	out, _ := target.StdoutPipe()
	target.SysProcAttr = benchkit.OwnAttr()
	if err := target.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		target.Process.Kill()
		target.Wait()
	}()
	if l, err := bufio.NewReader(out).ReadString('\n'); err != nil || !strings.HasPrefix(l, "ready") {
		return 0, 0, fmt.Errorf("target did not start: %q %v", l, err)
	}
	ad := exec.Command(argv[0], argv[1:]...)
	in, _ := ad.StdinPipe()
	aout, _ := ad.StdoutPipe()
	var stderr strings.Builder
	ad.Stderr = &stderr
	ad.SysProcAttr = benchkit.OwnAttr()
	if err := ad.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		in.Close()
		done := make(chan struct{})
		go func() { ad.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			ad.Process.Kill()
			<-done
		}
	}()
	msgs := make(chan dap.Message, 1000)
	go func() {
		r := bufio.NewReader(aout)
		for {
			m, err := dap.ReadProtocolMessage(r)
			if err != nil {
				var de *dap.DecodeProtocolMessageFieldError
				if errors.As(err, &de) {
					continue // a message go-dap does not know (debugpy's own events)
				}
				close(msgs)
				return
			}
			msgs <- m
		}
	}()
	seq := 0
	send := func(cmd string, args any) {
		seq++
		m := map[string]any{"seq": seq, "type": "request", "command": cmd}
		if args != nil {
			m["arguments"] = args
		}
		b, _ := json.Marshal(m)
		_ = dap.WriteBaseMessage(in, b)
	}
	deadline := time.After(timeout)
	wait := func(what string, match func(dap.Message) bool) error {
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					return fmt.Errorf("adapter output ended waiting for %s: %s", what, lastLine(stderr.String()))
				}
				if r, ok := m.(dap.ResponseMessage); ok && !r.GetResponse().Success {
					return fmt.Errorf("%s failed: %s", r.GetResponse().Command, r.GetResponse().Message)
				}
				if match(m) {
					return nil
				}
			case <-deadline:
				return fmt.Errorf("no %s within %s", what, timeout)
			}
		}
	}
	send("initialize", map[string]any{"clientID": "benchdap", "adapterID": "python", "linesStartAt1": true, "columnsStartAt1": true, "pathFormat": "path"})
	if err := wait("initialize response", func(m dap.Message) bool { _, ok := m.(*dap.InitializeResponse); return ok }); err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	send("attach", map[string]any{"processId": target.Process.Pid, "justMyCode": true})
	if err := wait("initialized event", func(m dap.Message) bool { _, ok := m.(*dap.InitializedEvent); return ok }); err != nil {
		return 0, 0, err
	}
	tInit := time.Since(t0)
	send("setBreakpoints", map[string]any{"source": map[string]any{"path": fixture}, "breakpoints": []map[string]any{{"line": line}}})
	send("configurationDone", nil)
	if err := wait("stopped event", func(m dap.Message) bool { _, ok := m.(*dap.StoppedEvent); return ok }); err != nil {
		return 0, 0, err
	}
	tStop := time.Since(t0)
	send("disconnect", map[string]any{"terminateDebuggee": false})
	_ = wait("disconnect response", func(m dap.Message) bool { _, ok := m.(*dap.DisconnectResponse); return ok })
	return ms(tInit), ms(tStop), nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

func stat(xs []float64) string {
	if len(xs) == 0 {
		return "—"
	}
	s := append([]float64{}, xs...)
	sort.Float64s(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf("%s (%s–%s)", benchkit.FmtMS(med), benchkit.FmtMS(s[0]), benchkit.FmtMS(s[len(s)-1]))
}
