package layout

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"krait/internal/binfmt"
)

// TestTablesMatchDWARF re-reads the DWARF of every installed build and checks
// that the committed tables agree with it. CI names the builds that must be
// present (KRAIT_REQUIRE_PYTHONS); a missing one fails there.
func TestTablesMatchDWARF(t *testing.T) {
	prefixes, err := PyenvPrefixes()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	for _, p := range prefixes {
		p := p
		t.Run(filepath.Base(p), func(t *testing.T) {
			minor, full, err := PrefixVersion(p)
			if err != nil {
				t.Fatal(err)
			}
			g, ok := generated[minor]
			if !ok {
				t.Fatalf("no generated table for %s (run go run ./tools/layoutgen)", full)
			}
			lib, err := PrefixLibpython(p)
			if err != nil {
				t.Fatal(err)
			}
			ix, err := binfmt.OpenStructIndex(lib)
			if err != nil {
				t.Fatal(err)
			}
			var more []*binfmt.StructIndex
			if ext, err := PrefixExtension(p, "_asyncio"); err == nil {
				aix, err := binfmt.OpenStructIndex(ext)
				if err != nil {
					t.Fatal(err)
				}
				more = append(more, aix)
			}
			off, dbg, err := FromDWARF(ix, more...)
			if err != nil {
				t.Fatal(err)
			}
			want := reflect.ValueOf(off)
			got := reflect.ValueOf(g.offsets)
			for i := 0; i < want.NumField(); i++ {
				if w, g := want.Field(i).Int(), got.Field(i).Int(); w != g {
					t.Errorf("%s %s: table has %d, DWARF of %s says %d", full, want.Type().Field(i).Name, g, filepath.Base(lib), w)
				}
			}
			if !reflect.DeepEqual(dbg, g.debugOffsets) && !(len(dbg) == 0 && len(g.debugOffsets) == 0) {
				t.Errorf("%s: _Py_DebugOffsets positions differ: table %v, DWARF %v", full, g.debugOffsets, dbg)
			}
		})
	}
}

func TestForEverySupportedVersion(t *testing.T) {
	for _, m := range Supported() {
		v, err := ParseVersion(m)
		if err != nil {
			t.Fatal(err)
		}
		l, err := For(v)
		if err != nil {
			t.Fatal(err)
		}
		if l.TstateNext < 0 || l.ObType < 0 || l.CodeFilename < 0 {
			t.Errorf("%s: essential offsets missing", m)
		}
		if l.Frames == InterpreterFrames && l.IFrameCode < 0 || l.Frames == FrameObjects && l.FrameCode < 0 {
			t.Errorf("%s: frame offsets missing", m)
		}
	}
	if _, err := For(Version{3, 5, 0}); err == nil {
		t.Error("3.5 should be unsupported")
	}
}

// TestAsyncioDebugPositions checks where krait reads each field of
// _Py_AsyncioModuleDebugOffsets (3.14+) against the struct's DWARF in the
// _asyncio module of every installed build that has it.
func TestAsyncioDebugPositions(t *testing.T) {
	prefixes, err := PyenvPrefixes()
	if err != nil {
		t.Skip(err)
	}
	names := map[int]string{
		8:  "asyncio_task_object.task_name",
		40: "asyncio_task_object.task_coro",
		48: "asyncio_task_object.task_node",
		64: "asyncio_interpreter_state.asyncio_tasks_head",
		80: "asyncio_thread_state.asyncio_running_loop",
		96: "asyncio_thread_state.asyncio_tasks_head",
	}
	checked := 0
	for _, p := range prefixes {
		ext, err := PrefixExtension(p, "_asyncio")
		if err != nil {
			continue
		}
		ix, err := binfmt.OpenStructIndex(ext)
		if err != nil {
			t.Fatal(err)
		}
		size, err := ix.Sizeof("_Py_AsyncioModuleDebugOffsets")
		if err != nil {
			continue // before 3.14
		}
		checked++
		for _, f := range asyncioDebugFields {
			off, _, err := ix.Member("_Py_AsyncioModuleDebugOffsets." + names[f.pos])
			if err != nil || off != int64(f.pos) {
				t.Errorf("%s: %s at %d (%v), krait reads %d", ext, names[f.pos], off, err, f.pos)
			}
		}
		minor, _, err := PrefixVersion(p)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := ParseVersion(minor)
		l, err := For(v)
		if err != nil {
			t.Fatal(err)
		}
		if int64(l.AsyncioDebugSize()) != size {
			t.Errorf("%s: the struct has %d bytes, krait reads %d", ext, size, l.AsyncioDebugSize())
		}
	}
	t.Logf("checked %d builds with _Py_AsyncioModuleDebugOffsets", checked)
}

func TestApplyAsyncioDebugOffsetsChecks(t *testing.T) {
	l, err := For(Version{3, 14, 0})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.ApplyAsyncioDebugOffsets(make([]byte, 104)); err == nil {
		t.Error("offsets of zero accepted")
	}
	if err := l.ApplyAsyncioDebugOffsets(make([]byte, 10)); err == nil {
		t.Error("a short blob accepted")
	}
	old, _ := For(Version{3, 12, 0})
	if old.AsyncioDebugSize() != 0 || old.ApplyAsyncioDebugOffsets(nil) != nil {
		t.Error("3.12 has no _Py_AsyncioModuleDebugOffsets")
	}
}
