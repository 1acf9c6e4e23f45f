package djangoe2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"krait/internal/testkit"
)

// TestAttachModWSGI is the seed's session on the Apache mod_wsgi daemon
// of group krait-main (Django 3.2 in the main interpreter): a breakpoint in
// the orders view on the line that slices its QuerySet, the request
// triggered over HTTP, locals, printing the QuerySet without running it
// (PostgreSQL's statement log says no query ran until `next` evaluated
// it), the rows, a step, detach — while the daemon's other threads keep
// answering. Afterwards the daemon still serves and has no krait thread.
//
// Django's objects must print as Django developers see them:
// <QuerySet shop.Order: not evaluated…>, <WSGIRequest: GET
// '/orders/?limit=3'>, <Order pk=N at 0x…>. Those checks fail with
// "rendering:" in front.
//
// Both daemon groups: krait-main (Django in the main interpreter) and
// krait-sub (mod_wsgi's default: Django in a sub-interpreter, where krait
// enters with the thread's own state in that interpreter).
func TestAttachModWSGI(t *testing.T) {
	for _, group := range []string{"krait-main", "krait-sub"} {
		group := group
		t.Run(group, func(t *testing.T) { testAttachModWSGI(t, group) })
	}
}

func testAttachModWSGI(t *testing.T, group string) {
	st := needStack(t)
	srv := st.server(t, group)
	if len(srv.workers) != 1 {
		t.Fatalf("%s: want one daemon process, have %v", srv, srv.workers)
	}
	pid := srv.workers[0]
	app := srv.info.AppName
	appDir := st.env["KRAIT_APACHE_APP_DIR"]
	rowsLine := findLine(t, filepath.Join(appDir, "shop", "views.py"), "def orders(", "rows = list(queryset[")
	bodyLine := findLine(t, filepath.Join(appDir, "shop", "views.py"), "def orders(", "body = format_html(")
	q := regexp.QuoteMeta
	st.settle(t)

	s := attach(t, pid)
	out := s.do(fmt.Sprintf("break shop/views.py:%d", rowsLine))
	mustMatch(t, "break", fmt.Sprintf(`Breakpoint 1 at \S*shop/views\.py:%d \(orders\)`, rowsLine), out)

	orders := getAsync(t, srv.url+"/orders/?limit=3")
	// Should the test stop early, krait goes first (its agent then
	// resumes the stopped thread), then the request is waited for.
	t.Cleanup(func() { _ = s.Cmd.Process.Kill() })
	out = s.do("continue")
	mustMatch(t, "stop", fmt.Sprintf(`Breakpoint 1, orders \(request=.*\) at \S*shop/views\.py:%d\n%d\t\s+rows = list\(queryset\[`, rowsLine, rowsLine), out)
	rendering(t, "stop", `Breakpoint 1, orders \(request=<WSGIRequest: GET '/orders/\?limit=3'>\) at `, out)

	// The daemon's other threads keep answering while this one is stopped.
	checkHealth(t, srv, "while a thread is stopped at the breakpoint")
	select {
	case <-orders.done:
		t.Fatalf("the stopped request completed: %v %q", orders.err, orders.body)
	default:
	}

	// From here until `next`, nothing krait does may run a query.
	before := st.logOffset(t)
	locals := s.do("info locals")
	mustMatch(t, "info locals", `(?m)^limit = 3\.0$`, locals)
	mustMatch(t, "info locals", `(?m)^queryset = `, locals)
	rendering(t, "info locals", `(?m)^queryset = <QuerySet shop\.Order: not evaluated`, locals)
	args := s.do("info args")
	rendering(t, "info args", `(?m)^request = <WSGIRequest: GET '/orders/\?limit=3'>$`, args)

	// Printing the QuerySet must not run it.
	out = s.do("print queryset")
	mustMatch(t, "print queryset", `^\$1 = `, strings.TrimSpace(out))
	rendering(t, "print queryset", `^\$1 = <QuerySet shop\.Order: not evaluated[^\n]*>$`, strings.TrimSpace(out))
	out = s.do("print request")
	rendering(t, "print request", `^\$2 = <WSGIRequest: GET '/orders/\?limit=3'>$`, strings.TrimSpace(out))
	// print/sql compiles the SQL in the target without executing it.
	out = s.do("print/sql queryset")
	mustMatch(t, "print/sql", `^\$3 = SELECT .*FROM "shop_order" INNER JOIN "shop_customer".*ORDER BY "shop_order"."created" DESC`, strings.TrimSpace(out))
	time.Sleep(200 * time.Millisecond)
	if lines := st.statements(t, before, app); len(lines) > 0 {
		t.Errorf("info locals/args, printing the QuerySet and the request, or print/sql ran statements:\n%s", strings.Join(lines, "\n"))
	}

	// next: list() evaluates it, now the SELECT runs.
	out = s.do("next")
	mustMatch(t, "next", fmt.Sprintf(`(?m)^%d\t\s+body = format_html\(`, bodyLine), out)
	st.waitStatement(t, before, app, `FROM "shop_order"`, 5*time.Second)
	if sel := st.statements(t, before, app); !strings.Contains(strings.Join(sel, "\n"), "LIMIT 3") {
		t.Errorf("the orders query has no LIMIT 3:\n%s", strings.Join(sel, "\n"))
	}
	after := st.logOffset(t)
	out = s.do("print len(rows)")
	mustMatch(t, "print len(rows)", `^\$\d+ = 3$`, strings.TrimSpace(out))
	// The first row as the target sees it, then as krait renders it.
	pk := mustMatch(t, "print rows[0].pk", `^\$\d+ = (\d+)$`, strings.TrimSpace(s.do("print rows[0].pk")))
	addr := mustMatch(t, "print hex(id(rows[0]))", `^\$\d+ = '(0x[0-9a-f]+)'$`, strings.TrimSpace(s.do("print hex(id(rows[0]))")))
	if pk != nil && addr != nil {
		rendering(t, "print rows[0]", fmt.Sprintf(`^\$\d+ = <Order pk=%s at %s>$`, pk[1], q(addr[1])), strings.TrimSpace(s.do("print rows[0]")))
	}
	if lines := st.statements(t, after, app); len(lines) > 0 {
		t.Errorf("printing the rows ran statements:\n%s", strings.Join(lines, "\n"))
	}

	out = s.do("step")
	mustMatch(t, "step", `(?m)^\d+\t`, out)
	checkHealth(t, srv, "after a step")

	out = s.detach()
	mustMatch(t, "detach", fmt.Sprintf(`\[Inferior 1 \(process %d\) detached\]`, pid), out)
	if body := orders.wait(t, 30*time.Second); !strings.Contains(body, "<h1>3 orders</h1>") {
		t.Errorf("/orders/?limit=3 answered %q", short(body))
	}

	// Afterwards: the daemon serves, and no krait thread is left in it.
	checkHealth(t, srv, "after detach")
	if body, err := get(srv.url+"/orders/?limit=3", 20*time.Second); err != nil || !strings.Contains(body, "<h1>3 orders</h1>") {
		t.Errorf("after detach: /orders/?limit=3: %v %q", err, short(body))
	}
	var names []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		var d dumpResult
		kraitJSON(t, &d, "dump", "--pid", strconv.Itoa(pid), "--json")
		names = names[:0]
		agent := false
		for _, th := range d.Threads {
			n := "<unnamed>"
			if th.Name != nil {
				n = *th.Name
			}
			names = append(names, n)
			agent = agent || n == "krait-agent"
		}
		if !agent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after detach, the daemon still has a krait-agent thread: %v", names)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("threads after detach: %v", names)
}

// findLine returns the number of the first line containing text after the
// line containing after, in file.
func findLine(t *testing.T, file, after, text string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	seen := false
	for i, l := range strings.Split(string(data), "\n") {
		seen = seen || strings.Contains(l, after)
		if seen && strings.Contains(l, text) {
			return i + 1
		}
	}
	t.Fatalf("%s: no line %q after %q", file, text, after)
	return 0
}

func checkHealth(t *testing.T, srv *server, when string) {
	t.Helper()
	start := time.Now()
	body, err := get(srv.url+"/health/", 10*time.Second)
	if err != nil || body != "ok\n" {
		t.Errorf("%s: /health/ %s: %v %q", srv, when, err, body)
		return
	}
	t.Logf("%s: /health/ %s answered in %s", srv, when, time.Since(start).Round(time.Millisecond))
}

// short cuts each line of s for messages: Django objects rendered
// attribute by attribute make lines of many kilobytes.
func short(s string) string { return testkit.Short(s) }

func mustMatch(t *testing.T, what, pattern, s string) []string {
	t.Helper()
	return testkit.MustMatch(t, what, pattern, s)
}

// rendering checks how krait shows a Django object.
func rendering(t *testing.T, what, pattern, s string) {
	t.Helper()
	if !regexp.MustCompile(pattern).MatchString(s) {
		t.Errorf("rendering: %s: output does not match %q:\n%s", what, pattern, short(s))
	}
}

// ---------------------------------------------------------------- driving krait attach

// session drives krait attach (see testkit.Session).
type session struct{ *testkit.Session }

func attach(t *testing.T, pid int) *session {
	t.Helper()
	return &session{testkit.Attach(t, kraitBin, pid)}
}

func (s *session) do(cmd string) string { s.T.Helper(); return s.Do(cmd) }

// detach sends detach, after which krait exits: its output is everything
// up to the end, and krait must exit 0.
func (s *session) detach() string {
	s.T.Helper()
	fmt.Fprintf(s.In, "detach\n")
	var got []string
	deadline := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case l, ok := <-s.Lines:
			if !ok {
				done = true
				break
			}
			got = append(got, l)
		case <-deadline:
			s.T.Fatalf("krait attach did not exit within 30 s of detach; output:\n%s", short(strings.Join(got, "\n")))
		}
	}
	out := strings.Join(got, "\n")
	s.T.Logf("(krait) detach\n%s", short(out))
	_ = s.In.Close()
	if err := s.Cmd.Wait(); err != nil {
		s.T.Errorf("krait attach after detach: %v", err)
	}
	return out
}
