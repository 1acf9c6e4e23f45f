package djangoe2e

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRecordByView: krait record --subprocesses on a gunicorn master and on
// Apache's parent (its mod_wsgi daemons, the sub-interpreter group's too)
// while a load generator hits two views of different cost, /slow/?s=0.3
// (300 ms in PostgreSQL) and /health/: every sample inside a request is
// charged to its view, the slow view dominates, and each worker appears.
func TestRecordByView(t *testing.T) {
	st := needStack(t)
	st.settle(t)
	cases := []struct {
		name    string
		parent  int
		servers []*server
	}{
		{"gunicorn gthread", st.server(t, "krait-gthread").parent, []*server{st.server(t, "krait-gthread")}},
		{"apache", st.server(t, "krait-main").parent, []*server{st.server(t, "krait-main"), st.server(t, "krait-sub")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			done := map[string]int{}
			for _, s := range c.servers {
				for _, path := range []string{"/slow/?s=0.3", "/health/"} {
					for i := 0; i < 2; i++ {
						wg.Add(1)
						go func(url, path string) {
							defer wg.Done()
							for {
								select {
								case <-stop:
									return
								default:
								}
								if _, err := get(url, 20*time.Second); err == nil {
									mu.Lock()
									done[path]++
									mu.Unlock()
								}
							}
						}(s.url+path, path)
					}
				}
			}
			args := []string{"record", "--pid", strconv.Itoa(c.parent), "--subprocesses", "--idle", "--by", "view",
				"--duration", "4", "--format", "raw", "-o", "-"}
			r := krait(t, args...)
			close(stop)
			wg.Wait()
			if r.code != 0 {
				t.Fatalf("%v", r)
			}
			t.Logf("requests done: %v", done)
			views := map[string]int64{}
			perProc := map[int]map[string]int64{}
			re := regexp.MustCompile(`^view ([^;]*);process (\d+);`)
			for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
				i := strings.LastIndexByte(line, ' ')
				n, _ := strconv.ParseInt(line[i+1:], 10, 64)
				m := re.FindStringSubmatch(line)
				if m == nil {
					t.Fatalf("a stack without view and process root frames: %q", line)
				}
				views[m[1]] += n
				pid, _ := strconv.Atoi(m[2])
				if perProc[pid] == nil {
					perProc[pid] = map[string]int64{}
				}
				perProc[pid][m[1]] += n
			}
			t.Logf("samples by view: %v", views)
			slow, health := views["shop.views.slow"], views["shop.views.health"]
			if slow == 0 || slow <= 3*health {
				t.Errorf("the slow view should dominate: slow %d samples, health %d (all: %v)", slow, health, views)
			}
			for _, s := range c.servers {
				for _, w := range s.workers {
					if perProc[w] == nil {
						t.Errorf("%s: worker %d does not appear in the profile", s, w)
					}
				}
				// The server's own workers served the slow view.
				found := false
				for _, w := range s.workers {
					found = found || perProc[w]["shop.views.slow"] > 0
				}
				if !found {
					t.Errorf("%s: no sample of shop.views.slow in its workers %v", s, s.workers)
				}
			}
		})
	}
}

// TestTopByView: krait top --by view --json on a gunicorn master with
// --subprocesses shows the slow view with its request in flight.
func TestTopByView(t *testing.T) {
	st := needStack(t)
	st.settle(t)
	s := st.server(t, "krait-gthread")
	p := getAsync(t, s.url+"/slow/?s=4")
	time.Sleep(500 * time.Millisecond)
	out := kraitOK(t, "top", "--pid", strconv.Itoa(s.parent), "--subprocesses", "--idle", "--by", "view", "--json", "--duration", "2.5")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var snap struct {
		Views []struct {
			View     string   `json:"view"`
			Samples  int64    `json:"samples"`
			InFlight int      `json:"in_flight"`
			SlowestS *float64 `json:"slowest_s"`
		} `json:"views"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &snap); err != nil {
		t.Fatalf("krait top --json: %v\n%s", err, out)
	}
	ok := false
	for _, v := range snap.Views {
		if v.View == "shop.views.slow" && v.Samples > 0 && v.InFlight == 1 && v.SlowestS != nil && *v.SlowestS > 0.5 {
			ok = true
		}
	}
	if !ok {
		t.Errorf("krait top --by view: no shop.views.slow with its request in flight:\n%s", out)
	}
	if body := p.wait(t, 30*time.Second); !strings.HasPrefix(body, "slept 4") {
		t.Errorf("/slow/?s=4 answered %q", body)
	}
}
