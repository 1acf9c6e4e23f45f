package procinfo

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestAge(t *testing.T) {
	c := exec.Command("sleep", "30")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { c.Process.Kill(); c.Wait() }()
	time.Sleep(300 * time.Millisecond)
	age, err := Age(c.Process.Pid)
	if err != nil || age < 0 || age > 5*time.Second {
		t.Errorf("Age of a process started 0.3 s ago: %v, %v", age, err)
	}
	if self, err := Age(os.Getpid()); err != nil || self < age {
		t.Errorf("Age of the test (started before the child): %v, %v; the child's %v", self, err, age)
	}
	if _, err := Age(1 << 30); err == nil {
		t.Error("Age of a PID that cannot exist: no error")
	}
}
