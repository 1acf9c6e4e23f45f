package testkit

import (
	"bufio"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/google/go-dap"
)

// DAPClient speaks the Debug Adapter Protocol to krait dap (in-process or
// a process) with go-dap's messages, as an editor does.
type DAPClient struct {
	T    *testing.T
	w    io.Writer
	msgs chan dap.Message
	Kept []dap.Message // read while waiting for something else, in order
	seq  int
	// Timeout bounds waiting for a response (default a minute).
	Timeout time.Duration
}

// NewDAPClient sends requests on w and reads the adapter's messages from r
// until it ends.
func NewDAPClient(t *testing.T, w io.Writer, r io.Reader) *DAPClient {
	c := &DAPClient{T: t, w: w, msgs: make(chan dap.Message, 1000), Timeout: time.Minute}
	go func() {
		br := bufio.NewReader(r)
		for {
			m, err := dap.ReadProtocolMessage(br)
			if err != nil {
				close(c.msgs)
				return
			}
			c.msgs <- m
		}
	}()
	return c
}

// Send sends a request and returns its seq.
func (c *DAPClient) Send(command string, args any) int {
	c.T.Helper()
	c.seq++
	m := map[string]any{"seq": c.seq, "type": "request", "command": command}
	if args != nil {
		m["arguments"] = args
	}
	b, _ := json.Marshal(m)
	if err := dap.WriteBaseMessage(c.w, b); err != nil {
		c.T.Fatalf("send %s: %v", command, err)
	}
	return c.seq
}

// Next returns the first message (kept ones first) that match says yes
// to, within timeout; the others read meanwhile are kept.
func (c *DAPClient) Next(what string, match func(dap.Message) bool, timeout time.Duration) dap.Message {
	c.T.Helper()
	for i, m := range c.Kept {
		if match(m) {
			c.Kept = append(c.Kept[:i:i], c.Kept[i+1:]...)
			return m
		}
	}
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				c.T.Fatalf("waiting for %s: the adapter's output ended", what)
			}
			if match(m) {
				return m
			}
			c.Kept = append(c.Kept, m)
		case <-deadline:
			c.T.Fatalf("no %s within %s", what, timeout)
		}
	}
}

func (c *DAPClient) response(command string, seq int) *dap.Response {
	c.T.Helper()
	return c.Next("response to "+command, func(m dap.Message) bool {
		r, ok := m.(dap.ResponseMessage)
		return ok && r.GetResponse().RequestSeq == seq
	}, c.Timeout).(dap.ResponseMessage).GetResponse()
}

// Call sends a request and returns its response, failing the test on an
// error response.
func (c *DAPClient) Call(command string, args any) dap.ResponseMessage {
	c.T.Helper()
	seq := c.Send(command, args)
	m := c.Next("response to "+command, func(m dap.Message) bool {
		r, ok := m.(dap.ResponseMessage)
		return ok && r.GetResponse().RequestSeq == seq
	}, c.Timeout)
	r := m.(dap.ResponseMessage)
	if !r.GetResponse().Success {
		c.T.Fatalf("%s failed: %s", command, r.GetResponse().Message)
	}
	return r
}

// CallErr sends a request that must fail and returns its error message.
func (c *DAPClient) CallErr(command string, args any) string {
	c.T.Helper()
	r := c.response(command, c.Send(command, args))
	if r.Success {
		c.T.Fatalf("%s succeeded, want an error", command)
	}
	return r.Message
}

// Event waits for the named event.
func (c *DAPClient) Event(name string, timeout time.Duration) dap.EventMessage {
	c.T.Helper()
	return c.Next(name+" event", func(m dap.Message) bool {
		e, ok := m.(dap.EventMessage)
		return ok && e.GetEvent().Event == name
	}, timeout).(dap.EventMessage)
}

// Stopped waits for a stopped event.
func (c *DAPClient) Stopped(timeout time.Duration) dap.StoppedEventBody {
	c.T.Helper()
	return c.Next("stopped event", func(m dap.Message) bool {
		_, ok := m.(*dap.StoppedEvent)
		return ok
	}, timeout).(*dap.StoppedEvent).Body
}

// Top is a stopped thread's innermost frame.
func (c *DAPClient) Top(thread int) dap.StackFrame {
	c.T.Helper()
	st := c.Call("stackTrace", map[string]any{"threadId": thread, "levels": 1}).(*dap.StackTraceResponse).Body
	if len(st.StackFrames) != 1 {
		c.T.Fatalf("stackTrace: %+v", st)
	}
	return st.StackFrames[0]
}
