package cpython

import (
	"testing"

	"krait/internal/cpython/layout"
	"krait/internal/target"
	"krait/internal/value"
)

// flatMemory is target memory holding one block at base; everything else is
// unmapped.
type flatMemory struct {
	base uint64
	data []byte
}

func (f flatMemory) ReadAt(p []byte, addr uint64) error {
	if addr < f.base || addr-f.base+uint64(len(p)) > uint64(len(f.data)) || addr+uint64(len(p)) < addr {
		return &target.ReadError{Addr: addr, Len: len(p), Err: target.ErrBadAddress}
	}
	copy(p, f.data[addr-f.base:])
	return nil
}

func pythonOver(t testing.TB, minor string, mem target.Memory) *Python {
	v, err := layout.ParseVersion(minor)
	if err != nil {
		t.Fatal(err)
	}
	l, err := layout.For(v)
	if err != nil {
		t.Fatal(err)
	}
	return &Python{L: l, Version: v, m: newMem(mem), types: map[uint64]*typeInfo{}, values: map[valueKey]*value.Value{}, codes: map[uint64]*code{}}
}

// FuzzObjects feeds garbage memory to the object and frame decoders of
// every supported version: they must return values or errors, never panic
// or loop.
func FuzzObjects(f *testing.F) {
	f.Add([]byte{}, uint16(0))
	seed := make([]byte, 512)
	for i := range seed {
		seed[i] = byte(i * 7)
	}
	f.Add(seed, uint16(16))
	ptrs := make([]byte, 256)
	for i := 0; i+8 <= len(ptrs); i += 8 {
		a := uint64(0x10000 + (i*5)%256)
		for j := 0; j < 8; j++ {
			ptrs[i+j] = byte(a >> (8 * j))
		}
	}
	f.Add(ptrs, uint16(8))
	versions := layout.Supported()
	f.Fuzz(func(t *testing.T, data []byte, off uint16) {
		const base = 0x10000
		mem := flatMemory{base: base, data: data}
		for _, v := range versions {
			py := pythonOver(t, v, mem)
			addr := uint64(base) + uint64(off)%uint64(len(data)+1)
			_ = py.Value(addr, Limits{Items: 8, Chars: 64, Depth: 3})
			_, _ = py.Frames(addr, true, Limits{Items: 8, Chars: 64, Depth: 2}, map[uint64]*code{})
		}
	})
}

// FuzzLineTables: every line-table format must survive arbitrary bytes.
func FuzzLineTables(f *testing.F) {
	f.Add([]byte{0x80, 0x00}, 10, 4)
	f.Add([]byte{0xf8, 0x01, 0x02, 0x03}, 1, 0)
	f.Add([]byte{2, 1, 4, 0x80, 6, 2}, 5, 8)
	f.Fuzz(func(t *testing.T, tab []byte, first, offset int) {
		for _, format := range []int{layout.Lnotab, layout.LnotabUnsigned, layout.Linetable310, layout.Locations311} {
			_ = lineForOffset(format, tab, first, offset)
		}
	})
}
