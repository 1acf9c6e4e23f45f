package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// embedTruth is what testdata/embed/embed.c's Python code writes.
type embedTruth struct {
	PID       int    `json:"pid"`
	Version   string `json:"version"`
	BlockLine int    `json:"block_line"`
	Worker    struct {
		Ident    uint64 `json:"ident"`
		NativeID int    `json:"native_id"`
	} `json:"worker"`
	Main struct {
		Ident    uint64 `json:"ident"`
		NativeID int    `json:"native_id"`
	} `json:"main"`
}

// TestEmbedded dumps a C program that links a pyenv libpython3.12: krait
// must find the runtime in the library, not the executable.
func TestEmbedded(t *testing.T) {
	var py *python
	for _, p := range pythons(t) {
		if p.minor == "3.12" && !strings.HasPrefix(p.name, "system") {
			py = &p
		}
	}
	mustRun := slices.Contains(required(), "3.12")
	if py == nil {
		if mustRun {
			t.Fatal("no pyenv Python 3.12 to embed")
		}
		t.Skip("no pyenv Python 3.12 to embed")
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		if mustRun {
			t.Fatalf("gcc is needed to build the embedding program: %v", err)
		}
		t.Skipf("no gcc: %v", err)
	}
	config := filepath.Join(filepath.Dir(py.path), "python3.12-config")
	flags, err := exec.Command(config, "--embed", "--cflags", "--ldflags").Output()
	if err != nil {
		t.Fatalf("%s: %v", config, err)
	}
	prefix, err := exec.Command(config, "--prefix").Output()
	if err != nil {
		t.Fatalf("%s --prefix: %v", config, err)
	}
	libDir := filepath.Join(strings.TrimSpace(string(prefix)), "lib")

	dir := t.TempDir()
	host := filepath.Join(dir, "embed_host")
	args := []string{"-o", host, filepath.Join(repoRoot, "testdata", "embed", "embed.c")}
	args = append(args, strings.Fields(string(flags))...)
	args = append(args, "-Wl,-rpath,"+libDir)
	if out, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	truthPath := filepath.Join(dir, "truth.json")
	p := start(t, nil, host, truthPath)
	var data []byte
	p.waitFor(30*time.Second, func() bool {
		data, err = os.ReadFile(truthPath)
		return err == nil
	})
	if data == nil {
		t.Fatalf("the embedding program wrote no truth (exited: %v)\nstderr: %s", p.exited(), p.stderr)
	}
	var tr embedTruth
	if err := json.Unmarshal(data, &tr); err != nil {
		t.Fatalf("decoding %s: %v", data, err)
	}

	res := dumpJSON(t, p.pid(), "--locals")
	if res.PythonVersion != tr.Version {
		t.Errorf("python_version = %q, want %q", res.PythonVersion, tr.Version)
	}
	if len(res.Command) != 2 || res.Command[0] != host {
		t.Errorf("command = %q, want [%s TRUTH]", res.Command, host)
	}
	if !strings.HasPrefix(filepath.Base(res.Binary), "libpython3.12") {
		t.Errorf("binary = %q, want the libpython3.12 the program links", res.Binary)
	}
	if len(res.Threads) != 2 {
		t.Errorf("%d threads, want 2 (main and embedded-worker)", len(res.Threads))
	}

	worker := res.threadNamed("embedded-worker")
	if worker == nil {
		t.Fatalf("no thread embedded-worker in the dump")
	}
	if worker.ThreadID != tr.Worker.Ident || worker.NativeID == nil || *worker.NativeID != tr.Worker.NativeID {
		t.Errorf("worker: thread_id %#x native_id %v, want %#x %d", worker.ThreadID, worker.NativeID, tr.Worker.Ident, tr.Worker.NativeID)
	}
	if !worker.Idle || worker.GIL {
		t.Errorf("worker: idle = %v, gil = %v; want idle without the GIL", worker.Idle, worker.GIL)
	}
	if len(worker.Frames) == 0 {
		t.Fatalf("worker: no frames")
	}
	f := worker.Frames[0]
	if f.Function != "embedded_worker" || f.File != "embedded_app.py" || f.Line != tr.BlockLine {
		t.Errorf("worker's innermost frame is %s, want embedded_worker (embedded_app.py:%d)\n%s", f, tr.BlockLine, framesString(worker.Frames))
	}
	for _, f := range worker.Frames[1:] {
		if filepath.Base(f.File) != "threading.py" {
			t.Errorf("worker: unexpected frame %s", f)
		}
	}

	main := res.threadNamed("MainThread")
	if main == nil {
		t.Fatalf("no MainThread in the dump")
	}
	if main.ThreadID != tr.Main.Ident || main.NativeID == nil || *main.NativeID != tr.Main.NativeID || tr.Main.NativeID != tr.PID {
		t.Errorf("main: thread_id %#x native_id %v, want %#x %d (pid %d)", main.ThreadID, main.NativeID, tr.Main.Ident, tr.Main.NativeID, tr.PID)
	}
	if len(main.Frames) != 0 {
		t.Errorf("main thread waits in C with no Python frame, but krait shows:\n%s", framesString(main.Frames))
	}

	// The text output shows the same.
	r := krait(t, "dump", "--pid", strconv.Itoa(p.pid()))
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	for _, want := range []string{
		fmt.Sprintf("Python v%s (%s)\n", tr.Version, res.Binary),
		fmt.Sprintf("Thread 0x%x [tid %d] \"embedded-worker\" (idle)\n    embedded_worker (embedded_app.py:%d)\n", tr.Worker.Ident, tr.Worker.NativeID, tr.BlockLine),
		fmt.Sprintf("Thread 0x%x [tid %d] \"MainThread\" (idle)\n", tr.Main.Ident, tr.Main.NativeID),
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("text output lacks %q:\n%s", want, r.stdout)
		}
	}
}
