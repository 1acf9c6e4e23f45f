package cache

import (
	"reflect"
	"strings"
	"testing"
)

// stream builds event streams as the agents send them.
type stream struct {
	evs []Event
	t   float64
}

func (s *stream) add(e Event) *stream {
	if e.Time == 0 {
		e.Time = s.t
	}
	if e.Kind == "cache" && e.Back == "" {
		e.Back = "django.core.cache.backends.memcached.PyMemcacheCache"
	}
	if e.Kind == "cache" && e.Alias == "" {
		e.Alias = "default"
	}
	if e.FKey == "" && e.Key != "" {
		e.FKey = ":1:" + e.Key
	}
	s.evs = append(s.evs, e)
	s.t += 0.001
	return s
}

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

func (s *stream) req(pid int, thread, id int64, method, path string, body func(), view string) {
	s.add(Event{PID: pid, Kind: "req", Phase: "start", Thread: thread, Req: id, Method: method, Path: path})
	body()
	s.add(Event{PID: pid, Kind: "req", Phase: "end", Thread: thread, Req: id, View: view})
}

func cacheEv(pid int, thread, req int64, op, key string, hit *bool) Event {
	return Event{PID: pid, Kind: "cache", Op: op, Key: key, Hit: hit, Thread: thread, Req: req, File: "/app/shop/views.py", Line: 10}
}

func sqlEv(pid int, thread, req int64, sql string, atomic bool) Event {
	return Event{PID: pid, Kind: "sql", SQL: sql, DB: "default", Thread: thread, Req: req, Atomic: atomic}
}

// The seed's scenario and its two controls: worker 1 caches three values
// (summary from shop_order, never invalidated; price from shop_product,
// deleted by a post_save handler; countries from a table nobody writes);
// worker 2 writes shop_order and shop_product; worker 1 then serves hits.
func TestStaleAcrossWorkers(t *testing.T) {
	s := &stream{t: 1000}
	cachedView := func(pid int, thread, id int64, key, table string, miss bool) {
		s.req(pid, thread, id, "GET", "/"+key+"/", func() {
			if miss {
				s.add(cacheEv(pid, thread, id, "get", key, no()))
				s.add(sqlEv(pid, thread, id, `SELECT COUNT(*) FROM "`+table+`"`, false))
				set := cacheEv(pid, thread, id, "set", key, nil)
				set.HasTTL = true // never expires
				s.add(set)
			} else {
				s.add(cacheEv(pid, thread, id, "get", key, yes()))
			}
		}, "shop.views."+key)
	}
	cachedView(1, 11, 1, "summary", "shop_order", true)
	cachedView(1, 11, 2, "price", "shop_product", true)
	cachedView(1, 11, 3, "countries", "shop_country", true)
	// Worker 2 writes both tables; the price is invalidated right after
	// its write (post_save), inside the writing request.
	s.req(2, 21, 1, "POST", "/write/", func() {
		s.add(sqlEv(2, 21, 1, `UPDATE "shop_order" SET "total" = 1 WHERE "shop_order"."id" = 5`, false))
		s.add(sqlEv(2, 21, 1, `UPDATE "shop_product" SET "price" = 2 WHERE "shop_product"."id" = 5`, false))
		// a hit in worker 1 between the write and its invalidation is no stale hit
		s.add(cacheEv(1, 12, 9, "get", "price", yes()))
		s.add(cacheEv(2, 21, 1, "delete", "price", nil))
	}, "shop.views.write")
	for i := int64(4); i < 7; i++ {
		cachedView(1, 11, i, "summary", "shop_order", false)
		cachedView(1, 11, i+10, "countries", "shop_country", false)
	}
	cachedView(1, 11, 30, "price", "shop_product", true)
	cachedView(1, 11, 31, "price", "shop_product", false)

	r := Analyze(s.evs, s.t+10)
	if len(r.Stale) != 1 {
		t.Fatalf("stale entries: %+v, want just the summary", r.Stale)
	}
	st := r.Stale[0]
	if st.UserKey != "summary" || st.Key != ":1:summary" || st.Alias != "default" {
		t.Errorf("stale key %q (%q, alias %q), want summary", st.UserKey, st.Key, st.Alias)
	}
	if !reflect.DeepEqual(st.Inputs, []string{"shop_order"}) {
		t.Errorf("inputs %q", st.Inputs)
	}
	if st.WrittenBy.PID != 2 || st.WrittenBy.View == nil || *st.WrittenBy.View != "shop.views.write" || *st.WrittenBy.Path != "/write/" {
		t.Errorf("written by %+v", st.WrittenBy)
	}
	if st.SetBy.PID != 1 || *st.SetBy.View != "shop.views.summary" || st.SetBy.File != "/app/shop/views.py" || st.SetBy.Line != 10 {
		t.Errorf("set by %+v", st.SetBy)
	}
	if st.StaleHits != 3 || st.StaleByView["shop.views.summary"] != 3 || st.LastStaleHit == nil {
		t.Errorf("stale hits %d %v", st.StaleHits, st.StaleByView)
	}
	if !st.Never || st.Timeout != nil || st.Invalidated != nil {
		t.Errorf("timeout %v never %v invalidated %v", st.Timeout, st.Never, st.Invalidated)
	}
	if r.Patterns[0].Pattern != "summary" || r.Patterns[0].Stale != 1 {
		t.Errorf("first pattern %+v, want the stale one", r.Patterns[0])
	}
}

// A write inside a transaction counts when it commits, and not at all when
// rolled back.
func TestStaleOnCommit(t *testing.T) {
	s := &stream{t: 1000}
	s.req(1, 1, 1, "GET", "/a/", func() {
		s.add(cacheEv(1, 1, 1, "get", "k", no()))
		s.add(sqlEv(1, 1, 1, `SELECT * FROM t JOIN u ON true`, false))
		s.add(cacheEv(1, 1, 1, "set", "k", nil))
	}, "v")
	s.req(2, 1, 1, "POST", "/w/", func() {
		s.add(sqlEv(2, 1, 1, `UPDATE u SET x = 1`, true))
		s.add(Event{PID: 2, Kind: "rollback", DB: "default", Thread: 1, Req: 1})
	}, "w")
	s.add(cacheEv(1, 1, 0, "get", "k", yes()))
	if r := Analyze(s.evs, s.t+10); len(r.Stale) != 0 {
		t.Fatalf("rolled back write made %+v stale", r.Stale)
	}
	s.req(2, 1, 2, "POST", "/w/", func() {
		s.add(sqlEv(2, 1, 2, `UPDATE u SET x = 1`, true))
		s.add(cacheEv(1, 1, 0, "get", "k", yes())) // before the commit: fresh
		s.add(Event{PID: 2, Kind: "commit", DB: "default", Thread: 1, Req: 2})
	}, "w")
	s.add(cacheEv(1, 1, 0, "get", "k", yes()))
	r := Analyze(s.evs, s.t+10)
	if len(r.Stale) != 1 || r.Stale[0].StaleHits != 1 || !reflect.DeepEqual(r.Stale[0].Inputs, []string{"t", "u"}) {
		t.Fatalf("stale %+v", r.Stale)
	}
}

// Without a miss, the inputs are what the thread read since its request
// began; a write outside any request has Grace to be followed by an
// invalidation; a set after the write is a fresh entry.
func TestInputsAndGrace(t *testing.T) {
	s := &stream{t: 1000}
	s.req(1, 1, 1, "GET", "/a/", func() {
		s.add(sqlEv(1, 1, 1, `SELECT * FROM a`, false))
		s.add(cacheEv(1, 1, 1, "set", "x", nil))
		s.add(sqlEv(1, 1, 1, `SELECT * FROM b`, false))
		s.add(cacheEv(1, 1, 1, "get", "y", no()))
		s.add(sqlEv(1, 1, 1, `SELECT * FROM c`, false))
		s.add(cacheEv(1, 1, 1, "set", "y", nil))
	}, "v")
	// A management command writes b (no request) then deletes y at once.
	s.add(sqlEv(3, 1, 0, `UPDATE c SET z = 1`, false))
	s.add(cacheEv(3, 1, 0, "delete", "y", nil))
	s.add(sqlEv(3, 1, 0, `UPDATE a SET z = 1`, false))
	s.t += 5
	s.add(cacheEv(1, 1, 0, "get", "x", yes()))
	r := Analyze(s.evs, s.t)
	if len(r.Stale) != 1 || r.Stale[0].UserKey != "x" || r.Stale[0].WrittenBy.View != nil || r.Stale[0].StaleHits != 1 {
		t.Fatalf("stale %+v, want x only", r.Stale)
	}
	// Set again after the write: no longer served stale.
	s.add(cacheEv(1, 1, 0, "set", "x", nil))
	s.add(cacheEv(1, 1, 0, "get", "x", yes()))
	r = Analyze(s.evs, s.t)
	if len(r.Stale) != 1 || r.Stale[0].StaleHits != 1 || r.Stale[0].Invalidated == nil {
		t.Fatalf("stale %+v", r.Stale)
	}
}

// The writer's request is still running when the observation ends: not
// stale (yet).
func TestWriterStillRunning(t *testing.T) {
	s := &stream{t: 1000}
	s.req(1, 1, 1, "GET", "/a/", func() {
		s.add(cacheEv(1, 1, 1, "get", "k", no()))
		s.add(sqlEv(1, 1, 1, `SELECT * FROM t`, false))
		s.add(cacheEv(1, 1, 1, "set", "k", nil))
	}, "v")
	s.add(Event{PID: 2, Kind: "req", Phase: "start", Thread: 1, Req: 1, Path: "/w/"})
	s.add(sqlEv(2, 1, 1, `DELETE FROM t`, false))
	if r := Analyze(s.evs, s.t+10); len(r.Stale) != 0 {
		t.Fatalf("stale %+v", r.Stale)
	}
}

func TestStandsFor(t *testing.T) {
	if got := StandsFor("template.cache.sidebar.d41d8cd98f00b204e9800998ecf8427e", ""); got != "template fragment sidebar" {
		t.Error(got)
	}
	if got := StandsFor("views.decorators.cache.cache_page..GET.abc.def", "GET /x/"); got != "page GET /x/" {
		t.Error(got)
	}
}

// Complete makes the final key as Django's default key function does, with
// the version asked for or the alias's, and leaves an alias with its own
// KEY_FUNCTION alone (the agent sends its final keys).
func TestComplete(t *testing.T) {
	aliases := map[string]Alias{
		"default": {Backend: "django.core.cache.backends.memcached.PyMemcacheCache", KeyPrefix: "shop", Version: float64(1)},
		"own":     {Backend: "x.Y", OwnKeys: true},
	}
	for _, c := range []struct {
		in   Event
		want string
	}{
		{Event{Kind: "cache", Alias: "default", Key: "k"}, "shop:1:k"},
		{Event{Kind: "cache", Alias: "default", Key: "k", Ver: float64(3)}, "shop:3:k"},
		{Event{Kind: "cache", Alias: "own", Key: "k"}, ""},
		{Event{Kind: "cache", Alias: "own", Key: "k", FKey: "custom-k"}, "custom-k"},
	} {
		e := c.in
		Complete(&e, aliases)
		if e.FKey != c.want || e.Back != aliases[c.in.Alias].Backend {
			t.Errorf("Complete(%+v) = %q %q, want %q", c.in, e.FKey, e.Back, c.want)
		}
	}
}

// Outside a request, a value set without a miss before it has no known
// inputs: never stale.
func TestNoRequestNoMiss(t *testing.T) {
	s := &stream{t: 1000}
	s.add(sqlEv(1, 1, 0, `SELECT * FROM t`, false))
	s.add(cacheEv(1, 1, 0, "set", "k", nil))
	s.add(sqlEv(2, 1, 0, `UPDATE t SET x = 1`, false))
	s.t += 5
	s.add(cacheEv(1, 1, 0, "get", "k", yes()))
	if r := Analyze(s.evs, s.t); len(r.Stale) != 0 {
		t.Fatalf("stale %+v", r.Stale)
	}
}

// Fed in pieces, out of order within each piece, with reports on the way,
// the analyzer ends where Analyze of every event does.
func TestAnalyzerIncremental(t *testing.T) {
	s := &stream{t: 1000}
	s.req(1, 1, 1, "GET", "/a/", func() {
		s.add(cacheEv(1, 1, 1, "get", "k", no()))
		s.add(sqlEv(1, 1, 1, `SELECT * FROM t`, false))
		s.add(cacheEv(1, 1, 1, "set", "k", nil))
	}, "v")
	s.req(2, 1, 1, "POST", "/w/", func() { s.add(sqlEv(2, 1, 1, `UPDATE t SET x = 1`, false)) }, "w")
	for i := 0; i < 5; i++ {
		s.add(cacheEv(1, 1, 0, "get", "k", yes()))
	}
	want := Analyze(s.evs, s.t+10)
	a := NewAnalyzer()
	for i := 0; i < len(s.evs); i += 3 {
		j := i + 3
		if j > len(s.evs) {
			j = len(s.evs)
		}
		piece := append([]Event(nil), s.evs[i:j]...)
		for l, r := 0, len(piece)-1; l < r; l, r = l+1, r-1 {
			piece[l], piece[r] = piece[r], piece[l]
		}
		a.Add(piece...)
		a.Report(s.evs[i].Time) // what has surely all come
	}
	got := a.Report(s.t + 10)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("incremental:\n%+v\nbatch:\n%+v", got, want)
	}
	if len(got.Stale) != 1 || got.Stale[0].StaleHits != 5 || got.Patterns[0].Stale != 1 {
		t.Fatalf("%+v", got)
	}
}

// Under ASGI a request starts and ends in the event loop's thread (10)
// and runs its sync code in sync_to_async's threads (11, 12), two requests
// at once: what each request read goes with it (by request, not by
// thread), so the summary, set with no miss before it (a view that always
// recomputes), has its request's read, shop_order, as input; the cities'
// miss, read and set are shop_customer's.
func TestStaleASGI(t *testing.T) {
	s := &stream{t: 1000}
	s.add(Event{PID: 1, Kind: "req", Phase: "start", Thread: 10, Req: 1, Method: "GET", Path: "/summary/"})
	s.add(Event{PID: 1, Kind: "req", Phase: "start", Thread: 10, Req: 2, Method: "GET", Path: "/cities/"})
	s.add(cacheEv(1, 12, 2, "get", "cities", no()))
	s.add(sqlEv(1, 12, 2, `SELECT "city" FROM "shop_customer"`, false))
	s.add(sqlEv(1, 11, 1, `SELECT COUNT(*) FROM "shop_order"`, false))
	for _, e := range []Event{cacheEv(1, 12, 2, "set", "cities", nil), cacheEv(1, 11, 1, "set", "summary", nil)} {
		e.HasTTL = true
		s.add(e)
	}
	s.add(Event{PID: 1, Kind: "req", Phase: "end", Thread: 10, Req: 2, View: "shop.views.cities"})
	s.add(Event{PID: 1, Kind: "req", Phase: "end", Thread: 10, Req: 1, View: "shop.views.summary"})
	s.req(2, 21, 1, "POST", "/write/", func() {
		s.add(sqlEv(2, 21, 1, `UPDATE "shop_order" SET "total" = 1 WHERE "shop_order"."id" = 5`, false))
	}, "shop.views.write")
	s.add(Event{PID: 1, Kind: "req", Phase: "start", Thread: 10, Req: 3, Method: "GET", Path: "/summary/"})
	s.add(cacheEv(1, 11, 3, "get", "summary", yes()))
	s.add(cacheEv(1, 11, 3, "get", "cities", yes()))
	s.add(Event{PID: 1, Kind: "req", Phase: "end", Thread: 10, Req: 3, View: "shop.views.summary"})

	a := NewAnalyzer()
	a.Add(s.evs...)
	r := a.Report(s.t + 10)
	if len(r.Stale) != 1 {
		t.Fatalf("stale entries: %+v, want just the summary", r.Stale)
	}
	st := r.Stale[0]
	if st.UserKey != "summary" || !reflect.DeepEqual(st.Inputs, []string{"shop_order"}) {
		t.Errorf("stale %q with inputs %q, want summary from shop_order", st.UserKey, st.Inputs)
	}
	if st.SetBy.View == nil || *st.SetBy.View != "shop.views.summary" || st.SetBy.Path == nil || *st.SetBy.Path != "/summary/" {
		t.Errorf("set by %+v", st.SetBy)
	}
	if st.StaleHits != 1 || st.StaleByView["shop.views.summary"] != 1 {
		t.Errorf("stale hits %d %v", st.StaleHits, st.StaleByView)
	}
	if r.Requests != 4 {
		t.Errorf("requests %d, want 4", r.Requests)
	}
	if n := len(a.states); n > 2 {
		t.Errorf("%d thread or request states kept after every request ended, want at most the two threads'", n)
	}
}

// The race no invalidation catches: a request misses, reads shop_order,
// and while it computes another request writes shop_order and deletes the
// key (invalidating what is not there yet); then the first sets the value
// from its old rows. The entry is stale from its set, and said to be so
// (set_after_write). Controls: a write that may have committed before the
// read returned (sent before it returned) is not counted, nor one whose
// writer deletes the key after the set.
func TestStaleSetAfterWrite(t *testing.T) {
	for _, c := range []struct {
		name      string
		overlap   bool // the write was sent before the read returned
		lateDel   bool // the writer deletes the key after the set
		wantStale bool
	}{
		{"race", false, false, true},
		{"overlapping", true, false, false},
		{"invalidated after the set", false, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &stream{t: 1000}
			s.add(Event{PID: 1, Kind: "req", Phase: "start", Thread: 11, Req: 1, Method: "GET", Path: "/summary/"})
			s.add(cacheEv(1, 11, 1, "get", "summary", no()))
			read := sqlEv(1, 11, 1, `SELECT COUNT(*) FROM "shop_order"`, false)
			read.Start = s.t
			s.t += 0.010
			read.Time = s.t // returned
			s.add(read)
			write := sqlEv(2, 21, 1, `UPDATE "shop_order" SET "total" = 1 WHERE "shop_order"."id" = 5`, false)
			write.Start = read.Time + 0.001
			if c.overlap {
				write.Start = read.Time - 0.005
			}
			s.add(Event{PID: 2, Kind: "req", Phase: "start", Thread: 21, Req: 1, Method: "POST", Path: "/write/"})
			s.add(write)
			s.add(cacheEv(2, 21, 1, "delete", "summary", nil))
			if !c.lateDel {
				s.add(Event{PID: 2, Kind: "req", Phase: "end", Thread: 21, Req: 1, View: "shop.views.write"})
			}
			set := cacheEv(1, 11, 1, "set", "summary", nil)
			set.HasTTL = true
			s.add(set)
			s.add(Event{PID: 1, Kind: "req", Phase: "end", Thread: 11, Req: 1, View: "shop.views.summary"})
			if c.lateDel {
				s.add(cacheEv(2, 21, 1, "delete", "summary", nil))
				s.add(Event{PID: 2, Kind: "req", Phase: "end", Thread: 21, Req: 1, View: "shop.views.write"})
			}
			for i := int64(2); i < 5; i++ {
				s.req(1, 11, i, "GET", "/summary/", func() { s.add(cacheEv(1, 11, i, "get", "summary", yes())) }, "shop.views.summary")
			}
			r := Analyze(s.evs, s.t+10)
			if !c.wantStale {
				if len(r.Stale) != 0 {
					t.Fatalf("stale entries %+v, want none", r.Stale)
				}
				return
			}
			if len(r.Stale) != 1 {
				t.Fatalf("stale entries: %+v, want the summary", r.Stale)
			}
			st := r.Stale[0]
			if !st.SetAfterWrite || st.StaleHits != 3 || st.WrittenBy.PID != 2 || st.WrittenBy.View == nil || *st.WrittenBy.View != "shop.views.write" ||
				!reflect.DeepEqual(st.Inputs, []string{"shop_order"}) {
				t.Errorf("stale entry %+v, want set after the write by shop.views.write, 3 stale hits", st)
			}
			var text strings.Builder
			WriteText(&text, r)
			if !strings.Contains(text.String(), "cached after the write, from rows read before it committed") {
				t.Errorf("the text report does not say the entry was cached after the write:\n%s", text.String())
			}
		})
	}
}
