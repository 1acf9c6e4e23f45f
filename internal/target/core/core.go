// Package core is a target.Process backed by an ELF core file (from gcore,
// a crash, or systemd-coredump): the memory the core holds, completed from
// the files it says were mapped (read-only pages are usually not dumped),
// its threads and its command line. krait's whole CPython layer reads a
// core exactly as it reads a live process.
package core

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"krait/internal/target"
)

// Core is an opened core file.
type Core struct {
	path    string
	f       file
	loads   []load
	files   []fileMap
	threads []target.Thread
	regs    map[int][]uint64 // by thread: user_regs_struct from NT_PRSTATUS
	pid     int
	psargs  string
	fname   string
	execfn  uint64
	// Sysroot prefixes the paths of mapped files (for cores from another
	// machine or container); "" uses them as they are.
	Sysroot string
	opened  map[string]*os.File
}

type load struct {
	vaddr, memsz, filesz, off uint64
}

type fileMap struct {
	start, end, off uint64
	path            string
}

// ErrNotCore: the file is not an ELF core file.
var ErrNotCore = errors.New("not an ELF core file")

// The kinds of FormatError, for errors.Is.
var (
	ErrTruncated = errors.New("truncated")
	ErrCorrupt   = errors.New("corrupt")
)

// FormatError says why krait will not read a core file: it is shorter than
// its headers say (ErrTruncated), or its headers contradict each other
// (ErrCorrupt).
type FormatError struct {
	Path string
	What string // "truncated (N of M bytes)", "corrupt: …"
	Kind error
}

func (e *FormatError) Error() string { return "core file " + e.Path + " is " + e.What }
func (e *FormatError) Unwrap() error { return e.Kind }

// Sizes of ELF64 structures, and the limits krait reads within.
const (
	ehdrSize = 64
	phdrSize = 56
	shdrSize = 64
	pnXnum   = 0xffff // e_phnum: the count is in section header 0
	// maxOffset: no address space, hence no core, comes near this size;
	// an offset or size beyond it is damage, not a big core.
	maxOffset = 1 << 57
	// maxFileNote bounds the mapped-files table (NT_FILE): a million
	// mappings fit.
	maxFileNote = 64 << 20
	// maxGap: producers write a core's parts one after the other, at most
	// aligned to a page.
	maxGap = 1 << 20
)

// region is a range of the file its headers describe.
type region struct {
	off, end uint64
	what     string
}

// Open reads a core file's headers and notes. Every offset and size the
// file states is checked against its length before anything is read or
// allocated by it: a truncated core is reported as truncated, one whose
// headers contradict each other as corrupt, and neither can make krait
// allocate more than the file holds.
func Open(path string) (*Core, error) {
	// Non-blocking, so that a FIFO named by mistake is refused, not waited on.
	fh, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := fh.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s: not a regular file (krait reads a core file itself, decompressed)", path)
	}
	var c *Core
	if err == nil {
		c, err = read(path, fh, uint64(fi.Size()))
	}
	if err != nil {
		fh.Close()
		return nil, err
	}
	return c, nil
}

// file is what a core is read from: an open file (or, in tests, bytes).
type file interface {
	io.ReaderAt
	io.Closer
}

// read reads the headers and notes of the core in fh, size bytes long.
func read(path string, fh file, size uint64) (*Core, error) {
	truncated := func(want uint64, atLeast bool) error {
		w := fmt.Sprintf("truncated (%d of %d bytes)", size, want)
		if atLeast {
			w = fmt.Sprintf("truncated (%d of at least %d bytes)", size, want)
		}
		return &FormatError{path, w, ErrTruncated}
	}
	corrupt := func(format string, a ...any) error {
		return &FormatError{path, "corrupt: " + fmt.Sprintf(format, a...), ErrCorrupt}
	}

	var eh [ehdrSize]byte
	n, err := fh.ReadAt(eh[:], 0)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	magic := []byte(elf.ELFMAG)
	switch {
	case size == 0:
		return nil, &FormatError{path, "empty", ErrTruncated}
	case !bytes.Equal(eh[:min(n, len(magic))], magic[:min(n, len(magic))]):
		return nil, fmt.Errorf("%s: %w", path, ErrNotCore)
	case n < ehdrSize:
		return nil, truncated(ehdrSize, true)
	}
	bo := binary.ByteOrder(binary.LittleEndian)
	if elf.Data(eh[elf.EI_DATA]) == elf.ELFDATA2MSB {
		bo = binary.BigEndian
	}
	if elf.Type(bo.Uint16(eh[16:])) != elf.ET_CORE {
		return nil, fmt.Errorf("%s: %w", path, ErrNotCore)
	}
	if elf.Class(eh[elf.EI_CLASS]) != elf.ELFCLASS64 || elf.Data(eh[elf.EI_DATA]) != elf.ELFDATA2LSB {
		return nil, fmt.Errorf("%s: only 64-bit little-endian cores are supported", path)
	}
	le := binary.LittleEndian
	phoff, shoff := le.Uint64(eh[32:]), le.Uint64(eh[40:])
	phentsize, phnum := uint64(le.Uint16(eh[54:])), uint64(le.Uint16(eh[56:]))
	shentsize, shnum := uint64(le.Uint16(eh[58:])), uint64(le.Uint16(eh[60:]))
	regions := []region{{0, ehdrSize, "the ELF header"}}

	// Section headers: a core needs none, but a count too large for the
	// ELF header is kept in the first one, and gdb's cores end with them.
	if shoff != 0 {
		if shentsize < shdrSize {
			return nil, corrupt("section header size %d (want %d)", shentsize, shdrSize)
		}
		if shoff > maxOffset {
			return nil, corrupt("section headers at offset %d", shoff)
		}
		if shnum == 0 || phnum == pnXnum {
			if shoff+shdrSize > size {
				return nil, truncated(shoff+shdrSize, true)
			}
			var sh [shdrSize]byte
			if _, err := fh.ReadAt(sh[:], int64(shoff)); err != nil {
				return nil, fmt.Errorf("reading %s: %w", path, err)
			}
			if shnum == 0 {
				shnum = max(le.Uint64(sh[32:]), 1) // sh_size
			}
			if phnum == pnXnum {
				phnum = uint64(le.Uint32(sh[44:])) // sh_info
			}
		}
		if shnum > maxOffset/shentsize {
			return nil, corrupt("%d section headers", shnum)
		}
		regions = append(regions, region{shoff, shoff + shnum*shentsize, "the section headers"})
	} else if phnum == pnXnum {
		return nil, corrupt("more than %d program headers but no section header to count them", pnXnum-1)
	}

	c := &Core{path: path, f: fh, opened: map[string]*os.File{}}
	var notes []region
	if phnum > 0 {
		if phentsize < phdrSize {
			return nil, corrupt("program header size %d (want %d)", phentsize, phdrSize)
		}
		if phoff > maxOffset || phnum > maxOffset/phentsize {
			return nil, corrupt("%d program headers at offset %d", phnum, phoff)
		}
		end := phoff + phnum*phentsize
		if end > size {
			return nil, truncated(end, true)
		}
		regions = append(regions, region{phoff, end, "the program headers"})
		// One header at a time: the table can be large, and krait keeps
		// only what it uses of it.
		br := bufio.NewReader(io.NewSectionReader(fh, int64(phoff), int64(end-phoff)))
		ph := make([]byte, phentsize)
		for i := uint64(0); i < phnum; i++ {
			if _, err := io.ReadFull(br, ph); err != nil {
				return nil, fmt.Errorf("reading %s: %w", path, err)
			}
			typ := elf.ProgType(le.Uint32(ph))
			off, vaddr, filesz, memsz := le.Uint64(ph[8:]), le.Uint64(ph[16:]), le.Uint64(ph[32:]), le.Uint64(ph[40:])
			if typ != elf.PT_LOAD && typ != elf.PT_NOTE {
				continue
			}
			what := fmt.Sprintf("program header %d (%s)", i, typ)
			if off > maxOffset || filesz > maxOffset {
				return nil, corrupt("%s claims %d bytes at offset %d", what, filesz, off)
			}
			if filesz > 0 {
				regions = append(regions, region{off, off + filesz, what})
			}
			if typ == elf.PT_NOTE {
				notes = append(notes, region{off, off + filesz, what})
				continue
			}
			if filesz > memsz {
				return nil, corrupt("%s holds %d bytes of a %d-byte mapping", what, filesz, memsz)
			}
			if vaddr+memsz < vaddr {
				return nil, corrupt("%s maps %d bytes at 0x%x, past the end of the address space", what, memsz, vaddr)
			}
			c.loads = append(c.loads, load{vaddr, memsz, filesz, off})
		}
	}

	// What the headers describe must not overlap (no producer of cores
	// writes anything twice), and follows on without big gaps: then a file
	// shorter than they say is truncated, not corrupt.
	sort.Slice(regions, func(i, j int) bool { return regions[i].off < regions[j].off })
	want := uint64(0)
	for i, r := range regions {
		if i > 0 && r.off < regions[i-1].end {
			p := regions[i-1]
			return nil, corrupt("%s (bytes %d to %d) overlaps %s (from byte %d); the file has %d bytes", p.what, p.off, p.end, r.what, r.off, size)
		}
		if r.end > size && r.off > want+maxGap {
			return nil, corrupt("%s claims bytes %d to %d, far past the end of the file (%d bytes)", r.what, r.off, r.end, size)
		}
		want = max(want, r.end)
	}
	if want > size {
		return nil, truncated(want, false)
	}

	for _, nr := range notes {
		err := c.notes(io.NewSectionReader(fh, int64(nr.off), int64(nr.end-nr.off)), nr.end-nr.off)
		var bad noteError
		if errors.As(err, &bad) {
			return nil, corrupt("%s: %v", nr.what, err)
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
	}
	sort.Slice(c.loads, func(i, j int) bool { return c.loads[i].vaddr < c.loads[j].vaddr })
	sort.SliceStable(c.files, func(i, j int) bool { return c.files[i].start < c.files[j].start })
	if c.pid == 0 && len(c.threads) > 0 {
		c.pid = c.threads[0].TID
	}
	return c, nil
}

const (
	ntPrstatus = 1
	ntPrpsinfo = 3
	ntAuxv     = 6
	ntFile     = 0x46494c45
	atExecfn   = 31
	// x86-64 elf_prstatus: pr_reg (user_regs_struct, 27 registers) is
	// 112 bytes in.
	prRegOff   = 112
	prRegCount = 27
)

// noteError: a note's sizes do not fit its segment, or its contents are
// inconsistent.
type noteError string

func (e noteError) Error() string { return string(e) }

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// notes reads a PT_NOTE segment of size bytes from r, one note at a time:
// it reads only the notes krait uses, and of each only what it uses.
func (c *Core) notes(r io.Reader, size uint64) error {
	br := bufio.NewReaderSize(r, 64<<10)
	skip := func(n uint64) error {
		for n > 0 {
			k := int(min(n, 1<<30))
			if _, err := br.Discard(k); err != nil {
				return err
			}
			n -= uint64(k)
		}
		return nil
	}
	le := binary.LittleEndian
	var hdr [12]byte
	for left := size; left >= uint64(len(hdr)); {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return err
		}
		left -= uint64(len(hdr))
		namesz, descsz, typ := uint64(le.Uint32(hdr[:])), uint64(le.Uint32(hdr[4:])), le.Uint32(hdr[8:])
		name := min(align4(namesz), left) // a last, empty note may go unpadded
		if namesz > left || descsz > left-name {
			return noteError(fmt.Sprintf("a note of type 0x%x claims %d+%d bytes, more than the %d left in its segment", typ, name, descsz, left))
		}
		if err := skip(name); err != nil {
			return err
		}
		left -= name
		keep := uint64(0)
		switch typ {
		case ntPrstatus:
			keep = min(descsz, prRegOff+8*prRegCount)
		case ntPrpsinfo:
			keep = min(descsz, 136)
		case ntAuxv:
			keep = min(descsz, 64<<10)
		case ntFile:
			if descsz > maxFileNote {
				return noteError(fmt.Sprintf("its NT_FILE note has %d bytes (krait reads at most %d)", descsz, maxFileNote))
			}
			keep = descsz
		}
		if keep > 0 {
			desc := make([]byte, keep)
			if _, err := io.ReadFull(br, desc); err != nil {
				return err
			}
			if err := c.note(typ, desc); err != nil {
				return err
			}
		}
		pad := min(align4(descsz), left) // the last note may go unpadded
		if err := skip(pad - keep); err != nil {
			return err
		}
		left -= pad
	}
	return nil
}

// note takes what krait uses from one note's contents.
func (c *Core) note(typ uint32, desc []byte) error {
	le := binary.LittleEndian
	switch typ {
	case ntPrstatus:
		if len(desc) >= 36 {
			// elf_prstatus: siginfo (12), cursig (2+2), sigpend,
			// sighold (8+8), then pr_pid.
			tid := int(int32(le.Uint32(desc[32:])))
			c.threads = append(c.threads, target.Thread{TID: tid, State: '?'})
			if len(desc) >= prRegOff+8*prRegCount {
				regs := make([]uint64, prRegCount)
				for i := range regs {
					regs[i] = le.Uint64(desc[prRegOff+8*i:])
				}
				if c.regs == nil {
					c.regs = map[int][]uint64{}
				}
				c.regs[tid] = regs
			}
		}
	case ntPrpsinfo:
		if len(desc) >= 136 {
			c.pid = int(int32(le.Uint32(desc[24:])))
			c.fname = cstr(desc[40:56])
			c.psargs = cstr(desc[56:136])
		}
	case ntAuxv:
		for i := 0; i+16 <= len(desc); i += 16 {
			if le.Uint64(desc[i:]) == atExecfn {
				c.execfn = le.Uint64(desc[i+8:])
			}
		}
	case ntFile:
		// count, page size, count × (start, end, file offset in pages),
		// then count NUL-terminated paths.
		if len(desc) < 16 {
			return noteError(fmt.Sprintf("its NT_FILE note has only %d bytes", len(desc)))
		}
		n, page := le.Uint64(desc), le.Uint64(desc[8:])
		if n > uint64(len(desc)-16)/24 {
			return noteError(fmt.Sprintf("its NT_FILE note lists %d files in %d bytes", n, len(desc)))
		}
		names := desc[16+n*24:]
		for i := uint64(0); i < n; i++ {
			e := desc[16+i*24:]
			start, end, off := le.Uint64(e), le.Uint64(e[8:]), le.Uint64(e[16:])
			if len(names) == 0 {
				return noteError(fmt.Sprintf("its NT_FILE note names %d of its %d files", i, n))
			}
			name := names
			if j := bytes.IndexByte(names, 0); j >= 0 {
				name, names = names[:j], names[j+1:]
			} else {
				names = nil
			}
			if start >= end {
				return noteError(fmt.Sprintf("its NT_FILE note maps %s at 0x%x to 0x%x", name, start, end))
			}
			c.files = append(c.files, fileMap{start, end, off * page, string(name)})
		}
	}
	return nil
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// PID is the process id the core was taken from.
func (c *Core) PID() int { return c.pid }

// ReadAt reads memory: from the core where it holds the page, else from
// the file that was mapped there.
func (c *Core) ReadAt(p []byte, addr uint64) error {
	for done := 0; done < len(p); {
		a := addr + uint64(done)
		n, err := c.readSome(p[done:], a)
		if err != nil {
			return &target.ReadError{Addr: addr, Len: len(p), Err: err}
		}
		done += n
	}
	return nil
}

func (c *Core) readSome(p []byte, a uint64) (int, error) {
	i := sort.Search(len(c.loads), func(i int) bool { return c.loads[i].vaddr+c.loads[i].memsz > a })
	if i < len(c.loads) && c.loads[i].vaddr <= a {
		l := c.loads[i]
		rel := a - l.vaddr
		if rel < l.filesz {
			n := min(uint64(len(p)), l.filesz-rel)
			if _, err := c.f.ReadAt(p[:n], int64(l.off+rel)); err != nil {
				return 0, err
			}
			return int(n), nil
		}
		// Not dumped: a file's page, or memory never touched.
		lim := l.memsz - rel
		if fm, ok := c.fileAt(a); ok {
			n := min(uint64(len(p)), lim, fm.end-a)
			return c.readFile(p[:n], fm, a)
		}
		n := min(uint64(len(p)), lim)
		clear(p[:n])
		return int(n), nil
	}
	if fm, ok := c.fileAt(a); ok {
		n := min(uint64(len(p)), fm.end-a)
		return c.readFile(p[:n], fm, a)
	}
	return 0, target.ErrBadAddress
}

// fileAt finds the mapped file at address a (c.files is sorted by start;
// a process's mappings do not overlap).
func (c *Core) fileAt(a uint64) (fileMap, bool) {
	i := sort.Search(len(c.files), func(i int) bool { return c.files[i].start > a }) - 1
	if i >= 0 && a < c.files[i].end {
		return c.files[i], true
	}
	return fileMap{}, false
}

func (c *Core) readFile(p []byte, fm fileMap, a uint64) (int, error) {
	f, ok := c.opened[fm.path]
	if !ok {
		var err error
		if f, err = openRegular(c.hostPath(fm.path)); err != nil {
			c.opened[fm.path] = nil
			return 0, fmt.Errorf("%s (mapped in the core) is not readable here: %w", fm.path, err)
		}
		c.opened[fm.path] = f
	}
	if f == nil {
		return 0, fmt.Errorf("%s (mapped in the core) is not readable here", fm.path)
	}
	n, _ := f.ReadAt(p, int64(fm.off+(a-fm.start)))
	clear(p[n:]) // past the end of the file the page is zeros
	return len(p), nil
}

// openRegular opens a regular file: a path in a core may name a FIFO (which
// would block) or a device.
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, errors.New("not a regular file")
	}
	return f, nil
}

// hostPath is where a path the core names is on this machine: under the
// sysroot, which a path with ".." in it does not leave.
func (c *Core) hostPath(p string) string {
	if c.Sysroot == "" {
		return p
	}
	return filepath.Join(c.Sysroot, filepath.Clean("/"+p))
}

// Maps lists the mapped files and the dumped anonymous memory.
func (c *Core) Maps() ([]target.Mapping, error) {
	var out []target.Mapping
	for _, fm := range c.files {
		out = append(out, target.Mapping{Start: fm.start, End: fm.end, Offset: fm.off, Perms: "r--p", Path: fm.path})
	}
	for _, l := range c.loads {
		if _, ok := c.fileAt(l.vaddr); !ok {
			out = append(out, target.Mapping{Start: l.vaddr, End: l.vaddr + l.memsz, Perms: "rw-p"})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out, nil
}

// Registers returns a thread's general registers as the core recorded
// them, in the kernel's user_regs_struct order (x86-64).
func (c *Core) Registers(tid int) ([]uint64, bool) {
	r, ok := c.regs[tid]
	return r, ok
}

// Threads lists the threads the core recorded (their state is unknown).
func (c *Core) Threads() ([]target.Thread, error) { return c.threads, nil }

// OpenPath returns where to read a mapped file ("" is the executable).
func (c *Core) OpenPath(path string) (string, error) {
	if path == "" {
		path = c.ExeName()
	}
	p := c.hostPath(path)
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("%s (mapped in the core) is not readable here: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s (mapped in the core) is not a regular file here", path)
	}
	return p, nil
}

// ExeName is the executable's path as mapped: the file the auxiliary
// vector's AT_EXECFN names (symbolic links resolved), else the first mapped
// file (where a position-independent executable is loaded).
func (c *Core) ExeName() string {
	if c.execfn != 0 {
		buf := make([]byte, 256)
		for n := len(buf); n >= 32; n /= 2 {
			if err := c.ReadAt(buf[:n], c.execfn); err != nil {
				continue
			}
			name := cstr(buf[:n])
			if resolved, err := filepath.EvalSymlinks(c.hostPath(name)); err == nil {
				for _, fm := range c.files {
					if c.hostPath(fm.path) == resolved || fm.path == name {
						return fm.path
					}
				}
			}
			break
		}
	}
	if len(c.files) > 0 {
		return c.files[0].path
	}
	return ""
}

// Cmdline is the process's command line as the core recorded it (at most
// 80 characters, split on spaces).
func (c *Core) Cmdline() []string { return strings.Fields(c.psargs) }

// Close releases the files.
func (c *Core) Close() error {
	for _, f := range c.opened {
		if f != nil {
			f.Close()
		}
	}
	return c.f.Close()
}
