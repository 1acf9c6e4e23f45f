package unwind

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/go-delve/delve/pkg/dwarf/frame"
	"github.com/ianlancetaylor/demangle"
)

// object is what the unwinder knows of one mapped ELF file: its call-frame
// information and its function symbols, both at link-time addresses.
type object struct {
	path    string // as the target names it
	buildID string
	fdes    frame.FrameDescriptionEntries
	// debugFrames are .debug_frame sections, parsed only when .eh_frame
	// does not cover a PC (most code is in both).
	debugFrames [][]byte
	debugOnce   sync.Once
	funcs       []symbol // sorted by start
	// debugFile is the separate debug file used, if any.
	debugFile string
	loads     []elf.ProgHeader
	err       error // why the file could not be read at all
	// opened is where the file was opened on this machine.
	opened string
	// src: its DWARF, for source lines and inlined functions, read on
	// first use.
	srcOnce sync.Once
	src     *sourceInfo
}

type symbol struct {
	start, size uint64
	name        string
	global      bool
}

// DebugRoot is where separate debug files are looked up by build id
// (DebugRoot/.build-id/xx/yyyy.debug) and by path: /usr/lib/debug, or
// $KRAIT_DEBUG_ROOT (as gdb's debug-file-directory).
var DebugRoot = debugRoot()

func debugRoot() string {
	if d := os.Getenv("KRAIT_DEBUG_ROOT"); d != "" {
		return d
	}
	return "/usr/lib/debug"
}

// objects caches what was read of each file, by its identity on disk
// (device, inode, size, modification time), for every process krait reads
// in one run: gunicorn's and Apache's workers share their libpython, libc
// and extension modules.
var objects = struct {
	sync.Mutex
	m map[string]*object
}{m: map[string]*object{}}

// cachedObject is openObject, once per file.
func cachedObject(opened, path string, find func(string) (string, error)) *object {
	fi, err := os.Stat(opened)
	if err != nil {
		return &object{path: path, err: err}
	}
	key := fmt.Sprintf("%d:%d:%d", fi.Size(), fi.ModTime().UnixNano(), inode(fi))
	objects.Lock()
	defer objects.Unlock()
	if o, ok := objects.m[key]; ok && o.path == path {
		return o
	}
	o := openObject(opened, path, find)
	objects.m[key] = o
	return o
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino ^ st.Dev<<48
	}
	return 0
}

// openObject reads the CFI and symbols of the ELF file at opened (the
// path to open on this machine) and, where the file is stripped, of its
// separate debug file found by build id.
//
// find, if set, says where a path of the target's file system is on this
// machine (through its root, or under a core's sysroot): debug files are
// looked for there first.
func openObject(opened, path string, find func(string) (string, error)) *object {
	o := &object{path: path, opened: opened}
	f, closer, err := openELF(opened)
	if err != nil {
		o.err = err
		return o
	}
	defer closer()
	defer func() {
		// debug/elf and the CFI parser were not written for hostile
		// files: a panic in them is a damaged file.
		if r := recover(); r != nil {
			o.err = fmt.Errorf("%s: damaged ELF file (%v)", path, r)
		}
	}()
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			o.loads = append(o.loads, p.ProgHeader)
		}
	}
	if s := f.Section(".note.gnu.build-id"); s != nil && s.Type == elf.SHT_NOTE && s.Size <= 1024 {
		if data, err := s.Data(); err == nil && len(data) > 16 {
			o.buildID = hex.EncodeToString(data[16:])
		}
	}
	o.addCFI(f)
	o.addSymbols(f)
	if f.Section(".symtab") == nil || f.Section(".debug_frame") == nil {
		if dbg := o.findDebugFile(f, opened, find); dbg != "" {
			if df, dcloser, err := openELF(dbg); err == nil {
				func() {
					defer dcloser()
					defer func() { _ = recover() }()
					o.debugFile = dbg
					if len(o.funcs) == 0 || f.Section(".symtab") == nil {
						o.addSymbols(df)
					}
					o.addDebugFrame(df)
				}()
			}
		}
	}
	sort.Slice(o.funcs, func(i, j int) bool { return o.funcs[i].start < o.funcs[j].start })
	return o
}

func openELF(path string) (*elf.File, func(), error) {
	fh, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	if fi, err := fh.Stat(); err != nil || !fi.Mode().IsRegular() {
		fh.Close()
		return nil, nil, fmt.Errorf("%s: not a regular file", path)
	}
	f, err := elf.NewFile(fh)
	if err != nil {
		fh.Close()
		return nil, nil, fmt.Errorf("%s: not an ELF file", path)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		fh.Close()
		return nil, nil, fmt.Errorf("%s: only x86-64 ELF files are unwound", path)
	}
	return f, func() { fh.Close() }, nil
}

// findDebugFile looks for the separate debug file of f: by build id, then
// by .gnu_debuglink next to the file and under DebugRoot: in the target's
// file system (find), else on this machine.
func (o *object) findDebugFile(f *elf.File, opened string, find func(string) (string, error)) string {
	regular := func(p string) bool {
		fi, err := os.Stat(p)
		return err == nil && fi.Mode().IsRegular()
	}
	lookup := func(p string) string {
		if find != nil {
			if h, err := find(p); err == nil && regular(h) {
				return h
			}
		}
		if regular(p) {
			return p
		}
		return ""
	}
	if len(o.buildID) > 2 {
		if p := lookup(filepath.Join(DebugRoot, ".build-id", o.buildID[:2], o.buildID[2:]+".debug")); p != "" {
			return p
		}
	}
	if s := f.Section(".gnu_debuglink"); s != nil {
		if data, err := s.Data(); err == nil {
			if i := bytes.IndexByte(data, 0); i > 0 {
				name := string(data[:i])
				dir := filepath.Dir(o.path)
				for _, p := range []string{
					filepath.Join(dir, ".debug", name),
					filepath.Join(DebugRoot, dir, name),
				} {
					if h := lookup(p); h != "" && filepath.Clean(h) != filepath.Clean(opened) {
						return h
					}
				}
			}
		}
	}
	return ""
}

// addCFI reads .eh_frame and .debug_frame.
func (o *object) addCFI(f *elf.File) {
	if s := f.Section(".eh_frame"); s != nil && s.Type != elf.SHT_NOBITS {
		if data, err := s.Data(); err == nil && len(data) > 0 {
			data = trimTerminator(data)
			if fdes, err := parseCFI(data, s.Addr); err == nil {
				o.fdes = o.fdes.Append(fdes)
			}
		}
	}
	o.addDebugFrame(f)
}

func (o *object) addDebugFrame(f *elf.File) {
	s := f.Section(".debug_frame")
	if s == nil || s.Type == elf.SHT_NOBITS {
		return
	}
	data, err := s.Data() // decompresses a compressed section
	if err != nil || len(data) == 0 {
		return
	}
	o.debugFrames = append(o.debugFrames, data)
}

// fde finds the FDE covering link-time address pc: in .eh_frame, else in
// .debug_frame.
func (o *object) fde(pc uint64) (*frame.FrameDescriptionEntry, error) {
	fde, err := o.fdes.FDEForPC(pc)
	if err == nil || len(o.debugFrames) == 0 {
		return fde, err
	}
	o.debugOnce.Do(func() {
		for _, data := range o.debugFrames {
			if fdes, err := parseCFI(data, 0); err == nil {
				o.fdes = o.fdes.Append(fdes)
			}
		}
		o.debugFrames = nil
	})
	return o.fdes.FDEForPC(pc)
}

// parseCFI parses a CFI section at link-time addresses (ehFrameAddr is
// the section's address for .eh_frame, 0 for .debug_frame).
func parseCFI(data []byte, ehFrameAddr uint64) (fdes frame.FrameDescriptionEntries, err error) {
	defer func() {
		if r := recover(); r != nil {
			fdes, err = nil, fmt.Errorf("damaged call-frame information (%v)", r)
		}
	}()
	return frame.Parse(data, binary.LittleEndian, 0, 8, ehFrameAddr)
}

// trimTerminator cuts .eh_frame at its zero terminator (a length of 0),
// after which linkers may leave padding.
func trimTerminator(data []byte) []byte {
	for off := 0; off+4 <= len(data); {
		n := binary.LittleEndian.Uint32(data[off:])
		if n == 0 {
			return data[:off]
		}
		if n == 0xffffffff {
			if off+12 > len(data) {
				return data[:off]
			}
			l := binary.LittleEndian.Uint64(data[off+4:])
			if l > uint64(len(data)) {
				return data[:off]
			}
			off += 12 + int(l)
			continue
		}
		if uint64(off)+4+uint64(n) > uint64(len(data)) {
			return data[:off]
		}
		off += 4 + int(n)
	}
	return data
}

// addSymbols adds the function symbols of .symtab and .dynsym. Of the
// names one address has (glibc's poll, __poll, __GI___poll, __libc_poll),
// the one people call is kept: a global before a local, fewest leading
// underscores, then the shortest.
func (o *object) addSymbols(f *elf.File) {
	add := func(syms []elf.Symbol) {
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Value == 0 || s.Section == elf.SHN_UNDEF {
				continue
			}
			o.funcs = append(o.funcs, symbol{s.Value, s.Size, s.Name, elf.ST_BIND(s.Info) != elf.STB_LOCAL})
		}
	}
	if ss, err := f.Symbols(); err == nil {
		add(ss)
	}
	if ds, err := f.DynamicSymbols(); err == nil {
		add(ds)
	}
	// One symbol per address: the best name, the size of any.
	sort.Slice(o.funcs, func(i, j int) bool { return o.funcs[i].start < o.funcs[j].start })
	out := o.funcs[:0]
	for _, sym := range o.funcs {
		if n := len(out); n > 0 && out[n-1].start == sym.start {
			if better(sym, out[n-1]) {
				if sym.size == 0 {
					sym.size = out[n-1].size
				}
				out[n-1] = sym
			} else if out[n-1].size == 0 {
				out[n-1].size = sym.size
			}
			continue
		}
		out = append(out, sym)
	}
	o.funcs = out
}

// better says whether a is a better name than b for the same address.
func better(a, b symbol) bool {
	if a.global != b.global {
		return a.global
	}
	ua, ub := len(a.name)-len(strings.TrimLeft(a.name, "_")), len(b.name)-len(strings.TrimLeft(b.name, "_"))
	if ua != ub {
		return ua < ub
	}
	return len(a.name) < len(b.name)
}

// symbolize names the function at link-time address a, with a's offset
// in it.
func (o *object) symbolize(a uint64) (string, uint64, bool) {
	i := sort.Search(len(o.funcs), func(i int) bool { return o.funcs[i].start > a }) - 1
	for ; i >= 0; i-- {
		s := o.funcs[i]
		if a >= s.start && (a < s.start+s.size || s.size == 0 && a-s.start < 1<<16) {
			return Demangle(s.name), a - s.start, true
		}
		if s.size != 0 {
			// A sized symbol before a that does not cover it: a lies in
			// code no symbol names (unless an enclosing one starts
			// earlier, which functions do not).
			break
		}
	}
	return "", 0, false
}

// Demangle turns a C++ or Rust symbol into its source name; others are
// returned as they are.
func Demangle(name string) string {
	if strings.HasPrefix(name, "_Z") || strings.HasPrefix(name, "_R") {
		if d, err := demangle.ToString(name, demangle.NoParams, demangle.NoTemplateParams); err == nil {
			return d
		}
	}
	return name
}

// bias is the load bias of the object mapped with file offset off at
// start.
func (o *object) bias(start, off uint64) uint64 {
	for _, p := range o.loads {
		if off >= p.Off&^0xfff && off < p.Off+p.Filesz {
			return start - (p.Vaddr&^0xfff + (off - p.Off&^0xfff))
		}
	}
	if len(o.loads) > 0 {
		return start - o.loads[0].Vaddr&^0xfff
	}
	return start - off
}
