package agent

import (
	"sync"
	"time"
)

// ProbeBatch is one "events" message of the agent (PROTOCOL.md, "Probe
// events"): probe events in the order the agent queued them, each a JSON
// object with at least "kind" ("dprintf", "cache", "sql", …), and how
// many events of each kind were dropped since the previous batch: by the
// agent (its buffer full, or over its time budget) or by the client (its
// reader too slow).
type ProbeBatch struct {
	Events  []map[string]any
	Dropped map[string]int
}

// Probes delivers the agent's probe events, batch by batch; it is closed
// once the connection has ended and the last batch is taken (or was not
// taken for 2 s). One reader takes them all and dispatches by kind. The
// client holds at most probeMaxQueued events for a slow reader; more are
// dropped and counted in the next batch it takes (a batch of counts only,
// if no events are queued), so that reading never holds up the replies
// to requests.
func (c *Client) Probes() <-chan ProbeBatch { return c.probes.out }

// probeMaxQueued is how many events the client holds for a slow reader
// of Probes (as many as the agent's own buffer).
const probeMaxQueued = 50000

// probeQueue is the client's side of the probe events: the connection's
// read loop puts batches, never waiting; forward hands them to the reader.
type probeQueue struct {
	mu      sync.Mutex
	batches []ProbeBatch
	events  int            // events in batches
	lost    map[string]int // dropped here, by kind, not yet reported
	closed  bool
	wake    chan struct{} // (capacity 1) something was put, or closed
	out     chan ProbeBatch
}

func (q *probeQueue) init() {
	q.wake = make(chan struct{}, 1)
	q.out = make(chan ProbeBatch)
}

func (q *probeQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// put queues b, or, with probeMaxQueued events queued already, counts its
// events as dropped (and keeps its own counts).
func (q *probeQueue) put(b ProbeBatch) {
	q.mu.Lock()
	if q.events+len(b.Events) > probeMaxQueued {
		if q.lost == nil {
			q.lost = map[string]int{}
		}
		for k, n := range b.Dropped {
			q.lost[k] += n
		}
		for _, ev := range b.Events {
			k, _ := ev["kind"].(string)
			q.lost[k]++
		}
	} else {
		q.batches = append(q.batches, b)
		q.events += len(b.Events)
	}
	q.mu.Unlock()
	q.signal()
}

func (q *probeQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// take returns the next batch, the counts dropped here added to its
// Dropped; false once closed and empty.
func (q *probeQueue) take() (ProbeBatch, bool) {
	for {
		q.mu.Lock()
		var b ProbeBatch
		ok := true
		switch {
		case len(q.batches) > 0:
			b = q.batches[0]
			q.batches[0] = ProbeBatch{}
			q.batches = q.batches[1:]
			q.events -= len(b.Events)
		case len(q.lost) > 0:
			b = ProbeBatch{Dropped: map[string]int{}}
		default:
			ok = false
		}
		if ok {
			for k, n := range q.lost {
				b.Dropped[k] += n
			}
			q.lost = nil
			q.mu.Unlock()
			return b, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return ProbeBatch{}, false
		}
		<-q.wake
	}
}

// forward hands the batches to Probes' reader, waiting for it as long
// as the connection lasts (done not closed) and 2 s a batch after.
func (q *probeQueue) forward(done <-chan struct{}) {
	defer close(q.out)
	for {
		b, ok := q.take()
		if !ok {
			return
		}
		select {
		case q.out <- b:
			continue
		case <-done:
		}
		select {
		case q.out <- b:
		case <-time.After(2 * time.Second):
			return
		}
	}
}

// probeBatch reads an "events" message (its events decoded from marshal
// data already, if they came so).
func probeBatch(m map[string]any) ProbeBatch {
	b := ProbeBatch{Dropped: map[string]int{}}
	list, _ := m["events"].([]any)
	b.Events = make([]map[string]any, 0, len(list))
	for _, e := range list {
		if ev, ok := e.(map[string]any); ok {
			b.Events = append(b.Events, ev)
		}
	}
	if n, _ := m["n"].(float64); m["undecoded"] == true && n > 0 {
		b.Dropped["undecoded"] += int(n) // marshal data krait could not read
	}
	if d, ok := m["dropped"].(map[string]any); ok {
		for k, v := range d {
			if n, ok := v.(float64); ok && n > 0 {
				b.Dropped[k] += int(n)
			}
		}
	}
	return b
}
