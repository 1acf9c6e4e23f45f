package session

// Events is one batch of the agent's event stream: events as the agent
// sent them (JSON objects, each with a "kind"), and how many of each kind
// the agent dropped rather than slow the application down.
type Events struct {
	Events  []map[string]any
	Dropped map[string]int64
}

// Events delivers the agent's event batches. A batch nobody takes in time
// is lost and counted (LostEvents).
func (s *Session) Events() <-chan Events { return s.events }

// LostEvents is how many events krait itself lost (Events not read).
func (s *Session) LostEvents() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.evLost
}

// Call sends the agent a command and waits for its reply.
func (s *Session) Call(cmd string, args map[string]any) (map[string]any, error) {
	return s.call(cmd, args)
}
