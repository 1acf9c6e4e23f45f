package dump

import (
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
