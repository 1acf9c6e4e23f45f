package e2e

// REPL commands that need the agent's help (issue 13): the real LWP of a
// forked worker's thread, ...

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestAttachForkedLWP: in a worker forked from a master that had imported
// threading, info threads shows MainThread's own LWP (the worker's pid),
// not the master's that threading cached before the fork.
func TestAttachForkedLWP(t *testing.T) {
	for _, py := range pythons(t) {
		py := py
		if py.minor != "3.12" && py.minor != "3.9" {
			continue
		}
		t.Run(py.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state.json")
			p := start(t, nil, py.path, fixture("forked_worker.py"), state)
			var st struct{ Worker, Master int }
			if !p.waitFor(20*time.Second, func() bool {
				data, err := os.ReadFile(state)
				return err == nil && json.Unmarshal(data, &st) == nil
			}) {
				t.Fatalf("the worker did not start: %s", p.stderr.String())
			}
			record(st.Worker)
			r := krait(t, "attach", fmt.Sprint(st.Worker), "--batch", "-ex", "info threads")
			if r.code != 0 {
				t.Fatalf("attach: %v", r)
			}
			mustMatch(t, "info threads", fmt.Sprintf(`\(LWP %d\) "MainThread"`, st.Worker), r.stdout)
		})
	}
}
