package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestWrapperCode runs testdata/agent/wrapper_check.py on every 3.x build:
// a function whose __code__ is the agent's wrapper (how the settrace
// backend instruments a function holding a breakpoint) binds arguments,
// returns, raises and shows its signature exactly as before.
func TestWrapperCode(t *testing.T) {
	check, _ := filepath.Abs(filepath.Join("..", "..", "testdata", "agent", "wrapper_check.py"))
	agentPy := filepath.Join(t.TempDir(), "agent.py")
	if err := os.WriteFile(agentPy, agentSource, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, py := range testPythons(t) {
		py := py
		t.Run(py.name, func(t *testing.T) {
			t.Parallel()
			out, err := exec.Command(py.path, "-W", "error", check, agentPy).CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "ok ") {
				t.Fatalf("%v: %s", err, out)
			}
		})
	}
}
