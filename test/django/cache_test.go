package djangoe2e

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
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cacheJSON mirrors krait cache --json.
type cacheJSON struct {
	Processes []struct {
		PID    int    `json:"pid"`
		Django string `json:"django"`
		Error  string `json:"error"`
	} `json:"processes"`
	Patterns []struct {
		Pattern string `json:"pattern"`
		Alias   string `json:"alias"`
		Gets    int    `json:"gets"`
		Hits    int    `json:"hits"`
		Sets    int    `json:"sets"`
		Deletes int    `json:"deletes"`
		Bytes   int64  `json:"bytes"`
	} `json:"patterns"`
	Stale []struct {
		Key     string `json:"key"`
		UserKey string `json:"user_key"`
		Alias   string `json:"alias"`
		Backend string `json:"backend"`
		SetBy   struct {
			PID  int     `json:"pid"`
			View *string `json:"view"`
			Path *string `json:"path"`
			File string  `json:"file"`
			Line int     `json:"line"`
			Time string  `json:"time"`
		} `json:"set_by"`
		Inputs    []string `json:"inputs"`
		WrittenBy struct {
			PID  int     `json:"pid"`
			View *string `json:"view"`
			Path *string `json:"path"`
			SQL  string  `json:"sql"`
			Time string  `json:"time"`
		} `json:"written_by"`
		Invalidated  *string        `json:"invalidated"`
		StaleHits    int            `json:"stale_hits"`
		StaleByView  map[string]int `json:"stale_hits_by_view"`
		LastStaleHit *string        `json:"last_stale_hit"`
		Timeout      *float64       `json:"timeout"`
		Never        bool           `json:"never_expires"`
		SetAfter     bool           `json:"set_after_write"`
	} `json:"stale"`
	Dropped int64 `json:"dropped_events"`
}

// running is a krait cache in the background.
type running struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuf
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startCache starts krait cache ARGS and waits until it says every worker
// is traced.
func startCache(t *testing.T, args ...string) *running {
	t.Helper()
	r := &running{cmd: exec.Command(kraitBin, append([]string{"cache"}, args...)...), stdout: &syncBuf{}, stderr: &syncBuf{}}
	r.cmd.Stdout, r.cmd.Stderr = r.stdout, r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			_ = r.cmd.Process.Kill()
			_ = r.cmd.Wait()
		}
	})
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(r.stderr.String(), "krait cache: tracing ") {
		if time.Now().After(deadline) {
			t.Fatalf("krait cache %v did not start tracing within a minute:\n%s", args, r.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("krait cache %s: %s", strings.Join(args, " "), strings.TrimSpace(r.stderr.String()))
	return r
}

// interrupt sends Ctrl-C's signal, and waits: krait must report and exit 0.
func (r *running) interrupt(t *testing.T) string {
	t.Helper()
	_ = r.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("krait cache after SIGINT: %v\nstderr: %s\nstdout: %s", err, r.stderr.String(), r.stdout.String())
		}
	case <-time.After(time.Minute):
		_ = r.cmd.Process.Kill()
		t.Fatalf("krait cache did not exit within a minute of SIGINT:\n%s", r.stderr.String())
	}
	return r.stdout.String()
}

// flushCaches empties memcached and Redis: entries cached before a test
// would be served without krait seeing them made.
func flushCaches(t *testing.T, st *stack) {
	t.Helper()
	for _, c := range []struct{ port, cmd, want string }{
		{st.env["KRAIT_MEMCACHED_PORT"], "flush_all\r\n", "OK"},
		{st.env["KRAIT_REDIS_PORT"], "FLUSHALL\r\n", "+OK"},
	} {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+c.port, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = conn.Write([]byte(c.cmd))
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err != nil || !strings.HasPrefix(line, c.want) {
			t.Fatalf("flushing the cache on port %s: %q %v", c.port, line, err)
		}
	}
}

func post(t *testing.T, url string) string {
	t.Helper()
	resp, err := httpClient(20*time.Second).Post(url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %s %s", url, resp.Status, body)
	}
	return string(body)
}

func mustGet(t *testing.T, url string) string {
	t.Helper()
	body, err := get(url, 20*time.Second)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return body
}

// hooksOf is what the /hooks/ view says of its process: the attributes of
// every class krait cache wraps, and the thread names.
type hooksOf struct {
	PID     int                          `json:"pid"`
	Classes map[string]map[string]string `json:"classes"`
	Threads []string                     `json:"threads"`
}

// hooks asks srv's /hooks/ until every one of pids has answered.
func hooks(t *testing.T, srv *server, pids []int) map[int]hooksOf {
	t.Helper()
	out := map[int]hooksOf{}
	for i := 0; i < 200 && len(out) < len(pids); i++ {
		var h hooksOf
		if err := json.Unmarshal([]byte(mustGet(t, srv.url+"/hooks/")), &h); err != nil {
			t.Fatal(err)
		}
		out[h.PID] = h
	}
	for _, p := range pids {
		if _, ok := out[p]; !ok {
			t.Fatalf("%s: process %d never answered /hooks/ (got %v)", srv, p, out)
		}
	}
	return out
}

// sameHooks waits (at most 10 s: the agent leaves after krait) until the
// workers have exactly the classes they had before krait, and no krait
// thread.
func sameHooks(t *testing.T, srv *server, before map[int]hooksOf) {
	t.Helper()
	var pids []int
	for p := range before {
		pids = append(pids, p)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		after := hooks(t, srv, pids)
		diff := ""
		for p, b := range before {
			a := after[p]
			if !reflect.DeepEqual(a.Classes, b.Classes) {
				diff += fmt.Sprintf("process %d: classes differ:\nbefore %v\nafter  %v\n", p, b.Classes, a.Classes)
			}
			for _, n := range a.Threads {
				if strings.HasPrefix(n, "krait") {
					diff += fmt.Sprintf("process %d: thread %q left: %v\n", p, n, a.Threads)
				}
			}
		}
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not as before krait:\n%s", srv, diff)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestCacheStale is the seed's finding, found on the running servers with
// no code change and no restart: /cached/ caches a summary of shop_order
// and nobody invalidates it; /cities/ caches customers per city and a
// post_save handler deletes it; /categories/ caches a table nobody writes.
// One server's workers read, another server's writes (POST /touch/ saves
// an order and a customer), the readers then serve hits. krait cache must
// name exactly the summary, with its input table, writer and stale hits,
// on memcached and on Redis, on Django 3.2 (gunicorn sync, 2 workers;
// Apache mod_wsgi daemons, Django in a sub-interpreter for the readers)
// and Django 5.2 (gunicorn in the venv).
func TestCacheStale(t *testing.T) {
	st := needStack(t)
	// pylibmc: Debian's python3.11 servers (the venv has no pylibmc).
	for _, c := range []struct {
		readers, writer string
		aliases         []string
	}{
		{"krait-sync", "krait-gthread", []string{"default", "redis", "pylibmc"}},
		{"krait-venv", "krait-sync", []string{"default", "redis"}},
		{"krait-sub", "krait-main", []string{"default", "redis", "pylibmc"}},
	} {
		for _, alias := range c.aliases {
			t.Run(c.readers+"/"+alias, func(t *testing.T) {
				testCacheStale(t, st, st.server(t, c.readers), st.server(t, c.writer), alias)
			})
		}
	}
}

func testCacheStale(t *testing.T, st *stack, readers, writer *server, alias string) {
	views := filepath.Join(repoRoot, "testdata", "django", "shop", "views.py")
	setLine := findLine(t, views, "def cached(", "cache.set(CACHE_KEY")
	// Each server has loaded Django (krait-sub only at its first request).
	checkHealth(t, readers, "before")
	checkHealth(t, writer, "before")
	before := hooks(t, readers, readers.workers)
	flushCaches(t, st)
	var args []string
	for _, s := range []*server{readers, writer} {
		if s.kind == "gunicorn worker" {
			args = append(args, "--pid", strconv.Itoa(s.parent))
		} else {
			args = append(args, pidArgs("--pid", s.workers)...)
		}
	}
	args = append(args, "--subprocesses", "--json")
	k := startCache(t, args...)

	q := "?alias=" + alias
	for _, v := range []string{"cached", "cities", "categories"} {
		if body := mustGet(t, readers.url+"/"+v+"/"+q); !strings.Contains(body, `"cache_hit": false`) {
			t.Fatalf("first GET /%s/ was no miss: %s", v, body)
		}
	}
	var wrote struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(post(t, writer.url+"/touch/")), &wrote); err != nil {
		t.Fatal(err)
	}
	const hitsAfter = 5
	for i := 0; i < hitsAfter; i++ {
		for _, v := range []string{"cached", "cities", "categories"} {
			mustGet(t, readers.url+"/"+v+"/"+q)
		}
	}
	out := k.interrupt(t)
	var rep cacheJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("krait cache --json: %v\n%s", err, out)
	}
	t.Logf("krait cache --json:\n%s", short(out))
	traced := map[int]bool{}
	for _, p := range rep.Processes {
		traced[p.PID] = true
	}
	for _, s := range []*server{readers, writer} {
		for _, p := range s.workers {
			if !traced[p] {
				t.Errorf("%s worker %d not traced: %v", s, p, rep.Processes)
			}
		}
	}
	if len(rep.Stale) != 1 {
		t.Fatalf("stale entries: %d, want just the order summary:\n%s", len(rep.Stale), out)
	}
	s := rep.Stale[0]
	want := func(what string, ok bool) {
		if !ok {
			t.Errorf("stale entry: wrong %s:\n%s", what, out)
		}
	}
	prefix := map[string]string{"pylibmc": "shoplmc"}[alias]
	if prefix == "" {
		prefix = "shopsite"
	}
	want("key", s.UserKey == "order-summary" && s.Key == prefix+":1:order-summary" && s.Alias == alias)
	want("backend", strings.Contains(strings.ToLower(s.Backend), map[string]string{"default": "pymemcache", "redis": "redis", "pylibmc": "pylibmc"}[alias]))
	want("inputs", reflect.DeepEqual(s.Inputs, []string{"shop_order"}))
	want("set_by", s.SetBy.View != nil && *s.SetBy.View == "shop.views.cached" && s.SetBy.Path != nil && *s.SetBy.Path == "/cached/" &&
		strings.HasSuffix(s.SetBy.File, "shop/views.py") && s.SetBy.Line == setLine && contains(readers.workers, s.SetBy.PID))
	want("written_by", s.WrittenBy.View != nil && *s.WrittenBy.View == "shop.views.touch" && s.WrittenBy.Path != nil &&
		*s.WrittenBy.Path == "/touch/" && s.WrittenBy.PID == wrote.PID && strings.HasPrefix(s.WrittenBy.SQL, `UPDATE "shop_order"`))
	want("stale hits", s.StaleHits == hitsAfter && s.StaleByView["shop.views.cached"] == hitsAfter && s.LastStaleHit != nil)
	want("timeout", s.Never && s.Timeout == nil && s.Invalidated == nil)
	want("no dropped events", rep.Dropped == 0)
	pats := map[string]bool{}
	for _, p := range rep.Patterns {
		if p.Alias == alias {
			pats[p.Pattern] = true
		}
	}
	want("patterns", pats["order-summary"] && pats["customer-cities"] && pats["categories"])
	sameHooks(t, readers, before)
	checkHealth(t, readers, "after")
}

// TestCacheStaleASGI: the same finding when the readers are uvicorn
// serving Django 5.2's ASGI application: a request starts in the event
// loop's thread and its sync view runs in a sync_to_async thread, so what
// ties the view's cache calls and SQL to its request is the request's
// context (which asgiref carries into that thread), not the thread.
func TestCacheStaleASGI(t *testing.T) {
	st := needStack(t)
	pid, err := strconv.Atoi(st.env["KRAIT_UVICORN_PID"])
	if err != nil || st.env["KRAIT_UVICORN_URL"] == "" {
		t.Fatalf("scripts/stack.sh env: KRAIT_UVICORN_URL=%q KRAIT_UVICORN_PID=%q", st.env["KRAIT_UVICORN_URL"], st.env["KRAIT_UVICORN_PID"])
	}
	uv := &server{name: "uvicorn krait-asgi", kind: "uvicorn", group: "krait-asgi", url: st.env["KRAIT_UVICORN_URL"], parent: pid, workers: []int{pid}}
	testCacheStale(t, st, uv, st.server(t, "krait-sync"), "default")
}

// TestCacheStaleRace: the race no invalidation catches, on the running
// servers: a gunicorn sync worker misses the order summary, reads the
// orders and, before it caches the summary (?delay=4), the gthread server
// writes an order (POST /touch/). The summary is stale from its set;
// krait cache names it, with the write, says it was cached after the write,
// and counts the hits served since. Before, only writes committed after
// the set counted.
func TestCacheStaleRace(t *testing.T) {
	st := needStack(t)
	readers, writer := st.server(t, "krait-sync"), st.server(t, "krait-gthread")
	checkHealth(t, readers, "before")
	checkHealth(t, writer, "before")
	flushCaches(t, st)
	k := startCache(t, "--pid", strconv.Itoa(readers.parent), "--pid", strconv.Itoa(writer.parent), "--subprocesses", "--json")
	off := st.logOffset(t)
	miss := getAsync(t, readers.url+"/cached/?delay=4")
	st.waitStatement(t, off, "krait-sync", `COUNT("shop_order"."id")`, 20*time.Second)
	time.Sleep(time.Second) // the aggregate has returned (the log shows it when it starts)
	post(t, writer.url+"/touch/")
	if body := miss.wait(t, 30*time.Second); !strings.Contains(body, `"cache_hit": false`) {
		t.Fatalf("GET /cached/?delay=4 was no miss: %s", body)
	}
	for i := 0; i < 3; i++ {
		if body := mustGet(t, readers.url+"/cached/"); !strings.Contains(body, `"cache_hit": true`) {
			t.Fatalf("GET /cached/ after the set was no hit: %s", body)
		}
	}
	out := k.interrupt(t)
	var rep cacheJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("krait cache --json: %v\n%s", err, out)
	}
	if len(rep.Stale) != 1 {
		t.Fatalf("stale entries: %d, want the order summary:\n%s", len(rep.Stale), short(out))
	}
	s := rep.Stale[0]
	if s.UserKey != "order-summary" || !s.SetAfter || s.StaleHits != 3 || !reflect.DeepEqual(s.Inputs, []string{"shop_order"}) ||
		s.WrittenBy.View == nil || *s.WrittenBy.View != "shop.views.touch" || !strings.HasPrefix(s.WrittenBy.SQL, `UPDATE "shop_order"`) {
		t.Errorf("stale entry: want order-summary cached after the write by shop.views.touch, 3 stale hits:\n%s", short(out))
	}
}

// TestCacheKilled: krait cache killed (SIGKILL) leaves every worker as it
// was: the agents see their connection end and put everything back.
func TestCacheKilled(t *testing.T) {
	st := needStack(t)
	srv := st.server(t, "krait-sync")
	before := hooks(t, srv, srv.workers)
	k := startCache(t, "--pid", strconv.Itoa(srv.parent), "--subprocesses")
	mustGet(t, srv.url+"/categories/")
	_ = k.cmd.Process.Kill()
	_ = k.cmd.Wait()
	sameHooks(t, srv, before)
	checkHealth(t, srv, "after krait was killed")
}

// TestCacheEvents: --events streams every operation as a JSON line, with
// the request and the application's line, also from a batch the agent
// sent as JSON (a value marshal refuses); --duration ends the run.
func TestCacheEvents(t *testing.T) {
	st := needStack(t)
	srv := st.server(t, "krait-venv")
	k := startCache(t, append(pidArgs("--pid", srv.workers), "--events", "--duration", "6")...)
	mustGet(t, srv.url+"/categories/?alias=redis")
	mustGet(t, srv.url+"/paged/?x="+strconv.FormatInt(time.Now().UnixNano(), 10)) // a URL not cached yet
	// A version marshal refuses (an int subclass): that batch goes as JSON.
	mustGet(t, srv.url+"/versioned/")
	if err := k.cmd.Wait(); err != nil {
		t.Fatalf("krait cache --events --duration: %v\n%s", err, k.stderr.String())
	}
	// The view's code: its first line is its first decorator's (3.8+).
	paged := findLine(t, filepath.Join(repoRoot, "testdata", "django", "shop", "views.py"), "def cacheloop(", "@cache_page(60)")
	found, page, versioned := false, false, false
	for _, l := range strings.Split(strings.TrimSpace(k.stdout.String()), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		if ev["kind"] == "cache" && ev["op"] == "get" && ev["key"] == "versioned" && ev["v"] == 2.0 &&
			strings.HasSuffix(fmt.Sprint(ev["fkey"]), ":2:versioned") && ev["view"] == "shop.views.versioned" {
			versioned = true
		}
		if ev["kind"] == "cache" && ev["op"] == "get" && ev["key"] == "categories" && ev["alias"] == "redis" &&
			ev["view"] == "shop.views.categories" && ev["path"] == "/categories/" &&
			strings.HasSuffix(fmt.Sprint(ev["file"]), "shop/views.py") {
			found = true
		}
		// cache_page's keys stand for the URL; the line is the view's.
		if ev["kind"] == "cache" && ev["op"] == "set" && strings.HasPrefix(fmt.Sprint(ev["key"]), "views.decorators.cache.cache_page.") &&
			ev["url"] == "GET /paged/" && strings.HasSuffix(fmt.Sprint(ev["file"]), "shop/views.py") && ev["line"] == float64(paged) {
			page = true
		}
	}
	if !found {
		t.Errorf("no get of categories among the events:\n%s", short(k.stdout.String()))
	}
	if !page {
		for _, l := range strings.Split(k.stdout.String(), "\n") {
			if strings.Contains(l, "cache_page") {
				t.Log(l)
			}
		}
		t.Errorf("no set of /paged/'s cache_page key, standing for GET /paged/, at views.py:%d:\n%s", paged, short(k.stdout.String()))
	}
	if !versioned {
		t.Errorf("no get of versioned, version 2 (sent as JSON: marshal refuses an int subclass), among the events:\n%s", short(k.stdout.String()))
	}
	if !strings.Contains(k.stderr.String(), "KEY PATTERN") {
		t.Errorf("no report on stderr:\n%s", k.stderr.String())
	}
}

// TestCacheWatch: --watch shows the summary live (stdout not a terminal:
// one block per second, "----" between them).
func TestCacheWatch(t *testing.T) {
	st := needStack(t)
	srv := st.server(t, "krait-venv")
	k := startCache(t, append(pidArgs("--pid", srv.workers), "--watch", "--duration", "4")...)
	mustGet(t, srv.url+"/categories/?alias=local")
	if err := k.cmd.Wait(); err != nil {
		t.Fatalf("krait cache --watch --duration: %v\n%s", err, k.stderr.String())
	}
	out := k.stdout.String()
	if !strings.Contains(out, "----\nkrait cache: 1 processes") || !regexp.MustCompile(`(?m)^categories\s+local\s+1\s`).MatchString(out) {
		t.Errorf("krait cache --watch:\n%s", out)
	}
}

// TestCacheNewWorker: with --subprocesses, a worker the master starts
// while krait cache runs (here the replacement of a killed one) is traced
// too, and its cache operations come in.
func TestCacheNewWorker(t *testing.T) {
	st := needStack(t)
	srv := st.server(t, "krait-sync")
	victim := srv.workers[0]
	k := startCache(t, "--pid", strconv.Itoa(srv.parent), "--subprocesses", "--events")
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The stack's record of the workers is now stale; later tests must
	// see the new one.
	t.Cleanup(func() {
		deadline := time.Now().Add(30 * time.Second)
		for {
			now := childrenTitled(srv.parent, "gunicorn: worker")
			if len(now) == len(srv.workers) || time.Now().After(deadline) {
				srv.workers = now
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	re := regexp.MustCompile(`krait cache: tracing new process(?:es)? (\d+)`)
	var newPID int
	deadline := time.Now().Add(60 * time.Second)
	for newPID == 0 {
		if m := re.FindStringSubmatch(k.stderr.String()); m != nil {
			newPID, _ = strconv.Atoi(m[1])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new worker traced within 60 s:\n%s", k.stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !contains(childrenTitled(srv.parent, "gunicorn: worker"), newPID) {
		t.Fatalf("process %d, traced as new, is no worker of %s", newPID, srv)
	}
	// Requests until one is served by the new worker (the two workers
	// take turns as the kernel wakes them).
	want := fmt.Sprintf(`"pid":%d`, newPID)
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatalf("no cache event from the new worker %d in 100 requests:\n%s", newPID, short(k.stdout.String()))
		}
		mustGet(t, srv.url+"/categories/")
		time.Sleep(100 * time.Millisecond) // events come every 50 ms
		found := false
		for _, l := range strings.Split(k.stdout.String(), "\n") {
			found = found || strings.Contains(l, want) && strings.Contains(l, `"kind":"cache"`)
		}
		if found {
			break
		}
	}
	k.interrupt(t)
}

// TestCacheBackends: every operation on LocMem, the file-based and the
// database cache, in a Django process without a server
// (testdata/fixtures/cacheops.py): hits and misses told apart (a cached
// None is a hit), get_or_set as its miss, the callable's SQL and its add,
// the multi-key operations key by key, the application's lines; the
// database cache's own SQL is not the application's; and the value
// get_or_set cached from a table later updated (in a transaction, no
// invalidation) is stale on each alias.
func TestCacheBackends(t *testing.T) {
	needStack(t) // Debian's python3.11 with Django 3.2
	dir := t.TempDir()
	fx := exec.Command("/usr/bin/python3.11", filepath.Join(repoRoot, "testdata", "fixtures", "cacheops.py"), dir)
	out, err := fx.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	fx.Stderr = os.Stderr
	if err := fx.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fx.Process.Kill(); _ = fx.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("fixture: %q %v", line, err)
	}
	k := startCache(t, "--pid", strconv.Itoa(fx.Process.Pid), "--events", "--json")
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var done struct {
		Lines map[string]int `json:"lines"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, err := os.ReadFile(filepath.Join(dir, "done"))
		if err == nil && json.Unmarshal(data, &done) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fixture did not finish its round in 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // past the grace a write outside a request has
	k.interrupt(t)

	type op struct {
		Op, Key string
		Hit     any
	}
	got := map[string][]op{}
	fixture := filepath.Join("fixtures", "cacheops.py")
	for _, l := range strings.Split(strings.TrimSpace(k.stdout.String()), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		if ev["kind"] == "sql" && strings.Contains(fmt.Sprint(ev["sql"]), "krait_cache") {
			t.Errorf("the database cache's own SQL reported as the application's: %s", l)
		}
		if ev["kind"] != "cache" {
			continue
		}
		a := fmt.Sprint(ev["alias"])
		key, _ := ev["key"].(string)
		got[a] = append(got[a], op{fmt.Sprint(ev["op"]), key, ev["hit"]})
		if !strings.HasSuffix(fmt.Sprint(ev["file"]), fixture) {
			t.Errorf("event not placed in the fixture: %s", l)
		}
		if line, ok := done.Lines[a+":"+fmt.Sprint(ev["op"])]; ok && ev["line"] != float64(line) {
			t.Errorf("%s at line %v, want %d: %s", ev["op"], ev["line"], line, l)
		}
		if ev["op"] == "add" && (ev["via"] != "get_or_set" || done.Lines[a+":get_or_set"] != int(ev["line"].(float64))) {
			t.Errorf("get_or_set's add: %s", l)
		}
	}
	want := []op{{"clear", "", nil}, {"get_many", "a", false}, {"get_many", "b", false}, {"set_many", "a", nil}, {"set_many", "b", nil},
		{"get", "price", false}, {"add", "price", nil}, {"get", "price", true}, {"set", "none", nil}, {"get", "none", true},
		{"incr", "a", nil}, {"delete_many", "a", nil}, {"delete_many", "b", nil}, {"get", "b", false}, {"get", "price", true}}
	for _, a := range []string{"default", "files", "db"} {
		if !reflect.DeepEqual(got[a], want) {
			t.Errorf("alias %s: operations\n%v\nwant\n%v", a, got[a], want)
		}
	}
	lines := strings.Split(strings.TrimSpace(k.stderr.String()), "\n")
	var rep cacheJSON
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, k.stderr.String())
	}
	stale := map[string]bool{}
	for _, s := range rep.Stale {
		stale[s.Alias] = true
		if s.UserKey != "price" || !reflect.DeepEqual(s.Inputs, []string{"prices"}) || !strings.HasPrefix(s.WrittenBy.SQL, `UPDATE "prices"`) ||
			s.StaleHits != 1 || !s.Never || s.WrittenBy.View != nil {
			t.Errorf("stale entry: %+v", s)
		}
	}
	if len(rep.Stale) != 3 || !stale["default"] || !stale["files"] || !stale["db"] {
		t.Errorf("stale entries: %+v, want price on each alias", rep.Stale)
	}
}
