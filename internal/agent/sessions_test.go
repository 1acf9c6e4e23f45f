package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// buildKrait builds the krait binary the agent tests ask for trace
// configurations.
func buildKrait(t *testing.T) string {
	t.Helper()
	krait := filepath.Join(t.TempDir(), "krait")
	build := exec.Command("go", "build", "-o", krait, "./cmd/krait")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building krait: %v\n%s", err, out)
	}
	return krait
}

// count asks the fixture what it holds (fixture.py's count()).
func (fx *agentFixture) count() fixtureCount {
	fx.t.Helper()
	fx.send("count")
	select {
	case c := <-fx.counts:
		return c
	case <-time.After(30 * time.Second):
		fx.t.Fatalf("no count from the fixture; stderr: %s", fx.stderr.String())
	}
	return fixtureCount{}
}

// TestAgentSessions: many attach/break/hit/detach sessions on one process
// leave it holding exactly what it held after the first (issue 14, item 3:
// on 3.6-3.11 each session used to wrap the functions the sessions before
// it had cloned, doubling them). Each session stops in a plain function, a
// decorated one (reached through its decorator's closure), a staticmethod,
// a property and a method with a free variable, then detaches. Between
// sessions, with krait gone, the fixture counts its own function and code
// objects (without a collection: nothing may wait for one), krait's
// (after one) and its RSS. KRAIT_AGENT_SESSIONS sets the number (30).
func TestAgentSessions(t *testing.T) {
	pys := agentPythons(t)
	if len(pys) == 0 {
		t.Skip("no Python 3 interpreter found")
	}
	n := 30
	if s := os.Getenv("KRAIT_AGENT_SESSIONS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	krait := buildKrait(t)
	for _, py := range pys {
		py := py
		t.Run(py.name, func(t *testing.T) {
			t.Parallel()
			fx := startAgentFixture(t, py, krait)
			stops := []struct{ mark, function string }{
				{"compute-first", "compute"},
				{"decorated-body", "decorated"},
				{"static-body", "Thing.smeth"},
				{"prop-body", "Thing.prop"},
				{"sub-poke", "Sub.poke"},
			}
			var first fixtureCount
			var warm int
			for i := 1; i <= n; i++ {
				tok := fmt.Sprintf("tok%d", i)
				dir := fx.load(tok, 30, false)
				c := dialAgent(t, dir)
				c.call("hello", "token", tok)
				for _, s := range stops {
					c.call("break", "file", "fixture.py", "line", fx.line(s.mark))
					c.stop("breakpoint", s.function, fx.line(s.mark))
					c.call("delete")
					c.call("continue")
				}
				c.call("detach")
				fx.gone(dir, 3*time.Second)
				c.conn.Close()
				got := fx.count()
				if i == 1 {
					first = got
					t.Logf("after session 1: %+v", got)
					continue
				}
				if got.Funcs != first.Funcs || got.Codes != first.Codes || got.KraitFuncs != 0 ||
					got.KraitCodes != 0 || got.Krait != 0 {
					t.Fatalf("after session %d: %+v; after session 1: %+v", i, got, first)
				}
				// RSS is compared from the tenth session on: the
				// allocator's pools grow to their size for two agents'
				// compiles (the old one's freed as the new one loads) in
				// the first sessions, a one-time ramp (2-4 MB on
				// 3.9-3.12 by the second; on 3.7 it goes on for some ten:
				// +2.6 MB from the 2nd to the 10th, +0.9 MB from the 30th
				// to the 90th), flat after it. 3 MB in 20 sessions is
				// 150 kB a session: the wrappers that doubled at each
				// session grew by megabytes a session.
				if i == 10 {
					warm = got.RSSKB
				}
				if i == n {
					t.Logf("after session %d: %+v", i, got)
					if got.RSSKB > warm+3072 {
						t.Errorf("RSS grew from %d kB (after session 10) to %d kB in %d sessions", warm, got.RSSKB, n-10)
					}
				}
			}
		})
	}
}
