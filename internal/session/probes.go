package session

import (
	"time"

	"krait/internal/agent"
)

// Probes delivers the agent's probe events (dprintf, and whatever tracer
// a front end installs), batch by batch, with the events dropped since
// the previous batch counted by kind; closed when the connection ends.
// One reader takes them all and dispatches by kind (agent.Client.Probes).
// In a Group, read Group.Probes instead.
func (s *Session) Probes() <-chan agent.ProbeBatch { return s.c.Probes() }

// ProbeBatch is a batch of probe events of one inferior of a Group.
type ProbeBatch struct {
	Inf *Inferior
	agent.ProbeBatch
}

// Probes delivers the probe events of every inferior, those attached
// later too, batch by batch (see Session.Probes), to one reader. A
// dprintf event's "bp" is the group's breakpoint number. The channel is
// never closed (inferiors come and go); a batch with no Inf is
// FlushProbes' marker, to be ignored. From the first call on, a reader
// that stops reading makes each inferior drop and count its events.
func (g *Group) Probes() <-chan ProbeBatch {
	g.mu.Lock()
	start := g.probes == nil
	if start {
		g.probes = make(chan ProbeBatch)
	}
	ch := g.probes
	g.mu.Unlock()
	if start {
		for _, inf := range g.Inferiors() {
			g.forwardProbes(inf)
		}
	}
	return ch
}

// forwardProbes starts forwarding inf's probe events, if Probes has been
// called.
func (g *Group) forwardProbes(inf *Inferior) {
	g.mu.Lock()
	ch := g.probes
	start := ch != nil && !inf.probed
	if start {
		inf.probed = true
	}
	g.mu.Unlock()
	if start {
		g.probeWG.Add(1)
		go g.forward(inf, ch)
	}
}

// FlushProbes, after Detach, waits (timeout at most) until the reader of
// Probes has taken every batch the inferiors sent before they left, and
// has handled them: it hands the reader a last, empty batch (Inf nil)
// once they are all taken.
func (g *Group) FlushProbes(timeout time.Duration) {
	g.mu.Lock()
	ch := g.probes
	g.mu.Unlock()
	if ch == nil {
		return
	}
	done := make(chan struct{})
	go func() { g.probeWG.Wait(); close(done) }()
	deadline := time.After(timeout)
	select {
	case <-done:
	case <-deadline:
		return
	}
	select {
	case ch <- ProbeBatch{}:
	case <-deadline:
	}
}

func (g *Group) forward(inf *Inferior, ch chan<- ProbeBatch) {
	defer g.probeWG.Done()
	for b := range inf.S.Probes() {
		for _, ev := range b.Events {
			if id, ok := ev["bp"].(float64); ok && ev["kind"] == "dprintf" {
				ev["bp"] = float64(g.groupID(inf, int(id)))
			}
		}
		ch <- ProbeBatch{Inf: inf, ProbeBatch: b}
	}
}
