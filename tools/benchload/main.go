// Command benchload measures `krait attach` on busy processes: for each
// interpreter and target it runs `krait attach PID --batch -ex 'info
// threads'` (attach, list threads, detach) N times in a row and reports
// how many succeeded, the time to the prompt, the pause, and where krait
// entered; afterwards it checks that the target was not disturbed and
// that nothing of krait's was left. A Markdown report goes to stdout,
// progress to stderr.
//
//	go build -o krait ./cmd/krait
//	go run ./tools/benchload > bench-load.md
//
// Targets (--targets):
//   - cpu-lock: testdata/fixtures/load_fixture.py cpu-lock: --threads
//     threads in CPU loops, one in queue.get(timeout), one in Event.wait(),
//     the main thread in join();
//   - alloc-io: load_fixture.py alloc-io: --threads threads that allocate,
//     hash and write and read back a file;
//   - gunicorn: gunicorn (Debian's, /usr/bin/python3.11) serving
//     testdata/django with one gthread worker of 4 threads, --clients
//     clients requesting /cpu/?ms=50 without pause (every request thread
//     busy in CPU work); krait attaches to the worker. Every request must
//     succeed and the worker must still be the same process.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"krait/internal/testkit"
	"krait/tools/internal/benchkit"
)

var (
	kraitBin = flag.String("krait", "./krait", "krait binary")
	pythons  = flag.String("python", "", "interpreters: pyenv versions (newest match) or paths; default every pyenv 3.6-3.13 and /usr/bin/python3.11")
	targets  = flag.String("targets", "cpu-lock,alloc-io,gunicorn", "targets to measure")
	cycles   = flag.Int("cycles", 100, "attach/detach cycles per interpreter and target")
	threads  = flag.Int("threads", 4, "worker threads of the fixtures")
	clients  = flag.Int("clients", 8, "concurrent clients of the gunicorn target")
	timeout  = flag.Duration("attach-timeout", 30*time.Second, "krait's --attach-timeout")
	rawOut   = flag.String("raw", "", "write every cycle as JSON here")
)

var procs = benchkit.NewProcs()

// cycle is one attach/detach.
type cycle struct {
	OK     bool    `json:"ok"`
	Attach float64 `json:"attach_ms"` // krait's own "Attached … in N"
	Pause  float64 `json:"pause_ms"`
	Wall   float64 `json:"wall_ms"` // the whole krait run: attach, info threads, detach
	Via    string  `json:"via"`
	Err    string  `json:"error,omitempty"`
}

// result is one interpreter and target.
type result struct {
	Python, Version, Target string
	Cycles                  []cycle
	Check                   string // "ok" or what was wrong
	Requests                string // gunicorn: requests served / failed
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("benchload: ")
	flag.Parse()
	procs.KillOnSignal("benchload")
	defer procs.KillAll()
	root, err := testkit.ModuleRoot()
	if err != nil {
		log.Fatal(err)
	}
	if _, err := os.Stat(*kraitBin); err != nil {
		log.Fatalf("krait binary: %v (go build -o krait ./cmd/krait)", err)
	}
	kb, _ := filepath.Abs(*kraitBin)
	var results []result
	for _, tg := range benchkit.SplitList(*targets) {
		for _, py := range interpreters(tg) {
			log.Printf("%s on %s: %d cycles", tg, py, *cycles)
			r := run(root, kb, tg, py)
			results = append(results, r)
			log.Printf("%s on %s: %d/%d succeeded; %s", tg, py, succeeded(r.Cycles), len(r.Cycles), r.Check)
		}
	}
	if *rawOut != "" {
		data, _ := json.MarshalIndent(results, "", " ")
		if err := os.WriteFile(*rawOut, data, 0o644); err != nil {
			log.Print(err)
		}
	}
	report(os.Stdout, results)
}

// interpreters lists the interpreters for a target.
func interpreters(target string) []string {
	if target == "gunicorn" {
		return []string{"/usr/bin/python3.11"}
	}
	if *pythons != "" {
		var out []string
		for _, p := range benchkit.SplitList(*pythons) {
			if strings.Contains(p, "/") {
				out = append(out, p)
				continue
			}
			m, _ := filepath.Glob(filepath.Join(benchkit.PyenvRoot(), "versions", p+"*", "bin", "python3"))
			sort.Slice(m, func(i, j int) bool { return benchkit.VersionLess(m[i], m[j]) })
			if len(m) > 0 {
				out = append(out, m[len(m)-1])
			}
		}
		return out
	}
	var out []string
	m, _ := filepath.Glob(filepath.Join(benchkit.PyenvRoot(), "versions", "3.*", "bin", "python3"))
	sort.Slice(m, func(i, j int) bool { return benchkit.VersionLess(m[i], m[j]) })
	for _, p := range m {
		v := filepath.Base(filepath.Dir(filepath.Dir(p)))
		var minor int
		if _, err := fmt.Sscanf(v, "3.%d", &minor); err == nil && minor >= 6 && minor <= 13 {
			out = append(out, p)
		}
	}
	if _, err := os.Stat("/usr/bin/python3.11"); err == nil {
		out = append(out, "/usr/bin/python3.11")
	}
	return out
}

func succeeded(cs []cycle) int {
	n := 0
	for _, c := range cs {
		if c.OK {
			n++
		}
	}
	return n
}

// fixtureStatus is what load_fixture.py reports.
type fixtureStatus struct {
	Pid     int            `json:"pid"`
	Counts  map[string]int `json:"counts"`
	Bad     []string       `json:"bad"`
	Errors  []string       `json:"errors"`
	Threads []string       `json:"threads"`
}

func run(root, krait, target, py string) result {
	r := result{Python: py, Target: target}
	if out, err := exec.Command(py, "-c", "import platform; print(platform.python_version())").Output(); err == nil {
		r.Version = strings.TrimSpace(string(out))
	}
	tmp, err := os.MkdirTemp("", "benchload-")
	if err != nil {
		r.Check = err.Error()
		return r
	}
	procs.AddDir(tmp)
	defer procs.RemoveDir(tmp)
	var pid int
	var check func() string
	var stop func()
	switch target {
	case "cpu-lock", "alloc-io":
		pid, check, stop, err = startFixture(root, py, target, tmp)
	case "gunicorn":
		pid, check, stop, err = startGunicorn(root, py, tmp, &r)
	default:
		err = fmt.Errorf("unknown target %q", target)
	}
	if err != nil {
		r.Check = err.Error()
		return r
	}
	defer stop()
	for i := 0; i < *cycles; i++ {
		r.Cycles = append(r.Cycles, attachOnce(krait, pid))
		waitAgentGone(pid, 5*time.Second)
	}
	r.Check = check()
	if left := leftovers(pid); left != "" {
		r.Check += "; left behind: " + left
	}
	return r
}

var attachedRE = regexp.MustCompile(`^Attached to process \d+ \(.*\) in (\S+); process paused (\S+)(?: in \d+ pauses)? while krait entered via (.*?)\.?$`)

// attachOnce runs krait attach with info threads and detach.
func attachOnce(krait string, pid int) cycle {
	ctx, cancel := context.WithTimeout(context.Background(), *timeout+30*time.Second)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, krait, "attach", strconv.Itoa(pid), "--attach-timeout", timeout.String(), "--batch", "-ex", "info threads")
	cmd.SysProcAttr = benchkit.OwnAttr()
	out, err := cmd.CombinedOutput()
	c := cycle{Wall: float64(time.Since(start).Microseconds()) / 1000}
	text := string(out)
	for _, l := range strings.Split(text, "\n") {
		if m := attachedRE.FindStringSubmatch(l); m != nil {
			a, _ := time.ParseDuration(m[1])
			p, _ := time.ParseDuration(m[2])
			c.Attach, c.Pause, c.Via = float64(a.Microseconds())/1000, float64(p.Microseconds())/1000, m[3]
		}
	}
	c.OK = err == nil && c.Via != "" && strings.Contains(text, fmt.Sprintf("[Inferior 1 (process %d) detached]", pid))
	if !c.OK {
		c.Err = strings.Join(strings.Fields(text), " ")
		if err != nil {
			c.Err = err.Error() + ": " + c.Err
		}
		if len(c.Err) > 400 {
			c.Err = c.Err[:400] + "…"
		}
	}
	return c
}

// waitAgentGone waits until the process has no krait-agent thread.
func waitAgentGone(pid int, d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		found := false
		tids, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, t := range tids {
			if benchkit.ReadTrim(fmt.Sprintf("/proc/%d/task/%s/comm", pid, t.Name())) == "krait-agent" {
				found = true
			}
		}
		if !found {
			return
		}
	}
}

// leftovers lists krait directories in the target's /tmp whose owner
// names the target.
func leftovers(pid int) string {
	owners, _ := filepath.Glob(fmt.Sprintf("/proc/%d/root/tmp/krait-*/owner", pid))
	var left []string
	for _, o := range owners {
		var own struct {
			PID int `json:"pid"`
		}
		if data, err := os.ReadFile(o); err == nil && json.Unmarshal(data, &own) == nil && own.PID == pid {
			left = append(left, filepath.Base(filepath.Dir(o)))
		}
	}
	return strings.Join(left, ", ")
}

func startFixture(root, py, mode, tmp string) (int, func() string, func(), error) {
	status := filepath.Join(tmp, "status.json")
	cmd := exec.Command(py, filepath.Join(root, "testdata", "fixtures", "load_fixture.py"), mode, strconv.Itoa(*threads), status)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.SysProcAttr = benchkit.OwnAttr()
	if err := cmd.Start(); err != nil {
		return 0, nil, nil, err
	}
	pid := cmd.Process.Pid
	procs.AddGroup(pid)
	stop := func() { cmd.Process.Kill(); cmd.Wait(); procs.RemoveGroup(pid) }
	read := func() (fixtureStatus, error) {
		var st fixtureStatus
		data, err := os.ReadFile(status)
		if err == nil {
			err = json.Unmarshal(data, &st)
		}
		return st, err
	}
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if st, err := read(); err == nil && st.Counts["cpu"]+st.Counts["io"] > 0 {
			break
		}
		if time.Now().After(end) {
			stop()
			return 0, nil, nil, fmt.Errorf("fixture did not start: %s", stderr.String())
		}
	}
	check := func() string {
		before, err := read()
		if err != nil {
			return "status: " + err.Error()
		}
		time.Sleep(time.Second)
		after, err := read()
		switch {
		case err != nil:
			return "status: " + err.Error()
		case len(after.Bad) > 0 || len(after.Errors) > 0:
			return fmt.Sprintf("disturbed: %v %v", after.Bad, after.Errors)
		case stderr.Len() > 0:
			return "stderr: " + strings.TrimSpace(stderr.String())
		case after.Counts["cpu"]+after.Counts["io"] <= before.Counts["cpu"]+before.Counts["io"]:
			return "the workers stopped"
		}
		return "ok"
	}
	return pid, check, stop, nil
}

func startGunicorn(root, py, tmp string, r *result) (int, func() string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	django := filepath.Join(root, "testdata", "django")
	cmd := exec.Command(py, "-m", "gunicorn", "--bind", fmt.Sprintf("127.0.0.1:%d", port), "--chdir", django,
		"--worker-class", "gthread", "--workers", "1", "--threads", "4", "--timeout", "120",
		"--error-logfile", filepath.Join(tmp, "error.log"), "shopsite.wsgi:application")
	cmd.Env = append(os.Environ(), "PYTHONPATH="+django, "KRAIT_APP_NAME=benchload")
	cmd.SysProcAttr = benchkit.OwnAttr()
	if err := cmd.Start(); err != nil {
		return 0, nil, nil, err
	}
	master := cmd.Process.Pid
	procs.AddGroup(master)
	url := fmt.Sprintf("http://127.0.0.1:%d/cpu/?ms=50", port)
	client := &http.Client{Timeout: 60 * time.Second}
	var worker int
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := client.Get(url); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				worker = childOf(master)
				if worker != 0 {
					break
				}
			}
		}
		if time.Now().After(end) {
			cmd.Process.Kill()
			cmd.Wait()
			return 0, nil, nil, fmt.Errorf("gunicorn did not answer: %s", benchkit.ReadTrim(filepath.Join(tmp, "error.log")))
		}
	}
	var served, failed atomic.Int64
	var firstErr atomic.Value
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < *clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				resp, err := client.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("HTTP %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					served.Add(1)
				}
			}
		}()
	}
	time.Sleep(2 * time.Second) // every request thread busy
	stop := func() {
		syscall.Kill(-master, syscall.SIGKILL) // the master and its worker
		cmd.Wait()
		procs.RemoveGroup(master)
	}
	check := func() string {
		close(done)
		wg.Wait()
		r.Requests = fmt.Sprintf("%d served, %d failed", served.Load(), failed.Load())
		switch {
		case failed.Load() > 0:
			return fmt.Sprintf("%d requests failed (first: %v)", failed.Load(), firstErr.Load())
		case childOf(master) != worker:
			return fmt.Sprintf("worker %d was replaced by %d", worker, childOf(master))
		}
		return "ok"
	}
	return worker, check, stop, nil
}

// childOf returns the first child process of pid (0: none).
func childOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	c, _ := strconv.Atoi(f[0])
	return c
}

func report(w io.Writer, results []result) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	fmt.Fprintf(bw, "## Attach under load (tools/benchload)\n\n")
	fmt.Fprintf(bw, "%s UTC; load average at the end %s; %d cycles per row; fixtures with %d worker threads; gunicorn with %d clients.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04"), benchkit.Loadavg(), *cycles, *threads, *clients)
	for _, kv := range benchkit.MachineBasics() {
		fmt.Fprintf(bw, "- %s: %s\n", kv[0], kv[1])
	}
	fmt.Fprintf(bw, "\n| target | Python | succeeded | attach median | p90 | max | pause median | p90 | whole run median | entered via | target afterwards |\n")
	fmt.Fprintf(bw, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, r := range results {
		var at, pa, wa []float64
		via := map[string]int{}
		for _, c := range r.Cycles {
			if c.OK {
				at, pa, wa = append(at, c.Attach), append(pa, c.Pause), append(wa, c.Wall)
				v := c.Via
				if i := strings.Index(v, "("); i >= 0 {
					v = strings.TrimSuffix(v[i+1:], ")")
				}
				via[v]++
			}
		}
		var vs []string
		for k, n := range via {
			vs = append(vs, fmt.Sprintf("%s ×%d", k, n))
		}
		sort.Strings(vs)
		check := r.Check
		if r.Requests != "" {
			check += " (" + r.Requests + ")"
		}
		ver := r.Version
		if strings.HasPrefix(r.Python, "/usr/bin/") {
			ver += " (" + r.Python + ")"
		}
		fmt.Fprintf(bw, "| %s | %s | %d/%d | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Target, ver, succeeded(r.Cycles), len(r.Cycles),
			benchkit.FmtMS(benchkit.Percentile(at, 50)), benchkit.FmtMS(benchkit.Percentile(at, 90)), benchkit.FmtMS(benchkit.Percentile(at, 100)),
			benchkit.FmtMS(benchkit.Percentile(pa, 50)), benchkit.FmtMS(benchkit.Percentile(pa, 90)), benchkit.FmtMS(benchkit.Percentile(wa, 50)),
			strings.Join(vs, ", "), check)
	}
	for _, r := range results {
		for i, c := range r.Cycles {
			if !c.OK {
				fmt.Fprintf(bw, "\n- %s %s cycle %d failed: %s\n", r.Target, r.Version, i+1, c.Err)
			}
		}
	}
}
