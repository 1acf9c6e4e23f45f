package cpython

// PendingQueue is where an interpreter's pending-call queue (what
// Py_AddPendingCall fills) and the eval breaker that announces it are.
type PendingQueue struct {
	Addr uint64 // the struct _pending_calls
	// Breaker is the eval breaker beside the queue; 0 where each thread
	// state has its own (3.13+: TstateEvalBreaker).
	Breaker uint64
}

// PendingCalls returns the pending-call queue whose calls interpreter in
// runs: the runtime's up to 3.8, the interpreter's own from 3.9. False
// where krait knows none (2.7, 3.6).
func (py *Python) PendingCalls(in *Interpreter) (PendingQueue, bool) {
	L := py.L
	switch {
	case L.PendingCalls < 0 || L.PendingFirst < 0 || L.PendingLast < 0 || L.PendingCallSize <= 0:
		return PendingQueue{}, false
	case L.RuntimePending >= 0 && L.RuntimeEvalBreaker >= 0 && py.runtime != 0:
		return PendingQueue{py.runtime + uint64(L.RuntimePending), py.runtime + uint64(L.RuntimeEvalBreaker)}, true
	case L.InterpPending >= 0 && in != nil:
		q := PendingQueue{Addr: in.Addr + uint64(L.InterpPending)}
		if L.InterpEvalBreaker >= 0 {
			q.Breaker = in.Addr + uint64(L.InterpEvalBreaker)
		} else if L.TstateEvalBreaker < 0 {
			return PendingQueue{}, false
		}
		return q, true
	}
	return PendingQueue{}, false
}
