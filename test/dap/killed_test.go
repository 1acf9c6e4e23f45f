package dap

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-dap"

	"krait/internal/testkit"
)

// TestDapEnds: krait dap ending without a disconnect, SIGKILL (the agent
// sees its connection end) or SIGTERM (krait dap detaches), while a thread
// is held at a breakpoint, leaves the process as detach does: it runs on,
// and a new session can attach.
func TestDapEnds(t *testing.T) {
	pys := testkit.AttachPythons(t)
	root, _, bin, cleanup, err := testkit.Setup("krait-dap-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	fixture := filepath.Join(root, "testdata", "fixtures", "dap_target.py")
	line := testkit.FixtureLine(t, fixture, "# LINE work")
	for _, py := range pys {
		if py.Minor != "3.10" && py.Minor != "3.13" {
			continue
		}
		for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
			t.Run(py.Name+"/"+sig.String(), func(t *testing.T) {
				cmd := startTarget(t, py.Path, fixture)
				ad := exec.Command(bin, "dap")
				in, _ := ad.StdinPipe()
				out, _ := ad.StdoutPipe()
				if err := ad.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					ad.Process.Kill()
					ad.Wait()
				})
				msgs := make(chan dap.Message, 100)
				go func() {
					r := bufio.NewReader(out)
					for {
						m, err := dap.ReadProtocolMessage(r)
						if err != nil {
							close(msgs)
							return
						}
						msgs <- m
					}
				}()
				seq := 0
				send := func(command string, args any) {
					seq++
					b, _ := json.Marshal(map[string]any{"seq": seq, "type": "request", "command": command, "arguments": args})
					if err := dap.WriteBaseMessage(in, b); err != nil {
						t.Fatal(err)
					}
				}
				send("initialize", map[string]any{"adapterID": "krait"})
				send("attach", map[string]any{"processId": cmd.Process.Pid})
				send("setBreakpoints", map[string]any{"source": map[string]any{"path": fixture}, "breakpoints": []map[string]any{{"line": line}}})
				send("configurationDone", map[string]any{})
				deadline := time.After(60 * time.Second)
			wait:
				for {
					select {
					case m, ok := <-msgs:
						if !ok {
							t.Fatal("krait dap's output ended")
						}
						if r, ok := m.(dap.ResponseMessage); ok && !r.GetResponse().Success {
							t.Fatalf("%s: %s", r.GetResponse().Command, r.GetResponse().Message)
						}
						if _, ok := m.(*dap.StoppedEvent); ok {
							break wait
						}
					case <-deadline:
						t.Fatal("no stopped event")
					}
				}
				ad.Process.Signal(sig)
				ad.Wait()
				if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
					t.Fatalf("target gone: %v", err)
				}
				checkClean(t, cmd.Process.Pid)
			})
		}
	}
}
