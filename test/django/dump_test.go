package djangoe2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDumpDjangoLocals: krait dump --locals renders Django's objects from
// memory, on Django 3.2 (Debian, gunicorn gthread) and 5.2 (the venv):
//
//   - inside the streaming view's generator (_stream_rows, shop/views.py),
//     the QuerySet it iterates as <QuerySet shop.Order: not evaluated>
//     (iterator() fills no result cache) and the current model instance
//     as <Order pk=N at 0xADDR>;
//   - the request as <WSGIRequest: GET '/slow/?s=3'> in a view that is
//     still running (/slow/, parked in PostgreSQL). A streaming view has
//     returned before its generator runs: no frame holds its request then.
func TestDumpDjangoLocals(t *testing.T) {
	st := needStack(t)
	for _, c := range []struct{ group, django string }{{"krait-gthread", "3.2"}, {"krait-venv", "5.2"}} {
		t.Run(c.group, func(t *testing.T) {
			s := st.server(t, c.group)
			if !strings.HasPrefix(s.info.Django, c.django+".") {
				t.Fatalf("%s runs Django %s, want %s.x", s, s.info.Django, c.django)
			}
			testDumpLocals(t, st, s)
		})
	}
}

func testDumpLocals(t *testing.T, st *stack, s *server) {
	st.settle(t)
	off := st.logOffset(t)
	// Sleeps 0.2 s after every row: the generator is nearly always inside
	// its time.sleep, the current order in a local.
	stream := getAsync(t, s.url+"/stream/?delay=0.2&every=1")
	defer stream.cancel() // the client goes away; the server stops at its next write
	slow := getAsync(t, s.url+"/slow/?s=3")
	st.waitStatement(t, off, s.info.AppName, "FETCH FORWARD", 20*time.Second)
	st.waitStatement(t, off, s.info.AppName, "pg_sleep(3", 20*time.Second)

	// A sample can catch the streaming thread between two rows, writing
	// to its socket outside the generator: sample again then.
	var d dumpResult
	var gen []*dumpFrame
	for i := 0; i < 20 && len(gen) == 0; i++ {
		kraitJSON(t, &d, append([]string{"dump", "--locals", "--json"}, pidArgs("--pid", s.workers)...)...)
		gen = d.dumpFrames("_stream_rows", "shop/views.py")
	}
	if len(gen) != 1 {
		t.Fatalf("%s: want one thread in _stream_rows (shop/views.py), found %d in 20 dumps", s, len(gen))
	}
	f := gen[0]
	for _, l := range f.Locals {
		t.Logf("_stream_rows: %s (%s) = %s", l.Name, l.Type, l.Value)
	}
	want := func(name, typ string) *dumpLocal {
		t.Helper()
		l := f.local(name)
		if l == nil {
			t.Errorf("%s: _stream_rows has no local %q", s, name)
			return nil
		}
		if l.Type != typ || l.Error != "" {
			t.Errorf("%s: %s: type %q (error %q), want %q", s, name, l.Type, l.Error, typ)
		}
		return l
	}
	if l := want("queryset", "QuerySet"); l != nil && l.Value != "<QuerySet shop.Order: not evaluated>" {
		t.Errorf("%s: queryset = %q, want %q", s, l.Value, "<QuerySet shop.Order: not evaluated>")
	}
	if l := want("delay", "float"); l != nil && l.Value != "0.2" {
		t.Errorf("%s: delay = %q, want 0.2", s, l.Value)
	}
	if l := want("every", "int"); l != nil && l.Value != "1" {
		t.Errorf("%s: every = %q, want 1", s, l.Value)
	}
	count := want("count", "int")
	if l := want("order", "Order"); l != nil {
		m := regexp.MustCompile(`^<Order pk=(\d+) at (0x[0-9a-f]+)>$`).FindStringSubmatch(l.Value)
		switch {
		case m == nil:
			t.Errorf("%s: order = %q, want <Order pk=N at 0xADDR>", s, l.Value)
		case m[2] != l.Address:
			t.Errorf("%s: order = %q, but its address is %s", s, l.Value, l.Address)
		case count != nil && m[1] != count.Value:
			// Orders are ordered by id (Meta.ordering), loaded with ids
			// 1..20000: the count-th row has pk = count.
			t.Errorf("%s: order = %q, but count = %s (the count-th order by id has pk = count)", s, l.Value, count.Value)
		}
	}

	// The request, in the view still running.
	views := d.dumpFrames("slow", "shop/views.py")
	if len(views) != 1 {
		t.Fatalf("%s: want one thread in slow (shop/views.py), found %d", s, len(views))
	}
	if l := views[0].local("request"); l == nil {
		t.Errorf("%s: slow() has no local request", s)
	} else if l.Type != "WSGIRequest" || l.Value != "<WSGIRequest: GET '/slow/?s=3'>" {
		t.Errorf("%s: request = %q (%s), want %q", s, l.Value, l.Type, "<WSGIRequest: GET '/slow/?s=3'>")
	}
	if l := views[0].local("seconds"); l == nil || l.Value != "3.0" {
		t.Errorf("%s: slow(): seconds = %+v, want 3.0", s, l)
	}

	stream.cancel()
	if body := slow.wait(t, 30*time.Second); !strings.HasPrefix(body, "slept 3") {
		t.Errorf("%s: /slow/?s=3 answered %q", s, body)
	}
}
