package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// nativeFrameJSON is a frame of krait dump --native --json: a Python frame
// or, with "native": true, a C one.
type nativeFrameJSON struct {
	Function      string `json:"function"`
	File          string `json:"file"`
	Line          int    `json:"line"`
	Native        bool   `json:"native"`
	Library       string `json:"library"`
	Address       string `json:"address"`
	LibraryOffset string `json:"library_offset"`
}

type nativeDump struct {
	PythonVersion string `json:"python_version"`
	Threads       []struct {
		NativeID    *int              `json:"native_id"`
		Name        *string           `json:"name"`
		Frames      []nativeFrameJSON `json:"frames"`
		NativeError string            `json:"native_error"`
	} `json:"threads"`
}

// gdbScript prints, for every thread, its frames as gdb unwinds them: the
// resume address and gdb's name for the function. Inlined frames are left
// out (they share their caller's frame), and so are the frames gdb infers
// for tail calls from DWARF call sites (no return address of theirs is on
// the stack: the function that made the tail call has left it).
const gdbScript = `
import gdb
for th in gdb.selected_inferior().threads():
    th.switch()
    f = gdb.newest_frame()
    out = []
    while f is not None:
        if f.type() not in (gdb.INLINE_FRAME, gdb.TAILCALL_FRAME):
            out.append("%x=%s" % (f.pc(), f.name() or "??"))
        try:
            f = f.older()
        except gdb.error:
            break
    print("KRAITBT %d %s" % (th.ptid[1], " ".join(out)))
`

// gdbStacks runs gdb on pid (or on a core, with the executable) and
// returns each thread's frames: "pc=name".
func gdbStacks(t *testing.T, args ...string) map[int][]string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "bt.py")
	if err := os.WriteFile(script, []byte(gdbScript), 0o600); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{"-nx", "-batch", "-iex", "set debuginfod enabled off", "-iex", "set backtrace past-main on"}, args...)
	argv = append(argv, "-x", script)
	out, err := exec.Command("gdb", argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("gdb %v: %v\n%s", args, err, out)
	}
	res := map[int][]string{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "KRAITBT" {
			continue
		}
		tid, _ := strconv.Atoi(f[1])
		res[tid] = f[2:]
	}
	if len(res) == 0 {
		t.Fatalf("gdb %v printed no stacks:\n%s", args, out)
	}
	return res
}

// bareName drops gcc's suffixes of split-off parts (.cold, .isra.0, …).
func bareName(s string) string {
	name, _, _ := strings.Cut(s, ".")
	return name
}

// evalFunction is the evaluation loop's C function.
func evalFunction(minor string) string {
	if strings.HasPrefix(minor, "2.") {
		return "PyEval_EvalFrameEx"
	}
	return "_PyEval_EvalFrameDefault"
}

// gdbSequence turns gdb's frames into what krait's merged stack must show:
// each native frame's address, and "PY" where the evaluation loop ran
// (consecutive ones once).
func gdbSequence(frames []string, eval string) []string {
	var out []string
	for _, f := range frames {
		pc, name, _ := strings.Cut(f, "=")
		if bareName(name) == eval {
			if len(out) == 0 || out[len(out)-1] != "PY" {
				out = append(out, "PY")
			}
			continue
		}
		out = append(out, "0x"+pc)
	}
	return out
}

// kraitSequence is the same of krait's merged frames: native addresses,
// and "PY" for each run of Python frames.
func kraitSequence(frames []nativeFrameJSON) []string {
	var out []string
	for _, f := range frames {
		if !f.Native {
			if len(out) == 0 || out[len(out)-1] != "PY" {
				out = append(out, "PY")
			}
			continue
		}
		out = append(out, f.Address)
	}
	return out
}

// TestDumpNative: krait dump --native on every interpreter, live and from
// a core taken by gcore, against gdb's own unwinding of the same threads:
// threads blocked in libc's pause() through ctypes, in read() on a pipe,
// in time.sleep (the main thread), in time.sleep inside a C signal handler
// (through a signal frame), and one running Python. The native frames must
// be gdb's, in gdb's order, with the Python frames exactly where gdb has
// the evaluation loop, and the Python frames those krait dump shows
// without --native.
func TestDumpNative(t *testing.T) {
	if _, err := exec.LookPath("gdb"); err != nil {
		t.Fatalf("gdb is needed: %v", err)
	}
	for _, py := range pythons(t) {
		t.Run(py.name, func(t *testing.T) {
			p := startReady(t, py, nil, fixture("native_fixture.py"))
			lines := strings.Split(strings.TrimSpace(p.stdout.String()), "\n")
			var tids map[string]int
			if err := json.Unmarshal([]byte(lines[0]), &tids); err != nil {
				t.Fatalf("fixture's thread ids %q: %v", lines[0], err)
			}
			plain := dumpJSON(t, p.pid())
			live := nativeJSON(t, "dump", "--pid", strconv.Itoa(p.pid()), "--native", "--json")
			gdbLive := gdbStacks(t, "-p", strconv.Itoa(p.pid()))
			checkNative(t, "live", py, live, plain, gdbLive, tids)

			core := gcore(t, p.pid())
			fromCore := nativeJSON(t, "dump", "--core", core, "-n", "--json")
			gdbCore := gdbStacks(t, py.path, core)
			checkNative(t, "core", py, fromCore, plain, gdbCore, tids)

			// Text: native frames named, the Python ones as ever.
			r := krait(t, "dump", "--pid", strconv.Itoa(p.pid()), "--native")
			if r.code != 0 {
				t.Fatalf("%v", r)
			}
			for _, want := range []string{"    inner (", "__restore_rt (libc.so.6)", "start_thread (libc.so.6)"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("text output lacks %q:\n%s", want, r.stdout)
				}
			}
		})
	}
}

func nativeJSON(t *testing.T, args ...string) *nativeDump {
	t.Helper()
	r := krait(t, args...)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	var d nativeDump
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("krait %v: %v\n%s", args, err, r.stdout)
	}
	return &d
}

func checkNative(t *testing.T, what string, py python, d *nativeDump, plain *dumpResult, gdb map[int][]string, tids map[string]int) {
	t.Helper()
	eval := evalFunction(py.minor)
	byTID := map[int]int{}
	for i, th := range d.Threads {
		if th.NativeID != nil {
			byTID[*th.NativeID] = i
		}
	}
	// innermost C function each blocked thread must show first
	first := map[string][]string{
		"read": {"read"}, "pause": {"pause"}, "handler": {"nanosleep", "select"}, "main": {"nanosleep", "select"},
	}
	for name, tid := range tids {
		i, ok := byTID[tid]
		if !ok {
			t.Errorf("%s: no thread with native id %d (%s)", what, tid, name)
			continue
		}
		th := d.Threads[i]
		if th.NativeError != "" {
			t.Errorf("%s: thread %s: native_error %q", what, name, th.NativeError)
		}
		frames := th.Frames
		if len(frames) == 0 || !frames[len(frames)-1].Native || !strings.Contains(frames[len(frames)-1].Function, "clone") && !strings.Contains(frames[len(frames)-1].Function, "_start") {
			t.Errorf("%s: thread %s does not end in clone or _start: %s", what, name, frameList(frames))
		}
		// The Python frames are those of a dump without --native.
		var pyFrames, plainFrames []string
		for _, f := range frames {
			if !f.Native {
				pyFrames = append(pyFrames, fmt.Sprintf("%s:%d", f.Function, f.Line))
			}
		}
		for _, pt := range plain.Threads {
			if pt.NativeID != nil && *pt.NativeID == tid {
				for _, f := range pt.Frames {
					plainFrames = append(plainFrames, fmt.Sprintf("%s:%d", f.Function, f.Line))
				}
			}
		}
		if name != "spin" && strings.Join(pyFrames, " ") != strings.Join(plainFrames, " ") {
			t.Errorf("%s: thread %s: Python frames %v, without --native %v", what, name, pyFrames, plainFrames)
		}
		if name == "spin" {
			continue // it runs: gdb saw it elsewhere
		}
		want, got := gdbSequence(gdb[tid], eval), kraitSequence(frames)
		if strings.Join(want, " ") != strings.Join(got, " ") {
			t.Errorf("%s: thread %s: krait's merged stack is\n  %s\ngdb's (PY where gdb has %s):\n  %s\nkrait: %s\ngdb: %s",
				what, name, strings.Join(got, " "), eval, strings.Join(want, " "), frameList(frames), strings.Join(gdb[tid], " "))
		}
		ok = false
		for _, w := range first[name] {
			ok = ok || len(frames) > 0 && frames[0].Native && strings.Contains(frames[0].Function, w)
		}
		if !ok {
			t.Errorf("%s: thread %s: innermost frame %v, want one of %v", what, name, frames[0], first[name])
		}
		if name == "handler" && !strings.Contains(frameList(frames), "__restore_rt") {
			t.Errorf("%s: thread handler shows no signal frame: %s", what, frameList(frames))
		}
	}
}

func frameList(frames []nativeFrameJSON) string {
	var s []string
	for _, f := range frames {
		if f.Native {
			s = append(s, f.Function+"@"+f.Address)
		} else {
			s = append(s, f.Function+"()")
		}
	}
	return strings.Join(s, " ")
}
