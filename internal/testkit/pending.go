package testkit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// agentDir is the name of an agent directory krait makes in /tmp.
var agentDir = regexp.MustCompile(`^krait-[0-9a-f]{16}$`)

// PendingDirs lists the agent directories in /tmp holding a pending.py
// (only krait's pending-call way in makes one).
func PendingDirs() map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir("/tmp")
	for _, e := range ents {
		if agentDir.MatchString(e.Name()) {
			if _, err := os.Lstat(filepath.Join("/tmp", e.Name(), "pending.py")); err == nil {
				out[e.Name()] = true
			}
		}
	}
	return out
}

// PendingDirsLeft waits up to timeout for the directories with a
// pending.py made since before to go, and returns those that stay. A
// directory whose owner file names another process than pid is another
// test's (its target's, in the same /tmp) and is left out; one with no
// owner file left (krait removes it first) counts.
func PendingDirsLeft(before map[string]bool, pid int, timeout time.Duration) []string {
	end := time.Now().Add(timeout)
	for {
		var left []string
		for d := range PendingDirs() {
			if before[d] {
				continue
			}
			var o struct {
				PID int `json:"pid"`
			}
			if data, err := os.ReadFile(filepath.Join("/tmp", d, "owner")); err == nil && json.Unmarshal(data, &o) == nil && o.PID != pid {
				continue
			}
			left = append(left, d)
		}
		if len(left) == 0 || time.Now().After(end) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}
