// Package dap runs krait dap under Microsoft's DebugClient
// (@vscode/debugadapter-testsupport, from npm; .ci/run installs it) on
// every interpreter krait attach supports: dap.test.js is the suite, run
// by node's test runner against a live fixture process started here.
package dap

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"krait/internal/agent"
	"krait/internal/session"
	"krait/internal/testkit"
)

// npmPrefix is where .ci/run installs the npm packages the tests use.
func npmPrefix() string {
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "krait-npm")
}

// required says whether the environment says the suite must run (CI).
func required() bool {
	return os.Getenv("KRAIT_REQUIRE_PYTHONS") != ""
}

func TestDebugClient(t *testing.T) {
	modules := filepath.Join(npmPrefix(), "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "@vscode", "debugadapter-testsupport")); err != nil {
		if required() {
			t.Fatalf("@vscode/debugadapter-testsupport is not installed under %s (.ci/run installs it)", modules)
		}
		t.Skip("@vscode/debugadapter-testsupport not installed (see .ci/run)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		if required() {
			t.Fatal("node is not installed (.ci/run installs npm, which brings it)")
		}
		t.Skip("no node")
	}
	pys := testkit.AttachPythons(t)
	root, dir, bin, cleanup, err := testkit.Setup("krait-dap-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	fixture := filepath.Join(root, "testdata", "fixtures", "dap_target.py")
	suite := filepath.Join(root, "test", "dap", "dap.test.js")
	for _, py := range pys {
		t.Run(py.Name, func(t *testing.T) {
			cmd := startTarget(t, py.Path, fixture)
			pid := cmd.Process.Pid
			ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
			defer cancel()
			run := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", suite)
			run.Dir = dir
			run.Env = append(os.Environ(), "NODE_PATH="+modules, "KRAIT_BIN="+bin,
				"TARGET_PID="+strconv.Itoa(pid), "TARGET_FILE="+fixture)
			out, err := run.CombinedOutput()
			if err != nil {
				t.Fatalf("DebugClient suite failed on %s: %v\n%s", py.Name, err, out)
			}
			t.Logf("%s", out)
			// Nothing of krait's is left: the process runs, and a new
			// session can attach (no agent left behind).
			if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
				t.Fatalf("target gone: %v", err)
			}
			checkClean(t, pid)
		})
	}
}

// startTarget runs the fixture and waits for it to be ready.
func startTarget(t *testing.T, py, fixture string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(py, fixture)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready") {
		t.Fatalf("fixture did not start: %q %v", line, err)
	}
	return cmd
}

// checkClean checks that no agent was left in the process: a new
// session can attach (krait refuses while another agent is there), and
// detaches again.
func checkClean(t *testing.T, pid int) {
	t.Helper()
	var s *session.Session
	var err error
	for deadline := time.Now().Add(15 * time.Second); ; {
		s, err = session.Attach(pid, -1, agent.MethodAuto, 10*time.Second)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("attaching after the DAP session: %v (krait's agent left behind?)", err)
	}
	if err := s.Detach(); err != nil {
		t.Error(err)
	}
	s.Close()
}
