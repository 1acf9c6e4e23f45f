package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// truth is what dump_fixture.py computed about itself.
type truth struct {
	PID        int                    `json:"pid"`
	Version    string                 `json:"version"`
	Executable string                 `json:"executable"`
	Fixture    string                 `json:"fixture"`
	Depth      int                    `json:"depth"`
	Marks      map[string]int         `json:"marks"`
	Threads    map[string]truthThread `json:"threads"`
	Locals     []truthLocal           `json:"locals"`
}

type truthThread struct {
	Ident          uint64  `json:"ident"`
	NativeID       *int    `json:"native_id"`
	NativeIDSource *string `json:"native_id_source"`
}

type truthValue struct {
	Repr    string `json:"repr"`
	Type    string `json:"type"`
	Address string `json:"address"`
	Length  *int   `json:"length"`
}

type truthLocal struct {
	Name string `json:"name"`
	Arg  bool   `json:"arg"`
	truthValue
	Attributes map[string]truthValue `json:"attributes"`
}

// mark returns the line of marker name, failing the test if it is missing.
func (tr *truth) mark(t *testing.T, name string) int {
	t.Helper()
	line, ok := tr.Marks[name]
	if !ok {
		t.Fatalf("fixture has no marker %q (markers: %v)", name, tr.Marks)
	}
	return line
}

// The fixture's threads.
const (
	mainThread   = "MainThread"
	deepThread   = "deep-recursion"
	spinThread   = "spinner"
	valuesThread = "values"
)

var fixtureThreads = []string{mainThread, deepThread, spinThread, valuesThread}

// blockedThreads are the fixture's threads that wait in C.
var blockedThreads = []string{mainThread, deepThread, valuesThread}

// truncatedLocals are the fixture's locals krait reads only part of, with
// the suffix krait puts after the part it read.
var truncatedLocals = map[string]string{
	"long_list": ", ...]",
	"s_long":    "'...",
}

// startWithTruth starts fixture name under py with a path to write its
// truth to (what it computed itself, as JSON), waits for it and decodes it
// into v.
func startWithTruth(t *testing.T, py python, name string, v any) *proc {
	t.Helper()
	path := filepath.Join(t.TempDir(), "truth.json")
	p := start(t, nil, py.path, fixture(name), path)
	var data []byte
	p.waitFor(60*time.Second, func() bool {
		var err error
		data, err = os.ReadFile(path)
		return err == nil
	})
	if data == nil {
		t.Fatalf("%s: fixture wrote no truth (exited: %v)\nstdout: %s\nstderr: %s", py.path, p.exited(), p.stdout, p.stderr)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decoding the fixture's truth: %v\n%s", err, data)
	}
	return p
}

// startFixture starts dump_fixture.py under py and waits for its truth.
func startFixture(t *testing.T, py python) (*proc, *truth) {
	t.Helper()
	var tr truth
	p := startWithTruth(t, py, "dump_fixture.py", &tr)
	if tr.PID != p.pid() {
		t.Fatalf("truth is from pid %d, fixture is %d", tr.PID, p.pid())
	}
	return p, &tr
}

// TestDump dumps dump_fixture.py under every interpreter and compares
// threads, stacks and locals with the fixture's own view.
func TestDump(t *testing.T) {
	// Each fixture keeps one core busy (its spinner): two at a time.
	sem := make(chan struct{}, 2)
	found := pythons(t)
	for _, name := range missingPythons(found) {
		t.Run(name, func(t *testing.T) {
			if strings.HasPrefix(name, "system") {
				t.Skipf("no Debian Python for %s", name)
			}
			t.Skipf("no pyenv build of Python %s under %s", name, filepath.Join(pyenvRoot(), "versions"))
		})
	}
	for _, py := range found {
		t.Run(py.name, func(t *testing.T) {
			t.Parallel()
			sem <- struct{}{}
			t.Cleanup(func() { <-sem }) // after the fixture is killed
			testDumpPython(t, py)
		})
	}
}

func testDumpPython(t *testing.T, py python) {
	p, tr := startFixture(t, py)
	res := dumpJSON(t, p.pid(), "--locals")
	t.Run("result", func(t *testing.T) { checkResult(t, tr, res) })
	t.Run("threads", func(t *testing.T) { checkThreads(t, tr, res) })
	t.Run("frames", func(t *testing.T) { checkFrames(t, tr, res) })
	t.Run("locals", func(t *testing.T) { checkLocals(t, tr, res) })
	t.Run("gil_idle", func(t *testing.T) { checkGILIdle(t, p.pid(), res) })
	t.Run("text", func(t *testing.T) { checkText(t, p.pid(), tr, res) })
	t.Run("nonblocking", func(t *testing.T) { checkNonBlocking(t, p.pid(), res) })
	t.Run("core", func(t *testing.T) { checkCore(t, p.pid(), tr) })
	if p.exited() {
		t.Errorf("the fixture exited during the test: %s", p.stderr)
	}
}

func checkResult(t *testing.T, tr *truth, res *dumpResult) {
	if res.PID != tr.PID {
		t.Errorf("pid = %d, want %d", res.PID, tr.PID)
	}
	if res.PythonVersion != tr.Version {
		t.Errorf("python_version = %q, want %q", res.PythonVersion, tr.Version)
	}
	if !res.Paused || res.PauseMillis <= 0 {
		t.Errorf("paused = %v, pause_ms = %v; want a pause", res.Paused, res.PauseMillis)
	}
	if res.Interpreters != 1 {
		t.Errorf("interpreters = %d, want 1", res.Interpreters)
	}
	if res.Layout == "" {
		t.Errorf("layout is empty")
	}
	if !strings.Contains(filepath.Base(res.Binary), "python") {
		t.Errorf("binary = %q, want the python executable or its libpython", res.Binary)
	}
	if len(res.Command) != 3 || res.Command[1] != tr.Fixture {
		t.Errorf("command = %q, want [python %s TRUTH]", res.Command, tr.Fixture)
	}
}

func checkThreads(t *testing.T, tr *truth, res *dumpResult) {
	var names []string
	for _, th := range res.Threads {
		names = append(names, th.name())
	}
	if len(res.Threads) != len(fixtureThreads) {
		t.Errorf("threads %q, want %q", names, fixtureThreads)
	}
	for _, name := range fixtureThreads {
		want, ok := tr.Threads[name]
		if !ok {
			t.Fatalf("the fixture did not report thread %q", name)
		}
		th := res.threadNamed(name)
		if th == nil {
			t.Errorf("no thread %q in the dump (threads: %q)", name, names)
			continue
		}
		if th.ThreadID != want.Ident {
			t.Errorf("thread %q: thread_id = %#x, want get_ident() = %#x", name, th.ThreadID, want.Ident)
		}
		switch {
		case th.NativeID == nil:
			t.Errorf("thread %q: native_id is null", name)
		case want.NativeID != nil && *th.NativeID != *want.NativeID:
			t.Errorf("thread %q: native_id = %d, want %d (from %s)", name, *th.NativeID, *want.NativeID, *want.NativeIDSource)
		case name == mainThread && *th.NativeID != tr.PID:
			t.Errorf("main thread: native_id = %d, want the pid %d", *th.NativeID, tr.PID)
		}
		if want.NativeID == nil {
			t.Logf("thread %q: the fixture could not tell its native id; only checked it is set", name)
		}
		if th.Interpreter != 0 {
			t.Errorf("thread %q: interpreter = %d, want 0", name, th.Interpreter)
		}
		if th.Error != "" {
			t.Errorf("thread %q: error %q", name, th.Error)
		}
	}
}

// frameWant is one expected frame of the fixture's own code.
type frameWant struct {
	function string
	line     int
}

// wantFrames returns the innermost frames expected of each fixture thread.
func wantFrames(t *testing.T, tr *truth) map[string][]frameWant {
	t.Helper()
	deep := []frameWant{{"recurse", tr.mark(t, "deep_block")}}
	for i := 1; i < tr.Depth; i++ {
		deep = append(deep, frameWant{"recurse", tr.mark(t, "deep_recurse")})
	}
	deep = append(deep, frameWant{"deep_main", tr.mark(t, "deep_call")})
	return map[string][]frameWant{
		mainThread:   {{"main", tr.mark(t, "main_block")}, {"<module>", tr.mark(t, "module_call")}},
		deepThread:   deep,
		spinThread:   {{"spin_main", tr.mark(t, "spin")}},
		valuesThread: {{"values_main", tr.mark(t, "values_block")}},
	}
}

func checkFrames(t *testing.T, tr *truth, res *dumpResult) {
	if tr.Depth != 50 {
		t.Errorf("the fixture recursed %d frames deep, the test expects 50", tr.Depth)
	}
	for name, want := range wantFrames(t, tr) {
		th := res.threadNamed(name)
		if th == nil {
			t.Errorf("no thread %q", name)
			continue
		}
		checkThreadFrames(t, tr, name, th, want)
	}
	// The recursion: 50 recurse frames, each with its own n (innermost
	// n=1).
	if th := res.threadNamed(deepThread); th != nil {
		count := 0
		for i, f := range th.Frames {
			if f.Function != "recurse" {
				continue
			}
			count++
			if len(f.Locals) != 1 || f.Locals[0].Name != "n" || !f.Locals[0].Arg || f.Locals[0].Value != strconv.Itoa(i+1) {
				t.Errorf("recurse frame %d: locals %s, want the argument n = %d", i, localsString(f.Locals), i+1)
			}
		}
		if count != tr.Depth {
			t.Errorf("%d recurse frames, want %d", count, tr.Depth)
		}
	}
}

// checkThreadFrames checks the innermost frames of a thread against want
// (innermost first) and that, for threads other than the main one,
// threading's bootstrap frames make up the rest.
func checkThreadFrames(t *testing.T, tr *truth, name string, th *dumpThread, want []frameWant) {
	t.Helper()
	if len(th.Frames) < len(want) {
		t.Errorf("thread %q: %d frames, want at least %d:\n%s", name, len(th.Frames), len(want), framesString(th.Frames))
		return
	}
	for i, w := range want {
		f := th.Frames[i]
		if f.Function != w.function || f.Line != w.line || f.File != tr.Fixture {
			t.Errorf("thread %q frame %d: %s, want %s (%s:%d)\nstack:\n%s", name, i, f, w.function, tr.Fixture, w.line, framesString(th.Frames))
			return
		}
		if f.Qualname != w.function {
			t.Errorf("thread %q frame %d: qualname %q, want %q", name, i, f.Qualname, w.function)
		}
	}
	rest := th.Frames[len(want):]
	if name == mainThread {
		if len(rest) != 0 {
			t.Errorf("main thread: frames after <module>:\n%s", framesString(rest))
		}
	} else {
		if len(rest) == 0 {
			t.Errorf("thread %q: no threading frames below %s", name, want[len(want)-1].function)
		}
		for _, f := range rest {
			if filepath.Base(f.File) != "threading.py" {
				t.Errorf("thread %q: unexpected frame %s below the thread's function", name, f)
			}
		}
		if len(rest) > 0 {
			last := rest[len(rest)-1].Function
			if last != "_bootstrap" && last != "__bootstrap" {
				t.Errorf("thread %q: outermost frame %q, want threading's _bootstrap", name, last)
			}
		}
	}
	for i, f := range th.Frames {
		if f.Line <= 0 || f.Error != "" {
			t.Errorf("thread %q frame %d: %s, error %q", name, i, f, f.Error)
		}
	}
}

func framesString(fs []*dumpFrame) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "    %s\n", f)
	}
	return b.String()
}

func localsString(ls []*dumpLocal) string {
	var parts []string
	for _, l := range ls {
		parts = append(parts, fmt.Sprintf("%s=%s", l.Name, l.Value))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func checkLocals(t *testing.T, tr *truth, res *dumpResult) {
	th := res.threadNamed(valuesThread)
	if th == nil || len(th.Frames) == 0 {
		t.Fatalf("no values thread with frames")
	}
	got := th.Frames[0].Locals
	var gotNames, wantNames []string
	for _, l := range got {
		gotNames = append(gotNames, l.Name)
	}
	for _, l := range tr.Locals {
		wantNames = append(wantNames, l.Name)
	}
	if strings.Join(gotNames, " ") != strings.Join(wantNames, " ") {
		t.Errorf("locals of values_main:\n got %q\nwant %q", gotNames, wantNames)
	}
	byName := map[string]*dumpLocal{}
	for _, l := range got {
		byName[l.Name] = l
	}
	seenTruncated := 0
	for _, w := range tr.Locals {
		l := byName[w.Name]
		if l == nil {
			continue // reported above
		}
		if l.Arg != w.Arg {
			t.Errorf("%s: arg = %v, want %v", w.Name, l.Arg, w.Arg)
		}
		suffix, truncated := truncatedLocals[w.Name]
		if truncated {
			seenTruncated++
		}
		checkValue(t, w.Name, l.dumpValue, w.truthValue, suffix, truncated)
		if w.Attributes == nil {
			if len(l.Attributes) != 0 {
				t.Errorf("%s: unexpected attributes %v", w.Name, l.Attributes)
			}
			continue
		}
		gotAttrs := map[string]dumpValue{}
		for _, a := range l.Attributes {
			gotAttrs[a.Name] = a.dumpValue
		}
		if len(gotAttrs) != len(w.Attributes) {
			t.Errorf("%s: %d attributes %v, want %d", w.Name, len(gotAttrs), l.Attributes, len(w.Attributes))
		}
		for name, wa := range w.Attributes {
			ga, ok := gotAttrs[name]
			if !ok {
				t.Errorf("%s: no attribute %q (attributes: %v)", w.Name, name, l.Attributes)
				continue
			}
			checkValue(t, w.Name+"."+name, ga, wa, "", false)
		}
	}
	if seenTruncated != len(truncatedLocals) {
		t.Errorf("the fixture lacks some of the truncated locals %v", truncatedLocals)
	}
}

// checkValue compares one value krait rendered with the target's repr.
// A truncated value must end with suffix, and what comes before it must
// begin the target's repr.
func checkValue(t *testing.T, name string, got dumpValue, want truthValue, suffix string, truncated bool) {
	t.Helper()
	if got.Error != "" {
		t.Errorf("%s: error %q", name, got.Error)
	}
	if got.Type != want.Type {
		t.Errorf("%s: type = %q, want %q", name, got.Type, want.Type)
	}
	if got.Address != want.Address {
		t.Errorf("%s: address = %q, want id() %q", name, got.Address, want.Address)
	}
	wantLen := 0
	if want.Length != nil {
		wantLen = *want.Length
	}
	if got.Length != wantLen {
		t.Errorf("%s: length = %d, want len() = %d", name, got.Length, wantLen)
	}
	if got.Truncated != truncated {
		t.Errorf("%s: truncated = %v, want %v (value %.200q)", name, got.Truncated, truncated, got.Value)
	}
	if !truncated {
		if got.Value != want.Repr {
			t.Errorf("%s: value\n got %q\nwant %q", name, got.Value, want.Repr)
		}
		return
	}
	prefix, ok := strings.CutSuffix(got.Value, suffix)
	if !ok || !strings.HasPrefix(want.Repr, prefix) || len(prefix) < 100 {
		t.Errorf("%s: truncated value %.300q is not a prefix of the target's repr followed by %q", name, got.Value, suffix)
	}
	if name == "long_list" {
		// krait reads at most 100 items of a container.
		if n := strings.Count(prefix, ",") + 1; n != 100 {
			t.Errorf("long_list: %d items shown, want 100", n)
		}
	}
}

func checkGILIdle(t *testing.T, pid int, res *dumpResult) {
	// The spinner holds the GIL nearly always; a dump may still catch it
	// in the instant it drops and retakes the lock (Python 2 does so every
	// 100 bytecodes), so it gets a few tries.
	for attempt := 0; ; attempt++ {
		holders := 0
		for _, th := range res.Threads {
			if th.GIL {
				holders++
			}
		}
		if holders > 1 {
			t.Errorf("%d threads hold the GIL", holders)
		}
		for _, name := range blockedThreads {
			if th := res.threadNamed(name); th != nil && (th.GIL || !th.Idle) {
				t.Errorf("blocked thread %q: gil = %v, idle = %v; want no GIL, idle", name, th.GIL, th.Idle)
			}
		}
		sp := res.threadNamed(spinThread)
		if sp == nil {
			t.Fatalf("no spinner thread")
		}
		if sp.Idle {
			t.Errorf("the spinning thread is idle")
		}
		if sp.GIL {
			return
		}
		if attempt == 4 {
			t.Errorf("the spinning thread never held the GIL in %d dumps", attempt+1)
			return
		}
		t.Logf("dump %d: the spinning thread did not hold the GIL; dumping again", attempt+1)
		res = dumpJSON(t, pid)
	}
}

// checkText checks krait dump's text output against the JSON dump.
func checkText(t *testing.T, pid int, tr *truth, res *dumpResult) {
	for _, withLocals := range []bool{false, true} {
		args := []string{"dump", "--pid", strconv.Itoa(pid)}
		if withLocals {
			args = append(args, "--locals")
		}
		r := krait(t, args...)
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		blocks := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n\n")
		head := strings.Split(blocks[0], "\n")
		// On a loaded machine the pause may pass 50 ms: the header then
		// says how long the process was held (TestPauseNote).
		if len(head) == 3 && regexp.MustCompile(`^Process held \d+\.\dms while krait read it$`).MatchString(head[2]) {
			head = head[:2]
		}
		wantHead := []string{
			fmt.Sprintf("Process %d: %s", pid, strings.Join(res.Command, " ")),
			fmt.Sprintf("Python v%s (%s)", tr.Version, res.Binary),
		}
		if strings.Join(head, "\n") != strings.Join(wantHead, "\n") {
			t.Errorf("header:\n%s\nwant:\n%s", blocks[0], strings.Join(wantHead, "\n"))
		}
		blocks = blocks[1:]
		if len(blocks) != len(res.Threads) {
			t.Errorf("%d thread blocks in the text, want %d:\n%s", len(blocks), len(res.Threads), r.stdout)
		}
		for _, th := range res.Threads {
			state := "(idle)"
			if th.name() == spinThread {
				state = "(active" // ", gil)" most of the time
			}
			if th.NativeID == nil {
				continue // reported by the threads check
			}
			header := fmt.Sprintf("Thread 0x%x [tid %d] %q %s", th.ThreadID, *th.NativeID, th.name(), state)
			var block []string
			for _, b := range blocks {
				if strings.HasPrefix(b, header) {
					block = strings.Split(b, "\n")
				}
			}
			if block == nil {
				t.Errorf("no text block starting %q in:\n%s", header, r.stdout)
				continue
			}
			var frames []string
			locals := map[string]string{} // of the innermost frame
			for _, line := range block[1:] {
				switch {
				case strings.HasPrefix(line, "            "):
					if len(frames) == 1 {
						if name, value, ok := strings.Cut(strings.TrimSpace(line), ": "); ok {
							locals[name] = value
						}
					}
				case strings.HasPrefix(line, "        "):
					if l := strings.TrimSpace(line); l != "Arguments:" && l != "Locals:" {
						t.Errorf("thread %q: unexpected line %q", th.name(), line)
					}
				case strings.HasPrefix(line, "    "):
					frames = append(frames, line)
				default:
					t.Errorf("thread %q: unexpected line %q", th.name(), line)
				}
			}
			var want []string
			for _, f := range th.Frames {
				want = append(want, fmt.Sprintf("    %s (%s:%d)", f.Qualname, f.File, f.Line))
			}
			if strings.Join(frames, "\n") != strings.Join(want, "\n") {
				t.Errorf("thread %q frames in text:\n%s\nwant:\n%s", th.name(), strings.Join(frames, "\n"), strings.Join(want, "\n"))
			}
			if th.name() != valuesThread {
				continue
			}
			if !withLocals {
				if len(locals) != 0 {
					t.Errorf("locals shown without --locals")
				}
				continue
			}
			for _, w := range tr.Locals {
				want := cutRunes(w.Repr, 160)
				if got, ok := locals[w.Name]; !ok || got != want {
					t.Errorf("text local %s: got %q, want %q", w.Name, got, want)
				}
			}
		}
	}
}

// cutRunes cuts s as krait's text output does with --width n.
func cutRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "..."
}

// checkNonBlocking dumps without pausing: the blocked threads do not move,
// so their stacks and locals must read the same as in the paused dump.
func checkNonBlocking(t *testing.T, pid int, paused *dumpResult) {
	res := dumpJSON(t, pid, "--nonblocking", "--locals")
	if res.Paused {
		t.Errorf("--nonblocking: paused = true")
	}
	if len(res.Threads) != len(paused.Threads) {
		t.Errorf("--nonblocking: %d threads, paused dump had %d", len(res.Threads), len(paused.Threads))
	}
	for _, want := range paused.Threads {
		var got *dumpThread
		for _, th := range res.Threads {
			if th.ThreadID == want.ThreadID {
				got = th
			}
		}
		if got == nil {
			t.Errorf("--nonblocking: no thread %#x (%q)", want.ThreadID, want.name())
			continue
		}
		if got.name() != want.name() || !sameInt(got.NativeID, want.NativeID) {
			t.Errorf("--nonblocking: thread %#x is %q tid %s, want %q tid %s", want.ThreadID, got.name(), intString(got.NativeID), want.name(), intString(want.NativeID))
		}
		if want.name() == spinThread {
			// Its stack does not change either, but its locals do.
			if len(got.Frames) != len(want.Frames) || got.Frames[0].String() != want.Frames[0].String() {
				t.Errorf("--nonblocking: spinner stack\n%s\nwant\n%s", framesString(got.Frames), framesString(want.Frames))
			}
			continue
		}
		if framesString(got.Frames) != framesString(want.Frames) {
			t.Errorf("--nonblocking: thread %q stack\n%s\nwant\n%s", want.name(), framesString(got.Frames), framesString(want.Frames))
			continue
		}
		for i := range want.Frames {
			if g, w := localsString(got.Frames[i].Locals), localsString(want.Frames[i].Locals); g != w {
				t.Errorf("--nonblocking: thread %q frame %d locals\n%s\nwant\n%s", want.name(), i, g, w)
			}
		}
	}
}

func sameInt(a, b *int) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

func intString(p *int) string {
	if p == nil {
		return "null"
	}
	return strconv.Itoa(*p)
}

// checkCore takes a core of the fixture with gdb's gcore and dumps it: the
// same threads, stacks and locals as the live process.
func checkCore(t *testing.T, pid int, tr *truth) {
	gcore, err := exec.LookPath("gcore")
	if err != nil {
		t.Fatalf("gcore (gdb) is needed: %v", err)
	}
	prefix := filepath.Join(t.TempDir(), "core")
	if out, err := exec.Command(gcore, "-o", prefix, strconv.Itoa(pid)).CombinedOutput(); err != nil {
		t.Fatalf("gcore: %v\n%s", err, out)
	}
	core := fmt.Sprintf("%s.%d", prefix, pid)
	res := dumpJSONArgs(t, "dump", "--core", core, "--locals", "--json")
	if res.PID != pid || res.PythonVersion != tr.Version {
		t.Errorf("core dump: pid %d version %q, want %d %q", res.PID, res.PythonVersion, pid, tr.Version)
	}
	checkThreads(t, tr, res)
	checkFrames(t, tr, res)
	checkLocals(t, tr, res)
	text := krait(t, "dump", "--core", core)
	if text.code != 0 || !strings.Contains(text.stdout, "Core file "+core) {
		t.Errorf("text dump of the core: %v\n%s", text, text.stdout)
	}
}
