package djangoe2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPsRealServers: the real ASGI servers and Celery, from PyPI (the
// stack's servers venv: uvicorn and hypercorn with two workers each,
// daphne, a Celery worker with its prefork pool, Celery beat), each named
// by `krait ps` as what it is, its workers under it.
func TestPsRealServers(t *testing.T) {
	st := needStack(t)
	venv := st.env["KRAIT_SERVERS_VENV_DIR"]
	if venv == "" {
		t.Fatal("scripts/stack.sh env gives no KRAIT_SERVERS_VENV_DIR")
	}
	bin := func(name string) string {
		p := filepath.Join(venv, "bin", name)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is not in the servers venv (scripts/stack-deps.sh builds it): %v", name, err)
		}
		return p
	}
	apps := filepath.Join(repoRoot, "testdata", "fixtures", "servers")
	work := t.TempDir()
	type server struct {
		name         string
		argv         []string
		master, kids string
		nkids        int
	}
	servers := []server{
		{"uvicorn", []string{bin("uvicorn"), "--app-dir", apps, "--host", "127.0.0.1", "--port", "0", "--workers", "2", "asgiapp:app"}, "uvicorn master", "uvicorn worker", 2},
		{"hypercorn", []string{bin("hypercorn"), "-w", "2", "-b", "127.0.0.1:0", "asgiapp:app"}, "hypercorn master", "hypercorn worker", 2},
		{"daphne", []string{bin("daphne"), "-b", "127.0.0.1", "-p", "0", "asgiapp:app"}, "daphne", "", 0},
		{"celery worker", []string{bin("celery"), "-A", "celeryapp", "worker", "-c", "2", "-l", "warning"}, "celery worker", "celery pool worker", 2},
		{"celery beat", []string{bin("celery"), "-A", "celeryapp", "beat", "-s", filepath.Join(work, "beat-schedule"), "-l", "warning"}, "celery beat", "", 0},
	}
	pids := map[int]server{}
	for _, s := range servers {
		cmd := exec.Command(s.argv[0], s.argv[1:]...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "PYTHONPATH="+apps)
		log, err := os.Create(filepath.Join(work, strings.ReplaceAll(s.name, " ", "-")+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		pids[cmd.Process.Pid] = s
		t.Cleanup(func() {
			// The whole process group: the workers too.
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
			log.Close()
		})
	}

	// Wait until every server has its workers (a few seconds), then check
	// the names.
	var problems []string
	deadline := time.Now().Add(90 * time.Second)
	for {
		ps, raw := psByPID(t)
		kids := map[int][]*psEntry{}
		for _, e := range ps {
			kids[e.PPID] = append(kids[e.PPID], e)
		}
		problems = problems[:0]
		for pid, s := range pids {
			e := ps[pid]
			if e == nil {
				problems = append(problems, fmt.Sprintf("%s (pid %d) is not listed", s.name, pid))
				continue
			}
			if e.Server != s.master {
				problems = append(problems, fmt.Sprintf("%s (pid %d, %q): server %q, want %q", s.name, pid, e.Command, e.Server, s.master))
			}
			var got []string
			for _, k := range kids[pid] {
				if strings.Contains(k.Command, "resource_tracker") {
					if k.Server != "multiprocessing resource tracker" {
						problems = append(problems, fmt.Sprintf("%s: resource tracker %d named %q", s.name, k.PID, k.Server))
					}
					continue
				}
				got = append(got, k.Server)
			}
			sort.Strings(got)
			var want []string
			for i := 0; i < s.nkids; i++ {
				want = append(want, s.kids)
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				problems = append(problems, fmt.Sprintf("%s (pid %d): workers %q, want %q", s.name, pid, got, want))
			}
		}
		if len(problems) == 0 {
			t.Logf("krait ps --json:\n%s", raw)
			return
		}
		if time.Now().After(deadline) {
			for _, s := range servers {
				data, _ := os.ReadFile(filepath.Join(work, strings.ReplaceAll(s.name, " ", "-")+".log"))
				t.Logf("%s log:\n%s", s.name, data)
			}
			t.Fatalf("krait ps, 90 s after the servers started:\n%s\n%s", strings.Join(problems, "\n"), raw)
		}
		time.Sleep(time.Second)
	}
}
