// Package unwind walks a paused thread's native stack a few frames up,
// by the call frame information (.eh_frame) of the binaries the thread
// runs, parsed with Delve's pkg/dwarf/frame. It knows where each frame's
// function begins and ends (its FDE) and, where the binary names it, the
// function's name; it reads nothing but the stack. x86-64 only.
package unwind

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/go-delve/delve/pkg/dwarf/frame"

	"krait/internal/target"
)

// Regs are the registers a walk starts from (x86-64).
type Regs struct {
	PC, SP, BP, BX, R12, R13, R14, R15 uint64
}

// Frame is one frame of a walk.
type Frame struct {
	PC     uint64 // the frame's instruction pointer (a return address above frame 0)
	Object string // the binary it is in, as the target names it ("" unknown)
	Start  uint64 // its function's first address (from the FDE; 0 unknown)
	End    uint64 // and one past its last
	Func   string // its name from the binary's symbols ("" unknown)
}

// Memory reads the target's memory.
type Memory func(addr uint64, n int) ([]byte, error)

// Objects finds and caches the binaries of one process.
type Objects struct {
	maps  []target.Mapping
	open  func(path string) (string, error) // the path krait opens for a target path
	cache map[string]*object
}

// NewObjects serves walks in a process whose mappings are maps; open
// turns a path the target names into one krait can open.
func NewObjects(maps []target.Mapping, open func(path string) (string, error)) *Objects {
	return &Objects{maps: maps, open: open, cache: map[string]*object{}}
}

type symbol struct {
	start, end uint64
	name       string
}

type object struct {
	path string
	bias uint64
	fdes frame.FrameDescriptionEntries // link-time addresses, sorted
	syms []symbol                      // functions, sorted by start
	err  error
}

// DWARF register numbers (x86-64 psABI).
const (
	regBX                          = 3
	regBP                          = 6
	regSP                          = 7
	regR12, regR13, regR14, regR15 = 12, 13, 14, 15
	regRA                          = 16
)

// Walk unwinds at most max frames from r. It stops early (without error)
// where the CFI ends (the outermost frame) and returns the frames found
// with an error where a frame cannot be unwound.
func (o *Objects) Walk(mem Memory, r Regs, max int) ([]Frame, error) {
	var out []Frame
	regs := map[uint64]uint64{regSP: r.SP, regBP: r.BP, regBX: r.BX, regR12: r.R12, regR13: r.R13, regR14: r.R14, regR15: r.R15}
	pc := r.PC
	for i := 0; i < max; i++ {
		look := pc
		if i > 0 {
			look = pc - 1 // a return address may be one past the call's function
		}
		f := Frame{PC: pc}
		obj := o.objectAt(look)
		if obj == nil {
			out = append(out, f)
			return out, fmt.Errorf("pc %#x is in no mapped binary", pc)
		}
		f.Object = obj.path
		if obj.err != nil {
			out = append(out, f)
			return out, obj.err
		}
		fde, err := obj.fdes.FDEForPC(look - obj.bias)
		if err != nil {
			out = append(out, f)
			return out, fmt.Errorf("%s: no call frame information for %#x", obj.path, look-obj.bias)
		}
		f.Start, f.End = fde.Begin()+obj.bias, fde.End()+obj.bias
		f.Func = obj.name(look - obj.bias)
		out = append(out, f)
		if i == max-1 {
			break
		}
		ctx, err := fde.EstablishFrame(look - obj.bias)
		if err != nil {
			return out, err
		}
		if ctx.CFA.Rule != frame.RuleCFA {
			return out, fmt.Errorf("%s: frame at %#x: CFA rule %d not supported", obj.path, pc, ctx.CFA.Rule)
		}
		base, ok := regs[ctx.CFA.Reg]
		if !ok {
			return out, fmt.Errorf("%s: frame at %#x: CFA from register %d", obj.path, pc, ctx.CFA.Reg)
		}
		cfa := uint64(int64(base) + ctx.CFA.Offset)
		next := map[uint64]uint64{regSP: cfa}
		for _, reg := range []uint64{regBX, regBP, regR12, regR13, regR14, regR15, regRA} {
			rule, ok := ctx.Regs[reg]
			switch {
			case !ok || rule.Rule == frame.RuleSameVal || rule.Rule == frame.RuleUndefined && reg != regRA:
				if v, ok := regs[reg]; ok && reg != regRA {
					next[reg] = v
				}
			case rule.Rule == frame.RuleOffset:
				b, err := mem(uint64(int64(cfa)+rule.Offset), 8)
				if err != nil {
					return out, fmt.Errorf("read the saved register %d of the frame at %#x: %w", reg, pc, err)
				}
				next[reg] = binary.LittleEndian.Uint64(b)
			case rule.Rule == frame.RuleValOffset:
				next[reg] = uint64(int64(cfa) + rule.Offset)
			case rule.Rule == frame.RuleRegister:
				if v, ok := regs[rule.Reg]; ok {
					next[reg] = v
				}
			case reg == regRA && rule.Rule == frame.RuleUndefined:
				return out, nil // the outermost frame
			default:
				if reg == regRA {
					return out, fmt.Errorf("%s: frame at %#x: return address rule %d not supported", obj.path, pc, rule.Rule)
				}
				// a callee-saved register the walk cannot recover: later
				// frames that need it fail on their own
			}
		}
		ra, ok := next[regRA]
		if !ok || ra == 0 {
			return out, nil
		}
		delete(next, regRA)
		regs, pc = next, ra
	}
	return out, nil
}

// Remap gives the walks the process's mappings as they are now; binaries
// read already stay cached (the same path mapped again is the same file).
func (o *Objects) Remap(maps []target.Mapping) { o.maps = maps }

// Load reads, ahead of a walk, every binary mapped executable whose path
// satisfies want (reading .eh_frame takes milliseconds, better spent
// before a pause than during it). It returns the first error.
func (o *Objects) Load(want func(path string) bool) error {
	var first error
	for _, m := range o.maps {
		if strings.Contains(m.Perms, "x") && want(m.Path) {
			if obj := o.objectAt(m.Start); obj != nil && obj.err != nil && first == nil {
				first = obj.err
			}
		}
	}
	return first
}

// objectAt returns the binary mapped executable at pc (nil: none).
func (o *Objects) objectAt(pc uint64) *object {
	for _, m := range o.maps {
		if pc < m.Start || pc >= m.End || !strings.Contains(m.Perms, "x") || !strings.HasPrefix(m.Path, "/") {
			continue
		}
		if obj, ok := o.cache[m.Path]; ok {
			return obj
		}
		obj := &object{path: m.Path}
		o.cache[m.Path] = obj
		opened, err := o.open(m.Path)
		if err == nil {
			err = obj.load(opened, m)
		}
		obj.err = err
		return obj
	}
	return nil
}

// load reads the binary's .eh_frame and function symbols and its load
// bias from the mapping m.
func (obj *object) load(opened string, m target.Mapping) (err error) {
	fh, err := os.Open(opened)
	if err != nil {
		return err
	}
	defer fh.Close()
	defer func() {
		if r := recover(); r != nil { // a damaged file
			err = fmt.Errorf("%s: damaged ELF file: %v", obj.path, r)
		}
	}()
	f, err := elf.NewFile(fh)
	if err != nil {
		return fmt.Errorf("%s: %w", obj.path, err)
	}
	bias, ok := biasOf(f, m)
	if !ok {
		return fmt.Errorf("%s: mapping at %#x matches no segment", obj.path, m.Start)
	}
	obj.bias = bias
	sec := f.Section(".eh_frame")
	if sec == nil {
		return fmt.Errorf("%s: no .eh_frame", obj.path)
	}
	data, err := sec.Data()
	if err != nil {
		return fmt.Errorf("%s: .eh_frame: %w", obj.path, err)
	}
	fdes, err := frame.Parse(data, binary.LittleEndian, 0, 8, sec.Addr)
	if err != nil {
		return fmt.Errorf("%s: .eh_frame: %w", obj.path, err)
	}
	sort.Slice(fdes, func(i, j int) bool { return fdes[i].Begin() < fdes[j].Begin() })
	obj.fdes = fdes
	for _, get := range []func() ([]elf.Symbol, error){f.DynamicSymbols, f.Symbols} {
		syms, err := get()
		if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
			continue
		}
		for _, s := range syms {
			if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 && s.Size > 0 {
				obj.syms = append(obj.syms, symbol{s.Value, s.Value + s.Size, s.Name})
			}
		}
	}
	sort.Slice(obj.syms, func(i, j int) bool { return obj.syms[i].start < obj.syms[j].start })
	return nil
}

// name returns the function symbol covering link-time address a.
func (obj *object) name(a uint64) string {
	i := sort.Search(len(obj.syms), func(i int) bool { return obj.syms[i].start > a })
	for j := i - 1; j >= 0 && j >= i-8; j-- { // nested or aliased symbols
		if s := obj.syms[j]; s.start <= a && a < s.end {
			return s.name
		}
	}
	return ""
}

// biasOf is the load bias of f mapped as m: the segment holding m's file
// offset, loaded at m.Start.
func biasOf(f *elf.File, m target.Mapping) (uint64, bool) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		pageOff := p.Off &^ 0xfff
		if m.Offset >= pageOff && m.Offset < p.Off+p.Filesz {
			return m.Start - (p.Vaddr&^0xfff + (m.Offset - pageOff)), true
		}
	}
	return 0, false
}

// Covers says whether the frame's function is the one starting at start.
func (f Frame) Covers(start uint64) bool { return f.Start != 0 && f.Start == start }
