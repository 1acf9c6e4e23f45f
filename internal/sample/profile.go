package sample

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
)

// NoRequest is the view charged for samples outside any web request.
const NoRequest = "(no request)"

// Func is one distinct frame: a function at a line.
type Func struct {
	Name string // qualified name
	File string
	Line int
}

func (f Func) String() string {
	if f.Line > 0 {
		return fmt.Sprintf("%s (%s:%d)", f.Name, f.File, f.Line)
	}
	return fmt.Sprintf("%s (%s)", f.Name, f.File)
}

// Labels say where a stack was taken: process, thread and, for web work,
// the request's view, method and route.
type Labels struct {
	PID        int
	TID        int    // OS thread id (0 if unknown)
	ThreadID   uint64 // Python's thread ident
	ThreadName string
	View       string // NoRequest outside a request
	Method     string
	Route      string
}

// Stack is one distinct stack with its labels and how many samples hit it.
type Stack struct {
	Labels
	Frames []int // indexes into Profile.Funcs, root first
	Count  int64
	// Idle counts the samples of this stack taken while the thread was
	// not running (only kept with --idle).
	Idle int64
}

// Profile aggregates samples by distinct stack: its size grows with the
// number of distinct stacks, never with the number of samples.
type Profile struct {
	Funcs  []Func
	funcs  map[Func]int
	Stacks []*Stack
	stacks map[string]*Stack
	// Samples is the number of sampling rounds taken; ThreadSamples the
	// stacks recorded (one per thread per round, idle ones left out
	// unless asked for).
	Samples       int64
	ThreadSamples int64
	key           []byte
}

// NewProfile returns an empty profile.
func NewProfile() *Profile {
	return &Profile{funcs: map[Func]int{}, stacks: map[string]*Stack{}}
}

// Func interns f.
func (p *Profile) Func(f Func) int {
	if i, ok := p.funcs[f]; ok {
		return i
	}
	i := len(p.Funcs)
	p.Funcs = append(p.Funcs, f)
	p.funcs[f] = i
	return i
}

// Add counts one sample of frames (root first, interned) under labels.
func (p *Profile) Add(l Labels, frames []int, idle bool) {
	k := p.key[:0]
	k = binary.AppendUvarint(k, uint64(l.PID))
	k = binary.AppendUvarint(k, uint64(l.TID))
	k = binary.AppendUvarint(k, l.ThreadID)
	for _, s := range []string{l.ThreadName, l.View, l.Method, l.Route} {
		k = binary.AppendUvarint(k, uint64(len(s)))
		k = append(k, s...)
	}
	for _, f := range frames {
		k = binary.AppendUvarint(k, uint64(f))
	}
	p.key = k
	s, ok := p.stacks[string(k)]
	if !ok {
		s = &Stack{Labels: l, Frames: append([]int(nil), frames...)}
		p.stacks[string(k)] = s
		p.Stacks = append(p.Stacks, s)
	}
	s.Count++
	if idle {
		s.Idle++
	}
	p.ThreadSamples++
}

// FoldOptions say which synthetic root frames a folded stack gets.
type FoldOptions struct {
	ByView    bool // the request's view as the root frame
	Threads   bool // a frame per thread
	Processes bool // a frame per process
}

// Folded is one stack as frame names, root first.
type Folded struct {
	Names []string
	Count int64
}

// Fold turns the profile into named stacks, merging those that become
// equal (e.g. the same stack in two threads when threads are not shown),
// sorted by name for stable output.
func (p *Profile) Fold(o FoldOptions) []Folded {
	names := make([]string, len(p.Funcs))
	for i, f := range p.Funcs {
		names[i] = f.String()
	}
	merged := map[string]*Folded{}
	var out []*Folded
	for _, s := range p.Stacks {
		var fs []string
		if o.ByView {
			v := s.View
			if v == "" {
				v = NoRequest
			}
			fs = append(fs, "view "+v)
		}
		if o.Processes {
			fs = append(fs, "process "+strconv.Itoa(s.PID))
		}
		if o.Threads {
			fs = append(fs, threadFrame(s.Labels))
		}
		for _, f := range s.Frames {
			fs = append(fs, names[f])
		}
		key := joinKey(fs)
		if m, ok := merged[key]; ok {
			m.Count += s.Count
			continue
		}
		f := &Folded{Names: fs, Count: s.Count}
		merged[key] = f
		out = append(out, f)
	}
	res := make([]Folded, len(out))
	for i, f := range out {
		res[i] = *f
	}
	sort.Slice(res, func(i, j int) bool { return joinKey(res[i].Names) < joinKey(res[j].Names) })
	return res
}

func joinKey(s []string) string {
	n := 0
	for _, x := range s {
		n += len(x) + 1
	}
	b := make([]byte, 0, n)
	for _, x := range s {
		b = append(b, x...)
		b = append(b, 0)
	}
	return string(b)
}

func threadFrame(l Labels) string {
	id := fmt.Sprintf("0x%x", l.ThreadID)
	if l.TID != 0 {
		id = fmt.Sprintf("tid %d", l.TID)
	}
	if l.ThreadName != "" {
		return fmt.Sprintf("thread %q (%s)", l.ThreadName, id)
	}
	return "thread (" + id + ")"
}

// FuncStat is one function's share of the samples.
type FuncStat struct {
	Function string  `json:"function"`
	File     string  `json:"file"`
	Own      int64   `json:"own_samples"`
	Total    int64   `json:"total_samples"`
	OwnPct   float64 `json:"own_percent"`
	TotalPct float64 `json:"total_percent"`
}

// TopFuncs ranks functions (lines merged) by own samples, then total.
func (p *Profile) TopFuncs(n int) []FuncStat {
	type fk struct{ name, file string }
	own, total := map[fk]int64{}, map[fk]int64{}
	var all int64
	for _, s := range p.Stacks {
		all += s.Count
		seen := map[fk]bool{}
		for i, fi := range s.Frames {
			f := p.Funcs[fi]
			k := fk{f.Name, f.File}
			if i == len(s.Frames)-1 {
				own[k] += s.Count
			}
			if !seen[k] {
				seen[k] = true
				total[k] += s.Count
			}
		}
	}
	out := make([]FuncStat, 0, len(total))
	for k, t := range total {
		st := FuncStat{Function: k.name, File: k.file, Own: own[k], Total: t}
		if all > 0 {
			st.OwnPct = 100 * float64(st.Own) / float64(all)
			st.TotalPct = 100 * float64(t) / float64(all)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Own != out[j].Own {
			return out[i].Own > out[j].Own
		}
		if out[i].Total != out[j].Total {
			return out[i].Total > out[j].Total
		}
		return out[i].Function < out[j].Function
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

// ViewStat is one view's share of the samples.
type ViewStat struct {
	View    string  `json:"view"`
	Samples int64   `json:"samples"`
	Percent float64 `json:"percent"`
}

// Views ranks views by samples (NoRequest included).
func (p *Profile) Views() []ViewStat {
	by := map[string]int64{}
	var all int64
	for _, s := range p.Stacks {
		v := s.View
		if v == "" {
			v = NoRequest
		}
		by[v] += s.Count
		all += s.Count
	}
	out := make([]ViewStat, 0, len(by))
	for v, n := range by {
		st := ViewStat{View: v, Samples: n}
		if all > 0 {
			st.Percent = 100 * float64(n) / float64(all)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Samples != out[j].Samples {
			return out[i].Samples > out[j].Samples
		}
		return out[i].View < out[j].View
	})
	return out
}

// Merge adds o's samples to p.
func (p *Profile) Merge(o *Profile) {
	frames := make([]int, 0, 64)
	for _, s := range o.Stacks {
		frames = frames[:0]
		for _, f := range s.Frames {
			frames = append(frames, p.Func(o.Funcs[f]))
		}
		p.Add(s.Labels, frames, false)
		st := p.stacks[string(p.key)]
		st.Count += s.Count - 1
		st.Idle += s.Idle
		p.ThreadSamples += s.Count - 1
	}
	p.Samples += o.Samples
}
