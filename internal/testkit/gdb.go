package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

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

// GDBStacks runs gdb with args (-p PID, or an executable and a core) and
// returns each thread's frames, innermost first, as "pc=name" (pc in hex).
func GDBStacks(t *testing.T, args ...string) map[int][]string {
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

// BareName drops gcc's suffixes of split-off parts (.cold, .isra.0, …).
func BareName(s string) string {
	name, _, _ := strings.Cut(s, ".")
	return name
}

// EvalFunction is the evaluation loop's C function of a Python minor
// version ("2.7", "3.12").
func EvalFunction(minor string) string {
	if strings.HasPrefix(minor, "2.") {
		return "PyEval_EvalFrameEx"
	}
	return "_PyEval_EvalFrameDefault"
}

// GDBSequence turns gdb's frames into what krait's merged stack must show:
// each native frame's address ("0x…"), and "PY" where the evaluation loop
// ran (consecutive ones once).
func GDBSequence(frames []string, eval string) []string {
	var out []string
	for _, f := range frames {
		pc, name, _ := strings.Cut(f, "=")
		if BareName(name) == eval {
			if len(out) == 0 || out[len(out)-1] != "PY" {
				out = append(out, "PY")
			}
			continue
		}
		out = append(out, "0x"+pc)
	}
	return out
}

// NativeFrame is a frame of krait dump --native --json: a Python frame or,
// with "native": true, a C one.
type NativeFrame struct {
	Function      string `json:"function"`
	File          string `json:"file"`
	Line          int    `json:"line"`
	Native        bool   `json:"native"`
	Library       string `json:"library"`
	Address       string `json:"address"`
	LibraryOffset string `json:"library_offset"`
	Inlined       bool   `json:"inlined"`
}

// KraitSequence is GDBSequence of krait's merged frames: native
// addresses, and "PY" for each run of Python frames. Inlined frames are
// left out, as GDBStacks leaves them out.
func KraitSequence(frames []NativeFrame) []string {
	var out []string
	for _, f := range frames {
		if f.Inlined {
			continue
		}
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

// FrameList shows frames for a test log.
func FrameList(frames []NativeFrame) string {
	var s []string
	for _, f := range frames {
		if f.Native && f.Inlined {
			s = append(s, f.Function+"(inlined)@"+f.Address)
		} else if f.Native {
			s = append(s, f.Function+"@"+f.Address)
		} else {
			s = append(s, f.Function+"()")
		}
	}
	return strings.Join(s, " ")
}
