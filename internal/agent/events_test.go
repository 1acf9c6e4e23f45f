package agent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestAgentProbeEvents: the agent's probe events (events.py) through the
// Go client (Client.Probes), with dprintf as their producer, on every
// interpreter: each crossing of the location is one event, in the
// application's thread, with its arguments' values as the fixture itself
// renders them (repr, computed inside the target), an argument that
// raises as its error, a condition; then a flood (a dprintf in a tight
// loop) while krait does not read: the application runs on at full speed,
// the agent drops what its buffer cannot hold and counts it, every hit is
// either received or counted as dropped, and detach leaves nothing.
func TestAgentProbeEvents(t *testing.T) {
	eachFixture(t, nil, func(t *testing.T, fx *agentFixture) {
		t.Run("client", func(t *testing.T) {
			fx.t = t
			probeClient(t, fx)
		})
		t.Run("flood", func(t *testing.T) {
			fx.t = t
			probeFlood(t, fx)
		})
	})
}

func probeClient(t *testing.T, fx *agentFixture) {
	dir := fx.load("tok", 30, false)
	var c *Client
	retry(t, 5*time.Second, "agent socket", func() (err error) {
		c, _, err = Dial(filepath.Join(dir, "sock"), "tok", fx.pid)
		return err
	})
	defer c.Close()
	call := func(cmd string, args map[string]any) map[string]any {
		t.Helper()
		r, err := c.Call(cmd, args, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return r
	}
	if _, err := c.Call("dprintf", map[string]any{"file": "fixture.py", "line": fx.line("probe"), "format": "x", "args": []any{"i +"}}, 10*time.Second); err == nil || !strings.Contains(err.Error(), "SyntaxError") {
		t.Fatalf("dprintf with a bad expression: %v", err)
	}
	r := call("dprintf", map[string]any{"file": "fixture.py", "line": fx.line("probe"), "format": "%d %s %r",
		"args": []any{"i", "obj[1]", "obj", "nosuch", "obj[2]['k']", "i > 0", "[[list(range(100))] * 100] * 100"}})
	bp := r["bp"].(map[string]any)
	id := int(bp["id"].(float64))
	if d, _ := bp["dprintf"].(map[string]any); d["format"] != "%d %s %r" || len(d["args"].([]any)) != 7 {
		t.Fatalf("dprintf bp: %v", bp)
	}

	// values, by the iteration they were taken in
	got := map[string][]any{}
	deadline := time.After(15 * time.Second)
	for len(got) < 20 {
		select {
		case b, ok := <-c.Probes():
			if !ok {
				t.Fatal("connection closed")
			}
			for _, ev := range b.Events {
				if ev["kind"] != "dprintf" || int(ev["bp"].(float64)) != id || ev["thread_name"] != "worker" {
					t.Fatalf("event %v", ev)
				}
				if tm, _ := ev["time"].(float64); time.Since(time.Unix(0, int64(tm*1e9))) > time.Minute {
					t.Fatalf("event time %v", ev["time"])
				}
				vals := ev["values"].([]any)
				if ty := fmt.Sprint(ev["types"]); ty != "[int str tuple <nil> float bool list]" {
					t.Fatalf("types %s", ty)
				}
				got[vals[0].([]any)[1].(string)] = vals
			}
		case <-deadline:
			t.Fatalf("%d events in 15 s", len(got))
		}
	}
	st := fx.waitStatus(5*time.Second, "status", func(fixtureStatus) bool { return true })
	checked := 0
	for i, want := range st.Probes {
		vals, ok := got[i]
		if !ok {
			continue
		}
		checked++
		n, _ := strconv.Atoi(i)
		for k, w := range [][2]string{{"int", i}, {"str", "s" + i}, {"other", want}, {"error", "<error: NameError: name 'nosuch' is not defined>"},
			{"float", strconv.FormatFloat(float64(n)/4, 'f', -1, 64)}, {"bool", "True"}} {
			v := vals[k].([]any)
			if v[0] != w[0] || (v[1] != w[1] && !(w[0] == "float" && strings.TrimSuffix(v[1].(string), ".0") == w[1])) {
				t.Errorf("i=%s value %d: %v, want %v", i, k, v, w)
			}
		}
		if big := vals[6].([]any); big[0] != "other" || len(big[1].(string)) != 2000 || !strings.HasPrefix(big[1].(string), "[[[0, 1, 2, ") {
			t.Errorf("a million values (rendering is bounded): %v", big)
		}
	}
	if checked == 0 {
		t.Fatalf("no event for an iteration the fixture still holds (events %d, fixture %d)", len(got), len(st.Probes))
	}

	// A condition, then hits in the listing; delete stops the events.
	call("condition", map[string]any{"bp": id, "cond": "i % 3 == 0"})
	drainProbes(c, 300*time.Millisecond) // queued before the condition (sent before its reply)
	for n, deadline := 0, time.After(15*time.Second); n < 5; {
		select {
		case b := <-c.Probes():
			for _, ev := range b.Events {
				v := ev["values"].([]any)[0].([]any)[1].(string)
				if k, _ := strconv.Atoi(v); k%3 != 0 {
					t.Fatalf("condition i %% 3 == 0: event for i=%s", v)
				}
				n++
			}
		case <-deadline:
			t.Fatalf("%d events in 15 s with the condition", n)
		}
	}
	bps := call("breakpoints", nil)["bps"].([]any)
	if h := bps[0].(map[string]any)["hits"].(float64); h < 25 {
		t.Errorf("hits %v after 25 events or more", h)
	}
	call("delete", map[string]any{"bp": id})
	drainProbes(c, 300*time.Millisecond)
	if n := drainProbes(c, 500*time.Millisecond); n != 0 {
		t.Errorf("%d events after delete", n)
	}
	call("detach", nil)
	fx.gone(dir, 3*time.Second)
}

// drainProbes reads the batches that arrive for d (0: those already
// there) and returns how many events they held.
func drainProbes(c *Client, d time.Duration) int {
	n := 0
	end := time.After(d)
	for {
		select {
		case b := <-c.Probes():
			n += len(b.Events)
			continue
		default:
		}
		if d == 0 {
			return n
		}
		select {
		case b := <-c.Probes():
			n += len(b.Events)
		case <-end:
			return n
		}
	}
}

// probeFlood: a dprintf hit as fast as a thread can loop, while the
// client does not read for 3 s (the agent's writes block): the loop never
// slows to a stop; then reads slowly (some 80 KB/s, less than the flood
// makes) until the agent has dropped and counted what its buffer could
// not hold; and every hit is accounted for once krait reads again.
func probeFlood(t *testing.T, fx *agentFixture) {
	// A buffer of 2,000 events, not 50,000: a machine busy enough to slow
	// the flood to a few thousand hits a second fills it too.
	fx.evMax = 2000
	dir := fx.load("tok", 30, false)
	fx.evMax = 0
	fx.send("flood")
	fx.waitStatus(5*time.Second, "flood started", func(s fixtureStatus) bool { return s.Flood > 0 })
	var conn net.Conn
	retry(t, 5*time.Second, "agent socket", func() (err error) {
		conn, err = net.Dial("unix", filepath.Join(dir, "sock"))
		return err
	})
	defer conn.Close()
	slow := &slowReader{r: conn}
	rd := bufio.NewReaderSize(slow, 1<<20)
	id := 0
	received, dropped := 0, 0
	count := func(m map[string]any) {
		received += len(m["events"].([]any))
		for _, n := range m["dropped"].(map[string]any) {
			dropped += int(n.(float64))
		}
	}
	call := func(cmd string, args map[string]any) map[string]any {
		t.Helper()
		id++
		req := map[string]any{"id": id, "cmd": cmd}
		for k, v := range args {
			req[k] = v
		}
		data, _ := json.Marshal(req)
		conn.Write(append(data, '\n'))
		for {
			m := readMsg(t, rd)
			if m["event"] == "events" {
				count(m) // (sent before the reply)
				continue
			}
			if m["id"] != float64(id) || m["ok"] != true {
				t.Fatalf("%s: %v", cmd, m)
			}
			return m
		}
	}
	call("hello", map[string]any{"token": "tok"})
	call("dprintf", map[string]any{"file": "fixture.py", "line": fx.line("flood-body"), "format": "%d", "args": []any{"i"}})

	// Not reading: the loop goes on, every 100 ms status showing progress.
	before := fx.waitStatus(5*time.Second, "status", func(fixtureStatus) bool { return true }).Flood
	var stalls int
	last := before
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		st := fx.waitStatus(5*time.Second, "status", func(fixtureStatus) bool { return true })
		if st.Flood == last {
			stalls++
		}
		last = st.Flood
	}
	rate := float64(last-before) / 3
	t.Logf("flood loop while krait did not read: %.0f iterations/s, %d status periods without progress", rate, stalls)
	if stalls > 3 || last-before < 3000 {
		t.Errorf("the application was held up: %d iterations in 3 s, %d periods without progress", last-before, stalls)
	}

	// Reading slowly, until the agent says it dropped some: each write of
	// the agent's completes well within the 10 s after which it would drop
	// the connection.
	slow.on.Store(true)
	began := time.Now()
	for dropped == 0 {
		if time.Since(began) > 90*time.Second {
			t.Fatalf("reading slowly for 90 s: %d events received, none dropped", received)
		}
		m := readMsg(t, rd)
		if m["event"] == "events" {
			count(m)
		}
	}
	t.Logf("reading slowly: the agent dropped events after %.1f s (%d received)", time.Since(began).Seconds(), received)
	slow.on.Store(false)

	// Read again: drops counted. Disabled, the dprintf's hit count stays
	// put; once what was queued is flushed, received + dropped (since the
	// dprintf was set) = hits.
	ask := func(cmd string, args map[string]any) map[string]any {
		id++
		req := map[string]any{"id": id, "cmd": cmd}
		for k, v := range args {
			req[k] = v
		}
		data, _ := json.Marshal(req)
		conn.Write(append(data, '\n'))
		for {
			m := readMsg(t, rd)
			if m["event"] == "events" {
				count(m)
			} else if m["id"] == float64(id) {
				return m
			}
		}
	}
	ask("disable", map[string]any{"bp": 1})
	hits := int(ask("breakpoints", nil)["bps"].([]any)[0].(map[string]any)["hits"].(float64))
	conn.SetReadDeadline(time.Now().Add(time.Second)) // what was queued, flushed within 50 ms
	for {
		m, err := readMessage(rd)
		if err != nil {
			break
		}
		if m != nil {
			count(m)
		}
	}
	conn.SetReadDeadline(time.Time{})
	t.Logf("hits %d: received %d, dropped %d", hits, received, dropped)
	if dropped == 0 || received == 0 || received+dropped != hits {
		t.Errorf("hits %d: received %d, dropped %d: want both, adding up to the hits", hits, received, dropped)
	}
	call("detach", nil)
	fx.gone(dir, 5*time.Second)
}

func readMsg(t *testing.T, rd *bufio.Reader) map[string]any {
	t.Helper()
	m, err := readMessage(rd)
	if err != nil {
		t.Fatalf("reading from the agent: %v", err)
	}
	if m == nil {
		t.Fatalf("the agent sent a line that is not JSON")
	}
	if m["undecoded"] == true {
		t.Fatalf("the agent sent events krait could not decode")
	}
	return m
}

// slowReader reads at most 8 KB every 100 ms while on.
type slowReader struct {
	r  io.Reader
	on atomic.Bool
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.on.Load() {
		time.Sleep(100 * time.Millisecond)
		if len(p) > 8<<10 {
			p = p[:8<<10]
		}
	}
	return s.r.Read(p)
}

// TestProbeBacklog: events a reader does not take in time are dropped
// by the client beyond probeMaxQueued and counted in the next batch it
// takes, or in a batch of counts alone when no events are left.
func TestProbeBacklog(t *testing.T) {
	var q probeQueue
	q.init()
	done := make(chan struct{})
	evs := func(kind string, n int) []map[string]any {
		out := make([]map[string]any, n)
		for i := range out {
			out[i] = map[string]any{"kind": kind}
		}
		return out
	}
	q.put(ProbeBatch{Events: evs("a", probeMaxQueued-10), Dropped: map[string]int{}})
	q.put(ProbeBatch{Events: evs("b", 20), Dropped: map[string]int{"a": 5}}) // no room: dropped
	q.put(ProbeBatch{Events: evs("c", 10), Dropped: map[string]int{}})       // room
	// The reader starts now: had it taken the first batch before the
	// second was put, there would have been room for that one too.
	go q.forward(done)
	b := <-q.out
	if len(b.Events) != probeMaxQueued-10 || b.Dropped["b"] != 20 || b.Dropped["a"] != 5 {
		t.Fatalf("first batch: %d events, dropped %v", len(b.Events), b.Dropped)
	}
	if b = <-q.out; len(b.Events) != 10 || len(b.Dropped) != 0 {
		t.Fatalf("second batch: %d events, dropped %v", len(b.Events), b.Dropped)
	}
	q.put(ProbeBatch{Events: evs("d", probeMaxQueued+1), Dropped: map[string]int{}})
	if b = <-q.out; len(b.Events) != 0 || b.Dropped["d"] != probeMaxQueued+1 {
		t.Fatalf("counts alone: %d events, dropped %v", len(b.Events), b.Dropped)
	}
	close(done)
	q.close()
	if _, ok := <-q.out; ok {
		t.Fatal("Probes not closed")
	}
}
