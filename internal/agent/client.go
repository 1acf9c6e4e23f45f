package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"krait/internal/pymarshal"
	"krait/internal/target"
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
	probes probeQueue
	closed chan struct{}
	err    error
}

// ErrClosed: the agent connection is gone (the target exited or the agent
// ended).
var ErrClosed = errors.New("connection to the agent closed (the process exited or the agent ended)")

// Dial connects to the agent socket, checks that the process listening on
// it is pid (the target), and only then says hello with the token.
func Dial(sock, token string, pid int) (*Client, map[string]any, error) {
	conn, err := dialPeer(sock, pid, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	c := &Client{conn: conn, wait: map[int]chan map[string]any{}, Events: make(chan map[string]any, 256), closed: make(chan struct{})}
	c.probes.init()
	go c.readLoop()
	go c.probes.forward(c.closed)
	hello, err := c.Call("hello", map[string]any{"token": token}, 10*time.Second)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("agent hello: %w", err)
	}
	return c, hello, nil
}

// dialPeer connects to the unix socket at sock and checks, with
// SO_PEERCRED, that the process that listens on it is pid: a socket of
// any other process, swapped in for the agent's, is refused before
// anything is sent to it. The socket file appears at bind(), a moment
// before listen(): a refused connection then means "not yet".
func dialPeer(sock string, pid int, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	var err error
	for deadline := time.Now().Add(timeout); ; time.Sleep(5 * time.Millisecond) {
		conn, err = net.DialTimeout("unix", sock, timeout)
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	peer, err := peerPID(conn)
	if err == nil && peer != pid && target.StatusInt(peer, "Tgid") != pid {
		err = fmt.Errorf("the agent socket is not process %d's but process %d's; not attaching", pid, peer)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// peerPID returns the process that listens on the other end of a unix
// socket connection (SO_PEERCRED).
func peerPID(conn net.Conn) (int, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("the agent socket is not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, fmt.Errorf("cannot tell which process listens on the agent socket: %w", cerr)
	}
	return int(cred.Pid), nil
}

// maxMessage bounds one message of the agent (a line, or the marshal
// data that follows an "events" line).
const maxMessage = 64 << 20

func (c *Client) readLoop() {
	r := bufio.NewReaderSize(c.conn, 1<<16)
	for {
		m, err := readMessage(r)
		if err != nil {
			break
		}
		if m == nil {
			continue
		}
		if m["event"] == "events" {
			c.probes.put(probeBatch(m))
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
	c.probes.close()
}

// readMessage reads one message of the agent: a JSON line and, for an
// "events" message with "marshal": N, the N bytes of marshal data that
// follow it, decoded into "events" (PROTOCOL.md). A line that is not JSON
// is nil; an error ends the connection.
func readMessage(r *bufio.Reader) (map[string]any, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if json.Unmarshal(line, &m) != nil {
		return nil, nil
	}
	n, ok := m["marshal"].(float64)
	if !ok || m["event"] != "events" {
		return m, nil
	}
	if n < 0 || n > maxMessage {
		return nil, fmt.Errorf("agent events of %v bytes", n)
	}
	data := make([]byte, int(n))
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, err
	}
	evs, err := pymarshal.Decode(data)
	if err != nil {
		m["undecoded"] = true // the batch is lost, and counted as dropped
	}
	m["events"] = evs
	return m, nil
}

// readLine reads one \n-terminated line (without it), of at most
// maxMessage bytes.
func readLine(r *bufio.Reader) ([]byte, error) {
	var long []byte
	for {
		part, err := r.ReadSlice('\n')
		switch {
		case err == nil:
			if long == nil {
				return part[:len(part)-1], nil
			}
			return append(long, part[:len(part)-1]...), nil
		case errors.Is(err, bufio.ErrBufferFull):
			if len(long)+len(part) > maxMessage {
				return nil, fmt.Errorf("agent message over %d bytes", maxMessage)
			}
			long = append(long, part...)
		default:
			return nil, err
		}
	}
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
		return c.reply(m)
	case <-c.closed:
		select { // the reply may have come just before the end (detach)
		case m := <-ch:
			return c.reply(m)
		default:
		}
		return nil, ErrClosed
	case <-time.After(timeout):
		return nil, fmt.Errorf("agent did not answer %q within %s", cmd, timeout)
	}
}

func (c *Client) reply(m map[string]any) (map[string]any, error) {
	if ok, _ := m["ok"].(bool); !ok {
		msg, _ := m["error"].(string)
		if msg == "" {
			msg = "request failed"
		}
		return m, &AgentError{Msg: msg}
	}
	return m, nil
}

// Done is closed when the connection ends.
func (c *Client) Done() <-chan struct{} { return c.closed }

// Close drops the connection; the agent then cleans up and exits.
func (c *Client) Close() error { return c.conn.Close() }

// AgentError is an error the agent reported (one line).
type AgentError struct{ Msg string }

func (e *AgentError) Error() string { return e.Msg }
