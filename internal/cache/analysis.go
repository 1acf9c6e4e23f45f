// Package cache is krait cache's analysis: the cache operations, SQL
// statements and commits the agents of every traced worker report, merged
// by time, related to each other (the tables a cached value was computed
// from, the committed writes to them) and summed up: the cache entries
// served stale, and a summary per key pattern.
package cache

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Grace is how long after a write made outside any request an
// invalidation still counts as following it (a write inside a request has
// until the request ends).
const Grace = time.Second

// Event is one event of an agent (cachetrace.py), with the process it came
// from.
type Event struct {
	PID    int
	Kind   string // cache, sql, commit, rollback, req
	Op     string // cache: get, set, add, delete, get_many, set_many, delete_many, incr, decr, touch, clear
	Phase  string // req: start or end
	Alias  string
	Back   string // backend class
	Key    string // the user's key
	FKey   string // the final key (make_key)
	Hit    *bool
	Stored *bool // add: whether it stored
	Size   *int64
	TTL    *float64 // nil: never expires (when HasTTL)
	HasTTL bool
	Thread int64
	Time   float64 // seconds since the epoch
	// Start: sql, when the statement was sent (Time is when it returned);
	// commit, when commit was called (Time is when it returned).
	Start  float64
	US     float64 // µs inside the cache call
	Req    int64   // request id within the process, 0 outside a request
	View   string
	Method string
	Path   string
	Query  string
	File   string
	Line   int
	URL    string // cache_page keys: the request they stand for
	Via    string
	SQL    string
	DB     string
	Atomic bool
	Ver    any // the version asked for (nil: the alias's)
}

// Alias is what the agent says of a cache alias at cache_start.
type Alias struct {
	Backend   string
	KeyPrefix string
	Version   any
	OwnKeys   bool // a KEY_FUNCTION of its own: the agent sends the final keys
}

// Complete fills in what the agent leaves out of each event to keep them
// small: the backend class, and the final key Django's default key
// function makes ("PREFIX:VERSION:KEY").
func Complete(e *Event, aliases map[string]Alias) {
	a, ok := aliases[e.Alias]
	if !ok || e.Kind != "cache" {
		return
	}
	if e.Back == "" {
		e.Back = a.Backend
	}
	if e.FKey == "" && e.Key != "" && !a.OwnKeys {
		v := e.Ver
		if v == nil {
			v = a.Version
		}
		e.FKey = a.KeyPrefix + ":" + jsonScalar(v) + ":" + e.Key
	}
}

// jsonScalar is a JSON number or string as Python's "%s" shows it.
func jsonScalar(v any) string {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return fmt.Sprintf("%d", int64(x))
		}
		return fmt.Sprint(x)
	case nil:
		return "None"
	}
	return fmt.Sprint(v)
}

// FromMap reads an event as the agent sent it.
func FromMap(pid int, m map[string]any) Event {
	s := func(k string) string { v, _ := m[k].(string); return v }
	f := func(k string) float64 { v, _ := m[k].(float64); return v }
	e := Event{PID: pid, Kind: s("kind"), Op: s("op"), Phase: s("ph"), Alias: s("alias"), Back: s("backend"),
		Key: s("key"), FKey: s("fkey"), Thread: int64(f("thread")), Time: f("t"), US: f("us"), Req: int64(f("req")),
		View: s("view"), Method: s("method"), Path: s("path"), Query: s("query"), File: s("file"), Line: int(f("line")),
		URL: s("url"), Via: s("via"), SQL: s("sql"), DB: s("db")}
	if b, ok := m["hit"].(bool); ok {
		e.Hit = &b
	}
	if b, ok := m["stored"].(bool); ok {
		e.Stored = &b
	}
	if v, ok := m["size"].(float64); ok {
		n := int64(v)
		e.Size = &n
	}
	if v, ok := m["ttl"]; ok {
		e.HasTTL = true
		if x, ok := v.(float64); ok {
			e.TTL = &x
		}
	}
	e.Atomic, _ = m["atomic"].(bool)
	e.Ver = m["v"]
	if ns, ok := m["ns"].(float64); ok {
		e.US = ns / 1000
	}
	e.Start = e.Time
	if e.Kind == "sql" {
		if end := f("end"); end > 0 {
			e.Time = end // a statement counts as run when it returned
		}
	}
	if t0 := f("t0"); t0 > 0 && e.Kind == "commit" {
		e.Start = t0
	}
	return e
}

// Where is a request and code location.
type Where struct {
	PID  int     `json:"pid"`
	View *string `json:"view"`
	Path *string `json:"path"`
	File string  `json:"file,omitempty"`
	Line int     `json:"line,omitempty"`
	SQL  string  `json:"sql,omitempty"`
	Time string  `json:"time"`
	T    float64 `json:"-"`
}

// Stale is a cache entry served stale.
type Stale struct {
	Key          string         `json:"key"`
	UserKey      string         `json:"user_key"`
	StandsFor    string         `json:"stands_for,omitempty"`
	Alias        string         `json:"alias"`
	Backend      string         `json:"backend"`
	SetBy        Where          `json:"set_by"`
	Inputs       []string       `json:"inputs"`
	WrittenBy    Where          `json:"written_by"`
	Invalidated  *string        `json:"invalidated"` // when a delete or set finally came (after the stale hits), else null
	StaleHits    int            `json:"stale_hits"`
	StaleByView  map[string]int `json:"stale_hits_by_view"`
	LastStaleHit *string        `json:"last_stale_hit"`
	Timeout      *float64       `json:"timeout"` // seconds; null: never expires
	Never        bool           `json:"never_expires"`
	// SetAfterWrite: the value was computed from rows read before the
	// write committed and cached after it (a race no invalidation can
	// catch: it came before the set).
	SetAfterWrite bool `json:"set_after_write"`
}

// Pattern sums the operations on keys of one pattern.
type Pattern struct {
	Pattern  string  `json:"pattern"`
	Alias    string  `json:"alias"`
	Gets     int     `json:"gets"`
	Hits     int     `json:"hits"`
	HitRatio float64 `json:"hit_ratio"`
	Sets     int     `json:"sets"`
	Deletes  int     `json:"deletes"`
	Bytes    int64   `json:"bytes"`
	TimeUS   float64 `json:"time_us"`
	Stale    int     `json:"stale_entries"`
}

// Report is the analysis of every event so far.
type Report struct {
	Patterns []Pattern `json:"patterns"`
	Stale    []Stale   `json:"stale"`
	CacheOps int       `json:"cache_ops"`
	SQL      int       `json:"sql_statements"`
	Writes   int       `json:"committed_writes"`
	Requests int       `json:"requests"`
}

// ---------------------------------------------------------------- analysis

type reqKey struct {
	pid int
	id  int64
}

// stateKey names the state of a thread (Req 0) or of a request.
type stateKey struct {
	PID    int
	Thread int64
	Req    int64
}

type reqInfo struct {
	view, method, path string
	start, end         float64
}

type write struct {
	ev     Event
	tables []string
}

type entry struct {
	id      string
	set     Event
	inputs  []string
	ttl     *float64
	never   bool
	setAt   float64
	cand    *candidate // a committed write to an input; the writer may still invalidate
	stale   *candidate // confirmed
	gone    *float64   // deleted or replaced after it went stale
	entryNo int
}

type candidate struct {
	w        write
	at       float64 // commit time
	race     bool    // the entry was set after the write, from rows read before it
	table    string
	deadline float64        // 0: until the writer's request ends
	hits     int            // gets served after the write
	byView   map[string]int // those hits by the view (or request) that got them
	last     float64        // the last one
}

// hit counts a get served after the write.
func (c *candidate) hit(e Event, reqs map[reqKey]*reqInfo) {
	v := e.View
	if r := reqs[reqKey{e.PID, e.Req}]; v == "" && e.Req != 0 && r != nil {
		v = r.view // resolved after the hit
	}
	if v == "" && e.Path != "" {
		v = e.Method + " " + e.Path // no view (yet): a page served by cache_page, say
	}
	if v == "" {
		v = "(no request)"
	}
	if c.byView == nil {
		c.byView = map[string]int{}
	}
	c.hits++
	c.byView[v]++
	c.last = e.Time
}

type threadState struct {
	req     int64
	tables  []string            // read since the request began
	readAt  map[string]float64  // table -> when its last read returned
	windows map[string][]string // final key -> tables read since its miss
	pending map[string][]write  // db alias -> writes not yet committed
}

// Analyze relates the events (from any number of processes, in any order)
// and sums them up; now is the end of the observation.
func Analyze(events []Event, now float64) *Report {
	a := NewAnalyzer()
	a.Add(events...)
	return a.Report(now)
}

// Analyzer relates events as they come (Add), in time order up to a point
// (Advance): what it keeps is the live cache entries, the stale ones and
// the sums per pattern, not the events. Not safe for concurrent use.
type Analyzer struct {
	pending []Event // added, not yet processed
	reqs    map[reqKey]*reqInfo
	states  map[stateKey]*threadState // of threads, and of requests in flight
	step    func(Event)
	settle  func(float64)
	report  func() *Report
}

// Add queues events (from any process, in any order).
func (a *Analyzer) Add(evs ...Event) {
	for _, e := range evs {
		if e.Kind != "req" {
			continue
		}
		k := reqKey{e.PID, e.Req}
		r := a.reqs[k]
		if r == nil {
			r = &reqInfo{}
			a.reqs[k] = r
		}
		switch e.Phase {
		case "start":
			r.method, r.path, r.start = e.Method, e.Path, e.Time
		case "end":
			r.end = e.Time
			if e.View != "" {
				r.view = e.View
			}
		}
	}
	a.pending = append(a.pending, evs...)
}

// Advance processes, in time order, the events up to t (events older than
// what was processed already, arriving late, are processed at once).
func (a *Analyzer) Advance(t float64) {
	sort.SliceStable(a.pending, func(i, j int) bool { return a.pending[i].Time < a.pending[j].Time })
	i := 0
	for ; i < len(a.pending) && a.pending[i].Time <= t; i++ {
		a.step(a.pending[i])
	}
	a.pending = append([]Event(nil), a.pending[i:]...)
	a.settle(t)
	// Requests that ended a minute before t: every write of theirs is
	// settled; their view and path are in their events.
	for k, r := range a.reqs {
		if r.end > 0 && r.end < t-60 {
			delete(a.reqs, k)
		}
	}
}

// Report processes the events up to now and sums up.
func (a *Analyzer) Report(now float64) *Report {
	a.Advance(now)
	return a.report()
}

// NewAnalyzer returns an empty analyzer.
func NewAnalyzer() *Analyzer {
	a := &Analyzer{reqs: map[reqKey]*reqInfo{}}
	reqs := a.reqs
	rep := &Report{}
	threads := map[stateKey]*threadState{}
	a.states = threads
	entries := map[string]*entry{}
	var stales []*entry
	pats := map[[2]string]*Pattern{}
	// th is the state of e's thread (its database connections'
	// transactions: Django's connections are per thread); cx that of its
	// request (what it read, the misses it may fill), or of its thread
	// outside a request. A request is not always one thread: under ASGI it
	// starts and ends in the event loop's thread and runs its sync code
	// (the ORM, cache calls, sync views) in threads of sync_to_async.
	th := func(e Event) *threadState {
		k := stateKey{PID: e.PID, Thread: e.Thread}
		t := threads[k]
		if t == nil {
			t = &threadState{windows: map[string][]string{}, pending: map[string][]write{}}
			threads[k] = t
		}
		return t
	}
	cx := func(e Event) *threadState {
		if e.Req == 0 {
			return th(e)
		}
		k := stateKey{PID: e.PID, Req: e.Req}
		t := threads[k]
		if t == nil {
			t = &threadState{req: e.Req, windows: map[string][]string{}}
			threads[k] = t
		}
		return t
	}
	pat := func(e Event) *Pattern {
		k := [2]string{e.Alias, FoldKey(e.Key)}
		p := pats[k]
		if p == nil {
			p = &Pattern{Pattern: k[1], Alias: e.Alias}
			pats[k] = p
		}
		return p
	}
	// confirm: a candidate's writer finished without invalidating.
	confirm := func(en *entry) {
		en.stale = en.cand
		en.cand = nil
		stales = append(stales, en)
	}
	writerDone := func(c *candidate) (float64, bool) {
		if c.deadline > 0 {
			return c.deadline, true
		}
		r := reqs[reqKey{c.w.ev.PID, c.w.ev.Req}]
		if r == nil || r.end == 0 {
			return 0, false
		}
		return r.end, true
	}
	// byTable indexes the live entries by input table; cands are the
	// entries waiting for their writer to finish.
	byTable := map[string]map[*entry]bool{}
	cands := map[*entry]bool{}
	settle := func(t float64) {
		for en := range cands {
			if end, ok := writerDone(en.cand); ok && end <= t {
				delete(cands, en)
				confirm(en)
			}
		}
	}
	// drop takes en out of the live entries (deleted, replaced, expired
	// at t).
	drop := func(en *entry, t float64) {
		if en.stale != nil {
			tt := t
			en.gone = &tt
		}
		delete(entries, en.id)
		delete(cands, en)
		for _, tb := range en.inputs {
			delete(byTable[tb], en)
		}
	}
	// expired: an entry past its timeout is gone (a later get misses).
	expired := func(en *entry, t float64) bool {
		if en.ttl != nil && *en.ttl > 0 && en.setAt+*en.ttl < t {
			drop(en, en.setAt+*en.ttl)
			return true
		}
		return false
	}
	// lastWrite: per table, the last committed write, and the earliest its
	// commit can have been (the statement's or commit's call).
	type committed struct {
		w         write
		at, lower float64
	}
	lastWrite := map[string]committed{}
	commit := func(ws []write, at, lower float64) {
		for _, w := range ws {
			for _, tbl := range w.tables {
				lastWrite[tbl] = committed{w: w, at: at, lower: lower}
			}
		}
		for _, w := range ws {
			rep.Writes++
			for _, tbl := range w.tables {
				for en := range byTable[tbl] {
					if en.cand != nil || en.stale != nil || en.setAt >= at || expired(en, at) {
						continue
					}
					c := &candidate{w: w, at: at, table: tbl}
					if w.ev.Req == 0 {
						c.deadline = at + Grace.Seconds()
					}
					en.cand = c
					cands[en] = true
				}
			}
		}
	}
	// remove: the key was deleted or set again.
	remove := func(id string, t float64) {
		if en := entries[id]; en != nil && !expired(en, t) {
			drop(en, t)
		}
	}
	entryID := func(e Event) string {
		k := e.FKey
		if k == "" {
			k = e.Key
		}
		if strings.Contains(strings.ToLower(e.Back), "locmem") {
			return fmt.Sprintf("%d|%s|%s", e.PID, e.Alias, k) // per process
		}
		return e.Alias + "|" + k
	}
	parsed := map[string]struct{ read, written []string }{}
	n := 0
	a.step = func(e Event) {
		settle(e.Time)
		switch e.Kind {
		case "req":
			switch e.Phase {
			case "start":
				t := cx(e)
				t.req, t.tables = e.Req, nil
				t.windows = map[string][]string{}
				rep.Requests++
			case "end":
				delete(threads, stateKey{PID: e.PID, Req: e.Req})
			}
		case "sql":
			rep.SQL++
			tt, ok := parsed[e.SQL] // statements repeat (parameters apart)
			if !ok {
				tt.read, tt.written = Tables(e.SQL)
				parsed[e.SQL] = tt
			}
			read, written := tt.read, tt.written
			t := cx(e)
			for _, tb := range read {
				if t.readAt == nil {
					t.readAt = map[string]float64{}
				}
				t.readAt[tb] = e.Time
				t.tables = addUniq(t.tables, tb)
				for k, w := range t.windows {
					t.windows[k] = addUniq(w, tb)
				}
			}
			if len(written) > 0 {
				w := write{ev: e, tables: written}
				if e.Atomic {
					pt := th(e)
					pt.pending[e.DB] = append(pt.pending[e.DB], w)
				} else {
					commit([]write{w}, e.Time, e.Start)
				}
			}
		case "commit":
			t := th(e)
			if ws := t.pending[e.DB]; len(ws) > 0 {
				delete(t.pending, e.DB)
				commit(ws, e.Time, e.Start)
			}
		case "rollback":
			delete(th(e).pending, e.DB)
		case "cache":
			rep.CacheOps++
			p := pat(e)
			p.TimeUS += e.US
			id := entryID(e)
			t := cx(e)
			fk := e.FKey
			if fk == "" {
				fk = e.Key
			}
			switch e.Op {
			case "get", "get_many":
				p.Gets++
				if e.Hit != nil && *e.Hit {
					p.Hits++
					if en := entries[id]; en != nil && !expired(en, e.Time) {
						switch {
						case en.stale != nil:
							en.stale.hit(e, reqs)
						case en.cand != nil && e.Time > en.cand.at:
							en.cand.hit(e, reqs)
						}
					}
				} else if e.Hit != nil {
					if len(t.windows) >= 1000 { // misses never followed by a set, outside requests
						t.windows = map[string][]string{}
					}
					t.windows[fk] = []string{}
				}
			case "set", "add", "set_many":
				if e.Op == "add" && e.Stored != nil && !*e.Stored {
					return
				}
				p.Sets++
				if e.Size != nil {
					p.Bytes += *e.Size
				}
				inputs, ok := t.windows[fk]
				if !ok && e.Req != 0 && t.req == e.Req {
					inputs = t.tables // no miss: what its request read so far
				}
				delete(t.windows, fk)
				remove(id, e.Time)
				n++
				en := &entry{id: id, set: e, inputs: append([]string(nil), inputs...), setAt: e.Time, entryNo: n}
				if e.HasTTL {
					en.ttl = e.TTL
					en.never = e.TTL == nil
				}
				entries[id] = en
				// Set after a write its inputs were read before: stale
				// from the start (when the write surely committed after
				// the last read of the table returned; the writer's own
				// request does not count).
				for _, tb := range en.inputs {
					lw, ok := lastWrite[tb]
					read, wasRead := t.readAt[tb]
					if !ok || !wasRead || lw.lower <= read || lw.at > e.Time ||
						lw.w.ev.PID == e.PID && lw.w.ev.Req == e.Req && (e.Req != 0 || lw.w.ev.Thread == e.Thread) {
						continue
					}
					c := &candidate{w: lw.w, at: lw.at, table: tb, race: true}
					if lw.w.ev.Req == 0 {
						c.deadline = lw.at + Grace.Seconds()
					}
					en.cand = c
					cands[en] = true
					break
				}
				for _, tb := range en.inputs {
					if byTable[tb] == nil {
						byTable[tb] = map[*entry]bool{}
					}
					byTable[tb][en] = true
				}
			case "delete", "delete_many":
				p.Deletes++
				remove(id, e.Time)
			case "incr", "decr":
				p.Sets++
				remove(id, e.Time)
			case "clear":
				p.Deletes++
				for _, en := range entries {
					if en.set.Alias == e.Alias && (en.set.PID == e.PID || !strings.Contains(strings.ToLower(e.Back), "locmem")) {
						drop(en, e.Time)
					}
				}
			}
		}
	}
	a.settle = settle
	a.report = func() *Report {
		out := *rep
		out.Patterns, out.Stale = []Pattern{}, []Stale{}
		stale := map[[2]string]int{}
		for _, en := range stales {
			out.Stale = append(out.Stale, staleOf(en, reqs))
			stale[[2]string{en.set.Alias, FoldKey(en.set.Key)}]++
		}
		sort.SliceStable(out.Stale, func(i, j int) bool { return out.Stale[i].StaleHits > out.Stale[j].StaleHits })
		for k, p := range pats {
			q := *p
			q.Stale = stale[k]
			if q.Gets > 0 {
				q.HitRatio = math.Round(float64(q.Hits)/float64(q.Gets)*1000) / 1000
			}
			out.Patterns = append(out.Patterns, q)
		}
		sort.Slice(out.Patterns, func(i, j int) bool {
			a, b := out.Patterns[i], out.Patterns[j]
			if a.Stale != b.Stale {
				return a.Stale > b.Stale
			}
			if a.Gets+a.Sets != b.Gets+b.Sets {
				return a.Gets+a.Sets > b.Gets+b.Sets
			}
			return a.Pattern < b.Pattern
		})
		return &out
	}
	return a
}

func staleOf(en *entry, reqs map[reqKey]*reqInfo) Stale {
	e := en.set
	s := Stale{Key: e.FKey, UserKey: e.Key, Alias: e.Alias, Backend: e.Back, Inputs: en.inputs, Timeout: en.ttl, Never: en.never,
		StaleByView: map[string]int{}}
	if s.Key == "" {
		s.Key = e.Key
	}
	s.StandsFor = StandsFor(e.Key, e.URL)
	s.SetBy = where(e, reqs)
	s.SetBy.File, s.SetBy.Line = e.File, e.Line
	w := en.stale.w.ev
	s.WrittenBy = where(w, reqs)
	s.WrittenBy.SQL = w.SQL
	s.WrittenBy.T = en.stale.at
	s.WrittenBy.Time = stamp(en.stale.at)
	s.StaleHits = en.stale.hits
	s.SetAfterWrite = en.stale.race
	for v, n := range en.stale.byView {
		s.StaleByView[v] = n
	}
	if en.stale.hits > 0 {
		ts := stamp(en.stale.last)
		s.LastStaleHit = &ts
	}
	if en.gone != nil {
		ts := stamp(*en.gone)
		s.Invalidated = &ts
	}
	if s.Inputs == nil {
		s.Inputs = []string{}
	}
	return s
}

func where(e Event, reqs map[reqKey]*reqInfo) Where {
	w := Where{PID: e.PID, T: e.Time, Time: stamp(e.Time)}
	view, path := e.View, e.Path
	if r := reqs[reqKey{e.PID, e.Req}]; e.Req != 0 && r != nil {
		if view == "" {
			view = r.view
		}
		if path == "" {
			path = r.path
		}
	}
	if view != "" {
		w.View = &view
	}
	if path != "" {
		w.Path = &path
	}
	return w
}

func stamp(t float64) string {
	sec, frac := math.Modf(t)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC().Format("2006-01-02T15:04:05.000Z")
}

func addUniq(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// ---------------------------------------------------------------- keys

var (
	uuidRE = regexp.MustCompile(`(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`)
	hashRE = regexp.MustCompile(`(?i)\b[0-9a-f]{16,}\b`)
	numRE  = regexp.MustCompile(`\d+`)
)

// FoldKey folds what varies in a key: UUIDs, hashes (16 hex digits or
// more) and numbers: product:17:price is product:<n>:price.
func FoldKey(k string) string {
	k = uuidRE.ReplaceAllString(k, "<uuid>")
	k = hashRE.ReplaceAllStringFunc(k, func(s string) string {
		if strings.IndexFunc(s, func(r rune) bool { return r >= '0' && r <= '9' }) < 0 {
			return s // a word of hex letters
		}
		return "<hash>"
	})
	return numRE.ReplaceAllString(k, "<n>")
}

// StandsFor says what a cache_page or template-fragment key stands for.
func StandsFor(key, url string) string {
	switch {
	case strings.HasPrefix(key, "views.decorators.cache.cache_page."):
		if url != "" {
			return "page " + url
		}
		return "a cache_page page"
	case strings.HasPrefix(key, "views.decorators.cache.cache_header."):
		if url != "" {
			return "headers of page " + url
		}
		return "a cache_page header list"
	case strings.HasPrefix(key, "template.cache."):
		rest := strings.TrimPrefix(key, "template.cache.")
		if i := strings.LastIndexByte(rest, '.'); i > 0 {
			rest = rest[:i]
		}
		return "template fragment " + rest
	}
	return ""
}
