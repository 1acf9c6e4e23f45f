package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"krait/internal/target"
)

const exitInterrupted = 130

// TestPauseKrait kills or interrupts krait while it holds the target
// paused (--debug-hold-pause): the target must run on, untraced.
func TestPauseKrait(t *testing.T) {
	py := pickPython(t)
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{
		{"SIGKILL", syscall.SIGKILL},
		{"SIGINT", syscall.SIGINT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startCounter(t, py, "")
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(kraitBin, "dump", "--pid", strconv.Itoa(p.pid()), "--debug-hold-pause", "30s")
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			started := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-done
			})

			// The target is held: every thread in a tracing stop, the
			// counter still.
			if !waitUntil(15*time.Second, func() bool { return heldBy(p.pid(), cmd.Process.Pid) }) {
				t.Fatalf("krait did not pause the target (thread states %s)%s", statesString(p.pid()), kraitEnded(done, &stderr))
			}
			held, _ := p.stdout.Lines()
			time.Sleep(time.Until(started.Add(500 * time.Millisecond)))
			if n, _ := p.stdout.Lines(); n != held {
				t.Errorf("the counter moved from %d to %d while the target was paused", held, n)
			}

			sent := time.Now()
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			var err error
			select {
			case err = <-done:
				done <- err // for the cleanup
			case <-time.After(2 * time.Second):
				t.Fatalf("krait still running 2 s after %s", tc.name)
			}
			took := time.Since(sent)
			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) {
				t.Fatalf("krait after %s: %v, want a failed exit", tc.name, err)
			}
			switch tc.sig {
			case syscall.SIGKILL:
				if ws, ok := exitErr.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
					t.Errorf("krait: %v, want killed by SIGKILL", err)
				}
			case syscall.SIGINT:
				if exitErr.ExitCode() != exitInterrupted {
					t.Errorf("krait after SIGINT: exit %d, want %d; stderr: %s", exitErr.ExitCode(), exitInterrupted, stderr.String())
				}
				if took > time.Second {
					t.Errorf("krait took %v to exit after SIGINT", took)
				}
				checkOneLine(t, "krait after SIGINT", stderr.String())
				checkNoPanic(t, "krait after SIGINT", stderr.String())
				if stdout.Len() != 0 {
					t.Errorf("krait after SIGINT printed a dump: %s", stdout.String())
				}
			}
			checkRunsUntraced(t, p, held)
		})
	}
}

// TestNotTracedAfterDump checks that a normal dump leaves the target
// running and untraced.
func TestNotTracedAfterDump(t *testing.T) {
	py := pickPython(t)
	p := startCounter(t, py, "")
	for _, extra := range [][]string{nil, {"--locals", "--json"}, {"--nonblocking"}} {
		args := append([]string{"dump", "--pid", strconv.Itoa(p.pid())}, extra...)
		r := krait(t, args...)
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		n, _ := p.stdout.Lines()
		checkRunsUntraced(t, p, n)
	}
}

// checkRunsUntraced checks that the target is neither stopped nor traced
// and that its counter goes on from line from.
func checkRunsUntraced(t *testing.T, p *proc, from int) {
	t.Helper()
	if !waitUntil(3*time.Second, func() bool { n, _ := p.stdout.Lines(); return n >= from+10 }) {
		n, _ := p.stdout.Lines()
		t.Errorf("the target's counter is stuck: %d lines, then %d 3 s later (thread states %s)", from, n, statesString(p.pid()))
	}
	// Another package's tests may read every Python process on the host
	// (krait requests --all) and so hold this one for a moment: what must
	// not last is a stop or a tracer.
	untraced := func() bool {
		for _, st := range threadStates(p.pid()) {
			if st == 't' || st == 'T' {
				return false
			}
		}
		for _, tracer := range tracerPids(p.pid()) {
			if tracer != 0 {
				return false
			}
		}
		return true
	}
	if !waitUntil(3*time.Second, untraced) {
		for tid, st := range threadStates(p.pid()) {
			if st == 't' || st == 'T' {
				t.Errorf("thread %d of the target is stopped (state %c)", tid, st)
			}
		}
		for tid, tracer := range tracerPids(p.pid()) {
			if tracer != 0 {
				t.Errorf("thread %d of the target is still traced by %d", tid, tracer)
			}
		}
	}
	if p.exited() {
		t.Errorf("the target died: %s", p.stderr)
	}
}

// heldBy says whether every thread of pid is in a tracing stop and traced
// by process krait (not by another package's krait reading every Python
// process on the host).
func heldBy(pid, krait int) bool {
	states := threadStates(pid)
	if len(states) == 0 {
		return false
	}
	for _, st := range states {
		if st != 't' && st != 'T' {
			return false
		}
	}
	tracers := tracerPids(pid)
	for tid := range states {
		if tgid(tracers[tid]) != krait {
			return false
		}
	}
	return true
}

// tgid is the process of thread tid; 0 if it is gone.
func tgid(tid int) int {
	if tid == 0 {
		return 0
	}
	return target.StatusInt(tid, "Tgid")
}

// kraitEnded says, for a failure message, whether krait has exited and
// what it printed; "" while it runs.
func kraitEnded(done chan error, stderr *bytes.Buffer) string {
	select {
	case err := <-done:
		done <- err
		return fmt.Sprintf("; krait ended (%v): %s", err, stderr.String())
	default:
		return ""
	}
}

// statesString formats the state of every thread of pid for messages.
func statesString(pid int) string {
	var parts []string
	for tid, st := range threadStates(pid) {
		parts = append(parts, fmt.Sprintf("%d:%c", tid, st))
	}
	sort.Strings(parts)
	return "[" + strings.Join(parts, " ") + "]"
}

func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// TestPauseKraitSeveral interrupts `krait requests` while it holds two
// processes paused at once (their reads run side by side): both must be
// released, and krait exits 130 saying so.
func TestPauseKraitSeveral(t *testing.T) {
	py := pickPython(t)
	a, b := startCounter(t, py, ""), startCounter(t, py, "")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(kraitBin, "requests", "--pid", strconv.Itoa(a.pid()), "--pid", strconv.Itoa(b.pid()), "--debug-hold-pause", "30s")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	if !waitUntil(15*time.Second, func() bool { return heldBy(a.pid(), cmd.Process.Pid) && heldBy(b.pid(), cmd.Process.Pid) }) {
		t.Fatalf("krait did not hold both targets at once (thread states %s and %s)%s", statesString(a.pid()), statesString(b.pid()), kraitEnded(done, &stderr))
	}
	heldA, _ := a.stdout.Lines()
	heldB, _ := b.stdout.Lines()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-done:
		done <- err
	case <-time.After(2 * time.Second):
		t.Fatal("krait still running 2 s after SIGINT")
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != exitInterrupted {
		t.Errorf("krait after SIGINT: %v, want exit %d; stderr: %s", err, exitInterrupted, stderr.String())
	}
	checkOneLine(t, "krait after SIGINT", stderr.String())
	if !strings.Contains(stderr.String(), "processes released") {
		t.Errorf("krait after SIGINT: %q, want it to say the processes were released", stderr.String())
	}
	checkRunsUntraced(t, a, heldA)
	checkRunsUntraced(t, b, heldB)
}
