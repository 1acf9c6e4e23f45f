package djangoe2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-dap"

	"krait/internal/testkit"
)

// dapClient drives a krait dap process with go-dap messages.
type dapClient struct{ *testkit.DAPClient }

func startDap(t *testing.T) (*dapClient, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(kraitBin, "dap")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &dapClient{testkit.NewDAPClient(t, in, out)}
	c.Timeout = 90 * time.Second
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Error("krait dap did not end after its input closed")
		}
	})
	return c, cmd
}

func (c *dapClient) eval(frame int, expr string) string {
	c.T.Helper()
	return c.Call("evaluate", map[string]any{"expression": expr, "frameId": frame, "context": "watch"}).(*dap.EvaluateResponse).Body.Result
}

// TestDAPServer attaches krait dap to the gunicorn sync arbiter (processId:
// the master): its two workers are debugged in one session, their threads
// named by worker; one breakpoint stops a request in each worker, each
// examined in its own process; continue lets each go; disconnect leaves the
// server healthy.
func TestDAPServer(t *testing.T) {
	st := needStack(t)
	srv := st.server(t, "krait-sync")
	if len(srv.workers) != 2 {
		t.Fatalf("%s: want two workers, have %v", srv, srv.workers)
	}
	views := filepath.Join(st.env["KRAIT_DJANGO_DIR"], "shop", "views.py")
	rowsLine := findLine(t, views, "def orders(", "rows = list(queryset[")
	st.settle(t)
	c, _ := startDap(t)
	c.Call("initialize", map[string]any{"adapterID": "krait", "linesStartAt1": true})
	c.Call("attach", map[string]any{"processId": srv.parent})
	c.Next("initialized event", func(m dap.Message) bool { _, ok := m.(*dap.InitializedEvent); return ok }, 30*time.Second)

	threads := c.Call("threads", nil).(*dap.ThreadsResponse).Body.Threads
	for _, w := range srv.workers {
		found := false
		for _, th := range threads {
			found = found || strings.HasPrefix(th.Name, fmt.Sprintf("[worker %d] ", w))
		}
		if !found {
			t.Errorf("no thread of worker %d: %+v", w, threads)
		}
	}
	for _, th := range threads {
		if strings.Contains(th.Name, strconv.Itoa(srv.parent)) {
			t.Errorf("a thread of the master: %+v", th)
		}
	}
	bps := c.Call("setBreakpoints", map[string]any{"source": map[string]any{"path": views},
		"breakpoints": []map[string]any{{"line": rowsLine}}}).(*dap.SetBreakpointsResponse).Body.Breakpoints
	if len(bps) != 1 || !bps[0].Verified || bps[0].Line != rowsLine {
		t.Fatalf("setBreakpoints: %+v", bps)
	}
	c.Call("configurationDone", nil)

	// The first request stops in one worker; the second, which the other
	// worker takes (the first is busy), stops there too.
	stopsAt := map[int]int{} // worker → DAP thread
	var reqs []*pending
	for i, limit := range []int{3, 4} {
		reqs = append(reqs, getAsync(t, fmt.Sprintf("%s/orders/?limit=%d", srv.url, limit)))
		s := c.Stopped(90 * time.Second)
		if s.Reason != "breakpoint" || len(s.HitBreakpointIds) != 1 || s.HitBreakpointIds[0] != bps[0].Id {
			t.Errorf("stopped: %+v", s)
		}
		f := c.Top(s.ThreadId)
		if f.Name != "orders" || f.Line != rowsLine {
			t.Fatalf("stopped at %+v", f)
		}
		w, _ := strconv.Atoi(c.eval(f.Id, "__import__('os').getpid()"))
		if !contains(srv.workers, w) || stopsAt[w] != 0 {
			t.Fatalf("request %d stopped in process %d (workers %v, stops %v)", i+1, w, srv.workers, stopsAt)
		}
		stopsAt[w] = s.ThreadId
		if v := c.eval(f.Id, "limit"); v != fmt.Sprintf("%d.0", limit) && v != strconv.Itoa(limit) {
			t.Errorf("limit in worker %d = %s, want %d", w, v, limit)
		}
	}
	names := map[int]string{}
	for _, th := range c.Call("threads", nil).(*dap.ThreadsResponse).Body.Threads {
		names[th.Id] = th.Name
	}
	for w, th := range stopsAt {
		if !strings.HasPrefix(names[th], fmt.Sprintf("[worker %d] ", w)) {
			t.Errorf("the thread stopped in worker %d is named %q", w, names[th])
		}
	}
	c.Call("setBreakpoints", map[string]any{"source": map[string]any{"path": views}, "breakpoints": []map[string]any{}})
	for _, th := range stopsAt {
		c.Call("continue", map[string]any{"threadId": th})
	}
	for i, r := range reqs {
		if body := r.wait(t, 60*time.Second); !strings.Contains(body, fmt.Sprintf("<h1>%d orders</h1>", i+3)) {
			t.Errorf("request %d answered %q", i+1, short(body))
		}
	}
	c.Call("disconnect", map[string]any{})
	checkHealth(t, srv, "after the DAP session")
}
