package unwind

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"krait/internal/cpython/layout"
	"krait/internal/target/live"
)

// TestWalkLockWait unwinds, as the agent's lock-wait rule does (StackN,
// one Unwinder across tries, Load before the pause, Remap between tries),
// the native stack of a thread blocked in threading.Lock.acquire, on every
// pyenv 3.8-3.13 build and Debian's stripped python3.11: from the futex up
// through the C library to PyThread_acquire_lock_timed (named in every
// build: it is exported), every frame with its function's run-time range
// from the call-frame information. (3.14 waits in its own parking lot
// instead.)
func TestWalkLockWait(t *testing.T) {
	pys := map[string]string{}
	prefixes, _ := layout.PyenvPrefixes()
	for _, p := range prefixes {
		minor, _, err := layout.PrefixVersion(p)
		var m int
		if _, e := fmt.Sscanf(minor, "3.%d", &m); err != nil || e != nil || m < 8 || m > 13 {
			continue // threading.get_native_id is 3.8+
		}
		pys[minor] = filepath.Join(p, "bin", "python")
	}
	if _, err := os.Stat("/usr/bin/python3.11"); err == nil {
		pys["system3.11"] = "/usr/bin/python3.11"
	}
	if len(pys) == 0 {
		if os.Getenv("KRAIT_REQUIRE_PYTHONS") != "" {
			t.Fatal("KRAIT_REQUIRE_PYTHONS is set but no Python 3.8+ was found")
		}
		t.Skip("no Python 3.8+ found")
	}
	const script = `
import threading, time
lk = threading.Lock(); lk.acquire()
def wait():
    print(threading.get_native_id(), flush=True)
    lk.acquire()
threading.Thread(target=wait, daemon=True).start()
time.sleep(60)
`
	for name, py := range pys {
		py := py
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(py, "-c", script)
			out, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			sc := bufio.NewScanner(out)
			if !sc.Scan() {
				t.Fatal("no native id")
			}
			tid, _ := strconv.Atoi(strings.TrimSpace(sc.Text()))
			pid := cmd.Process.Pid
			proc, err := live.Open(pid)
			if err != nil {
				t.Fatal(err)
			}
			defer proc.Close()
			var frames []Frame
			var u *Unwinder
			for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				maps, err := proc.Maps()
				if err != nil {
					t.Fatal(err)
				}
				if u == nil {
					u = New(proc, maps, proc.OpenPath)
					if err := u.Load(func(string) bool { return true }); err != nil {
						t.Logf("load: %v", err)
					}
				} else {
					u.Remap(maps)
				}
				p, err := live.Pause(pid, 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				ur, err := p.GetRegs(tid)
				if err == nil {
					var r Regs
					r, err = FromUser([]uint64{ur.R15, ur.R14, ur.R13, ur.R12, ur.Rbp, ur.Rbx, ur.R11, ur.R10, ur.R9, ur.R8,
						ur.Rax, ur.Rcx, ur.Rdx, ur.Rsi, ur.Rdi, ur.Orig_rax, ur.Rip, ur.Cs, ur.Eflags, ur.Rsp})
					if err == nil {
						frames, err = u.StackN(r, 8)
					}
				}
				p.Release()
				if err != nil {
					t.Logf("walk: %v", err)
				}
				if hasFunc(frames, "PyThread_acquire_lock_timed") {
					break
				}
				if time.Now().After(end) {
					t.Fatalf("no PyThread_acquire_lock_timed on the stack: %+v", frames)
				}
			}
			for _, f := range frames {
				t.Logf("%#x %s [%#x, %#x) in %s", f.PC, f.String(), f.FuncStart, f.FuncEnd, filepath.Base(f.Library))
			}
			if len(frames) > 8 {
				t.Errorf("StackN(8) gave %d frames", len(frames))
			}
			if !strings.Contains(filepath.Base(frames[0].Library), "libc") && !strings.Contains(filepath.Base(frames[0].Library), "pthread") {
				t.Errorf("frame 0 is in %s, not the C library", frames[0].Library)
			}
			for _, f := range frames {
				if f.FuncStart == 0 || f.PC < f.FuncStart || f.PC > f.FuncEnd || !f.Covers(f.FuncStart) {
					t.Errorf("frame %+v: pc outside its function", f)
				}
				if f.Function == "PyThread_acquire_lock_timed" && f.PC-f.FuncStart != f.Offset {
					t.Errorf("frame %+v: the symbol and the call-frame information disagree on where the function starts", f)
				}
			}
		})
	}
}

func hasFunc(frames []Frame, name string) bool {
	for _, f := range frames {
		if f.Function == name {
			return true
		}
	}
	return false
}
