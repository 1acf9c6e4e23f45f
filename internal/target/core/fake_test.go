package core

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// Synthetic cores, laid out as the kernel writes them (notes, then the
// dumped memory) or as gdb's gcore does (memory, notes, then section
// headers), small enough to cut and damage at every offset.

type fakeLoad struct {
	vaddr, memsz uint64
	data         []byte // what the core holds of it (filesz)
}

type fakeCore struct {
	notes []byte
	loads []fakeLoad
	gdb   bool // gdb's layout: memory, notes, section headers
	xnum  bool // the program header count in section header 0 (PN_XNUM), as the kernel writes it
}

// layout of a built core, for tests that damage it.
type fakeLayout struct {
	phoff     uint64 // program headers; the first is the PT_NOTE
	notesOff  uint64
	loadOffs  []uint64
	shoff     uint64
	totalSize uint64
}

func (fc fakeCore) build() ([]byte, fakeLayout) {
	le := binary.LittleEndian
	nph := 1 + len(fc.loads)
	var lay fakeLayout
	lay.phoff = ehdrSize
	pos := lay.phoff + uint64(nph)*phdrSize
	place := func(n int) uint64 { off := pos; pos += uint64(n); return off }
	if fc.gdb {
		for _, l := range fc.loads {
			lay.loadOffs = append(lay.loadOffs, place(len(l.data)))
		}
		lay.notesOff = place(len(fc.notes))
	} else {
		lay.notesOff = place(len(fc.notes))
		for _, l := range fc.loads {
			lay.loadOffs = append(lay.loadOffs, place(len(l.data)))
		}
	}
	shnum := 0
	switch {
	case fc.xnum:
		shnum = 1
	case fc.gdb:
		shnum = 2
	}
	if shnum > 0 {
		lay.shoff = place(shnum * shdrSize)
	}
	lay.totalSize = pos
	out := make([]byte, pos)
	copy(out, "\x7fELF\x02\x01\x01")
	le.PutUint16(out[16:], 4) // ET_CORE
	le.PutUint16(out[18:], 62)
	le.PutUint32(out[20:], 1)
	le.PutUint64(out[32:], lay.phoff)
	le.PutUint64(out[40:], lay.shoff)
	le.PutUint16(out[52:], ehdrSize)
	le.PutUint16(out[54:], phdrSize)
	le.PutUint16(out[56:], uint16(nph))
	if fc.xnum {
		le.PutUint16(out[56:], pnXnum)
		le.PutUint32(out[lay.shoff+44:], uint32(nph)) // sh_info
		le.PutUint64(out[lay.shoff+32:], 1)           // sh_size: the section count
	}
	if shnum > 0 {
		le.PutUint16(out[58:], shdrSize)
		le.PutUint16(out[60:], uint16(shnum))
	}
	ph := func(i int, typ uint32, off, vaddr, filesz, memsz uint64) {
		p := out[lay.phoff+uint64(i)*phdrSize:]
		le.PutUint32(p, typ)
		le.PutUint64(p[8:], off)
		le.PutUint64(p[16:], vaddr)
		le.PutUint64(p[32:], filesz)
		le.PutUint64(p[40:], memsz)
	}
	ph(0, 4, lay.notesOff, 0, uint64(len(fc.notes)), 0)
	copy(out[lay.notesOff:], fc.notes)
	for i, l := range fc.loads {
		ph(i+1, 1, lay.loadOffs[i], l.vaddr, uint64(len(l.data)), l.memsz)
		copy(out[lay.loadOffs[i]:], l.data)
	}
	return out, lay
}

// note encodes one ELF note.
func note(typ uint32, name string, desc []byte) []byte {
	b := make([]byte, 12)
	binary.LittleEndian.PutUint32(b, uint32(len(name)+1))
	binary.LittleEndian.PutUint32(b[4:], uint32(len(desc)))
	binary.LittleEndian.PutUint32(b[8:], typ)
	n := append([]byte(name), 0)
	for len(n)%4 != 0 {
		n = append(n, 0)
	}
	b = append(b, n...)
	b = append(b, desc...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// What the sample core holds.
const (
	samplePID    = 4242
	sampleExe    = "/bin/fakepython"
	sampleArgs   = "fakepython app.py --workers 2"
	sampleText   = 0x400000          // the executable's first page, not dumped
	sampleStack  = 0x7ffd00000000    // dumped anonymous memory
	sampleExecfn = sampleStack + 256 // AT_EXECFN: the executable's name
)

func prstatus(tid int) []byte {
	d := make([]byte, 336)
	binary.LittleEndian.PutUint32(d[32:], uint32(tid))
	return d
}

func filesNote(maps ...fileMap) []byte {
	d := make([]byte, 16+24*len(maps))
	binary.LittleEndian.PutUint64(d, uint64(len(maps)))
	binary.LittleEndian.PutUint64(d[8:], 4096)
	for i, m := range maps {
		e := d[16+24*i:]
		binary.LittleEndian.PutUint64(e, m.start)
		binary.LittleEndian.PutUint64(e[8:], m.end)
		binary.LittleEndian.PutUint64(e[16:], m.off/4096)
	}
	for _, m := range maps {
		d = append(d, m.path...)
		d = append(d, 0)
	}
	return d
}

// sampleCore is a two-thread process whose executable's first page is
// mapped but not dumped (read from the file, under the sysroot) and whose
// stack is dumped.
func sampleCore() fakeCore {
	le := binary.LittleEndian
	psinfo := make([]byte, 136)
	le.PutUint32(psinfo[24:], samplePID)
	copy(psinfo[40:], "fakepython")
	copy(psinfo[56:], sampleArgs)
	auxv := make([]byte, 48)
	le.PutUint64(auxv, 6) // AT_PAGESZ
	le.PutUint64(auxv[8:], 4096)
	le.PutUint64(auxv[16:], atExecfn)
	le.PutUint64(auxv[24:], sampleExecfn)
	var notes []byte
	notes = append(notes, note(ntPrstatus, "CORE", prstatus(samplePID))...)
	notes = append(notes, note(ntPrpsinfo, "CORE", psinfo)...)
	notes = append(notes, note(ntAuxv, "CORE", auxv)...)
	notes = append(notes, note(ntFile, "CORE", filesNote(fileMap{sampleText, sampleText + 4096, 0, sampleExe}))...)
	notes = append(notes, note(0x202, "LINUX", make([]byte, 832))...) // NT_X86_XSTATE, unread
	notes = append(notes, note(ntPrstatus, "CORE", prstatus(samplePID+1))...)
	stack := make([]byte, 4096)
	for i := range stack {
		stack[i] = byte(i * 13)
	}
	copy(stack[256:], sampleExe+"\x00")
	return fakeCore{notes: notes, loads: []fakeLoad{
		{vaddr: sampleText, memsz: 4096},
		{vaddr: sampleStack, memsz: 8192, data: stack},
	}}
}

// sampleSysroot holds the sample's executable: its first page, whose
// bytes are their offsets' low bytes.
func sampleSysroot(t testing.TB) string {
	dir := t.TempDir()
	exe := make([]byte, 4096)
	for i := range exe {
		exe[i] = byte(i)
	}
	path := filepath.Join(dir, sampleExe)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, exe, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeTemp(t testing.TB, data []byte) string {
	path := filepath.Join(t.TempDir(), "core")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
