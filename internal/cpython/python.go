// Package cpython models a CPython interpreter inside a target process:
// finding it, its version and layout, its interpreters and threads, their
// frames, and the objects those frames hold. It reads memory only; it never
// runs code in the target.
package cpython

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"krait/internal/binfmt"
	"krait/internal/cpython/layout"
	"krait/internal/target"
	"krait/internal/value"
)

// Python is a CPython runtime found in a process.
type Python struct {
	Proc    target.Process
	L       *layout.Layout
	Version layout.Version
	// Binary is the object (executable or libpython) holding the runtime.
	Binary *binfmt.Object
	Bias   uint64

	m *mem
	// runtime is the address of _PyRuntime (0 before 3.7).
	runtime uint64
	// interpHead holds the address of the pointer to the first interpreter.
	interpHead uint64
	// tstateCurrent holds the address of _PyThreadState_Current (2.7, 3.6).
	tstateCurrent uint64

	types      map[uint64]*typeInfo
	describers []Describer
	values     map[valueKey]*value.Value // decoded this snapshot
	// localFilter, when set, limits the locals frames read (Options.LocalNames).
	localFilter map[string]bool
	// codes caches decoded code objects (immutable while alive); names
	// holds thread names per interpreter read by Prepare.
	codes map[uint64]*code
	names map[uint64]map[uint64]string
	// exts holds extension modules found in the target (asyncio.go);
	// asyncioDone is set once the _asyncio module's offsets are applied.
	exts        map[string]extObject
	asyncioDone bool
}

// ErrNoInterpreter: the runtime has no interpreter yet, or any more.
var ErrNoInterpreter = errors.New("the Python runtime has no interpreter (not initialised yet, or finalising)")

// ErrNotPython is returned for processes with no CPython runtime.
var ErrNotPython = errors.New("not a Python process")

// ErrBinaryMismatch: the executable or libpython krait found on disk is
// not the build the process mapped.
var ErrBinaryMismatch = errors.New("binary does not match the process")

// shownPath is where krait read a mapped file: the path it opened, unless
// that is /proc/PID/exe or similar.
func shownPath(opened, mapped string) string {
	if opened != "" && !strings.HasPrefix(opened, "/proc/") {
		return opened
	}
	return strings.TrimSuffix(mapped, " (deleted)")
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// mappedBuildID reads the GNU build id from the ELF image mapped at start
// in the target (its header, program headers and notes sit in the first
// page, which cores keep too): "" when it cannot be read.
func mappedBuildID(proc target.Memory, start uint64) string {
	hdr := make([]byte, 64)
	if proc.ReadAt(hdr, start) != nil || string(hdr[:4]) != "\x7fELF" || hdr[4] != 2 {
		return ""
	}
	le := binary.LittleEndian
	phoff, phentsize, phnum := le.Uint64(hdr[0x20:]), uint64(le.Uint16(hdr[0x36:])), uint64(le.Uint16(hdr[0x38:]))
	if phentsize < 56 || phnum == 0 || phnum > 64 || phoff > 1<<20 {
		return ""
	}
	ph := make([]byte, phentsize*phnum)
	if proc.ReadAt(ph, start+phoff) != nil {
		return ""
	}
	for i := uint64(0); i < phnum; i++ {
		e := ph[i*phentsize:]
		if le.Uint32(e) != 4 { // PT_NOTE
			continue
		}
		off, size := le.Uint64(e[8:]), le.Uint64(e[32:])
		if size == 0 || size > 4096 || off > 1<<20 {
			continue
		}
		notes := make([]byte, size)
		if proc.ReadAt(notes, start+off) != nil {
			continue
		}
		for len(notes) >= 12 {
			namesz, descsz, typ := uint64(le.Uint32(notes)), uint64(le.Uint32(notes[4:])), le.Uint32(notes[8:])
			nameEnd := 12 + (namesz+3)&^3
			descEnd := nameEnd + (descsz+3)&^3
			if descEnd > uint64(len(notes)) || nameEnd+descsz > uint64(len(notes)) {
				break
			}
			if typ == 3 && namesz == 4 && string(notes[12:15]) == "GNU" { // NT_GNU_BUILD_ID
				return hex.EncodeToString(notes[nameEnd : nameEnd+descsz])
			}
			notes = notes[descEnd:]
		}
	}
	return ""
}

// objectCache keeps parsed binaries by build id (or path) across Opens.
var objectCache = struct {
	sync.Mutex
	m map[string]*binfmt.Object
}{m: map[string]*binfmt.Object{}}

// Open finds the CPython runtime in a process.
func Open(proc target.Process) (*Python, error) {
	maps, err := proc.Maps()
	if err != nil {
		return nil, err
	}
	exeTarget := proc.ExeName()
	// Candidate objects: the executable first, then libpython, each with
	// the start of its offset-0 mapping.
	type cand struct {
		path       string
		start, off uint64
	}
	var cands []cand
	seen := map[string]bool{}
	for _, m := range maps {
		if m.Path == "" || strings.HasPrefix(m.Path, "[") || seen[m.Path] {
			continue
		}
		base := filepath.Base(m.Path)
		isExe := exeTarget != "" && strings.TrimSuffix(m.Path, " (deleted)") == exeTarget
		if !isExe && !strings.HasPrefix(base, "libpython") {
			continue
		}
		seen[m.Path] = true
		c := cand{path: m.Path, start: m.Start, off: m.Offset}
		if isExe {
			cands = append([]cand{c}, cands...)
		} else {
			cands = append(cands, c)
		}
	}
	var lastErr error
	for _, c := range cands {
		openAs := c.path
		if strings.TrimSuffix(c.path, " (deleted)") == exeTarget {
			openAs = "" // /proc/PID/exe: works across namespaces and for deleted files
		}
		opened, err := proc.OpenPath(openAs)
		if err != nil {
			lastErr = err
			continue
		}
		obj, err := openObject(opened, c.path)
		if err != nil {
			lastErr = err
			continue
		}
		if !hasRuntime(obj) {
			continue
		}
		// The file must be the one the process mapped: symbols from
		// another build (a libpython upgraded on disk since the process
		// started, a core read on another machine) point at the wrong
		// places and every read after says something misleading.
		if mapped := mappedBuildID(proc, c.start); mapped != "" && obj.BuildID != "" && mapped != obj.BuildID {
			return nil, fmt.Errorf("%s is not the file process %d ran (build id %s there, %s in the process): it changed since the process started, or the process ran elsewhere; give --sysroot DIR with the original files: %w",
				shownPath(opened, c.path), proc.PID(), short(obj.BuildID), short(mapped), ErrBinaryMismatch)
		}
		py := &Python{Proc: proc, Binary: obj, Bias: obj.Bias(c.start, c.off), m: newMem(proc), types: map[uint64]*typeInfo{}, values: map[valueKey]*value.Value{}, codes: map[uint64]*code{}}
		if err := py.init(); err != nil {
			return nil, err
		}
		return py, nil
	}
	if lastErr != nil && errors.Is(lastErr, target.ErrPermission) {
		return nil, lastErr
	}
	return nil, fmt.Errorf("process %d: %w (no CPython runtime in its executable or a libpython)", proc.PID(), ErrNotPython)
}

func openObject(opened, path string) (*binfmt.Object, error) {
	objectCache.Lock()
	defer objectCache.Unlock()
	if o, ok := objectCache.m[path]; ok {
		return o, nil
	}
	o, err := binfmt.OpenObject(opened, path)
	if err != nil {
		return nil, err
	}
	objectCache.m[path] = o
	return o, nil
}

func hasRuntime(o *binfmt.Object) bool {
	for _, s := range []string{"_PyRuntime", "Py_Version", "interp_head", "Py_InitializeEx", "PyEval_EvalFrameEx"} {
		if _, ok := o.Symbol(s); ok {
			return true
		}
	}
	_, _, ok := o.Section(".PyRuntime")
	return ok
}

func (py *Python) sym(name string) (uint64, bool) {
	v, ok := py.Binary.Symbol(name)
	if !ok {
		return 0, false
	}
	return v + py.Bias, true
}

func (py *Python) init() error {
	if a, ok := py.sym("_PyRuntime"); ok {
		py.runtime = a
	} else if a, _, ok := py.Binary.Section(".PyRuntime"); ok {
		py.runtime = a + py.Bias
	}
	v, err := py.detectVersion()
	if err != nil {
		return err
	}
	py.Version = v
	l, err := layout.For(v)
	if err != nil {
		return err
	}
	py.L = l
	if l.HasDebugOffsets() && py.runtime != 0 {
		blob, err := py.m.bytes(py.runtime, l.DebugOffsetsSize())
		if err != nil {
			return fmt.Errorf("reading _Py_DebugOffsets: %w", err)
		}
		if err := l.ApplyDebugOffsets(blob); err != nil {
			return err
		}
	}
	switch {
	case l.InterpHeadSymbol != "":
		a, ok := py.sym(l.InterpHeadSymbol)
		if !ok {
			return fmt.Errorf("Python %s in %s: symbol %s not found (a stripped build of this version is not supported)", v, py.Binary.Path, l.InterpHeadSymbol)
		}
		py.interpHead = a
	case py.runtime != 0 && l.RuntimeInterpretersHead >= 0:
		py.interpHead = py.runtime + uint64(l.RuntimeInterpretersHead)
	default:
		return fmt.Errorf("Python %s in %s: cannot find _PyRuntime", v, py.Binary.Path)
	}
	if l.TstateCurrentSymbol != "" {
		py.tstateCurrent, _ = py.sym(l.TstateCurrentSymbol)
	}
	return nil
}

var versionRE = regexp.MustCompile(`\x00([23]\.[0-9]{1,2}\.[0-9]{1,3})(?:[abcr+][0-9a-z+]*)? \(`)

// detectVersion reads the version from the target: Py_Version (3.11+), or
// the version string Py_GetVersion built at start-up in the interpreter's
// writable data.
func (py *Python) detectVersion() (layout.Version, error) {
	if a, ok := py.sym("Py_Version"); ok {
		h, err := py.m.u64(a)
		if err == nil && h>>24&0xff == 3 {
			return layout.VersionFromHex(h & 0xffffffff), nil
		}
	}
	for _, r := range py.Binary.WritableRanges() {
		start, end := r[0]+py.Bias, r[1]+py.Bias
		const chunk = 1 << 16
		var prevTail []byte
		for a := start &^ (pageSize - 1); a < end; a += chunk {
			n := uint64(chunk)
			if a+n > end {
				n = (end - a + pageSize - 1) &^ (pageSize - 1)
			}
			buf := make([]byte, n)
			if err := py.Proc.ReadAt(buf, a); err != nil {
				if errors.Is(err, target.ErrExited) {
					return layout.Version{}, err
				}
				prevTail = nil
				continue
			}
			data := append(prevTail, buf...)
			if m := versionRE.FindSubmatch(data); m != nil {
				return layout.ParseVersion(string(m[1]))
			}
			if len(buf) > 32 {
				prevTail = append([]byte(nil), buf[len(buf)-32:]...)
			}
		}
	}
	return layout.Version{}, fmt.Errorf("process %d: found CPython in %s but cannot tell its version", py.Proc.PID(), py.Binary.Path)
}

// Reads reports how many memory reads this Python has made.
func (py *Python) Reads() int { return py.m.Reads }

// Reset drops cached memory so the next walk reads fresh values.
func (py *Python) Reset() {
	py.m = newMem(py.Proc)
	py.types = map[uint64]*typeInfo{}
	py.values = map[valueKey]*value.Value{}
	py.codes = map[uint64]*code{}
	py.names = nil
}
