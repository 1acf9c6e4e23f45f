package unwind

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"krait/internal/target/live"
)

// TestDebugFileByBuildID: a stripped program whose functions have no
// .eh_frame (built without unwind tables), with its symbols and
// .debug_frame only in a separate debug file under
// DebugRoot/.build-id/xx/yyyy.debug, is unwound and named through that
// file: pause ← inner ← outer ← main, static functions included, live.
func TestDebugFileByBuildID(t *testing.T) {
	for _, tool := range []string{"gcc", "objcopy", "strip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (.ci/run installs gcc): %v", tool, err)
		}
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "p.c")
	err := os.WriteFile(src, []byte(`#include <unistd.h>
volatile int after;
static void __attribute__((noinline)) inner(void) { pause(); after++; }
static void __attribute__((noinline)) outer(void) { inner(); after++; }
int main(void) { outer(); return after; }
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(dir, "p")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run("gcc", "-O2", "-g", "-fno-asynchronous-unwind-tables", "-fno-unwind-tables", "-fomit-frame-pointer", "-o", prog, src)
	run("objcopy", "--only-keep-debug", prog, prog+".debug")
	run("strip", prog)

	o := openObject(prog, prog, nil)
	if o.buildID == "" {
		t.Fatal("no build id")
	}
	if _, _, ok := o.symbolize(0); ok || len(o.funcs) > 0 && strings.Contains(funcNames(o), "inner") {
		t.Fatalf("the stripped program names its static functions without its debug file: %s", funcNames(o))
	}
	root := filepath.Join(dir, "debug")
	bid := filepath.Join(root, ".build-id", o.buildID[:2])
	if err := os.MkdirAll(bid, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(prog+".debug", filepath.Join(bid, o.buildID[2:]+".debug")); err != nil {
		t.Fatal(err)
	}
	old := DebugRoot
	DebugRoot = root
	t.Cleanup(func() { DebugRoot = old })

	cmd := exec.Command(prog)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	// Wait until it sleeps in pause().
	for i := 0; ; i++ {
		stat, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "S" {
			break
		}
		if i > 500 {
			t.Fatalf("program did not block")
		}
		time.Sleep(10 * time.Millisecond)
	}
	proc, err := live.Open(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Close()
	maps, err := proc.Maps()
	if err != nil {
		t.Fatal(err)
	}
	p, err := live.Pause(pid, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	ur, err := p.GetRegs(pid)
	if err != nil {
		t.Fatal(err)
	}
	regs, _ := FromUser([]uint64{ur.R15, ur.R14, ur.R13, ur.R12, ur.Rbp, ur.Rbx, ur.R11, ur.R10, ur.R9, ur.R8,
		ur.Rax, ur.Rcx, ur.Rdx, ur.Rsi, ur.Rdi, ur.Orig_rax, ur.Rip, ur.Cs, ur.Eflags, ur.Rsp})
	// Unwound while the program is held, as dump does.
	frames, err := New(proc, maps, proc.OpenPath).Stack(regs)
	var names []string
	for _, f := range frames {
		names = append(names, f.String())
	}
	got := strings.Join(names, " ")
	if err != nil || !strings.Contains(got, "pause inner outer main ") {
		t.Errorf("stack %q (error %v), want pause inner outer main … from the debug file", got, err)
	}
	for _, f := range frames {
		if (f.Function == "inner" || f.Function == "outer") && f.Via != "cfi" {
			t.Errorf("%s unwound by %q, want by the debug file's CFI", f.Function, f.Via)
		}
	}
}

func funcNames(o *object) string {
	var s []string
	for _, f := range o.funcs {
		s = append(s, f.name)
	}
	return strings.Join(s, " ")
}
