// Command benchcache measures what `krait cache` costs a Django server
// under load, and prints the result as Markdown (see BENCHMARKS.md).
//
//	go build -o krait ./cmd/krait
//	scripts/stack.sh up && eval "$(scripts/stack.sh env)"
//	go run ./tools/benchcache --url "$KRAIT_GUNICORN_GTHREAD_URL" --pid "$KRAIT_GUNICORN_GTHREAD_PID" > result.md
//
// It is its own load generator: --concurrency clients, each sending its
// next request as soon as the last one is answered (keep-alive), over a mix
// of the test shop's views (--paths: cached values on memcached and Redis,
// a query without cache, and now and then a write). For --reps rounds it
// runs a window of --window with no krait, then one with `krait cache
// --pid PID --subprocesses --json` tracing the server (started before the
// window, stopped with SIGINT after it), and reports per mode:
//
//   - throughput: answered requests per second of the window;
//   - latency p50 and p99 over every request of the mode's windows;
//   - the CPU time per cache operation measured inside the server by the
//     /cacheloop/ view (set+get on an in-process LocMemCache, so the
//     network does not hide it; the process's CPU time, so that the
//     agent thread sending the events counts, and other processes on a
//     busy machine count less), before each window: with krait tracing
//     minus without is what krait adds to each cache call;
//   - the events krait saw and dropped.
//
// Every krait it starts is stopped (SIGINT, then SIGKILL) when it ends,
// fails or is interrupted. Standard library only (and benchkit).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"krait/tools/internal/benchkit"
)

type mode struct {
	name     string
	reqs     int64
	errs     int64
	secs     float64
	lat      []float64 // ms
	usPerOp  []float64
	ops      int
	dropped  int64
	events   int
	attachMS []float64
}

func main() {
	url := flag.String("url", "", "the server's base URL (e.g. $KRAIT_GUNICORN_GTHREAD_URL)")
	pid := flag.Int("pid", 0, "the server's master (or a worker): krait cache --pid PID --subprocesses")
	krait := flag.String("krait", "./krait", "the krait binary")
	conc := flag.Int("concurrency", 8, "clients sending requests back to back")
	window := flag.Duration("window", 10*time.Second, "length of each measured window")
	reps := flag.Int("reps", 3, "rounds of (no krait, krait cache)")
	paths := flag.String("paths", "/cached/,/cities/,/categories/,/cached/?alias=redis,/cities/?alias=redis,/categories/?alias=redis,/orders/?limit=5",
		"GET paths, in turn; every 100th request is a POST /touch/ (a write)")
	loopN := flag.Int("loop", 20000, "set+get pairs per /cacheloop/ call")
	flag.Parse()
	if *url == "" || *pid <= 0 {
		fmt.Fprintln(os.Stderr, "benchcache: give --url and --pid (see the comment at the top)")
		os.Exit(2)
	}
	var running atomic.Pointer[exec.Cmd]
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		if c := running.Load(); c != nil {
			_ = c.Process.Kill()
		}
		os.Exit(130)
	}()

	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *conc}}
	list := strings.Split(*paths, ",")
	without, with := &mode{name: "no krait"}, &mode{name: "krait cache"}
	loadStart := benchkit.Loadavg()
	started := time.Now()
	for r := 0; r < *reps; r++ {
		for _, m := range []*mode{without, with} {
			var k *exec.Cmd
			var out *strings.Builder
			if m == with {
				t0 := time.Now()
				var err error
				k, out, err = startKrait(*krait, *pid)
				if err != nil {
					fmt.Fprintln(os.Stderr, "benchcache:", err)
					os.Exit(1)
				}
				running.Store(k)
				m.attachMS = append(m.attachMS, float64(time.Since(t0).Microseconds())/1000)
			}
			if us, err := cacheLoop(client, *url, *loopN); err == nil {
				m.usPerOp = append(m.usPerOp, us)
			} else {
				fmt.Fprintln(os.Stderr, "benchcache: /cacheloop/:", err)
			}
			n0, s0 := m.reqs, m.secs
			load(client, *url, list, *conc, *window, m)
			if k != nil {
				rep, err := stopKrait(k, out)
				running.Store(nil)
				if err != nil {
					fmt.Fprintln(os.Stderr, "benchcache:", err)
					os.Exit(1)
				}
				m.ops += rep.CacheOps
				m.dropped += rep.Dropped
				m.events += rep.CacheOps + rep.SQL
			}
			fmt.Fprintf(os.Stderr, "benchcache: round %d, %s: %.0f req/s\n", r+1, m.name, float64(m.reqs-n0)/(m.secs-s0))
		}
	}

	fmt.Printf("- server: %s (`--pid %d --subprocesses`); %d clients back to back, keep-alive\n", *url, *pid, *conc)
	fmt.Printf("- paths in turn: %s; every 100th request a POST /touch/\n", strings.Join(list, " "))
	fmt.Printf("- %d rounds of %s without and %s with krait cache, alternating; %s in all\n", *reps, *window, *window, time.Since(started).Round(time.Second))
	fmt.Printf("- machine: %d CPUs; load average (1, 5, 15 min): start %s; end %s\n\n", runtime.NumCPU(), loadStart, benchkit.Loadavg())
	fmt.Println("| | requests/s | p50 | p99 | errors | CPU µs per cache op (in the server) |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for _, m := range []*mode{without, with} {
		fmt.Printf("| %s | %.1f | %s | %s | %d | %.2f |\n", m.name, float64(m.reqs)/m.secs, benchkit.FmtMS(benchkit.Percentile(m.lat, 50)),
			benchkit.FmtMS(benchkit.Percentile(m.lat, 99)), m.errs, benchkit.Percentile(m.usPerOp, 50))
	}
	tw, tk := float64(without.reqs)/without.secs, float64(with.reqs)/with.secs
	fmt.Printf("\nThroughput with krait cache: %+.1f %%; added per cache operation (median of the /cacheloop/ runs): %.2f µs.\n",
		(tk/tw-1)*100, benchkit.Percentile(with.usPerOp, 50)-benchkit.Percentile(without.usPerOp, 50))
	fmt.Printf("krait saw %d cache operations and %d events in all, dropped %d; attaching and starting the trace took %s (median).\n",
		with.ops, with.events, with.dropped, benchkit.FmtMS(benchkit.Percentile(with.attachMS, 50)))
}

// load runs conc clients for d and adds what they did to m.
func load(client *http.Client, base string, paths []string, conc int, d time.Duration, m *mode) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var n atomic.Int64
	end := time.Now().Add(d)
	t0 := time.Now()
	for c := 0; c < conc; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			var lat []float64
			var errs int64
			for i := c; time.Now().Before(end); i++ {
				s := time.Now()
				var resp *http.Response
				var err error
				if n.Add(1)%100 == 0 {
					resp, err = client.Post(base+"/touch/", "text/plain", nil)
				} else {
					resp, err = client.Get(base + paths[i%len(paths)])
				}
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("%s", resp.Status)
					}
				}
				if err != nil {
					errs++
					continue
				}
				lat = append(lat, float64(time.Since(s).Microseconds())/1000)
			}
			mu.Lock()
			m.lat = append(m.lat, lat...)
			m.reqs += int64(len(lat))
			m.errs += errs
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	m.secs += time.Since(t0).Seconds()
}

func cacheLoop(client *http.Client, base string, n int) (float64, error) {
	resp, err := client.Get(fmt.Sprintf("%s/cacheloop/?n=%d", base, n))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var v struct {
		US float64 `json:"cpu_us_per_op"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, err
	}
	return v.US, nil
}

// startKrait starts krait cache and waits until it traces every worker.
func startKrait(bin string, pid int) (*exec.Cmd, *strings.Builder, error) {
	c := exec.Command(bin, "cache", "--pid", fmt.Sprint(pid), "--subprocesses", "--json")
	out := &strings.Builder{}
	c.Stdout = out
	stderr, err := c.StderrPipe()
	if err != nil {
		return nil, nil, err
	}
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.Start(); err != nil {
		return nil, nil, err
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		said := false
		for sc.Scan() {
			if !said && strings.Contains(sc.Text(), "krait cache: tracing ") {
				said = true
				ready <- true
			}
			if !strings.Contains(sc.Text(), "krait cache: tracing ") {
				fmt.Fprintln(os.Stderr, sc.Text())
			}
		}
		if !said {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if ok {
			return c, out, nil
		}
	case <-time.After(time.Minute):
	}
	_ = c.Process.Kill()
	_ = c.Wait()
	return nil, nil, fmt.Errorf("krait cache did not start tracing")
}

type report struct {
	CacheOps int   `json:"cache_ops"`
	SQL      int   `json:"sql_statements"`
	Dropped  int64 `json:"dropped_events"`
}

func stopKrait(c *exec.Cmd, out *strings.Builder) (report, error) {
	_ = c.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		_ = c.Process.Kill()
		err = <-done
	}
	var r report
	if err != nil {
		return r, fmt.Errorf("krait cache: %v", err)
	}
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
		return r, fmt.Errorf("krait cache --json: %v", err)
	}
	return r, nil
}
