package agent

import (
	"debug/elf"
	"fmt"
	"strings"

	"krait/internal/binfmt"
	"krait/internal/cpython"
	"krait/internal/target"
)

// codeCave finds room for need bytes of code that nothing in the process
// runs or reads: the tail of the last page of an executable segment, past
// the segment's end (the page is mapped executable as a whole, the bytes
// after the segment are padding or another segment's file bytes, seen by
// nobody through this mapping). The Python binary's own segments come
// first, then every other executable file mapping. Writing there (through
// /proc/PID/mem) gives the process a private copy of that one page.
func codeCave(proc target.Process, py *cpython.Python, need int) (uint64, error) {
	maps, err := proc.Maps()
	if err != nil {
		return 0, err
	}
	if a, ok := caveIn(maps, py.Binary, py.Bias, need); ok {
		return a, nil
	}
	seen := map[string]bool{py.Binary.Path: true}
	for _, m := range maps {
		if !strings.Contains(m.Perms, "x") || !strings.HasPrefix(m.Path, "/") || seen[m.Path] {
			continue
		}
		seen[m.Path] = true
		opened, err := proc.OpenPath(m.Path)
		if err != nil {
			continue
		}
		obj, err := binfmt.OpenObject(opened, m.Path)
		if err != nil {
			continue
		}
		if a, ok := caveIn(maps, obj, obj.Bias(m.Start, m.Offset), need); ok {
			return a, nil
		}
	}
	return 0, fmt.Errorf("%w: no executable mapping of process %d has %d unused bytes at the end of its last page for krait's trampoline", ErrUnsupported, proc.PID(), need)
}

// caveIn looks for the cave in obj, loaded at bias.
func caveIn(maps []target.Mapping, obj *binfmt.Object, bias uint64, need int) (uint64, bool) {
	for _, s := range obj.Loads {
		if s.Flags&elf.PF_X == 0 || s.Memsz != s.Filesz {
			continue
		}
		end := s.Vaddr + s.Filesz + bias
		pageEnd := (end + pageSize - 1) &^ (pageSize - 1)
		at := (pageEnd - uint64(need)) &^ (caveAlign - 1)
		if at < end+caveMargin || at >= pageEnd {
			continue
		}
		for _, m := range maps {
			if m.Start <= end-1 && end-1 < m.End && pageEnd <= m.End && m.Path == obj.Path && strings.Contains(m.Perms, "x") {
				return at, true
			}
		}
	}
	return 0, false
}

// stackRoom says whether a thread whose stack pointer is rsp has room
// below it for the trampoline's block and the calls it makes: its stack
// mapping reaches stackNeed below rsp. The main thread's [stack] grows on
// demand as the thread itself uses it, but krait's write of the block
// does not grow it: the block must be inside what is mapped.
func stackRoom(maps []target.Mapping, rsp uint64) bool {
	for _, m := range maps {
		if m.Start <= rsp && rsp < m.End {
			if m.Path == "[stack]" {
				return rsp-m.Start >= redZone+blkSize+pageSize
			}
			return rsp-m.Start >= stackNeed
		}
	}
	return false
}
