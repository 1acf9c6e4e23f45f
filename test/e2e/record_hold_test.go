package e2e

import (
	"bytes"
	"math/rand"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// holdTicks returns the loop count of the fixture's last tick line.
func holdTicks(p *proc) int64 {
	_, out := p.stdout.Lines()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		f := strings.Fields(lines[i])
		if len(f) == 3 && f[0] == "tick" {
			n, _ := strconv.ParseInt(f[2], 10, 64)
			return n
		}
	}
	return -1
}

// checkRunsFree checks that no thread of pid is stopped or traced and that
// the fixture's work goes on.
func checkRunsFree(t *testing.T, p *proc, when string) {
	t.Helper()
	ok := p.waitFor(2*time.Second, func() bool {
		for _, st := range threadStates(p.pid()) {
			if st == 't' || st == 'T' {
				return false
			}
		}
		for _, tp := range tracerPids(p.pid()) {
			if tp != 0 {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("%s: threads left stopped or traced: states %v tracers %v", when, threadStates(p.pid()), tracerPids(p.pid()))
	}
	before := holdTicks(p)
	if !p.waitFor(3*time.Second, func() bool { return holdTicks(p) > before }) {
		t.Fatalf("%s: the target does no more work (%d loops)", when, before)
	}
}

// TestRecordHold: in its default (pausing) mode record keeps the target's
// threads seized between samples; the target must not notice more than
// the pauses: signals arrive while it is held, threads come and go, a
// SIGSTOP stops it, and krait killed at any moment leaves it running.
func TestRecordHold(t *testing.T) {
	py := pickPython(t)
	startHold := func(t *testing.T) *proc {
		p := start(t, nil, py.path, fixture("hold_fixture.py"))
		if !p.waitFor(30*time.Second, func() bool { return holdTicks(p) > 0 }) {
			t.Fatalf("hold fixture did not start: %s", p.stderr)
		}
		return p
	}
	startRecord := func(t *testing.T, pid int, args ...string) (*exec.Cmd, *bytes.Buffer) {
		argv := append([]string{"record", "--pid", strconv.Itoa(pid), "-f", "raw", "-o", t.TempDir() + "/out.txt"}, args...)
		cmd := exec.Command(kraitBin, argv...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, &stderr
	}

	t.Run("killed", func(t *testing.T) {
		p := startHold(t)
		rng := rand.New(rand.NewSource(time.Now().UnixNano()))
		for i := 0; i < 8; i++ {
			cmd, _ := startRecord(t, p.pid(), "--rate", "1000")
			time.Sleep(time.Duration(200+rng.Intn(400)) * time.Millisecond)
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
			checkRunsFree(t, p, "after krait was killed (run "+strconv.Itoa(i)+")")
		}
	})

	t.Run("signals", func(t *testing.T) {
		p := startHold(t)
		// One sample a second: without the held threads' signals handled
		// between samples, a signal would wait up to a second.
		cmd, stderr := startRecord(t, p.pid(), "--rate", "1", "--duration", "10")
		time.Sleep(1500 * time.Millisecond)
		var lat []time.Duration
		for i := 0; i < 6; i++ {
			n := strings.Count(p.stdout.String(), "usr1 ")
			sent := time.Now()
			_ = syscall.Kill(p.pid(), syscall.SIGUSR1)
			if !p.waitFor(5*time.Second, func() bool { return strings.Count(p.stdout.String(), "usr1 ") > n }) {
				t.Fatalf("SIGUSR1 %d never handled while krait held the target; stderr %s", i, stderr)
			}
			lat = append(lat, time.Since(sent))
			time.Sleep(time.Duration(170+i*100) * time.Millisecond)
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		t.Logf("signal latencies while held: %v", lat)
		if lat[len(lat)/2] > 200*time.Millisecond {
			t.Errorf("signals wait for the next sample: latencies %v", lat)
		}
		_ = cmd.Process.Signal(syscall.SIGINT)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("record: %v\n%s", err, stderr)
		}
		checkRunsFree(t, p, "after record")
	})

	t.Run("sigstop", func(t *testing.T) {
		p := startHold(t)
		cmd, stderr := startRecord(t, p.pid(), "--rate", "100", "--idle")
		time.Sleep(700 * time.Millisecond)
		_ = syscall.Kill(p.pid(), syscall.SIGSTOP)
		time.Sleep(300 * time.Millisecond)
		a := holdTicks(p)
		time.Sleep(700 * time.Millisecond)
		if b := holdTicks(p); b != a {
			t.Errorf("SIGSTOP did not stop the target while krait held it: ticks %d then %d", a, b)
		}
		_ = syscall.Kill(p.pid(), syscall.SIGCONT)
		if !p.waitFor(3*time.Second, func() bool { return holdTicks(p) > a }) {
			t.Errorf("SIGCONT did not resume the target while krait held it")
		}
		time.Sleep(500 * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGINT)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("record: %v\n%s", err, stderr)
		}
		checkRunsFree(t, p, "after record")
	})

	t.Run("dump meanwhile", func(t *testing.T) {
		// A process has one tracer: a pausing dump while record holds
		// the threads says so (exit 4, one line); --nonblocking works.
		p := startHold(t)
		cmd, stderr := startRecord(t, p.pid(), "--rate", "100")
		time.Sleep(700 * time.Millisecond)
		r := krait(t, "dump", "--pid", strconv.Itoa(p.pid()))
		if r.code != 4 || !strings.Contains(r.stderr, "already traced by process "+strconv.Itoa(cmd.Process.Pid)) || !strings.Contains(r.stderr, "--nonblocking") {
			t.Errorf("dump while record holds the process: %v", r)
		}
		checkOneLine(t, "dump while record holds the process", r.stderr)
		if r := krait(t, "dump", "--pid", strconv.Itoa(p.pid()), "--nonblocking"); r.code != 0 || !strings.Contains(r.stdout, "spin") {
			t.Errorf("dump --nonblocking while record holds the process: %v", r)
		}
		_ = cmd.Process.Signal(syscall.SIGINT)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("record: %v\n%s", err, stderr)
		}
		checkRunsFree(t, p, "after record")
	})

	t.Run("threads come and go", func(t *testing.T) {
		p := startHold(t)
		out := t.TempDir() + "/churn.txt"
		r := krait(t, "record", "--pid", strconv.Itoa(p.pid()), "--rate", "200", "--duration", "2", "-f", "raw", "-o", out, "--json")
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		data := string(b)
		if !strings.Contains(data, "late_worker") {
			t.Errorf("threads started during the recording are missing:\n%s", data)
		}
		checkRunsFree(t, p, "after record")
		// Threads that ended while held were reaped: none is a zombie.
		for tid, st := range threadStates(p.pid()) {
			if st == 'Z' {
				t.Errorf("thread %d left a zombie", tid)
			}
		}
	})
}

// TestRecordCodeReuse: code objects freed and others allocated at the same
// addresses (exec in a loop, alternating two function names) are told
// apart: both names get their share, on every interpreter, in both modes.
func TestRecordCodeReuse(t *testing.T) {
	for _, py := range pythons(t) {
		t.Run(py.name, func(t *testing.T) {
			p := start(t, nil, py.path, fixture("codereuse_fixture.py"))
			if !p.waitFor(30*time.Second, func() bool { n, _ := p.stdout.Lines(); return n > 0 }) {
				t.Fatalf("fixture did not start: %s", p.stderr)
			}
			for _, mode := range [][]string{nil, {"--nonblocking"}} {
				args := append([]string{"record", "--pid", strconv.Itoa(p.pid()), "--duration", "1.5", "-f", "raw", "-o", "-"}, mode...)
				r := krait(t, args...)
				if r.code != 0 {
					t.Fatalf("%v", r)
				}
				st := collapsed(t, r.stdout)
				alpha, all := share(st, `;alpha \(`)
				gamma, _ := share(st, `;gamma \(`)
				t.Logf("%v: %d samples, alpha %.2f gamma %.2f", mode, all, alpha, gamma)
				if alpha+gamma < 0.5 {
					t.Errorf("%v: alpha+gamma only %.2f of %d samples:\n%s", mode, alpha+gamma, all, r.stdout)
					continue
				}
				if f := alpha / (alpha + gamma); f < 0.2 || f > 0.8 {
					t.Errorf("%v: alpha %.2f gamma %.2f: want about half each (a code object cached under its old name?)\n%s", mode, alpha, gamma, r.stdout)
				}
			}
		})
	}
}
