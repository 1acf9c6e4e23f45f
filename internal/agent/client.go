package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
)

// Client speaks the agent's protocol (PROTOCOL.md) over its unix socket.
type Client struct {
	conn   net.Conn
	mu     sync.Mutex // serialises writes
	nextID int
	wait   map[int]chan map[string]any
	wmu    sync.Mutex // guards wait
	// Events delivers the agent's events; it is closed when the
	// connection ends.
	Events chan map[string]any
	closed chan struct{}
	err    error
}

// ErrClosed: the agent connection is gone (the target exited or the agent
// ended).
var ErrClosed = errors.New("connection to the agent closed (the process exited or the agent ended)")

// Dial connects to the agent socket and says hello with the token.
func Dial(sock, token string) (*Client, map[string]any, error) {
	// The socket file appears at bind(), a moment before listen(): a
	// refused connection then means "not yet".
	var conn net.Conn
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		conn, err = net.DialTimeout("unix", sock, 5*time.Second)
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return nil, nil, err
	}
	c := &Client{conn: conn, wait: map[int]chan map[string]any{}, Events: make(chan map[string]any, 256), closed: make(chan struct{})}
	go c.readLoop()
	hello, err := c.Call("hello", map[string]any{"token": token}, 10*time.Second)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("agent hello: %w", err)
	}
	return c, hello, nil
}

func (c *Client) readLoop() {
	sc := bufio.NewScanner(c.conn)
	sc.Buffer(make([]byte, 1<<16), 64<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			continue
		}
		if _, ok := m["event"]; ok {
			select {
			case c.Events <- m:
			default: // a client that does not read events loses them
			}
			continue
		}
		id, _ := m["id"].(float64)
		c.wmu.Lock()
		ch := c.wait[int(id)]
		delete(c.wait, int(id))
		c.wmu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
	c.err = ErrClosed
	close(c.closed)
	close(c.Events)
}

// Call sends a request and waits for its reply.
func (c *Client) Call(cmd string, args map[string]any, timeout time.Duration) (map[string]any, error) {
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	req := map[string]any{"id": id, "cmd": cmd}
	for k, v := range args {
		req[k] = v
	}
	ch := make(chan map[string]any, 1)
	c.wmu.Lock()
	c.wait[id] = ch
	c.wmu.Unlock()
	data, _ := json.Marshal(req)
	_, err := c.conn.Write(append(data, '\n'))
	c.mu.Unlock()
	if err != nil {
		return nil, ErrClosed
	}
	select {
	case m := <-ch:
		if ok, _ := m["ok"].(bool); !ok {
			msg, _ := m["error"].(string)
			if msg == "" {
				msg = "request failed"
			}
			return m, &AgentError{Msg: msg}
		}
		return m, nil
	case <-c.closed:
		return nil, ErrClosed
	case <-time.After(timeout):
		return nil, fmt.Errorf("agent did not answer %q within %s", cmd, timeout)
	}
}

// Done is closed when the connection ends.
func (c *Client) Done() <-chan struct{} { return c.closed }

// Close drops the connection; the agent then cleans up and exits.
func (c *Client) Close() error { return c.conn.Close() }

// AgentError is an error the agent reported (one line).
type AgentError struct{ Msg string }

func (e *AgentError) Error() string { return e.Msg }
