// Package binfmt is krait's knowledge of binaries: ELF symbols, sections,
// segments and build ids, and (dwarfstruct.go) C struct layouts from DWARF.
package binfmt

import (
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// Object is one ELF file as mapped into a target. It is safe for concurrent
// use: krait shares one Object among the processes it reads at once.
type Object struct {
	Path    string // path as the target names it
	Type    elf.Type
	BuildID string
	syms    map[string]uint64    // .dynsym, never written after OpenObject
	secs    map[string][2]uint64 // name → vaddr, size
	// opened is where the file can be read again: .symtab, which can be
	// large and is rarely needed, is loaded once, on the first miss, into
	// its own map.
	opened     string
	symtabOnce sync.Once
	symtab     map[string]uint64
	// Loads are the PT_LOAD segments.
	Loads []elf.ProgHeader
}

// ErrNotELF marks files that are not ELF objects krait can read.
var ErrNotELF = errors.New("not an ELF file")

// OpenObject reads the symbols (.dynsym and, when not stripped, .symtab),
// section headers and segments of an ELF file. opened is the path to open
// (for example through /proc/PID/root); path is recorded as the name.
func OpenObject(opened, path string) (o *Object, err error) {
	fh, err := openRegular(opened)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	// debug/elf checks what it reads against the file, but it was not
	// written for hostile files: a panic in it is a damaged file.
	defer func() {
		if r := recover(); r != nil {
			o, err = nil, fmt.Errorf("%s: %w (damaged: %v)", path, ErrNotELF, r)
		}
	}()
	f, err := elf.NewFile(fh)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, ErrNotELF)
	}
	if f.Class != elf.ELFCLASS64 || f.Data != elf.ELFDATA2LSB {
		return nil, fmt.Errorf("%s: only 64-bit little-endian ELF is supported", path)
	}
	size := fileSize(fh)
	o = &Object{Path: path, Type: f.Type, syms: map[string]uint64{}, secs: map[string][2]uint64{}, opened: opened}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			o.Loads = append(o.Loads, p.ProgHeader)
		}
	}
	for _, s := range f.Sections {
		o.secs[s.Name] = [2]uint64{s.Addr, s.Size}
		if s.Type == elf.SHT_NOTE && s.Name == ".note.gnu.build-id" && readable(s, size) && s.Size <= 1024 {
			if data, err := s.Data(); err == nil && len(data) > 16 {
				o.BuildID = hex.EncodeToString(data[16:])
			}
		}
	}
	if symbolsReadable(f, elf.SHT_DYNSYM, size) {
		if ds, err := f.DynamicSymbols(); err == nil {
			add(o.syms, ds)
		}
	}
	return o, nil
}

// openRegular opens a regular file, never a FIFO (which would block) or a
// device.
func openRegular(path string) (*os.File, error) {
	fh, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if fi, err := fh.Stat(); err != nil || !fi.Mode().IsRegular() {
		fh.Close()
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	return fh, nil
}

func fileSize(fh *os.File) uint64 {
	fi, err := fh.Stat()
	if err != nil {
		return 0
	}
	return uint64(fi.Size())
}

// readable: krait reads a section only if the file holds all of it, as
// stored (a compressed section's stated size could be anything).
func readable(s *elf.Section, size uint64) bool {
	return s.Flags&elf.SHF_COMPRESSED == 0 && s.Type != elf.SHT_NOBITS && s.Offset <= size && s.FileSize <= size-s.Offset
}

// symbolsReadable: the symbol table of type typ, and its string table, are
// readable, so that debug/elf reads no more than the file holds.
func symbolsReadable(f *elf.File, typ elf.SectionType, size uint64) bool {
	s := f.SectionByType(typ)
	return s != nil && readable(s, size) && int(s.Link) < len(f.Sections) && readable(f.Sections[s.Link], size)
}

func add(m map[string]uint64, syms []elf.Symbol) {
	for _, s := range syms {
		if s.Value == 0 || s.Section == elf.SHN_UNDEF {
			continue
		}
		t := elf.ST_TYPE(s.Info)
		if t != elf.STT_OBJECT && t != elf.STT_FUNC && t != elf.STT_TLS {
			continue
		}
		if _, ok := m[s.Name]; !ok {
			m[s.Name] = s.Value
		}
	}
}

// Symbol returns a symbol's link-time address, from .dynsym or, failing
// that, .symtab (when the file is not stripped).
func (o *Object) Symbol(name string) (uint64, bool) {
	if v, ok := o.syms[name]; ok {
		return v, true
	}
	o.symtabOnce.Do(func() { o.symtab = loadSymtab(o.opened) })
	v, ok := o.symtab[name]
	return v, ok
}

// loadSymtab reads a file's .symtab; a missing or damaged one is empty.
func loadSymtab(opened string) (m map[string]uint64) {
	m = map[string]uint64{}
	fh, err := openRegular(opened)
	if err != nil {
		return
	}
	defer fh.Close()
	defer func() {
		if recover() != nil { // a damaged .symtab is no .symtab
			m = map[string]uint64{}
		}
	}()
	f, err := elf.NewFile(fh)
	if err != nil || !symbolsReadable(f, elf.SHT_SYMTAB, fileSize(fh)) {
		return
	}
	if ss, err := f.Symbols(); err == nil {
		add(m, ss)
	}
	return m
}

// Section returns a section's link-time address and size.
func (o *Object) Section(name string) (addr, size uint64, ok bool) {
	s, ok := o.secs[name]
	return s[0], s[1], ok
}

// Bias computes the load bias from where the target mapped the file's
// offset-0 page: for a position-independent object the address it was
// loaded at; for a fixed-address executable 0.
func (o *Object) Bias(mapStart, mapOffset uint64) uint64 {
	if len(o.Loads) == 0 {
		return 0
	}
	for _, p := range o.Loads {
		// Find the segment containing this file offset.
		if mapOffset >= p.Off&^0xfff && mapOffset < p.Off+p.Filesz {
			return mapStart - (p.Vaddr&^0xfff + (mapOffset - p.Off&^0xfff))
		}
	}
	return mapStart - o.Loads[0].Vaddr&^0xfff
}

// WritableRanges returns the link-time ranges of writable segments (.data,
// .bss), where a running interpreter keeps its globals.
func (o *Object) WritableRanges() [][2]uint64 {
	var out [][2]uint64
	for _, p := range o.Loads {
		if p.Flags&elf.PF_W != 0 {
			out = append(out, [2]uint64{p.Vaddr, p.Vaddr + p.Memsz})
		}
	}
	return out
}
