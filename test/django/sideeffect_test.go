package djangoe2e

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestNoSideEffects: krait ps, requests and dump against the idle
// servers send no statement to PostgreSQL — reading a process's memory
// runs nothing in it. The servers issue no statement while idle, so any
// new line of theirs in the statement log would be krait's doing.
func TestNoSideEffects(t *testing.T) {
	st := needStack(t)
	st.settle(t)
	off := st.logOffset(t)

	pids := st.pythonPIDs()
	kraitOK(t, "ps", "--json")
	kraitOK(t, "ps")
	kraitOK(t, append([]string{"requests", "--json"}, pidArgs("--pid", pids)...)...)
	kraitOK(t, append([]string{"requests"}, pidArgs("--pid", pids)...)...)
	kraitOK(t, "requests", "--all", "--json")
	for _, p := range pids {
		kraitOK(t, "dump", "--pid", strconv.Itoa(p), "--locals", "--json")
		kraitOK(t, "dump", "--pid", strconv.Itoa(p), "--locals")
		kraitOK(t, "dump", "--pid", strconv.Itoa(p), "--nonblocking")
	}
	// Give a statement krait might have caused time to reach the log.
	time.Sleep(time.Second)
	if lines := st.statements(t, off, st.appNames()...); len(lines) > 0 {
		t.Errorf("the servers sent %d statements while krait read them:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if other := st.logSince(t, off); len(other) > 0 {
		t.Logf("other new lines in the statement log:\n%s", strings.Join(other, "\n"))
	}
}
