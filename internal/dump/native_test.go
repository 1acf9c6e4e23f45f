package dump

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"krait/internal/unwind"
)

func names(fs []*Frame) string {
	var s []string
	for _, f := range fs {
		if f.Native {
			s = append(s, "C:"+f.Function)
		} else {
			s = append(s, f.Function)
		}
	}
	return strings.Join(s, " ")
}

// TestMerge: each native frame of the evaluation loop takes the next group
// of Python frames (a group ends at its Entry frame), innermost first; a
// gcc .cold part counts as the loop; Python frames left when the native
// stack ends early go last.
func TestMerge(t *testing.T) {
	nat := func(fns ...string) []unwind.Frame {
		var out []unwind.Frame
		for _, f := range fns {
			out = append(out, unwind.Frame{Function: f, Library: "/lib/libpython3.12.so"})
		}
		return out
	}
	py := func(fns ...string) []*Frame {
		var out []*Frame
		for _, f := range fns {
			out = append(out, &Frame{Function: f})
		}
		return out
	}
	const eval = "_PyEval_EvalFrameDefault"
	for _, c := range []struct {
		native []unwind.Frame
		py     []*Frame
		entry  []bool
		want   string
	}{
		// 3.12: two calls of the loop, three Python frames.
		{nat("poll", "PyObject_Vectorcall", eval, "method_vectorcall", eval+".cold", "start_thread"),
			py("inner", "outer", "run"), []bool{false, true, true},
			"C:poll C:PyObject_Vectorcall inner outer C:method_vectorcall run C:start_thread"},
		// ≤3.10: one Python frame per loop frame.
		{nat("select", eval, "call_function", eval, "main"),
			py("inner", "outer"), []bool{true, true},
			"C:select inner C:call_function outer C:main"},
		// The unwinding stopped early: the outer Python frames follow.
		{nat("read", eval),
			py("a", "b", "c"), []bool{true, true, true},
			"C:read a b c"},
		// More loop frames than Python frames: the extra ones stay native.
		{nat(eval, "x", eval), py("a"), []bool{true}, "a C:x C:" + eval},
	} {
		if got := names(merge(c.native, c.py, c.entry, eval)); got != c.want {
			t.Errorf("merge:\n got %s\nwant %s", got, c.want)
		}
	}
}

// TestCallMachinery: the interpreter's calling functions are left out of
// what a request waits on; what it calls is not.
func TestCallMachinery(t *testing.T) {
	for fn, want := range map[string]bool{
		"_PyObject_MakeTpCall": true, "PyObject_Vectorcall": true, "cfunction_vectorcall_O": true,
		"_PyEval_Vector": true, "call_function": true, "": true,
		"time_sleep": false, "_Py_read": false, "take_gil": false, "PQgetResult": false,
	} {
		if got := callMachinery(fn); got != want {
			t.Errorf("callMachinery(%q) = %v, want %v", fn, got, want)
		}
	}
}

// TestNativeSource: native frames with source lines and inlined functions,
// in text (gdb's "at FILE:LINE", the file relative to the directory it was
// compiled in, PyStack's "(inlined)") and in JSON (file, line, inlined);
// an inlined frame is never taken for the evaluation loop.
func TestNativeSource(t *testing.T) {
	const lib = "/opt/py/lib/libpython3.12.so.1.0"
	const dir = "/tmp/python-build/Python-3.12.1"
	native := []unwind.Frame{
		{Function: "clock_nanosleep", Library: "/usr/lib/x86_64-linux-gnu/libc.so.6", PC: 0x7f00000cf503, Address: 0xcf503},
		{Function: "pysleep", Library: lib, PC: 0x7f0000364b62, Address: 0x364b62, File: dir + "/Modules/timemodule.c", Line: 2182, CompDir: dir, Inlined: true},
		{Function: "time_sleep", Library: lib, PC: 0x7f0000364b62, Address: 0x364b62, File: dir + "/Modules/timemodule.c", Line: 425, CompDir: dir},
		{Function: "_PyEval_EvalFrameDefault", Library: lib, PC: 0x7f0000110812, Address: 0x110812, File: dir + "/Python/bytecodes.c", Line: 2706, CompDir: dir, Inlined: true},
		{Function: "_PyEval_EvalFrameDefault", Library: lib, PC: 0x7f0000110812, Address: 0x110812, File: dir + "/Python/bytecodes.c", Line: 2706, CompDir: dir},
		{Function: "header_only", Library: lib, PC: 0x7f0000200000, Address: 0x200000, File: "/usr/include/stdio.h", CompDir: dir},
	}
	frames := merge(native, []*Frame{{Function: "inner", Qualname: "inner", File: "/srv/app.py", Line: 3}}, []bool{true}, "_PyEval_EvalFrameDefault")
	var text bytes.Buffer
	WriteText(&text, &Result{Threads: []*Thread{{ThreadID: 1, Frames: frames}}}, 80)
	for _, want := range []string{
		"    clock_nanosleep (libc.so.6)\n",
		"    pysleep (inlined) (libpython3.12.so.1.0) at Modules/timemodule.c:2182\n",
		"    time_sleep (libpython3.12.so.1.0) at Modules/timemodule.c:425\n",
		"    _PyEval_EvalFrameDefault (inlined) (libpython3.12.so.1.0) at Python/bytecodes.c:2706\n    inner (/srv/app.py:3)\n",
		"    header_only (libpython3.12.so.1.0) at /usr/include/stdio.h\n",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	js, err := json.Marshal(frames)
	if err != nil {
		t.Fatal(err)
	}
	var back []map[string]any
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if len(back) != 6 {
		t.Fatalf("frames %s", js)
	}
	if f := back[1]; f["file"] != dir+"/Modules/timemodule.c" || f["line"] != 2182.0 || f["inlined"] != true {
		t.Errorf("inlined frame in JSON: %v", f)
	}
	if f := back[2]; f["line"] != 425.0 || f["inlined"] != nil {
		t.Errorf("frame in JSON: %v", f)
	}
	if f := back[0]; f["file"] != "" || f["line"] != 0.0 || f["inlined"] != nil {
		t.Errorf("frame without a source line in JSON: %v", f)
	}
}
