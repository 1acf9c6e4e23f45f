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

// TestWalkLockWait walks the native stack of a thread blocked in
// threading.Lock.acquire, on every pyenv 3.8-3.13 build and Debian's
// stripped python3.11: from the futex up through the C library to
// PyThread_acquire_lock_timed (named in every build: it is exported).
// (3.14 waits in its own parking lot instead.)
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
			for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				maps, err := proc.Maps()
				if err != nil {
					t.Fatal(err)
				}
				objs := NewObjects(maps, proc.OpenPath)
				p, err := live.Pause(pid, 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				r, err := p.GetRegs(tid)
				if err == nil {
					frames, err = objs.Walk(p.ReadMem, Regs{PC: r.Rip, SP: r.Rsp, BP: r.Rbp, BX: r.Rbx, R12: r.R12, R13: r.R13, R14: r.R14, R15: r.R15}, 8)
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
			if !strings.Contains(filepath.Base(frames[0].Object), "libc") && !strings.Contains(filepath.Base(frames[0].Object), "pthread") {
				t.Errorf("frame 0 is in %s, not the C library", frames[0].Object)
			}
			for _, f := range frames {
				if f.Start == 0 || f.PC < f.Start || f.PC > f.End {
					t.Errorf("frame %+v: pc outside its function", f)
				}
			}
		})
	}
}

func hasFunc(frames []Frame, name string) bool {
	for _, f := range frames {
		if f.Func == name {
			return true
		}
	}
	return false
}
