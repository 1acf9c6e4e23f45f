package sample

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// Meta describes a recording, for the writers.
type Meta struct {
	Rate     float64 // samples per second asked for
	Start    time.Time
	Duration time.Duration
	Title    string
}

// WriteRaw writes collapsed stacks: "frame;frame;frame count", one line per
// distinct stack, root first (Brendan Gregg's format).
func WriteRaw(w io.Writer, p *Profile, o FoldOptions) error {
	bw := bufio.NewWriter(w)
	for _, f := range p.Fold(o) {
		for i, n := range f.Names {
			if i > 0 {
				bw.WriteByte(';')
			}
			bw.WriteString(strings.ReplaceAll(n, ";", ":"))
		}
		fmt.Fprintf(bw, " %d\n", f.Count)
	}
	return bw.Flush()
}

// speedscope's file format (https://www.speedscope.app/file-format-schema.json).
type ssFile struct {
	Schema             string      `json:"$schema"`
	Shared             ssShared    `json:"shared"`
	Profiles           []ssProfile `json:"profiles"`
	Name               string      `json:"name"`
	ActiveProfileIndex int         `json:"activeProfileIndex"`
	Exporter           string      `json:"exporter"`
}

type ssShared struct {
	Frames []ssFrame `json:"frames"`
}

type ssFrame struct {
	Name string `json:"name"`
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
}

type ssProfile struct {
	Type       string    `json:"type"`
	Name       string    `json:"name"`
	Unit       string    `json:"unit"`
	StartValue float64   `json:"startValue"`
	EndValue   float64   `json:"endValue"`
	Samples    [][]int   `json:"samples"`
	Weights    []float64 `json:"weights"`
}

// WriteSpeedscope writes speedscope's JSON file format: one sampled
// profile per thread, weights in seconds.
func WriteSpeedscope(w io.Writer, p *Profile, m Meta, byView bool) error {
	f := ssFile{Schema: "https://www.speedscope.app/file-format-schema.json", Name: m.Title, Exporter: "krait"}
	for _, fn := range p.Funcs {
		f.Shared.Frames = append(f.Shared.Frames, ssFrame(fn))
	}
	viewFrame := map[string]int{}
	type tkey struct {
		pid, tid int
		id       uint64
	}
	profiles := map[tkey]*ssProfile{}
	var keys []tkey
	per := 1 / m.Rate
	for _, s := range p.Stacks {
		k := tkey{s.PID, s.TID, s.ThreadID}
		sp := profiles[k]
		if sp == nil {
			name := fmt.Sprintf("process %d %s", s.PID, threadFrame(s.Labels))
			sp = &ssProfile{Type: "sampled", Name: name, Unit: "seconds", Samples: [][]int{}, Weights: []float64{}}
			profiles[k] = sp
			keys = append(keys, k)
		}
		var st []int
		if byView {
			v := s.View
			if v == "" {
				v = NoRequest
			}
			i, ok := viewFrame[v]
			if !ok {
				i = len(f.Shared.Frames)
				f.Shared.Frames = append(f.Shared.Frames, ssFrame{Name: "view " + v})
				viewFrame[v] = i
			}
			st = append(st, i)
		}
		st = append(st, s.Frames...)
		sp.Samples = append(sp.Samples, st)
		sp.Weights = append(sp.Weights, float64(s.Count)*per)
		sp.EndValue += float64(s.Count) * per
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.pid != b.pid {
			return a.pid < b.pid
		}
		return a.tid < b.tid || a.tid == b.tid && a.id < b.id
	})
	for _, k := range keys {
		f.Profiles = append(f.Profiles, *profiles[k])
	}
	if f.Shared.Frames == nil {
		f.Shared.Frames = []ssFrame{}
	}
	if f.Profiles == nil {
		f.Profiles = []ssProfile{}
	}
	return json.NewEncoder(w).Encode(f)
}

// WritePprof writes a gzipped profile.proto: sample counts and wall time,
// one location per function and line, labels pid, thread (OS thread id),
// thread_name and, for samples inside a web request, view, method and
// route.
func WritePprof(w io.Writer, p *Profile, m Meta) error {
	period := int64(float64(time.Second) / m.Rate)
	pp := &profile.Profile{
		SampleType:    []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "wall", Unit: "nanoseconds"}},
		PeriodType:    &profile.ValueType{Type: "wall", Unit: "nanoseconds"},
		Period:        period,
		TimeNanos:     m.Start.UnixNano(),
		DurationNanos: m.Duration.Nanoseconds(),
	}
	type fk struct{ name, file string }
	funcs := map[fk]*profile.Function{}
	locs := make([]*profile.Location, len(p.Funcs))
	for i, f := range p.Funcs {
		fn := funcs[fk{f.Name, f.File}]
		if fn == nil {
			fn = &profile.Function{ID: uint64(len(pp.Function) + 1), Name: f.Name, SystemName: f.Name, Filename: f.File}
			funcs[fk{f.Name, f.File}] = fn
			pp.Function = append(pp.Function, fn)
		}
		loc := &profile.Location{ID: uint64(i + 1), Line: []profile.Line{{Function: fn, Line: int64(f.Line)}}}
		locs[i] = loc
		pp.Location = append(pp.Location, loc)
	}
	for _, s := range p.Stacks {
		sm := &profile.Sample{Value: []int64{s.Count, s.Count * period}, Label: map[string][]string{
			"pid":    {strconv.Itoa(s.PID)},
			"thread": {threadID(s.Labels)},
		}}
		if s.ThreadName != "" {
			sm.Label["thread_name"] = []string{s.ThreadName}
		}
		v := s.View
		if v == "" {
			v = NoRequest
		}
		sm.Label["view"] = []string{v}
		if s.Method != "" {
			sm.Label["method"] = []string{s.Method}
		}
		if s.Route != "" {
			sm.Label["route"] = []string{s.Route}
		}
		for k := len(s.Frames) - 1; k >= 0; k-- {
			sm.Location = append(sm.Location, locs[s.Frames[k]])
		}
		pp.Sample = append(pp.Sample, sm)
	}
	if err := pp.CheckValid(); err != nil {
		return err
	}
	return pp.Write(w)
}

func threadID(l Labels) string {
	if l.TID != 0 {
		return strconv.Itoa(l.TID)
	}
	return fmt.Sprintf("0x%x", l.ThreadID)
}
