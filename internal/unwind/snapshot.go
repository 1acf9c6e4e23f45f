package unwind

import (
	"slices"
	"sort"

	"krait/internal/target"
)

// Snapshot is memory copied while a process was held (the threads'
// stacks), so that the unwinding itself can run after the process is
// released. A read outside what was copied goes to the process.
type Snapshot struct {
	Under  target.Memory
	ranges []copied
}

type copied struct {
	addr uint64
	data []byte
}

// StackBytes is how much of each thread's stack, above its stack pointer,
// a snapshot copies.
const StackBytes = 1 << 20

// redZone: x86-64 leaf functions may keep data below the stack pointer.
const redZone = 128

// CopyStack copies the stack above sp (up to the end of its mapping, at
// most StackBytes) from the process.
func (s *Snapshot) CopyStack(sp uint64, maps []target.Mapping) error {
	lo := sp - redZone
	hi := sp + StackBytes
	for _, m := range maps {
		if m.Start <= sp && sp < m.End {
			hi = min(hi, m.End)
			lo = max(lo, m.Start)
			break
		}
	}
	if hi <= lo {
		return nil
	}
	buf := make([]byte, hi-lo)
	if err := s.Under.ReadAt(buf, lo); err != nil {
		return err
	}
	i := sort.Search(len(s.ranges), func(i int) bool { return s.ranges[i].addr > lo })
	s.ranges = slices.Insert(s.ranges, i, copied{lo, buf})
	return nil
}

// ReadAt reads from the copy, else from the process.
func (s *Snapshot) ReadAt(p []byte, addr uint64) error {
	i := sort.Search(len(s.ranges), func(i int) bool { return s.ranges[i].addr > addr }) - 1
	if i >= 0 {
		r := s.ranges[i]
		if off := addr - r.addr; off < uint64(len(r.data)) && uint64(len(p)) <= uint64(len(r.data))-off {
			copy(p, r.data[off:])
			return nil
		}
	}
	return s.Under.ReadAt(p, addr)
}
