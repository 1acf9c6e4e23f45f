package session

// Call sends the agent a command and waits for its reply (commands of
// tools built on the session, e.g. krait cache's cache_start).
func (s *Session) Call(cmd string, args map[string]any) (map[string]any, error) {
	return s.call(cmd, args)
}
