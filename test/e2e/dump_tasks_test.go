package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// taskTruth is what aio_tasks.py computed about its own tasks.
type taskTruth struct {
	PID     int                        `json:"pid"`
	Version string                     `json:"version"`
	Threads map[string]taskTruthThread `json:"threads"`
}

type taskTruthThread struct {
	Ident uint64      `json:"ident"`
	Loop  uint64      `json:"loop"`
	Tasks []taskEntry `json:"tasks"`
}

// taskEntry is one task, in the truth and in krait's JSON alike.
type taskEntry struct {
	ID        uint64      `json:"id"`
	Name      *string     `json:"name"`
	State     string      `json:"state"`
	Running   bool        `json:"running"`
	Awaiting  string      `json:"awaiting"`
	Awaits    []uint64    `json:"awaits"`
	AwaitedBy []uint64    `json:"awaited_by"`
	Stack     []taskFrame `json:"stack"`
}

type taskFrame struct {
	Function string `json:"function"`
	File     string `json:"file"`
	Line     int    `json:"line"`
}

type tasksDump struct {
	PID     int `json:"pid"`
	Threads []struct {
		ThreadID uint64      `json:"thread_id"`
		Loop     *uint64     `json:"loop"`
		Tasks    []taskEntry `json:"tasks"`
	} `json:"threads"`
	Tasks      []taskEntry `json:"tasks"`
	TasksError string      `json:"tasks_error"`
}

// coreTaskVersions are the interpreters whose tasks are also read from a
// core (gcore takes a few seconds each).
var coreTaskVersions = map[string]bool{"3.6": true, "3.10": true, "3.12": true, "3.14": true, "system3.11": true}

// TestDumpTasks dumps aio_tasks.py under every interpreter with asyncio
// and compares each loop's tasks — names, states, coroutine stacks and
// who awaits whom — with what the fixture computed inside itself; on a
// few versions from a core too; on 3.14 against CPython's own
// `python -m asyncio ps` of the same process.
func TestDumpTasks(t *testing.T) {
	sem := make(chan struct{}, 2)
	for _, py := range pythons(t) {
		if py.minor == "2.7" {
			continue // no asyncio
		}
		py := py
		t.Run(py.name, func(t *testing.T) {
			t.Parallel()
			sem <- struct{}{}
			t.Cleanup(func() { <-sem })
			testDumpTasks(t, py)
		})
	}
}

func testDumpTasks(t *testing.T, py python) {
	var tr taskTruth
	p := startWithTruth(t, py, "aio_tasks.py", &tr)
	pid := strconv.Itoa(p.pid())
	t.Run("live", func(t *testing.T) {
		checkTasks(t, &tr, tasksJSON(t, "dump", "--pid", pid, "--json"))
	})
	t.Run("text", func(t *testing.T) {
		r := krait(t, "dump", "--pid", pid)
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		for _, want := range []string{"asyncio event loop 0x", "awaiting sleep(3600)", "awaiting gather of 2"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("text dump lacks %q:\n%s", want, r.stdout)
			}
		}
		if py.minor != "3.6" && !strings.Contains(r.stdout, "awaiting sock_recv <_asyncio.Future pending") {
			t.Errorf("text dump lacks the task reading a socket:\n%s", r.stdout)
		}
		if tr.Threads["main"].Tasks[0].Name != nil {
			for _, want := range []string{`└── Task "main" (0x`, `├── Task "waiter" (0x`, `└── Task "sleeper" (0x`, `Task "blocker" (0x`, `Task "reader" (0x`} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("text dump lacks %q:\n%s", want, r.stdout)
				}
			}
		}
	})
	t.Run("locals", func(t *testing.T) {
		r := krait(t, "dump", "--pid", pid, "--locals")
		if r.code != 0 || !strings.Contains(r.stdout, "delay: 3600") {
			t.Errorf("dump --locals shows no task's local delay: 3600:\n%s", r.stdout)
		}
	})
	t.Run("nonblocking", func(t *testing.T) {
		// Nothing changes in the fixture: the same without a pause.
		d := tasksJSON(t, "dump", "--pid", pid, "--json", "--nonblocking")
		checkTasks(t, &tr, d)
	})
	if py.minor == "3.14" {
		t.Run("asyncio_ps", func(t *testing.T) { checkAsyncioPS(t, py, pid) })
	}
	if coreTaskVersions[py.minor] || coreTaskVersions[py.name] {
		t.Run("core", func(t *testing.T) {
			gcore, err := exec.LookPath("gcore")
			if err != nil {
				t.Fatalf("gcore (gdb) is needed: %v", err)
			}
			prefix := filepath.Join(t.TempDir(), "core")
			if out, err := exec.Command(gcore, "-o", prefix, pid).CombinedOutput(); err != nil {
				t.Fatalf("gcore: %v\n%s", err, out)
			}
			checkTasks(t, &tr, tasksJSON(t, "dump", "--core", fmt.Sprintf("%s.%s", prefix, pid), "--json"))
		})
	}
	if p.exited() {
		t.Errorf("the fixture exited during the test: %s", p.stderr)
	}
}

func tasksJSON(t *testing.T, args ...string) *tasksDump {
	t.Helper()
	r := krait(t, args...)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	var d tasksDump
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("decoding krait's JSON: %v\n%s", err, r.stdout)
	}
	return &d
}

func checkTasks(t *testing.T, tr *taskTruth, d *tasksDump) {
	if d.TasksError != "" {
		t.Errorf("tasks_error: %s", d.TasksError)
	}
	if len(d.Tasks) != 0 {
		t.Errorf("%d tasks of loops no thread runs, want none: %+v", len(d.Tasks), d.Tasks)
	}
	for role, want := range tr.Threads {
		var got []taskEntry
		found := false
		for _, th := range d.Threads {
			if th.ThreadID != want.Ident {
				continue
			}
			found = true
			if th.Loop == nil || *th.Loop != want.Loop {
				t.Errorf("%s thread: loop %v, want 0x%x", role, th.Loop, want.Loop)
			}
			got = th.Tasks
		}
		if !found {
			t.Errorf("no thread %#x (%s) in the dump", want.Ident, role)
			continue
		}
		byID := map[uint64]taskEntry{}
		for _, g := range got {
			byID[g.ID] = g
		}
		for _, w := range want.Tasks {
			g, ok := byID[w.ID]
			if !ok {
				t.Errorf("%s thread: task %s missing", role, taskLabel(w))
				continue
			}
			delete(byID, w.ID)
			checkTask(t, w, g)
		}
		t.Logf("%s thread: %d tasks as the fixture sees them, %d more", role, len(want.Tasks), len(byID))
		for _, g := range byID {
			if g.State == "pending" {
				t.Errorf("%s thread: krait shows pending task %s, which asyncio does not list", role, taskLabel(g))
			}
		}
		// awaited_by is awaits reversed.
		for _, g := range got {
			for _, a := range g.Awaits {
				other, ok := indexTasks(got)[a]
				if !ok || !containsID(other.AwaitedBy, g.ID) {
					t.Errorf("task %s awaits %#x, which does not list it in awaited_by", taskLabel(g), a)
				}
			}
		}
	}
}

func checkTask(t *testing.T, w, g taskEntry) {
	t.Helper()
	label := taskLabel(w)
	if (w.Name == nil) != (g.Name == nil) || w.Name != nil && *w.Name != *g.Name {
		t.Errorf("task %s: name %v, want %v", label, strp(g.Name), strp(w.Name))
	}
	if g.State != w.State || g.Running != w.Running {
		t.Errorf("task %s: state %s running %v, want %s running %v", label, g.State, g.Running, w.State, w.Running)
	}
	if fmt.Sprint(g.Stack) != fmt.Sprint(w.Stack) {
		t.Errorf("task %s: stack\n  %v\nwant\n  %v", label, g.Stack, w.Stack)
	}
	ga := append([]uint64{}, g.Awaits...)
	sort.Slice(ga, func(i, j int) bool { return ga[i] < ga[j] })
	if fmt.Sprint(ga) != fmt.Sprint(w.Awaits) {
		t.Errorf("task %s: awaits %v, want %v", label, ga, w.Awaits)
	}
}

func indexTasks(ts []taskEntry) map[uint64]taskEntry {
	out := map[uint64]taskEntry{}
	for _, t := range ts {
		out[t.ID] = t
	}
	return out
}

func containsID(ids []uint64, id uint64) bool {
	for _, i := range ids {
		if i == id {
			return true
		}
	}
	return false
}

func taskLabel(t taskEntry) string {
	if t.Name != nil {
		return fmt.Sprintf("%q (%#x)", *t.Name, t.ID)
	}
	return fmt.Sprintf("%#x", t.ID)
}

func strp(s *string) string {
	if s == nil {
		return "null"
	}
	return strconv.Quote(*s)
}

// asyncioPSRow is one row of `python -m asyncio ps PID` (3.14): a task
// id and the id of a task awaiting it (0x0: none).
var asyncioPSRow = regexp.MustCompile(`^\s*\d+\s+0x([0-9a-f]+)\s.*\s0x([0-9a-f]+)\s*$`)

// checkAsyncioPS compares krait's tasks and awaited_by with what CPython's
// own tool (3.14, `python -m asyncio ps`) reads from the same process.
func checkAsyncioPS(t *testing.T, py python, pid string) {
	out, err := exec.Command(py.path, "-m", "asyncio", "ps", pid).CombinedOutput()
	if err != nil {
		t.Fatalf("python -m asyncio ps: %v\n%s", err, out)
	}
	d := tasksJSON(t, "dump", "--pid", pid, "--json")
	byID := map[uint64]taskEntry{}
	for _, th := range d.Threads {
		for _, task := range th.Tasks {
			byID[task.ID] = task
		}
	}
	rows := 0
	for _, line := range strings.Split(string(out), "\n") {
		m := asyncioPSRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		rows++
		id, _ := strconv.ParseUint(m[1], 16, 64)
		awaiter, _ := strconv.ParseUint(m[2], 16, 64)
		task, ok := byID[id]
		switch {
		case !ok:
			t.Errorf("asyncio ps lists task %#x, krait does not", id)
		case awaiter != 0 && !containsID(task.AwaitedBy, awaiter):
			t.Errorf("asyncio ps: task %s awaited by %#x; krait: by %v", taskLabel(task), awaiter, task.AwaitedBy)
		}
	}
	if rows == 0 {
		t.Fatalf("no task rows in python -m asyncio ps:\n%s", out)
	}
	t.Logf("%d rows of python -m asyncio ps agree", rows)
}
