package unwind

import (
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// Source lines and inlined functions come from a file's DWARF
// (.debug_info, .debug_line), in the file itself or its separate debug
// file, read with debug/dwarf the first time a frame of the file asks
// (dump --native): unwinding alone never reads them.

// sourceInfo is what is read of one build's DWARF: its compilation units
// by address, and per unit (read when an address in it is first asked
// for) its line table and its functions. Safe for concurrent use.
type sourceInfo struct {
	mu    sync.Mutex
	d     *dwarf.Data
	err   error
	units []pcRange // sorted by lo; off is the unit's entry
	cus   map[dwarf.Offset]*unitInfo
	names map[dwarf.Offset]string
	// cache of lookups by link-time address
	looked map[uint64][]Source
}

type pcRange struct {
	lo, hi uint64
	off    dwarf.Offset
}

type unitInfo struct {
	entry   *dwarf.Entry
	compDir string
	files   []*dwarf.LineFile
	rows    []lineRow // sorted by lo
	err     error
	// funcs are the unit's functions (DW_TAG_subprogram) read so far, in
	// the unit's order; walker reads on (nil at the unit's end), depth
	// namespaces deep.
	funcs  []pcRange
	walker *dwarf.Reader
	depth  int
}

type lineRow struct {
	lo, hi uint64
	file   *dwarf.LineFile
	line   int
}

// Source is one function a PC is in, from DWARF (a lookup lists the
// innermost inlined function first, the function the frame runs last).
type Source struct {
	Function string // DWARF's name of it; "" if none
	File     string // the source file, as the build named it (cleaned)
	Line     int
	CompDir  string // the compilation directory of the unit
	Inlined  bool
}

// sources caches sourceInfo by build id: the same build mapped under two
// paths (a container's root and the host's) is read once.
var sources = struct {
	sync.Mutex
	m map[string]*sourceInfo
}{m: map[string]*sourceInfo{}}

// source returns the object's DWARF reader, reading it on first use.
func (o *object) source() *sourceInfo {
	o.srcOnce.Do(func() {
		if o.buildID != "" {
			sources.Lock()
			s, ok := sources.m[o.buildID]
			if !ok {
				s = &sourceInfo{}
				sources.m[o.buildID] = s
			}
			sources.Unlock()
			o.src = s
		} else {
			o.src = &sourceInfo{}
		}
		o.src.mu.Lock()
		defer o.src.mu.Unlock()
		if o.src.d == nil { // not read, or not found in another file of this build
			o.src.load(o)
		}
	})
	return o.src
}

// errNoDWARF: neither the file nor its debug file has DWARF.
var errNoDWARF = errors.New("no DWARF")

// load reads the DWARF sections of the object (or its debug file) and the
// address ranges of its compilation units.
func (s *sourceInfo) load(o *object) {
	// The sections are the file's pages, mapped: a file cut short while
	// mapped faults, which this makes a panic recovered here.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			s.d, s.err = nil, fmt.Errorf("%s: damaged DWARF (%v)", o.path, r)
		}
	}()
	s.cus = map[dwarf.Offset]*unitInfo{}
	s.names = map[dwarf.Offset]string{}
	s.looked = map[uint64][]Source{}
	s.err = errNoDWARF
	for _, p := range []string{o.opened, o.debugFile} {
		if p == "" {
			continue
		}
		d, err := readDWARF(p)
		if err != nil {
			if err != errNoDWARF {
				s.err = fmt.Errorf("%s: %w", p, err)
			}
			continue
		}
		s.d, s.err = d, nil
		break
	}
	if s.d == nil {
		return
	}
	r := s.d.Reader()
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag == dwarf.TagCompileUnit || e.Tag == dwarf.TagPartialUnit {
			if rs, err := s.d.Ranges(e); err == nil {
				for _, rg := range rs {
					if rg[0] < rg[1] {
						s.units = append(s.units, pcRange{rg[0], rg[1], e.Offset})
					}
				}
			}
		}
		r.SkipChildren()
	}
	sort.Slice(s.units, func(i, j int) bool { return s.units[i].lo < s.units[j].lo })
}

// readDWARF reads the sections of the ELF file at path that line and
// function lookups need (not the location lists, the largest). Sections
// stored as they are are the file's pages mapped read-only (the kernel's
// page cache, nothing copied: libpython's DWARF is 20 MB); compressed ones
// are decompressed.
func readDWARF(path string) (*dwarf.Data, error) {
	f, closer, err := openELF(path)
	if err != nil {
		return nil, err
	}
	defer closer()
	info := f.Section(".debug_info")
	if info == nil || info.Type == elf.SHT_NOBITS || info.Size == 0 {
		return nil, errNoDWARF
	}
	mapped, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	sec := func(name string) ([]byte, error) {
		s := f.Section(name)
		if s == nil || s.Type == elf.SHT_NOBITS {
			return nil, nil
		}
		if s.Flags&elf.SHF_COMPRESSED == 0 && s.Offset <= uint64(len(mapped)) && s.Size <= uint64(len(mapped))-s.Offset {
			return mapped[s.Offset : s.Offset+s.Size : s.Offset+s.Size], nil
		}
		return s.Data() // decompresses a compressed section
	}
	// Compressed sections are decompressed side by side.
	names := []string{".debug_info", ".debug_abbrev", ".debug_line", ".debug_ranges", ".debug_str", ".debug_aranges",
		".debug_addr", ".debug_line_str", ".debug_str_offsets", ".debug_rnglists"}
	b := make([][]byte, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
			defer func() {
				if r := recover(); r != nil {
					errs[i] = fmt.Errorf("%s: damaged (%v)", name, r)
				}
			}()
			if b[i], errs[i] = sec(name); errs[i] != nil {
				errs[i] = fmt.Errorf("%s: %w", name, errs[i])
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	d, err := dwarf.New(b[1], b[5], nil, b[0], b[2], nil, b[3], b[4])
	if err != nil {
		return nil, err
	}
	for i := 6; i < len(names); i++ {
		if b[i] != nil {
			if err := d.AddSection(names[i], b[i]); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}

// mapFile maps a file read-only, for as long as krait runs (what is read
// of a build is cached as long).
func mapFile(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() <= 0 || fi.Size() != int64(int(fi.Size())) {
		return nil, fmt.Errorf("%s: cannot map %d bytes", path, fi.Size())
	}
	return syscall.Mmap(int(fh.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_PRIVATE)
}

// lookup returns the functions link-time address a is in, innermost
// first, with their source lines: the inlined functions (Inlined), then
// the function itself. nil when the file has no line for a.
func (s *sourceInfo) lookup(a uint64) []Source {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.d == nil {
		return nil
	}
	if src, ok := s.looked[a]; ok {
		return src
	}
	var src []Source
	func() {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			if r := recover(); r != nil {
				src = nil // a damaged unit: no source for a
			}
		}()
		src = s.find(a)
	}()
	s.looked[a] = src
	return src
}

func (s *sourceInfo) find(a uint64) []Source {
	// Units' ranges do not overlap: the one starting last at or before a
	// is the only one that may hold it.
	i := sort.Search(len(s.units), func(i int) bool { return s.units[i].lo > a }) - 1
	if i < 0 || a >= s.units[i].hi {
		return nil
	}
	u := s.unit(s.units[i].off)
	if u == nil || u.err != nil {
		return nil
	}
	j := sort.Search(len(u.rows), func(j int) bool { return u.rows[j].lo > a }) - 1
	if j < 0 || a >= u.rows[j].hi || u.rows[j].file == nil {
		return nil
	}
	row := u.rows[j]
	here := Source{File: filepath.Clean(row.file.Name), Line: row.line, CompDir: u.compDir}
	// The chain of inlined calls a is in, outermost first.
	fn, chain := s.inlineChain(u, a)
	out := make([]Source, 0, len(chain)+1)
	for k := len(chain) - 1; k >= 0; k-- {
		e := chain[k]
		here.Function, here.Inlined = s.name(e), true
		out = append(out, here)
		// Its caller is at the call's line.
		here = Source{CompDir: u.compDir}
		if n, ok := e.Val(dwarf.AttrCallFile).(int64); ok && n >= 0 && n < int64(len(u.files)) && u.files[n] != nil {
			here.File = filepath.Clean(u.files[n].Name)
		}
		if n, ok := e.Val(dwarf.AttrCallLine).(int64); ok {
			here.Line = int(n)
		}
	}
	if fn != nil {
		here.Function = s.name(fn)
	}
	return append(out, here)
}

// unit reads a compilation unit's line table and function ranges.
func (s *sourceInfo) unit(off dwarf.Offset) *unitInfo {
	if u, ok := s.cus[off]; ok {
		return u
	}
	u := &unitInfo{}
	s.cus[off] = u
	r := s.d.Reader()
	r.Seek(off)
	e, err := r.Next()
	if err != nil || e == nil {
		u.err = fmt.Errorf("unit at 0x%x: %v", off, err)
		return u
	}
	u.entry = e
	u.compDir, _ = e.Val(dwarf.AttrCompDir).(string)
	lr, err := s.d.LineReader(e)
	if err != nil || lr == nil {
		u.err = fmt.Errorf("line table of unit at 0x%x: %v", off, err)
		return u
	}
	var prev dwarf.LineEntry
	have := false
	for {
		var le dwarf.LineEntry
		if err := lr.Next(&le); err != nil {
			break
		}
		// A row covers from its address to the next row's, within one
		// sequence; a row followed by one at the same address covers
		// nothing (the later one holds).
		if have && le.Address > prev.Address {
			u.rows = append(u.rows, lineRow{prev.Address, le.Address, prev.File, prev.Line})
		}
		prev, have = le, !le.EndSequence
	}
	u.files = lr.Files()
	// DWARF 5 names files relative to the compilation directory.
	for _, f := range u.files {
		if f != nil && !filepath.IsAbs(f.Name) && u.compDir != "" {
			f.Name = filepath.Join(u.compDir, f.Name)
		}
	}
	sort.SliceStable(u.rows, func(i, j int) bool { return u.rows[i].lo < u.rows[j].lo })
	// Its functions are indexed as lookups ask for them (funcAt).
	if e.Children {
		u.walker = r
	}
	return u
}

// funcAt finds the unit's function (DW_TAG_subprogram, at the unit's top
// level or in a namespace) whose ranges hold address a. The unit's
// entries are read as far as needed and no further, once: most of them
// are types and declarations.
func (s *sourceInfo) funcAt(u *unitInfo, a uint64) (dwarf.Offset, bool) {
	for _, f := range u.funcs {
		if f.lo <= a && a < f.hi {
			return f.off, true
		}
	}
	for u.walker != nil {
		e, err := u.walker.Next()
		if err != nil || e == nil {
			u.walker = nil
			break
		}
		if e.Tag == 0 {
			if u.depth == 0 {
				u.walker = nil
				break
			}
			u.depth--
			continue
		}
		found := false
		switch e.Tag {
		case dwarf.TagSubprogram:
			if rs, err := s.d.Ranges(e); err == nil {
				for _, rg := range rs {
					if rg[0] < rg[1] {
						u.funcs = append(u.funcs, pcRange{rg[0], rg[1], e.Offset})
						found = found || rg[0] <= a && a < rg[1]
					}
				}
			}
		case dwarf.TagNamespace, dwarf.TagModule:
			if e.Children && u.depth < 16 {
				u.depth++
				continue
			}
		}
		if e.Children {
			u.walker.SkipChildren()
		}
		if found {
			return e.Offset, true
		}
	}
	return 0, false
}

// inlineChain finds the unit's function holding address a and lists the
// inlined subroutines a is in, outermost first.
func (s *sourceInfo) inlineChain(u *unitInfo, a uint64) (*dwarf.Entry, []*dwarf.Entry) {
	off, ok := s.funcAt(u, a)
	if !ok {
		return nil, nil
	}
	r := s.d.Reader()
	r.Seek(off)
	fn, err := r.Next()
	if err != nil || fn == nil {
		return nil, nil
	}
	if !fn.Children {
		return fn, nil
	}
	var chain []*dwarf.Entry
	// Descend through the children that hold a (lexical blocks and
	// inlined subroutines), skipping the others' subtrees.
	for depth := 0; depth < 256; {
		e, err := r.Next()
		if err != nil || e == nil || e.Tag == 0 {
			break
		}
		if e.Tag == dwarf.TagInlinedSubroutine || e.Tag == dwarf.TagLexDwarfBlock {
			if rs, err := s.d.Ranges(e); err == nil && inRanges(rs, a) {
				if e.Tag == dwarf.TagInlinedSubroutine {
					chain = append(chain, e)
				}
				if !e.Children {
					break
				}
				depth++
				continue // its children are next
			}
		}
		if e.Children {
			r.SkipChildren()
		}
	}
	return fn, chain
}

func inRanges(rs [][2]uint64, a uint64) bool {
	for _, r := range rs {
		if r[0] <= a && a < r[1] {
			return true
		}
	}
	return false
}

// name is the source name of a function's entry: its linkage name
// demangled, else its name, following the abstract instance and the
// declaration it stands for.
func (s *sourceInfo) name(e *dwarf.Entry) string {
	off := e.Offset
	if n, ok := s.names[off]; ok {
		return n
	}
	n := ""
	r := s.d.Reader()
	for i := 0; i < 8 && e != nil; i++ {
		if ln, ok := e.Val(dwarf.AttrLinkageName).(string); ok && ln != "" {
			n = Demangle(ln)
			break
		}
		if nm, ok := e.Val(dwarf.AttrName).(string); ok && nm != "" {
			n = nm
			break
		}
		ref, ok := e.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
		if !ok {
			if ref, ok = e.Val(dwarf.AttrSpecification).(dwarf.Offset); !ok {
				break
			}
		}
		r.Seek(ref)
		next, err := r.Next()
		if err != nil {
			break
		}
		e = next
	}
	s.names[off] = n
	return n
}

// ShortFile is a source file relative to the directory it was compiled
// in, as people name it (Modules/timemodule.c); the file as it is when it
// lies outside that directory.
func (s Source) ShortFile() string {
	return ShortFile(s.File, s.CompDir)
}

// ShortFile is file relative to the compilation directory dir when it is
// inside it.
func ShortFile(file, dir string) string {
	if dir == "" || !filepath.IsAbs(file) {
		return file
	}
	if rel, err := filepath.Rel(filepath.Clean(dir), file); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return file
}
