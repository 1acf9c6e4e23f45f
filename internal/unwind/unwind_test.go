package unwind

import (
	"strings"
	"testing"

	"krait/internal/target"
)

// stackMem is memory holding one stack page.
type stackMem struct {
	base uint64
	data []byte
}

func (m *stackMem) ReadAt(p []byte, a uint64) error {
	if a < m.base || a+uint64(len(p)) > m.base+uint64(len(m.data)) {
		return &target.ReadError{Addr: a, Len: len(p), Err: target.ErrBadAddress}
	}
	copy(p, m.data[a-m.base:])
	return nil
}

// TestStackStopsWithReason: a thread whose unwinding cannot go on shows
// the frames found and says why: a PC in no mapping, and a frame with
// neither call-frame information nor a usable frame pointer.
func TestStackStopsWithReason(t *testing.T) {
	mem := &stackMem{base: 0x10000, data: make([]byte, 4096)}
	maps := []target.Mapping{
		{Start: 0x10000, End: 0x11000, Perms: "rw-p", Path: "[stack]"},
		{Start: 0x400000, End: 0x401000, Perms: "r-xp"},
	}
	u := New(mem, maps, func(string) (string, error) { return "", target.ErrNoProcess })
	var r Regs
	r[RIP], r[RSP] = 0xdead0000, 0x10800
	frames, err := u.Stack(r)
	if len(frames) != 1 || err == nil || !strings.Contains(err.Error(), "not mapped") {
		t.Errorf("PC in no mapping: frames %v, error %v", frames, err)
	}
	if s := frames[0].String(); s != "0xdead0000" {
		t.Errorf("unnamed frame shows as %q", s)
	}
	// Anonymous executable memory (JIT code), no frame pointer.
	r[RIP], r[RBP] = 0x400010, 0
	frames, err = u.Stack(r)
	if len(frames) != 1 || err == nil || !strings.Contains(err.Error(), "anonymous memory") || !strings.Contains(err.Error(), "no frame pointer") {
		t.Errorf("anonymous code: frames %v, error %v", frames, err)
	}
	// With a frame pointer chain: rbp → saved rbp 0, return address 0.
	r[RBP] = 0x10900
	frames, err = u.Stack(r)
	if err != nil || len(frames) != 1 || frames[0].Via != "fp" {
		t.Errorf("frame-pointer walk: frames %+v, error %v", frames, err)
	}
}

// TestFromUser maps the kernel's register order to DWARF's.
func TestFromUser(t *testing.T) {
	u := make([]uint64, 27)
	for i := range u {
		u[i] = uint64(100 + i)
	}
	r, err := FromUser(u)
	if err != nil {
		t.Fatal(err)
	}
	if r[RIP] != 116 || r[RSP] != 119 || r[RBP] != 104 || r[RAX] != 110 || r[R15] != 100 {
		t.Errorf("registers %v", r)
	}
	if _, err := FromUser(u[:10]); err == nil {
		t.Error("a short register set is accepted")
	}
}

// TestDemangle: C++ and Rust symbols by their source names, C ones as
// they are.
func TestDemangle(t *testing.T) {
	for in, want := range map[string]string{
		"_ZN5boost6thread4joinEv":  "boost::thread::join",
		"_ZNK3foo3BarclEi":         "foo::Bar::operator()",
		"PQexec":                   "PQexec",
		"_PyEval_EvalFrameDefault": "_PyEval_EvalFrameDefault",
		"_RNvCs1234_7mycrate3foo":  "mycrate::foo",
		"_ZN4core3ptr13drop_in_place17h0123456789abcdefE": "core::ptr::drop_in_place",
	} {
		if got := Demangle(in); got != want {
			t.Errorf("Demangle(%q) = %q, want %q", in, got, want)
		}
	}
}
