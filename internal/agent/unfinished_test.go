package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCleanUnfinished: directories left by a krait killed while it made
// them (nothing, or an empty owner, older than unfinishedAge) go; a young
// one, one with an owner written, and one holding anything else stay.
func TestCleanUnfinished(t *testing.T) {
	tmp := t.TempDir()
	old := time.Now().Add(-time.Minute)
	mk := func(name string, files map[string]string, aged bool) {
		d := filepath.Join(tmp, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		for n, c := range files {
			if err := os.WriteFile(filepath.Join(d, n), []byte(c), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if aged {
			if err := os.Chtimes(d, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("krait-0000000000000001", nil, true)                                // gone
	mk("krait-0000000000000002", map[string]string{"owner": ""}, true)     // gone
	mk("krait-0000000000000003", nil, false)                               // young: stays
	mk("krait-0000000000000004", map[string]string{"owner": "{}"}, true)   // owner written: stays
	mk("krait-0000000000000005", map[string]string{"mine.txt": ""}, true)  // not ours: stays
	mk("krait-0000000000000006", map[string]string{"agent.py": "x"}, true) // not empty: stays
	fd, err := unix.Open(tmp, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	removed := cleanUnfinished(fd)
	if len(removed) != 2 {
		t.Errorf("removed %v, want the first two", removed)
	}
	for i, want := range []bool{false, false, true, true, true, true} {
		_, err := os.Stat(filepath.Join(tmp, "krait-000000000000000"+string(rune('1'+i))))
		if (err == nil) != want {
			t.Errorf("krait-…%d: exists %v, want %v", i+1, err == nil, want)
		}
	}
}
