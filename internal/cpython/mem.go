package cpython

import (
	"encoding/binary"
	"math"

	"krait/internal/target"
)

const pageSize = 4096

// mem is a page cache over the target's memory for one snapshot: CPython
// objects are small and close together, so one read per page beats one
// syscall per field.
type mem struct {
	r     target.Memory
	pages map[uint64][]byte
	bad   map[uint64]error
	Reads int // syscalls made, for benchmarks
}

func newMem(r target.Memory) *mem {
	return &mem{r: r, pages: map[uint64][]byte{}, bad: map[uint64]error{}}
}

// page returns the page at base, reading it on first use. (Reading more
// pages at once was measured slower: the copies cost more than the system
// calls they save.)
func (m *mem) page(base uint64) ([]byte, error) {
	if p, ok := m.pages[base]; ok {
		return p, nil
	}
	if err, ok := m.bad[base]; ok {
		return nil, err
	}
	p := make([]byte, pageSize)
	m.Reads++
	if err := m.r.ReadAt(p, base); err != nil {
		m.bad[base] = err
		return nil, err
	}
	m.pages[base] = p
	return p, nil
}

// read fills buf from addr.
func (m *mem) read(buf []byte, addr uint64) error {
	if len(buf) == 0 {
		return nil
	}
	if addr < pageSize || addr+uint64(len(buf)) < addr {
		return &target.ReadError{Addr: addr, Len: len(buf), Err: target.ErrBadAddress}
	}
	if len(buf) > 4*pageSize {
		m.Reads++
		return m.r.ReadAt(buf, addr)
	}
	for done := 0; done < len(buf); {
		a := addr + uint64(done)
		base := a &^ (pageSize - 1)
		p, err := m.page(base)
		if err != nil {
			return &target.ReadError{Addr: addr, Len: len(buf), Err: unwrapRead(err)}
		}
		done += copy(buf[done:], p[a-base:])
	}
	return nil
}

func unwrapRead(err error) error {
	if re, ok := err.(*target.ReadError); ok {
		return re.Err
	}
	return err
}

func (m *mem) bytes(addr uint64, n int) ([]byte, error) {
	b := make([]byte, n)
	return b, m.read(b, addr)
}

func (m *mem) u64(addr uint64) (uint64, error) {
	var b [8]byte
	if err := m.read(b[:], addr); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

func (m *mem) i64(addr uint64) (int64, error) {
	v, err := m.u64(addr)
	return int64(v), err
}

func (m *mem) u32(addr uint64) (uint32, error) {
	var b [4]byte
	if err := m.read(b[:], addr); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b[:]), nil
}

func (m *mem) i32(addr uint64) (int32, error) {
	v, err := m.u32(addr)
	return int32(v), err
}

func (m *mem) u8(addr uint64) (byte, error) {
	var b [1]byte
	err := m.read(b[:], addr)
	return b[0], err
}

func (m *mem) f64(addr uint64) (float64, error) {
	v, err := m.u64(addr)
	return math.Float64frombits(v), err
}

// cstring reads a NUL-terminated string of at most max bytes.
func (m *mem) cstring(addr uint64, max int) (string, error) {
	var out []byte
	for len(out) < max {
		base := addr &^ (pageSize - 1)
		p, err := m.page(base)
		if err != nil {
			return "", &target.ReadError{Addr: addr, Len: 1, Err: unwrapRead(err)}
		}
		for _, c := range p[addr-base:] {
			if c == 0 {
				return string(out), nil
			}
			out = append(out, c)
			if len(out) >= max {
				break
			}
		}
		addr = base + pageSize
	}
	return string(out), nil
}
