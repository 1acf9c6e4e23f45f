package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"krait/internal/testkit"
)

// TestAttachSeveral: krait attach PID PID — two processes of different
// Pythons (the oldest and the newest 3.x found: the settrace and the
// monitoring backends) — as one session: a temporary breakpoint hit in one
// process is gone from both; a breakpoint's condition applies in both;
// every stop line names its process; info inferiors, inferior N, info
// threads across processes; detach leaves both, which serve on.
func TestAttachSeveral(t *testing.T) {
	var ps []python
	for _, py := range pythons(t) {
		if py.minor != "2.7" {
			ps = append(ps, py)
		}
	}
	if len(ps) == 0 {
		t.Skip("no Python 3 found")
	}
	oldest, newest := ps[0], ps[0]
	minor := func(p python) int { n, _ := strconv.Atoi(strings.TrimPrefix(p.minor, "3.")); return n }
	for _, p := range ps {
		if minor(p) < minor(oldest) {
			oldest = p
		}
		if minor(p) > minor(newest) {
			newest = p
		}
	}
	a, b := startAttachServer(t, oldest), startAttachServer(t, newest)
	t.Logf("processes: %d (%s), %d (%s)", a.p.pid(), oldest.name, b.p.pid(), newest.name)
	ts := testkit.AttachArgs(t, kraitBin, strconv.Itoa(a.p.pid()), strconv.Itoa(b.p.pid()))
	record(ts.Cmd.Process.Pid)
	s := &session{ts}
	out := s.do("info inferiors")
	mustMatch(t, "info inferiors", fmt.Sprintf(`(?m)^\* 1\s+process %d\s`, a.p.pid()), out)
	mustMatch(t, "info inferiors", fmt.Sprintf(`(?m)^  2\s+process %d\s`, b.p.pid()), out)

	line := a.marks["report_call"]
	out = s.do(fmt.Sprintf("tbreak views.py:%d", line))
	mustMatch(t, "tbreak", fmt.Sprintf(`Temporary breakpoint 1 at \S+views\.py:%d \(report\)`, line), out)
	out, resp := s.continueWith(b, "/report?n=3")
	mustMatch(t, "stop", fmt.Sprintf(`\[process %d\] Breakpoint 1, report \(n=3\) at \S+views\.py:%d`, b.p.pid(), line), out)
	mustMatch(t, "info breakpoints", `No breakpoints`, s.do("info breakpoints"))
	mustMatch(t, "info threads", fmt.Sprintf(`(?m)^\* 2\.\d+\s+process %d Thread .* stopped: report at`, b.p.pid()), s.do("info threads"))
	out = s.do("break views.py:" + strconv.Itoa(line) + " if n == 7")
	mustMatch(t, "break", `Breakpoint 2 at `, out)
	// Resume b's stopped thread: it does not stop again for n=3.
	s.do("inferior 2")
	mustMatch(t, "print n", `^\$\d+ = 3$`, strings.TrimSpace(s.do("print n")))
	marker := s.Send("continue")
	if body := <-resp; body == nil {
		t.Fatalf("the first request failed")
	}
	// Requests to a: n=5 does not stop (the condition), n=7 does.
	if body := a.get(t, "/report?n=5"); body == nil {
		t.Fatalf("GET /report?n=5 failed")
	}
	resp7 := a.getAsync(t, "/report?n=7")
	out = s.Output("continue", marker, 60*time.Second)
	mustMatch(t, "stop", fmt.Sprintf(`\[process %d\] Breakpoint 2, report \(n=7\) at `, a.p.pid()), out)
	out = s.do("info breakpoints")
	mustMatch(t, "info breakpoints", `(?m)^2\s+breakpoint\s+keep y\s+in report at `, out)
	mustMatch(t, "info breakpoints", `stop only if n == 7`, out)
	mustMatch(t, "info breakpoints", `breakpoint already hit 1 time`, out)
	// A catchpoint is numbered with the breakpoints and set in both
	// processes: it stops the other one.
	mustMatch(t, "catch", `^Catchpoint 3 \(raise ValueError\)$`, strings.TrimSpace(s.do("catch raise ValueError")))
	out, respFail := s.continueWith(b, "/steps/fail?kind=x")
	mustMatch(t, "catch stop", fmt.Sprintf(`\[process %d\] Catchpoint 3 \(raise\), ValueError`, b.p.pid()), out)
	if body := <-resp7; body == nil {
		t.Errorf("the request continued failed")
	}
	s.do("delete 3")
	fmt.Fprintf(s.In, "detach\n")
	out = s.ReadUntilEnd(30 * time.Second)
	mustMatch(t, "detach", fmt.Sprintf(`\[Inferior 1 \(process %d\) detached\]\n\[Inferior 2 \(process %d\) detached\]`, a.p.pid(), b.p.pid()), out)
	if body := <-respFail; body == nil || body["caught"] != "1" {
		t.Errorf("the held request failed: %v", body)
	}
	// The agent leaves each process within moments of its reply (CI once
	// saw the agent thread still there at once): as every other detach
	// test, wait for it, then check that nothing of krait's is left.
	for _, srv := range []*attachServer{a, b} {
		checkClean(t, srv)
	}
}
