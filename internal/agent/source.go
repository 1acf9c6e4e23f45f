package agent

import (
	"embed"
	"strings"
)

// The agent is a small package of Python files by concern, embedded here
// and joined into the one source krait writes as agent.py.
//
//go:embed python/*.py
var agentFiles embed.FS

// agentParts is the order the files are joined in: definitions before what
// runs at load (agent.py ends by starting the agent).
var agentParts = []string{
	"prelude.py",     // imports, constants
	"render.py",      // safe rendering
	"codes.py",       // code objects, the __code__ wrapper
	"records.py",     // Err, Bp, Stopped, Step
	"events.py",      // probe events: bounded buffer, flushed by the agent thread
	"serving.py",     // the agent thread: socket, requests, cleanup
	"files.py",       // paths, compiled line tables
	"breakpoints.py", // break, delete, pending breakpoints
	"stopping.py",    // stopping a thread, steps
	"threads.py",     // commands on stopped threads
	"children.py",    // a value's children by path (variables trees)
	"completing.py",  // completions of names, attributes, keys
	"backends.py",    // monitoring or settrace
	"monitoring.py",  // sys.monitoring (3.12+)
	"settrace.py",    // trace functions in thread states (< 3.12)
	"wrapping.py",    // __code__ wrappers (< 3.12)
	"signals.py",     // a process told to stop while a thread is held
	"cachetrace.py",  // krait cache: Django cache operations, SQL, commits
	"agent.py",       // the Agent class, and its start
}

// chunkMarker separates the parts: krait's loader compiles the source one
// chunk at a time (inject.go, loaderSource), so that no single compile
// holds the GIL for long. A part may hold markers of its own.
const chunkMarker = "\n# krait: chunk\n"

// agentSource is the agent as krait writes it into the target.
var agentSource = joinAgent()

func joinAgent() []byte {
	parts := make([]string, len(agentParts))
	for i, name := range agentParts {
		data, err := agentFiles.ReadFile("python/" + name)
		if err != nil {
			panic("agent source: " + err.Error())
		}
		parts[i] = strings.TrimRight(string(data), "\n")
	}
	return []byte(strings.Join(parts, chunkMarker) + "\n")
}
