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
