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

	"krait/internal/testkit"
)

type nativeFrameJSON = testkit.NativeFrame

type nativeDump struct {
	PythonVersion string `json:"python_version"`
	Threads       []struct {
		NativeID    *int              `json:"native_id"`
		NativeOnly  bool              `json:"native_only"`
		Interpreter int               `json:"interpreter"`
		Name        *string           `json:"name"`
		Frames      []nativeFrameJSON `json:"frames"`
		NativeError string            `json:"native_error"`
	} `json:"threads"`
}

// TestDumpNative: krait dump --native on every interpreter, live and from
// a core taken by gcore, against gdb's own unwinding of the same threads:
// threads blocked in libc's pause() through ctypes, in read() on a pipe,
// in time.sleep (the main thread), in time.sleep inside a C signal handler
// (through a signal frame), one running Python, and a C thread that never
// ran Python (shown with native_only), and one in a dlopen waiting in a
// library's constructor (inside ld.so). The native frames must be gdb's, in
// gdb's order, with the Python frames exactly where gdb has the evaluation
// loop, and the Python frames those krait dump shows without --native.
func TestDumpNative(t *testing.T) {
	if _, err := exec.LookPath("gdb"); err != nil {
		t.Fatalf("gdb is needed: %v", err)
	}
	ctor := buildCtorLib(t)
	for _, py := range pythons(t) {
		t.Run(py.name, func(t *testing.T) {
			_ = os.Remove(ctor + ".entered")
			p := startReady(t, py, []string{"KRAIT_NATIVE_CTOR=" + ctor}, fixture("native_fixture.py"))
			lines := strings.Split(strings.TrimSpace(p.stdout.String()), "\n")
			var tids map[string]int
			if err := json.Unmarshal([]byte(lines[0]), &tids); err != nil {
				t.Fatalf("fixture's thread ids %q: %v", lines[0], err)
			}
			plain := dumpJSON(t, p.pid())
			live := nativeJSON(t, "dump", "--pid", strconv.Itoa(p.pid()), "--native", "--json")
			gdbLive := testkit.GDBStacks(t, "-p", strconv.Itoa(p.pid()))
			checkNative(t, "live", py, live, plain, gdbLive, tids)
			checkSource(t, "live", py, live, tids)

			core := gcore(t, p.pid())
			fromCore := nativeJSON(t, "dump", "--core", core, "-n", "--json")
			gdbCore := testkit.GDBStacks(t, py.path, core)
			checkNative(t, "core", py, fromCore, plain, gdbCore, tids)
			checkSource(t, "core", py, fromCore, tids)

			// Text: native frames named, the Python ones as ever.
			r := krait(t, "dump", "--pid", strconv.Itoa(p.pid()), "--native")
			if r.code != 0 {
				t.Fatalf("%v", r)
			}
			for _, want := range []string{"    inner (", "__restore_rt (libc.so.6)", "    pause (libc.so.6)"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("text output lacks %q:\n%s", want, r.stdout)
				}
			}
			// Source lines as gdb shows them, relative to the build's
			// directory, and inlined functions marked as PyStack marks
			// them; none in Debian's stripped build.
			if py.name == "system3.11" {
				if regexp.MustCompile(`\(python3\.11\) at |\(inlined\) \(python3\.11\)`).MatchString(r.stdout) {
					t.Errorf("stripped python3.11: text output shows source lines:\n%s", r.stdout)
				}
			} else {
				testkit.MustMatch(t, "text output", `\n    \w*sleep\w* \((libpython|time\.so)[^)]*\) at Modules/timemodule\.c:[1-9]\d*\n`, r.stdout)
				testkit.MustMatch(t, "text output", `\n    \w+ \(inlined\) \(libpython[^)]*\) at \S+:[1-9]\d*\n`, r.stdout)
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
	eval := testkit.EvalFunction(py.minor)
	byTID := map[int]int{}
	for i, th := range d.Threads {
		if th.NativeID != nil {
			byTID[*th.NativeID] = i
		}
	}
	// innermost C function each blocked thread must show first
	first := map[string][]string{
		"read": {"read"}, "pause": {"pause"}, "handler": {"nanosleep", "select"}, "main": {"nanosleep", "select"}, "cthread": {"pause"},
		"ldso": {"pause"},
	}
	for name, tid := range tids {
		i, ok := byTID[tid]
		if !ok {
			t.Errorf("%s: no thread with native id %d (%s)", what, tid, name)
			continue
		}
		th := d.Threads[i]
		if (name == "cthread") != th.NativeOnly || th.NativeOnly && th.Interpreter != -1 {
			t.Errorf("%s: thread %s: native_only %v, interpreter %d", what, name, th.NativeOnly, th.Interpreter)
		}
		if th.NativeError != "" {
			t.Errorf("%s: thread %s: native_error %q", what, name, th.NativeError)
		}
		// The outermost frame (clone's or _start's: without libc's debug
		// file neither start_thread nor clone3 has a name) is native, and
		// reached (no native_error, above).
		frames := th.Frames
		if len(frames) == 0 || !frames[len(frames)-1].Native {
			t.Errorf("%s: thread %s does not end in a native frame: %s", what, name, testkit.FrameList(frames))
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
		want, got := testkit.GDBSequence(gdb[tid], eval), testkit.KraitSequence(frames)
		if strings.Join(want, " ") != strings.Join(got, " ") {
			t.Errorf("%s: thread %s: krait's merged stack is\n  %s\ngdb's (PY where gdb has %s):\n  %s\nkrait: %s\ngdb: %s",
				what, name, strings.Join(got, " "), eval, strings.Join(want, " "), testkit.FrameList(frames), strings.Join(gdb[tid], " "))
		}
		ok = false
		for _, w := range first[name] {
			ok = ok || len(frames) > 0 && frames[0].Native && strings.Contains(frames[0].Function, w)
		}
		if !ok {
			t.Errorf("%s: thread %s: innermost frame %v, want one of %v", what, name, frames[0], first[name])
		}
		if name == "ldso" && (!strings.Contains(testkit.FrameList(frames), "krait_ctor") || !strings.Contains(testkit.FrameList(frames), "dlopen")) {
			t.Errorf("%s: thread ldso is not in its library's constructor under dlopen: %s", what, testkit.FrameList(frames))
		}
		if name == "handler" && !strings.Contains(testkit.FrameList(frames), "__restore_rt") {
			t.Errorf("%s: thread handler shows no signal frame: %s", what, testkit.FrameList(frames))
		}
	}
}

// buildCtorLib builds a shared library whose constructor blocks in pause()
// (after creating the file named by $KRAIT_NATIVE_CTOR + ".entered"): a
// thread that dlopen()s it waits inside ld.so's _dl_init.
func buildCtorLib(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatalf("gcc is needed (.ci/run installs it): %v", err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "ctor.c")
	code := `#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
volatile int krait_after;
static void __attribute__((noinline)) krait_ctor_wait(void) { pause(); krait_after++; }
__attribute__((constructor)) static void krait_ctor(void) {
	const char *p = getenv("KRAIT_NATIVE_CTOR");
	char buf[4096];
	if (p && strlen(p) < 4000) {
		strcpy(buf, p);
		strcat(buf, ".entered");
		close(open(buf, O_CREAT | O_WRONLY, 0600));
	}
	krait_ctor_wait();
	krait_after++;
}
`
	if err := os.WriteFile(src, []byte(code), 0o600); err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(dir, "libkraitctor.so")
	if out, err := exec.Command("gcc", "-shared", "-fPIC", "-O1", "-g", "-o", lib, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return lib
}

// checkSource: native frames' source lines and inlined functions (from
// the DWARF of pyenv's builds) are elfutils' eu-addr2line -i -f's for the
// same addresses (each frame's address, the call instruction's for a
// return address, with the functions inlined there, innermost first); the main thread, in time.sleep, shows the C function that
// sleeps in Modules/timemodule.c at a line, and the interpreter's frames
// show an inlined function. Debian's stripped python3.11 has no source
// lines and no inlined frames (and no error: checkNative). Files of the
// system (the C library, whose debug file this machine may have) are not
// compared: which of them have DWARF depends on the machine.
func checkSource(t *testing.T, what string, py python, d *nativeDump, tids map[string]int) {
	t.Helper()
	type group struct {
		lib    string
		addr   uint64
		frames []nativeFrameJSON
		// partial: the inlined frames of an evaluation loop's frame,
		// which its Python frames replace (addr2line's list goes on with
		// the loop's function)
		partial bool
	}
	var groups []group
	sleep, inlined := false, false
	for _, th := range d.Threads {
		atPC := true // the innermost frame and one a signal interrupted are at their PC
		var pending []nativeFrameJSON
		for _, f := range th.Frames {
			if !f.Native {
				if len(pending) > 0 {
					p := pending[0]
					off, err := strconv.ParseUint(strings.TrimPrefix(p.LibraryOffset, "0x"), 16, 64)
					if err == nil && !strings.HasPrefix(p.Library, "/lib/") && !strings.HasPrefix(p.Library, "/usr/lib/") {
						if !atPC {
							off--
						}
						groups = append(groups, group{p.Library, off, pending, true})
					}
				}
				pending, atPC = nil, false
				continue
			}
			lib := filepath.Base(f.Library)
			if py.name == "system3.11" && strings.HasPrefix(lib, "python3") && (f.File != "" || f.Inlined) {
				t.Errorf("%s: stripped python3.11: frame %s has source %s:%d (inlined %v)", what, f.Function, f.File, f.Line, f.Inlined)
			}
			if th.NativeID != nil && *th.NativeID == tids["main"] && strings.Contains(f.Function, "sleep") &&
				strings.Contains(f.File, "/Modules/timemodule.c") && f.Line > 0 {
				sleep = true
			}
			if f.Inlined && strings.Contains(lib, "python") {
				inlined = true
			}
			pending = append(pending, f)
			if f.Inlined {
				continue
			}
			off, err := strconv.ParseUint(strings.TrimPrefix(f.LibraryOffset, "0x"), 16, 64)
			if f.File != "" && err == nil && !strings.HasPrefix(f.Library, "/lib/") && !strings.HasPrefix(f.Library, "/usr/lib/") {
				if !atPC {
					off--
				}
				groups = append(groups, group{f.Library, off, pending, false})
			} else if f.File == "" && len(pending) > 1 {
				t.Errorf("%s: frame %s has inlined frames but no source line", what, f.Function)
			}
			pending = nil
			atPC = f.Function == "__restore_rt"
		}
	}
	if py.name == "system3.11" {
		return
	}
	if !sleep {
		t.Errorf("%s: the main thread shows no sleep function in Modules/timemodule.c with a line", what)
	}
	if !inlined {
		t.Errorf("%s: no inlined frame in the interpreter", what)
	}
	// eu-addr2line once per file, every address at once.
	byLib := map[string][]int{}
	for i, g := range groups {
		byLib[g.lib] = append(byLib[g.lib], i)
	}
	for lib, idx := range byLib {
		var addrs []uint64
		for _, i := range idx {
			addrs = append(addrs, groups[i].addr)
		}
		for n, want := range testkit.Addr2Line(t, lib, addrs) {
			g := groups[idx[n]]
			var got []string
			for _, f := range g.frames {
				got = append(got, fmt.Sprintf("%s %s:%d", testkit.BareName(f.Function), f.File, f.Line))
			}
			if g.partial && len(want) > len(got) {
				want = want[:len(got)]
			}
			if strings.Join(got, " | ") != strings.Join(want, " | ") {
				t.Errorf("%s: %s+%#x:\n krait:        %s\n eu-addr2line: %s", what, filepath.Base(lib), g.addr, strings.Join(got, " | "), strings.Join(want, " | "))
			}
		}
	}
	if len(groups) == 0 {
		t.Errorf("%s: no native frame with a source line", what)
	}
}
