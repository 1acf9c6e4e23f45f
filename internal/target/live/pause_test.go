package live

import (
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPauseWaitsForAnotherTracer: a process another tracer holds for a
// moment (another krait's pause) is paused once that tracer lets go,
// instead of being refused as if permission were denied (a CI failure of
// requests --all while other tests paused their processes).
func TestPauseWaitsForAnotherTracer(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	held, done := make(chan error, 1), make(chan error, 1)
	go func() {
		// The other tracer: this OS thread, until it detaches.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := unix.PtraceSeize(pid); err != nil {
			held <- err
			return
		}
		var ws unix.WaitStatus
		if err := unix.PtraceInterrupt(pid); err != nil {
			held <- err
			return
		}
		if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
			held <- err
			return
		}
		held <- nil
		time.Sleep(300 * time.Millisecond)
		done <- unix.PtraceDetach(pid)
	}()
	if err := <-held; err != nil {
		t.Fatalf("the other tracer: %v", err)
	}
	start := time.Now()
	p, err := Pause(pid, 5*time.Second)
	if err != nil {
		t.Fatalf("Pause while another tracer held the process for 300 ms: %v", err)
	}
	p.Release()
	if err := <-done; err != nil {
		t.Fatalf("the other tracer's detach: %v", err)
	}
	t.Logf("paused after %v", time.Since(start).Round(time.Millisecond))
}
