package main

// A minimal Debug Adapter Protocol client: just enough to attach to a
// debugpy.listen() endpoint, arm one breakpoint and disconnect, as an IDE
// would. Messages are JSON bodies framed by a Content-Length header.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

type dapMsg struct {
	Seq        int             `json:"seq"`
	Type       string          `json:"type"` // request, response, event
	Command    string          `json:"command,omitempty"`
	Event      string          `json:"event,omitempty"`
	RequestSeq int             `json:"request_seq,omitempty"`
	Success    bool            `json:"success,omitempty"`
	Message    string          `json:"message,omitempty"`
	Body       json.RawMessage `json:"body,omitempty"`
}

type dapClient struct {
	conn    net.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	seq     int
	pending map[int]chan dapMsg
	events  chan dapMsg
	closed  chan struct{}
	err     error
}

// dialDAP connects to addr, retrying until timeout (the adapter may not be
// listening yet).
func dialDAP(addr string, timeout time.Duration) (*dapClient, error) {
	deadline := time.Now().Add(timeout)
	var conn net.Conn
	var err error
	for {
		conn, err = net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("connect %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d := &dapClient{conn: conn, pending: map[int]chan dapMsg{}, events: make(chan dapMsg, 256), closed: make(chan struct{})}
	go d.readLoop()
	return d, nil
}

func (d *dapClient) readLoop() {
	r := textproto.NewReader(bufio.NewReader(d.conn))
	var err error
	for {
		var hdr textproto.MIMEHeader
		hdr, err = r.ReadMIMEHeader()
		if err != nil {
			break
		}
		var n int
		n, err = strconv.Atoi(hdr.Get("Content-Length"))
		if err != nil {
			err = fmt.Errorf("bad Content-Length %q", hdr.Get("Content-Length"))
			break
		}
		body := make([]byte, n)
		if _, err = io.ReadFull(r.R, body); err != nil {
			break
		}
		var m dapMsg
		if err = json.Unmarshal(body, &m); err != nil {
			break
		}
		switch m.Type {
		case "response":
			d.mu.Lock()
			ch := d.pending[m.RequestSeq]
			delete(d.pending, m.RequestSeq)
			d.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		case "event":
			select {
			case d.events <- m:
			default: // nobody is waiting for events this late
			}
		case "request":
			// A reverse request (runInTerminal, startDebugging): not
			// supported by this client.
			_ = d.send(map[string]any{"type": "response", "request_seq": m.Seq, "command": m.Command,
				"success": false, "message": "not supported"}, nil)
		}
	}
	d.mu.Lock()
	d.err = err
	d.mu.Unlock()
	close(d.closed)
}

// send writes one message; a request (ch not nil) is registered under its
// sequence number first, so its response cannot arrive unclaimed.
func (d *dapClient) send(m map[string]any, ch chan dapMsg) error {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	d.seq++
	m["seq"] = d.seq
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if ch != nil {
		d.mu.Lock()
		d.pending[d.seq] = ch
		d.mu.Unlock()
	}
	_ = d.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = fmt.Fprintf(d.conn, "Content-Length: %d\r\n\r\n%s", len(b), b)
	return err
}

// request sends a request and returns the channel its response will arrive
// on.
func (d *dapClient) request(cmd string, args any) (chan dapMsg, error) {
	ch := make(chan dapMsg, 1)
	m := map[string]any{"type": "request", "command": cmd}
	if args != nil {
		m["arguments"] = args
	}
	if err := d.send(m, ch); err != nil {
		return nil, fmt.Errorf("%s: %v", cmd, err)
	}
	return ch, nil
}

func (d *dapClient) wait(cmd string, ch chan dapMsg, timeout time.Duration) (dapMsg, error) {
	select {
	case m := <-ch:
		if !m.Success {
			return m, fmt.Errorf("%s failed: %s", cmd, m.Message)
		}
		return m, nil
	case <-d.closed:
		return dapMsg{}, fmt.Errorf("%s: connection closed (%v)", cmd, d.err)
	case <-time.After(timeout):
		return dapMsg{}, fmt.Errorf("%s: no response in %v", cmd, timeout)
	}
}

func (d *dapClient) call(cmd string, args any, timeout time.Duration) (dapMsg, error) {
	ch, err := d.request(cmd, args)
	if err != nil {
		return dapMsg{}, err
	}
	return d.wait(cmd, ch, timeout)
}

func (d *dapClient) waitEvent(name string, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		select {
		case m := <-d.events:
			if m.Event == name {
				return nil
			}
		case <-d.closed:
			return fmt.Errorf("waiting for %q: connection closed (%v)", name, d.err)
		case <-deadline:
			return fmt.Errorf("no %q event in %v", name, timeout)
		}
	}
}

func (d *dapClient) close() { _ = d.conn.Close() }

// debugpyAttach attaches to the debugpy.listen() endpoint at addr as an IDE
// does (initialize, attach, then on `initialized`: setBreakpoints and
// configurationDone) and arms a breakpoint at file:line (outside the
// user's code, e.g. in the standard library, only without justMyCode). It returns the
// connected client once the adapter has answered the attach request.
func debugpyAttach(addr, file string, line int, justMyCode bool, timeout time.Duration) (*dapClient, error) {
	d, err := dialDAP(addr, timeout)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			d.close()
		}
	}()
	if _, err := d.call("initialize", map[string]any{
		"clientID": "benchattach", "clientName": "benchattach", "adapterID": "debugpy",
		"pathFormat": "path", "linesStartAt1": true, "columnsStartAt1": true,
		"supportsVariableType": true, "supportsRunInTerminalRequest": false, "locale": "en-us",
	}, timeout); err != nil {
		return nil, err
	}
	// debugpy answers attach only after configurationDone.
	attach, err := d.request("attach", map[string]any{"name": "benchattach", "request": "attach", "justMyCode": justMyCode})
	if err != nil {
		return nil, err
	}
	if err := d.waitEvent("initialized", timeout); err != nil {
		return nil, err
	}
	resp, err := d.call("setBreakpoints", map[string]any{
		"source":      map[string]any{"path": file, "name": baseName(file)},
		"breakpoints": []map[string]any{{"line": line}},
		"lines":       []int{line},
	}, timeout)
	if err != nil {
		return nil, err
	}
	var body struct {
		Breakpoints []struct {
			Verified bool   `json:"verified"`
			Line     int    `json:"line"`
			Message  string `json:"message"`
		} `json:"breakpoints"`
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil {
		return nil, fmt.Errorf("setBreakpoints: %v", err)
	}
	if len(body.Breakpoints) != 1 || !body.Breakpoints[0].Verified || body.Breakpoints[0].Line != line {
		return nil, fmt.Errorf("setBreakpoints: breakpoint not armed at line %d: %s", line, resp.Body)
	}
	if _, err := d.call("configurationDone", nil, timeout); err != nil {
		return nil, err
	}
	if _, err := d.wait("attach", attach, timeout); err != nil {
		return nil, err
	}
	ok = true
	return d, nil
}

// disconnect detaches from the debuggee without terminating it.
func (d *dapClient) disconnect(timeout time.Duration) error {
	_, err := d.call("disconnect", map[string]any{"terminateDebuggee": false}, timeout)
	d.close()
	if err != nil && errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}
