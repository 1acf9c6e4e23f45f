package unwind

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"krait/internal/cpython/layout"
	"krait/internal/target/live"
	"krait/internal/testkit"
)

// sourcePythons lists every pyenv build by minor version ("2.7",
// "3.12") and Debian's python3.11 ("system3.11"); an interpreter
// KRAIT_REQUIRE_PYTHONS names that is missing fails the test.
func sourcePythons(t *testing.T) map[string]string {
	t.Helper()
	pys := map[string]string{}
	prefixes, _ := layout.PyenvPrefixes()
	for _, p := range prefixes {
		if minor, _, err := layout.PrefixVersion(p); err == nil {
			pys[minor] = filepath.Join(p, "bin", "python")
		}
	}
	if _, err := os.Stat("/usr/bin/python3.11"); err == nil {
		pys["system3.11"] = "/usr/bin/python3.11"
	}
	for _, want := range strings.Fields(os.Getenv("KRAIT_REQUIRE_PYTHONS")) {
		if _, ok := pys[want]; !ok {
			t.Fatalf("KRAIT_REQUIRE_PYTHONS: interpreter %s not found", want)
		}
	}
	if len(pys) == 0 {
		t.Skip("no Python found")
	}
	return pys
}

// TestSourceLines: the native stack of a Python's main thread blocked in
// time.sleep, with Source's file:line and inlined frames, against
// elfutils' eu-addr2line -i -f for the same addresses: every frame that has
// a line has addr2line's function names, files and lines, inlined ones
// included, innermost first. On every pyenv build (DWARF in libpython and
// in 2.7's time module): the C function implementing sleep shows a file
// under Modules/ and a line, and some frame of the interpreter is inlined.
// Debian's stripped python3.11 (no DWARF, no debug file): no frame has a
// line, none is inlined, and nothing fails.
func TestSourceLines(t *testing.T) {
	for name, py := range sourcePythons(t) {
		t.Run(name, func(t *testing.T) {
			frames := sleepingStack(t, py)
			var lines []string
			for _, f := range frames {
				lines = append(lines, fmt.Sprintf("%s %s:%d inlined=%v (%s+%#x)", f.String(), f.File, f.Line, f.Inlined, filepath.Base(f.Library), f.Address))
			}
			t.Logf("stack:\n%s", strings.Join(lines, "\n"))
			if name == "system3.11" {
				for _, f := range frames {
					if f.Inlined || f.File != "" && (strings.Contains(f.Library, "python") || f.Library == "") {
						t.Errorf("stripped python3.11: frame %s has a source line %s:%d (inlined %v)", f.String(), f.File, f.Line, f.Inlined)
					}
				}
				return
			}
			sleepFn, inlined := false, false
			for _, f := range frames {
				if strings.Contains(f.Function, "sleep") && strings.Contains(f.File, "/Modules/") && f.Line > 0 {
					sleepFn = true
				}
				if f.Inlined && strings.Contains(filepath.Base(f.Library), "python") {
					inlined = true
				}
			}
			if !sleepFn {
				t.Errorf("no frame of the sleep function with a line in Modules/")
			}
			if !inlined {
				t.Errorf("no inlined frame in the interpreter")
			}
			checkAddr2line(t, frames)
		})
	}
}

// checkAddr2line compares each frame's source lines with eu-addr2line's
// (elfutils) for its address (PC-1 for a return address): those of the
// Python's own files (the C library's depend on the machine's debug
// files).
func checkAddr2line(t *testing.T, frames []Frame) {
	t.Helper()
	var group []Frame
	checked := 0
	for _, f := range frames {
		group = append(group, f)
		if f.Inlined {
			continue
		}
		g := group
		group = nil
		if f.File == "" {
			if len(g) > 1 {
				t.Errorf("frame %s: inlined frames without a line of its own", f.String())
			}
			continue
		}
		if strings.HasPrefix(f.Library, "/lib/") || strings.HasPrefix(f.Library, "/usr/lib/") {
			continue
		}
		a := f.Address - (f.PC - f.lookup)
		want := testkit.Addr2Line(t, f.Library, []uint64{a})[0]
		var got []string
		for _, gf := range g {
			got = append(got, fmt.Sprintf("%s %s:%d", testkit.BareName(gf.Function), gf.File, gf.Line))
			if !filepath.IsAbs(gf.File) {
				t.Errorf("frame %s: file %q is not absolute", gf.String(), gf.File)
			}
		}
		if strings.Join(got, " | ") != strings.Join(want, " | ") {
			t.Errorf("%s+%#x:\n krait:        %s\n eu-addr2line: %s", filepath.Base(f.Library), a, strings.Join(got, " | "), strings.Join(want, " | "))
		}
		checked++
	}
	if checked == 0 {
		t.Errorf("no frame with a source line to check")
	}
}

// sleepingStack runs py with its main thread in time.sleep and returns
// that thread's native stack, with Source's lines, unwound while the
// process is held.
func sleepingStack(t *testing.T, py string) []Frame {
	t.Helper()
	cmd := exec.Command(py, "-c", "import sys, time\nsys.stdout.write('ready\\n'); sys.stdout.flush()\ntime.sleep(600)\n")
	// No Pdeathsig: it follows the OS thread that forked, which a Pause
	// may lock and end with its release.
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if !bufio.NewScanner(out).Scan() {
		t.Fatal("the Python printed nothing")
	}
	pid := cmd.Process.Pid
	proc, err := live.Open(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Close() })
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		maps, err := proc.Maps()
		if err != nil {
			t.Fatal(err)
		}
		p, err := live.Pause(pid, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var frames []Frame
		ur, err := p.GetRegs(pid)
		if err == nil {
			regs, _ := FromUser([]uint64{ur.R15, ur.R14, ur.R13, ur.R12, ur.Rbp, ur.Rbx, ur.R11, ur.R10, ur.R9, ur.R8,
				ur.Rax, ur.Rcx, ur.Rdx, ur.Rsi, ur.Rdi, ur.Orig_rax, ur.Rip, ur.Cs, ur.Eflags, ur.Rsp})
			u := New(proc, maps, proc.OpenPath)
			frames, err = u.Stack(regs)
			if err == nil {
				frames = u.Source(frames)
			}
		}
		p.Release()
		// Sleeping: in select (2.7-3.10) or clock_nanosleep (3.11+).
		if err == nil && len(frames) > 0 && (strings.Contains(frames[0].Function, "sleep") || strings.Contains(frames[0].Function, "select")) {
			return frames
		}
		if time.Now().After(end) {
			t.Fatalf("the main thread does not sleep: %v (%+v)", err, frames)
		}
	}
}

// TestSourceDamaged: a file whose DWARF is damaged, or cut short while
// krait has it mapped, gives no source lines and no crash; an intact
// copy of it gives its lines and inlined function, as eu-addr2line does.
func TestSourceDamaged(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatalf("gcc is needed (.ci/run installs gcc): %v", err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "p.c")
	err := os.WriteFile(src, []byte(`volatile int n;
static inline __attribute__((always_inline)) void bump(void) { n++; n *= 3; }
int main(void) { bump(); return n; }
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(dir, "p")
	if out, err := exec.Command("gcc", "-O2", "-g", "-o", prog, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	data, err := os.ReadFile(prog)
	if err != nil {
		t.Fatal(err)
	}
	o := openObject(prog, prog, nil)
	var main symbol
	for _, f := range o.funcs {
		if f.name == "main" {
			main = f
		}
	}
	if main.size == 0 {
		t.Fatal("no main")
	}
	// The intact file: main's first instruction is in bump, inlined.
	got := o.source().lookup(main.start)
	want := testkit.Addr2Line(t, prog, []uint64{main.start})[0]
	var gotS []string
	for _, s := range got {
		gotS = append(gotS, fmt.Sprintf("%s %s:%d", s.Function, s.File, s.Line))
	}
	if strings.Join(gotS, " | ") != strings.Join(want, " | ") || len(got) != 2 || !got[0].Inlined {
		t.Errorf("intact: %v, eu-addr2line %v", got, want)
	}

	// Damaged: .debug_info and .debug_line overwritten.
	bad := filepath.Join(dir, "bad")
	damaged := append([]byte(nil), data...)
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{".debug_info", ".debug_line"} {
		s := f.Section(name)
		if s == nil {
			t.Fatalf("no %s", name)
		}
		for i := s.Offset + 4; i < s.Offset+s.Size; i++ {
			damaged[i] = 0xff
		}
	}
	if err := os.WriteFile(bad, damaged, 0o700); err != nil {
		t.Fatal(err)
	}
	forgetSources() // the copies have the intact file's build id
	if src := openObject(bad, bad, nil).source().lookup(main.start); src != nil {
		t.Errorf("damaged DWARF gives %v", src)
	}

	// Cut short while mapped: the DWARF is read (mapped), then the file
	// loses everything after its first page; the lookup faults in the
	// mapping, which is a recovered panic, not a crash.
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, data, 0o700); err != nil {
		t.Fatal(err)
	}
	forgetSources()
	so := openObject(short, short, nil)
	if so.source().d == nil {
		t.Fatal("no DWARF read from the copy")
	}
	if err := os.Truncate(short, 4096); err != nil {
		t.Fatal(err)
	}
	if src := so.source().lookup(main.start); src != nil {
		t.Errorf("a file cut short gives %v", src)
	}
}

// forgetSources empties the cache of DWARF by build id.
func forgetSources() {
	sources.Lock()
	defer sources.Unlock()
	sources.m = map[string]*sourceInfo{}
}
