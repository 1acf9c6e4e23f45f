package cpython

import "fmt"

// TraceConfig is what the injected agent needs to install a trace function
// on every thread of a Python older than 3.12 (see
// internal/agent/PROTOCOL.md): offsets in PyThreadState and the address of
// the tracing-possible counter. It is nil on 3.12+, where the agent uses
// sys.monitoring.
type TraceConfig struct {
	CTracefunc       int64   `json:"c_tracefunc"`
	CTraceobj        int64   `json:"c_traceobj"`
	UseTracing       *int64  `json:"use_tracing"`
	Cframe           *int64  `json:"cframe"`
	CframeUseTracing *int64  `json:"cframe_use_tracing"`
	TracingPossible  *uint64 `json:"tracing_possible"`
	Interp           int64   `json:"interp"`
	Next             int64   `json:"next"`
	ThreadID         *int64  `json:"thread_id"`
}

// AgentTraceConfig returns the agent's tracing configuration.
func (py *Python) AgentTraceConfig() (*TraceConfig, error) {
	L := py.L
	if L.Monitoring {
		return nil, nil
	}
	if L.TstateTracefunc < 0 || L.TstateTraceobj < 0 {
		return nil, fmt.Errorf("Python %s: no trace function fields known", L.Version)
	}
	opt := func(v int64) *int64 {
		if v < 0 {
			return nil
		}
		return &v
	}
	tc := &TraceConfig{
		CTracefunc: L.TstateTracefunc, CTraceobj: L.TstateTraceobj,
		UseTracing: opt(L.TstateUseTracing), Interp: L.TstateInterp, Next: L.TstateNext,
		ThreadID: opt(L.TstateThreadID),
	}
	if L.CframeUseTracing >= 0 && L.TstateCframe >= 0 {
		tc.Cframe, tc.CframeUseTracing = opt(L.TstateCframe), opt(L.CframeUseTracing)
	}
	switch {
	case L.RuntimeTracingPossible >= 0 && py.runtime != 0:
		a := py.runtime + uint64(L.RuntimeTracingPossible)
		tc.TracingPossible = &a
	case L.TracingPossibleSymbol != "":
		a, ok := py.sym(L.TracingPossibleSymbol)
		if !ok {
			return nil, fmt.Errorf("Python %s in %s: symbol %s not found (stripped build)", L.Version, py.Binary.Path, L.TracingPossibleSymbol)
		}
		tc.TracingPossible = &a
	}
	return tc, nil
}

// Sym returns the run-time address of a symbol of the Python binary.
func (py *Python) Sym(name string) (uint64, bool) { return py.sym(name) }

// GILHolders returns the thread-state addresses holding a GIL now.
func (py *Python) GILHolders() (map[uint64]bool, error) {
	interps, err := py.Interpreters()
	if err != nil {
		return nil, err
	}
	return py.gilHolders(interps), nil
}
