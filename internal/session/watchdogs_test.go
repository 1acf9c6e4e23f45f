package session

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestModWSGIConf(t *testing.T) {
	dir := t.TempDir()
	main := `ServerRoot "` + dir + `"
Timeout 120
# WSGIDaemonProcess shop request-timeout=1
Include conf.d/*.conf
`
	site := `WSGIDaemonProcess other processes=2 request-timeout=5
WSGIDaemonProcess shop processes=2 threads=4 \
    request-timeout=20 inactivity-timeout=300 \
    deadlock-timeout=60 display-name=%{GROUP}
`
	if err := os.MkdirAll(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "httpd.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "conf.d", "shop.conf"), []byte(site), 0o644); err != nil {
		t.Fatal(err)
	}
	got := map[string]Watchdog{}
	for _, w := range modWSGIConf(filepath.Join(dir, "httpd.conf"), dir, "shop") {
		got[w.Name] = w
	}
	want := map[string]struct {
		d               time.Duration
		held, fromStart bool
	}{
		"mod_wsgi request-timeout":    {20 * time.Second, false, true},
		"mod_wsgi inactivity-timeout": {300 * time.Second, false, false},
		"mod_wsgi deadlock-timeout":   {60 * time.Second, true, false},
		"mod_wsgi socket-timeout":     {120 * time.Second, false, false}, // Apache's Timeout
	}
	if len(got) != len(want) {
		t.Errorf("got %d watchdogs, want %d: %+v", len(got), len(want), got)
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok || g.Timeout != w.d || g.Held != w.held || g.FromStart != w.fromStart {
			t.Errorf("%s: got %+v (found %v), want %v", name, g, ok, w)
		}
	}
	if ws := modWSGIConf(filepath.Join(dir, "httpd.conf"), dir, "nosuch"); ws != nil {
		t.Errorf("a group the configuration does not have: %+v", ws)
	}
}

func TestFlagValue(t *testing.T) {
	args := []string{"gunicorn", "-w", "2", "--timeout=7", "-t", "9", "--bind", "x"}
	if v, ok := flagValue(args, "--timeout", "-t"); !ok || v != "7" {
		t.Errorf("--timeout=7: got %q %v", v, ok)
	}
	if v, ok := flagValue([]string{"uwsgi", "--harakiri", "30"}, "--harakiri", ""); !ok || v != "30" {
		t.Errorf("--harakiri 30: got %q %v", v, ok)
	}
	if v, ok := flagValue([]string{"gunicorn", "-t15"}, "--timeout", "-t"); !ok || v != "15" {
		t.Errorf("-t15: got %q %v", v, ok)
	}
	if _, ok := flagValue([]string{"gunicorn", "--threads", "4"}, "--timeout", "-t"); ok {
		t.Errorf("--threads taken for -t")
	}
	if Secs(1500*time.Millisecond) != "1.5s" || Secs(30*time.Second) != "30s" {
		t.Errorf("Secs: %s %s", Secs(1500*time.Millisecond), Secs(30*time.Second))
	}
}
