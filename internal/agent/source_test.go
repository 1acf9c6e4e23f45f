package agent

import (
	"io/fs"
	"strings"
	"testing"
)

// TestAgentSource: every Python file of python/ is joined, once, in
// agentParts' order, each starting with a comment naming it, separated by
// the loader's chunk marker; the agent starts last.
func TestAgentSource(t *testing.T) {
	names, err := fs.Glob(agentFiles, "python/*.py")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, n := range agentParts {
		if listed[n] {
			t.Errorf("%s listed twice in agentParts", n)
		}
		listed[n] = true
	}
	for _, n := range names {
		if !listed[strings.TrimPrefix(n, "python/")] {
			t.Errorf("%s is not in agentParts: it would not be in the agent", n)
		}
	}
	if len(names) != len(agentParts) {
		t.Errorf("%d files, %d parts", len(names), len(agentParts))
	}
	src := string(agentSource)
	at := 0
	for _, n := range agentParts {
		i := strings.Index(src[at:], "# "+n+": ")
		if i < 0 || (at+i > 0 && !strings.HasSuffix(src[:at+i], chunkMarker)) {
			t.Fatalf("%s does not start a chunk in order", n)
		}
		at += i + 1
	}
	if !strings.HasSuffix(src, "\n_start(KRAIT, globals())  # noqa: F821 (KRAIT is set by the bootstrap)\n") {
		t.Errorf("the agent source does not end by starting the agent")
	}
}
