package unwind

import (
	"bufio"
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
