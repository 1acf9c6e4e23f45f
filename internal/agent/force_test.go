package agent

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"krait/internal/cpython"
	"krait/internal/target/live"
)

// TestAbandonHelperProcess is not a test: TestReleaseAbandoned runs the
// test binary as a krait that starts the agent in KRAIT_ABANDON_PID, says
// so, and never connects; it waits to be killed.
func TestAbandonHelperProcess(t *testing.T) {
	pidS := os.Getenv("KRAIT_ABANDON_PID")
	if pidS == "" {
		t.Skip("helper process for TestReleaseAbandoned")
	}
	pid, _ := strconv.Atoi(pidS)
	proc, err := live.Open(pid)
	if err == nil {
		var py *cpython.Python
		if py, err = cpython.Open(proc); err == nil {
			var inj *Injection
			if inj, _, err = Start(proc, py, -1, MethodAuto, 10*time.Second); err == nil {
				fmt.Println("sock", inj.HostDir+"/sock")
				time.Sleep(time.Hour)
			}
		}
	}
	fmt.Println("error", err)
	os.Exit(1)
}

// TestReleaseAbandoned (attach --force): a session whose krait runs is
// never disturbed (ReleaseAbandoned refuses, its agent stays); once that
// krait is gone, with its agent waiting for a connection that will never
// come, attach makes that agent leave by itself and gets in.
func TestReleaseAbandoned(t *testing.T) {
	var py agentPython
	for _, p := range agentPythons(t) {
		if p.name == "3.12" {
			py = p
		}
	}
	if py.path == "" {
		t.Skip("no Python 3.12")
	}
	target := exec.Command(py.path, "-c", "import threading, time\n"+
		"def nap():\n    while True: time.sleep(0.2)\n"+
		"threading.Thread(target=nap, daemon=True).start()\nwhile True: time.sleep(0.05)\n")
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { target.Process.Kill(); target.Wait() }()
	pid := target.Process.Pid
	time.Sleep(300 * time.Millisecond)

	h := exec.Command(os.Args[0], "-test.run=^TestAbandonHelperProcess$")
	h.Env = append(os.Environ(), "KRAIT_ABANDON_PID="+strconv.Itoa(pid))
	out, _ := h.StdoutPipe()
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { h.Process.Kill(); h.Wait() }()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "sock ") {
		t.Fatalf("helper: %q", sc.Text())
	}
	hostSock := strings.TrimPrefix(sc.Text(), "sock ")

	// Its krait runs: --force does not touch it.
	n, err := ReleaseAbandoned(pid)
	if n != 0 || !errors.Is(err, ErrBusy) || !strings.Contains(fmt.Sprint(err), fmt.Sprintf("krait (process %d), which is still running", h.Process.Pid)) {
		t.Fatalf("ReleaseAbandoned with the other krait running: %d, %v", n, err)
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := os.Stat(hostSock); err != nil {
		t.Fatalf("the live session's agent left: %v", err)
	}

	// Its krait is gone: attach says so; --force makes the agent leave.
	h.Process.Signal(syscall.SIGKILL)
	h.Wait()
	attachOnce := func() error {
		proc, err := live.Open(pid)
		if err != nil {
			return err
		}
		defer proc.Close()
		py, err := cpython.Open(proc)
		if err != nil {
			return err
		}
		inj, sock, err := Start(proc, py, -1, MethodAuto, 10*time.Second)
		if err != nil {
			return err
		}
		c, _, err := inj.Dial(sock)
		if err != nil {
			inj.Abort()
			return err
		}
		c.Call("detach", nil, 5*time.Second)
		c.Close()
		inj.Finish()
		return nil
	}
	// attach itself tells an agent whose krait is gone to leave (there is
	// nothing left for --force to do).
	if err := attachOnce(); err != nil {
		t.Fatalf("attach with an abandoned agent there: %v", err)
	}
	if n, err := ReleaseAbandoned(pid); n != 0 || err != nil {
		t.Fatalf("ReleaseAbandoned after: %d, %v", n, err)
	}
	if _, err := os.Stat(hostSock); !os.IsNotExist(err) {
		t.Errorf("the abandoned agent's socket is still there: %v", err)
	}
}
