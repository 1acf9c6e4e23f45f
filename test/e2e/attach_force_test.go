package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestAttachForce: the command line of a second attach. While one krait's
// session is in the process, another attach is refused (exit 7) with a
// line naming the process and the krait that debugs it, and --force does
// not change that: a session whose krait runs is never disturbed. Once
// that krait is killed, its agent leaves by itself and attach, with or
// without --force, gets in.
func TestAttachForce(t *testing.T) {
	var py python
	for _, p := range pythons(t) {
		if p.minor == "3.12" {
			py = p
		}
	}
	if py.path == "" {
		t.Fatal("no Python 3.12")
	}
	srv := startAttachServer(t, py)
	pid := srv.p.pid()
	first := attach(t, pid)
	first.do("info threads")
	kraitPID := first.Cmd.Process.Pid

	for _, force := range []bool{false, true} {
		args := []string{"attach", fmt.Sprint(pid), "--batch", "-ex", "info threads"}
		if force {
			args = append(args, "--force")
		}
		r := krait(t, args...)
		if r.code != 7 {
			t.Fatalf("force=%v: a second attach: %v\n%s", force, r, r.stdout)
		}
		checkOneLine(t, "second attach", r.stderr)
		checkNoPanic(t, "second attach", r.stderr)
		if !strings.Contains(r.stderr, fmt.Sprint(pid)) {
			t.Errorf("force=%v: the error does not name the process: %q", force, r.stderr)
		}
		if force && !strings.Contains(r.stderr, fmt.Sprint(kraitPID)) {
			t.Errorf("--force: the error does not name the krait whose session it left alone: %q", r.stderr)
		}
	}
	// The first session was not disturbed.
	out := first.do("info threads")
	mustMatch(t, "first session after the refusals", `MainThread`, out)

	_ = first.Cmd.Process.Kill()
	_, _ = first.Cmd.Process.Wait()
	checkCleanWithin(t, srv, 15*time.Second)

	r := krait(t, "attach", fmt.Sprint(pid), "--batch", "--force", "-ex", "info threads")
	if r.code != 0 {
		t.Fatalf("attach --force after the first krait was killed: %v\n%s", r, r.stdout)
	}
	mustMatch(t, "attach after", `\[Inferior 1 \(process \d+\) detached\]`, r.stdout)
	checkClean(t, srv)
}
