package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMountNamespace dumps a Python whose executable exists only inside its
// own mount namespace (a tmpfs mounted there): krait must reach it through
// /proc/PID/exe and /proc/PID/root.
func TestMountNamespace(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare (util-linux) is needed: %v", err)
	}
	var sys *python
	for _, py := range pythons(t) {
		if py.name == "system3.11" {
			py := py
			sys = &py
		}
	}
	if sys == nil {
		t.Skip("Debian's python3.11 is not present")
	}
	dir := t.TempDir()
	marker := filepath.Join(dir, "ready")
	script := "import sys, time; open(sys.argv[1], 'w').close(); time.sleep(120)"
	sh := `mount -t tmpfs none "$1/ns" && cp "$2" "$1/ns/py" && exec "$1/ns/py" -c "$3" "$4"`
	if err := os.Mkdir(filepath.Join(dir, "ns"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := start(t, nil, "unshare", "-m", "--propagation", "private", "sh", "-c", sh, "sh", dir, sys.path, script, marker)
	if !p.waitFor(20*time.Second, func() bool { _, err := os.Stat(marker); return err == nil }) {
		t.Fatalf("namespaced python did not start: %s", p.stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "ns", "py")); err == nil {
		t.Fatal("the executable is visible outside the namespace; the test proves nothing")
	}
	res := dumpJSON(t, p.pid())
	if !strings.HasPrefix(res.PythonVersion, "3.11.") || len(res.Threads) != 1 || len(res.Threads[0].Frames) == 0 {
		t.Fatalf("unexpected dump of the namespaced process: %+v", res)
	}
	if f := res.Threads[0].Frames[0]; f.Function != "<module>" {
		t.Errorf("innermost frame %q, want <module>", f.Function)
	}
}
