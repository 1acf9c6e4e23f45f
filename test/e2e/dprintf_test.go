package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"krait/internal/testkit"
)

// dprintf (gdb's dynamic printf) in krait attach, on the attach test server
// (testdata/fixtures/shop/probe.py): each crossing prints a line, prefixed
// with time, process and thread, whose values are those the process itself
// shows (the fixture answers with their reprs); the thread never stops;
// condition, hit counts in info breakpoints, delete; batch mode with
// --duration; a flood of crossings (events dropped, counted and said, the
// application not held up, krait responsive); nothing left after detach
// or after krait is killed.

// dprintfLine is one dprintf line: time, process, thread number and name,
// and the text.
var dprintfLine = regexp.MustCompile(`^\[(\d\d:\d\d:\d\d\.\d{6}) process (\d+) thread (\d+)(?: "([^"]*)")?\] (.*)$`)

func TestAttachDprintf(t *testing.T) {
	for _, py := range pythons(t) {
		py := py
		if py.minor == "2.7" {
			continue // attach supports 3.6+
		}
		t.Run(py.name, func(t *testing.T) { testDprintf(t, py) })
	}
}

func testDprintf(t *testing.T, py python) {
	srv := startAttachServer(t, py)
	s := attach(t, srv.p.pid())
	tick := srv.marks["tick"]
	pid := srv.p.pid()

	// Errors at set time, as gdb's.
	for cmd, want := range map[string]string{
		fmt.Sprintf(`dprintf probe.py:%d,"%%d %%d\n",i`, tick): "Wrong number of arguments for specified format-string",
		fmt.Sprintf(`dprintf probe.py:%d,"%%y\n",i`, tick):     "Unrecognized format specifier 'y' in printf",
		fmt.Sprintf(`dprintf probe.py:%d`, tick):               "Format string required",
		fmt.Sprintf(`dprintf probe.py:%d,"%%d",i +`, tick):     "SyntaxError",
	} {
		if out := s.do(cmd); !strings.Contains(out, want) {
			t.Errorf("%s: %q, want %q", cmd, out, want)
		}
	}
	if out := s.do("info breakpoints"); !strings.Contains(out, "No breakpoints") {
		t.Errorf("a refused dprintf was set: %s", out)
	}

	out := s.do(fmt.Sprintf(`dprintf probe.py:%d,"tick %%d %%s %%r %%5.2f|%%x\n",i,obj[1],obj,obj[2]['k'],i`, tick))
	mustMatch(t, "dprintf", fmt.Sprintf(`Dprintf 1 at \S+/shop/probe\.py:%d \(tick\)`, tick), out)

	// Each crossing, a line with the values the process shows.
	want := ticks(t, srv, 5, 1)
	lines := dprintfLines(t, s, len(want), "tick ")
	for i, l := range lines {
		m := dprintfLine.FindStringSubmatch(l)
		if m == nil || m[2] != strconv.Itoa(pid) {
			t.Fatalf("line %q: want [time process %d thread N \"name\"] text", l, pid)
		}
		w := want[i]
		n, _ := strconv.Atoi(w[0])
		text := fmt.Sprintf("tick %s %s %s %5.2f|%x", w[0], w[1], w[2], float64(n)/4, n)
		if m[5] != text {
			t.Errorf("line %d: %q, want %q", i, m[5], text)
		}
		if ts, err := time.ParseInLocation("15:04:05.000000", m[1], time.Local); err != nil {
			t.Errorf("time %q: %v", m[1], err)
		} else if now := time.Now(); ts.Hour() != now.Hour() && ts.Hour() != (now.Hour()+23)%24 {
			t.Errorf("time %q is not now (%s)", m[1], now.Format("15:04:05"))
		}
	}

	// A condition; hits (crossings where it held, as gdb counts them) and
	// the printf line in info breakpoints.
	s.do("condition 1 i % 2 == 0")
	want = ticks(t, srv, 6, 10)
	lines = dprintfLines(t, s, 3, "tick ")
	for i, l := range lines {
		if w := want[2*i]; !strings.Contains(l, "] tick "+w[0]+" ") {
			t.Errorf("with condition i %% 2 == 0: line %q, want i=%s", l, w[0])
		}
	}
	out = s.do("info breakpoints")
	mustMatch(t, "info breakpoints", fmt.Sprintf(`(?m)^1\s+dprintf\s+keep y\s+in tick at \S+/shop/probe\.py:%d$`, tick), out)
	mustMatch(t, "info breakpoints", `(?m)^\tstop only if i % 2 == 0$`, out)
	mustMatch(t, "info breakpoints", `(?m)^\tbreakpoint already hit 8 times$`, out)
	mustMatch(t, "info breakpoints", `(?m)^        printf "tick %d %s %r %5\.2f\|%x\\n",i,obj\[1\],obj,obj\[2\]\['k'\],i$`, out)

	// A value that cannot be shown says so; the thread goes on.
	s.do("delete 1")
	s.do(fmt.Sprintf(`dprintf probe.py:%d,"%%d %%s %%d\n",nosuch,obj[1],obj[1]`, tick))
	want = ticks(t, srv, 1, 30)
	lines = dprintfLines(t, s, 1, "<error")
	if w := fmt.Sprintf("<error: NameError: name 'nosuch' is not defined> %s <error: %%d format: a number is required, not str>", want[0][1]); !strings.HasSuffix(lines[0], "] "+w) {
		t.Errorf("line %q, want text %q", lines[0], w)
	}

	// A condition that raises: said on the line; the thread goes on.
	s.do("condition 2 nosuch > 1")
	ticks(t, srv, 1, 31)
	lines = dprintfLines(t, s, 1, "<error in")
	if w := "<error in dprintf 2's condition: NameError: name 'nosuch' is not defined>"; !strings.HasSuffix(lines[0], "] "+w) {
		t.Errorf("line %q, want text %q", lines[0], w)
	}

	// delete: no more lines.
	s.do("delete")
	ticks(t, srv, 3, 40)
	if out := s.do("info breakpoints"); strings.Contains(out, "<error") || !strings.Contains(out, "No breakpoints") {
		t.Errorf("after delete: %s", out)
	}
	detach(t, s)
	checkClean(t, srv)
}

func detach(t *testing.T, s *session) {
	t.Helper()
	fmt.Fprintf(s.In, "detach\n")
	out := s.readUntil(func(l string) bool { return strings.Contains(l, "detached]") }, 30*time.Second)
	mustMatch(t, "detach", `\[Inferior 1 \(process \d+\) detached\]`, out)
}

// ticks asks the server to call tick n times from start, and returns what
// it passed: [repr(i), obj[1], repr(obj)] each.
func ticks(t *testing.T, srv *attachServer, n, start int) [][]string {
	t.Helper()
	body := srv.get(t, fmt.Sprintf("/probe/ticks?n=%d&start=%d", n, start))
	var out [][]string
	data, _ := json.Marshal(body["values"])
	if err := json.Unmarshal(data, &out); err != nil || len(out) != n {
		t.Fatalf("ticks: %v %v", body, err)
	}
	return out
}

// dprintfLines reads krait's output until n dprintf lines whose text
// starts with prefix have come, and returns them.
func dprintfLines(t *testing.T, s *session, n int, prefix string) []string {
	t.Helper()
	var got []string
	s.readUntil(func(l string) bool {
		if m := dprintfLine.FindStringSubmatch(l); m != nil && strings.HasPrefix(m[5], prefix) {
			got = append(got, l)
		}
		return len(got) == n
	}, 30*time.Second)
	return got
}

// TestAttachDprintfBatch: krait attach --batch -ex 'dprintf …' --duration
// D prints the lines for D, then detaches.
func TestAttachDprintfBatch(t *testing.T) {
	for _, py := range pythons(t) {
		py := py
		if py.minor != "3.12" && py.minor != "3.8" && py.name != "system3.11" {
			continue
		}
		t.Run(py.name, func(t *testing.T) {
			srv := startAttachServer(t, py)
			stop := make(chan struct{})
			done := make(chan [][]string)
			go func() { // calls while krait collects
				var all [][]string
				defer func() { done <- all }()
				for i := 1; ; i += 10 {
					select {
					case <-stop:
						return
					case <-time.After(200 * time.Millisecond):
					}
					all = append(all, ticks(t, srv, 10, i)...)
				}
			}()
			start := time.Now()
			r := krait(t, "attach", fmt.Sprint(srv.p.pid()), "--batch", "--duration", "4s",
				"-ex", fmt.Sprintf(`dprintf probe.py:%d,"tick %%d %%s\n",i,obj[1]`, srv.marks["tick"]))
			close(stop)
			all := <-done
			if r.code != 0 {
				t.Fatalf("%v\n%s", r, r.stdout)
			}
			if el := time.Since(start); el < 4*time.Second {
				t.Errorf("krait ended after %v, before --duration 4s", el)
			}
			got := map[string]bool{}
			for _, l := range strings.Split(r.stdout, "\n") {
				if m := dprintfLine.FindStringSubmatch(l); m != nil {
					got[m[5]] = true
				}
			}
			// Every call made while the dprintf was set has its line; the
			// calls before the attach and after the detach none.
			printed := 0
			for _, w := range all {
				if got["tick "+w[0]+" "+w[1]] {
					printed++
				}
			}
			if printed < 50 || len(got) != printed {
				t.Errorf("%d lines, %d of them of the %d calls made; output:\n%s", len(got), printed, len(all), r.stdout)
			}
			first, last := -1, -1 // between the first call printed and the last, every one is
			for i, w := range all {
				if got["tick "+w[0]+" "+w[1]] {
					if first < 0 {
						first = i
					}
					last = i
				}
			}
			if first >= 0 && last-first+1 != printed {
				t.Errorf("calls %d to %d: %d printed", first, last, printed)
			}
			mustMatch(t, "batch detach", `\[Inferior 1 \(process \d+\) detached\]\s*$`, r.stdout)
			checkClean(t, srv)
		})
	}
	// Ctrl-C ends --duration sooner: krait detaches as at its end.
	for _, py := range pythons(t) {
		if py.minor != "3.12" {
			continue
		}
		srv := startAttachServer(t, py)
		cmd := exec.Command(kraitBin, "attach", fmt.Sprint(srv.p.pid()), "--batch", "--duration", "60s",
			"-ex", fmt.Sprintf(`dprintf probe.py:%d,"tick %%d\n",i`, srv.marks["tick"]))
		var out lineBuffer // (written by exec's goroutine while the test reads it)
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		record(cmd.Process.Pid)
		start := time.Now()
		srv.p.waitFor(30*time.Second, func() bool { return strings.Contains(out.String(), "Dprintf 1 at") })
		ticks(t, srv, 3, 1)
		time.Sleep(500 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		if err != nil || time.Since(start) > 30*time.Second {
			t.Errorf("after Ctrl-C: %v after %v\n%s", err, time.Since(start), out.String())
		}
		mustMatch(t, "Ctrl-C", `(?s)\] tick 3\n.*\[Inferior 1 \(process \d+\) detached\]\s*$`, out.String())
		checkClean(t, srv)
		break
	}
	if r := krait(t, "attach", "1", "--duration", "2s"); r.code != 2 || !strings.Contains(r.stderr, "--duration needs --batch") {
		t.Errorf("--duration without --batch: %v", r)
	}
}

// TestAttachDprintfFlood: a dprintf in a tight loop (as many crossings a
// second as the thread can make) while krait's output is not read for a
// while: krait drops what it cannot hold, counts it and says so; the loop
// is never held up; krait answers commands; detach (or krait killed)
// leaves nothing.
func TestAttachDprintfFlood(t *testing.T) {
	for _, py := range pythons(t) {
		py := py
		if py.minor != "3.12" && py.minor != "3.8" && py.minor != "3.14" {
			continue
		}
		t.Run(py.name, func(t *testing.T) {
			srv := startAttachServer(t, py)
			s := attach(t, srv.p.pid())
			base := srv.get(t, "/probe/flood?seconds=1")["calls"].(float64)
			s.do(fmt.Sprintf(`dprintf probe.py:%d,"spin %%d\n",i`, srv.marks["spin"]))
			res := make(chan map[string]any, 1)
			go func() { res <- srv.get(t, "/probe/flood?seconds=6") }()
			// Not reading krait's output for 3 s: its pipe fills, and
			// what it cannot print waits, then is dropped and counted.
			time.Sleep(3 * time.Second)
			var dropped int64
			spins := 0
			count := func(l string) {
				if m := dropNotice.FindStringSubmatch(l); m != nil {
					n, _ := strconv.ParseInt(m[1], 10, 64)
					dropped += n
				} else if m := dprintfLine.FindStringSubmatch(l); m != nil && strings.HasPrefix(m[5], "spin ") {
					spins++
				}
			}
			marker := s.Send("info breakpoints")
			sent := time.Now()
			out := s.readUntil(func(l string) bool { count(l); return strings.HasSuffix(l, marker) }, 60*time.Second)
			t.Logf("info breakpoints answered in %v, after %d dprintf lines", time.Since(sent).Round(time.Millisecond), spins)
			mustMatch(t, "info breakpoints during the flood", `(?m)^\tbreakpoint already hit \d+ times$`, out)
			var body map[string]any
			select {
			case body = <-res:
			case <-time.After(60 * time.Second):
				t.Fatal("the flood request did not finish")
			}
			readQuiet(s, time.Second, count) // what krait still prints
			calls, gap := body["calls"].(float64), body["max_gap"].(float64)
			t.Logf("flood: %.0f calls in 6 s (%.0f/s; %.0f/s without the dprintf: %.1f µs a crossing), longest gap %.3f s; %d lines, %d events dropped",
				calls, calls/6, base, (6/calls-1/base)*1e6, gap, spins, dropped)
			if dropped == 0 {
				t.Errorf("no dropped events reported")
			}
			if int64(spins)+dropped != int64(calls) {
				t.Errorf("%.0f crossings: %d lines + %d dropped", calls, spins, dropped)
			}
			if gap > 1 {
				t.Errorf("the flooding thread was held up %.3f s", gap)
			}
			detach(t, s)
			checkClean(t, srv)

			// krait killed during a flood: the agent leaves all the same.
			s = attach(t, srv.p.pid())
			s.do(fmt.Sprintf(`dprintf probe.py:%d,"spin %%d\n",i`, srv.marks["spin"]))
			go func() { res <- srv.get(t, "/probe/flood?seconds=3") }()
			time.Sleep(time.Second)
			_ = s.Cmd.Process.Kill()
			body = <-res
			if gap := body["max_gap"].(float64); gap > 1 {
				t.Errorf("the flooding thread was held up %.3f s when krait was killed", gap)
			}
			checkClean(t, srv)
		})
	}
}

var dropNotice = regexp.MustCompile(`^\[dprintf: (\d+) events dropped\]$`)

// readQuiet reads krait's output, each line to fn, until none comes for
// quiet (or krait ends).
func readQuiet(s *session, quiet time.Duration, fn func(string)) {
	for {
		select {
		case l, ok := <-s.Lines:
			if !ok {
				return
			}
			fn(l)
		case <-time.After(quiet):
			return
		}
	}
}

// TestTerminalDprintf: at a terminal, dprintf lines are printed as
// threads pass, while the user sits at the prompt (no command typed),
// and the prompt comes back after them; Ctrl-D detaches.
func TestTerminalDprintf(t *testing.T) {
	for _, py := range pythons(t) {
		py := py
		if py.minor != "3.12" && py.minor != "3.9" {
			continue
		}
		t.Run(py.name, func(t *testing.T) {
			srv := startAttachServer(t, py)
			s := startPTY(t, t.TempDir(), 120, "attach", fmt.Sprint(srv.p.pid()))
			at := s.waitFor(0, "(krait) ", 30*time.Second)
			s.typeKeys(fmt.Sprintf(`dprintf probe.py:%d,"tick %%d %%r\n",i,obj[1]`+"\r", srv.marks["tick"]))
			at = s.waitFor(at, "Dprintf 1 at ", 10*time.Second)
			at = s.waitFor(at, "(krait) ", 10*time.Second)
			want := ticks(t, srv, 2, 7)
			for _, w := range want {
				at = s.waitFor(at, fmt.Sprintf(" tick %s '%s'", w[0], w[1]), 15*time.Second)
			}
			at = s.waitFor(at, "(krait) ", 5*time.Second)
			s.typeKeys("\x04")
			s.waitFor(at, "detached]", 10*time.Second)
			select {
			case <-s.done:
			case <-time.After(10 * time.Second):
				t.Fatalf("krait did not leave after Ctrl-D:\n%s", s.text()[at:])
			}
			checkClean(t, srv)
		})
	}
}

// TestAttachDprintfSeveral: krait attach PID PID (a settrace and a
// monitoring Python): one dprintf, set in both; each process's crossings
// print lines naming that process, with its own values; hits of both in
// info breakpoints; condition and delete apply to both; detach leaves
// both clean.
func TestAttachDprintfSeveral(t *testing.T) {
	var old, mon *python
	for _, py := range pythons(t) {
		py := py
		switch py.minor {
		case "3.8":
			old = &py
		case "3.12":
			mon = &py
		}
	}
	if old == nil || mon == nil {
		t.Skip("needs 3.8 and 3.12")
	}
	a, b := startAttachServer(t, *old), startAttachServer(t, *mon)
	ts := testkit.AttachArgs(t, kraitBin, strconv.Itoa(a.p.pid()), strconv.Itoa(b.p.pid()))
	record(ts.Cmd.Process.Pid)
	s := &session{ts}
	out := s.do(fmt.Sprintf(`dprintf probe.py:%d,"tick %%d %%r\n",i,obj`, a.marks["tick"]))
	mustMatch(t, "dprintf", `Dprintf 1 at \S+/shop/probe\.py:\d+ \(tick\)`, out)
	for _, srv := range []*attachServer{a, b} {
		want := ticks(t, srv, 2, 100+srv.p.pid()%1000)
		lines := dprintfLines(t, s, 2, "tick ")
		for i, l := range lines {
			m := dprintfLine.FindStringSubmatch(l)
			if m[2] != strconv.Itoa(srv.p.pid()) || m[5] != "tick "+want[i][0]+" "+want[i][2] {
				t.Errorf("line %q: want process %d, text %q", l, srv.p.pid(), "tick "+want[i][0]+" "+want[i][2])
			}
		}
	}
	s.do("condition 1 i % 2 == 1")
	for _, srv := range []*attachServer{a, b} {
		ticks(t, srv, 2, 200)
		lines := dprintfLines(t, s, 1, "tick ")
		if m := dprintfLine.FindStringSubmatch(lines[0]); m[2] != strconv.Itoa(srv.p.pid()) || !strings.HasPrefix(m[5], "tick 201 ") {
			t.Errorf("with condition i %% 2 == 1: %q", lines[0])
		}
	}
	out = s.do("info breakpoints")
	mustMatch(t, "info breakpoints", `(?m)^1\s+dprintf\s+keep y\s+in tick at `, out)
	mustMatch(t, "info breakpoints", `(?m)^\tbreakpoint already hit 6 times$`, out)
	s.do("delete 1")
	ticks(t, a, 1, 300)
	ticks(t, b, 1, 300)
	if out := s.do("info breakpoints"); strings.Contains(out, "tick 300") || !strings.Contains(out, "No breakpoints") {
		t.Errorf("after delete: %s", out)
	}
	fmt.Fprintf(s.In, "detach\n")
	out = s.ReadUntilEnd(30 * time.Second)
	mustMatch(t, "detach", fmt.Sprintf(`\[Inferior 1 \(process %d\) detached\]\n\[Inferior 2 \(process %d\) detached\]`, a.p.pid(), b.p.pid()), out)
	checkClean(t, a)
	checkClean(t, b)
}
