package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/gdamore/tcell/v2"

	"krait/internal/sample"
)

// topSnapshot is one interval of krait top --json (one JSON line each).
type topSnapshot struct {
	Time         time.Time         `json:"time"`
	IntervalS    float64           `json:"interval_s"`
	Samples      int64             `json:"samples"`
	Rate         float64           `json:"rate"`
	Errors       int64             `json:"errors"`
	Processes    int               `json:"processes"`
	Functions    []sample.FuncStat `json:"functions"`
	Views        []topView         `json:"views,omitempty"`
	TotalSamples int64             `json:"total_samples"`
}

// topView is a view's share of one interval and its slowest request in
// flight (seconds since krait first saw it).
type topView struct {
	sample.ViewStat
	InFlight    int      `json:"in_flight"`
	SlowestS    *float64 `json:"slowest_s"`
	SlowestPath string   `json:"slowest_route,omitempty"`
}

func runTop(args []string, stdout, stderr io.Writer) int {
	f := newProfFlags("top")
	delayFlag := durationFlag{time.Second}
	f.fs.Var(&delayFlag, "delay", "refresh interval: seconds or e.g. 500ms (default 1s)")
	delay := &delayFlag.d
	if code := f.parse("top", args, stdout, stderr); code >= 0 {
		return code
	}
	if *delay < 100*time.Millisecond {
		*delay = 100 * time.Millisecond
	}
	s, child, code := f.start("top", stderr)
	if code >= 0 {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if f.dur.d > 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeout(ctx, f.dur.d)
		defer c2()
	}
	done := make(chan struct{})
	go func() {
		s.Run(ctx)
		// Not waited for while sampled: krait's own wait would take the
		// stops of the threads the sampler holds (see sample.Sampler).
		if child != nil {
			go func() { _ = child.Wait() }()
		}
		close(done)
	}()
	out, isFile := stdout.(*os.File)
	if *f.asJSON || !isFile || !isTerminal(out) {
		return topJSON(ctx, s, stdout, stderr, *delay, *f.by == "view", done)
	}
	return topScreen(ctx, cancel, s, *delay, *f.by == "view", done, stderr)
}

func snapshot(s *sample.Sampler, interval *sample.Profile, total *sample.Profile, d time.Duration, byView bool) topSnapshot {
	snap := topSnapshot{Time: time.Now(), IntervalS: d.Seconds(), Samples: interval.Samples, Rate: float64(interval.Samples) / d.Seconds(),
		Errors: s.Errors(), Processes: s.Live(), Functions: interval.TopFuncs(40), TotalSamples: total.Samples}
	if snap.Functions == nil {
		snap.Functions = []sample.FuncStat{}
	}
	if byView {
		cur := s.Current()
		for _, v := range interval.Views() {
			tv := topView{ViewStat: v}
			for _, r := range cur {
				if r.View != v.View {
					continue
				}
				tv.InFlight++
				if a := r.Age.Seconds(); tv.SlowestS == nil || a > *tv.SlowestS {
					tv.SlowestS = &a
					tv.SlowestPath = strings.TrimSpace(r.Method + " " + r.Route)
				}
			}
			snap.Views = append(snap.Views, tv)
		}
	}
	return snap
}

func topJSON(ctx context.Context, s *sample.Sampler, stdout, stderr io.Writer, delay time.Duration, byView bool, done chan struct{}) int {
	total := sample.NewProfile()
	t := time.NewTicker(delay)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			<-done
			return ExitOK
		case <-done:
			return ExitOK
		case now := <-t.C:
			iv := s.Swap()
			total.Merge(iv)
			if code := writeJSONLine(stdout, stderr, snapshot(s, iv, total, now.Sub(last), byView)); code != ExitOK {
				return code
			}
			last = now
		}
	}
}

func writeJSONLine(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout) // one line per snapshot
	if err := enc.Encode(v); err != nil {
		return fail(stderr, err)
	}
	return ExitOK
}

func topScreen(ctx context.Context, cancel context.CancelFunc, s *sample.Sampler, delay time.Duration, byView bool, done chan struct{}, stderr io.Writer) int {
	scr, err := tcell.NewScreen()
	if err == nil {
		err = scr.Init()
	}
	if err != nil {
		cancel()
		<-done
		fmt.Fprintf(stderr, "krait top: cannot use the terminal: %v\n", err)
		return ExitError
	}
	defer scr.Fini()
	events := make(chan tcell.Event, 16)
	go func() {
		for {
			ev := scr.PollEvent()
			if ev == nil {
				return
			}
			events <- ev
		}
	}()
	total := sample.NewProfile()
	var iv *sample.Profile = sample.NewProfile()
	sortBy := 0
	paused := false
	t := time.NewTicker(delay)
	defer t.Stop()
	last := time.Now()
	draw := func() {
		drawTop(scr, s, iv, total, sortBy, byView, paused, time.Since(last))
	}
	draw()
	for {
		select {
		case <-ctx.Done():
			scr.Fini()
			<-done
			return ExitOK
		case <-done:
			scr.Fini()
			return ExitOK
		case now := <-t.C:
			p := s.Swap()
			total.Merge(p)
			if !paused {
				iv = p
			}
			last = now
			draw()
		case ev := <-events:
			switch e := ev.(type) {
			case *tcell.EventResize:
				scr.Sync()
				draw()
			case *tcell.EventKey:
				switch {
				case e.Key() == tcell.KeyCtrlC || e.Key() == tcell.KeyEscape || e.Rune() == 'q':
					cancel()
					scr.Fini()
					<-done
					return ExitOK
				case e.Rune() >= '1' && e.Rune() <= '4':
					sortBy = int(e.Rune() - '1')
				case e.Rune() == 'v':
					byView = !byView
				case e.Rune() == 'p' || e.Rune() == ' ':
					paused = !paused
				}
				draw()
			}
		}
	}
}

func drawTop(scr tcell.Screen, s *sample.Sampler, iv, total *sample.Profile, sortBy int, byView, paused bool, _ time.Duration) {
	scr.Clear()
	w, h := scr.Size()
	plain := tcell.StyleDefault
	bold := plain.Bold(true)
	if os.Getenv("NO_COLOR") == "" {
		bold = bold.Foreground(tcell.ColorTeal)
	}
	put := func(x, y int, st tcell.Style, text string) {
		for _, r := range text {
			if x >= w {
				return
			}
			scr.SetContent(x, y, r, nil, st)
			x++
		}
	}
	state := "sampling"
	if paused {
		state = "paused"
	}
	put(0, 0, bold, fmt.Sprintf("krait top  %d processes  %.0f samples/s  %d errors  total %d samples  (%s)", s.Live(), s.Rate(), s.Errors(), total.Samples, state))
	put(0, 1, plain, "keys: 1-4 sort by %Own, %Total, OwnTime, TotalTime   v views/functions   p pause   q quit")
	rate := s.Rate()
	if rate <= 0 {
		rate = 1
	}
	y := 3
	if byView {
		put(0, y, bold, fmt.Sprintf("%7s %8s %9s %10s  %s", "%Time", "Samples", "InFlight", "Slowest", "View"))
		y++
		snap := snapshot(s, iv, total, time.Second, true)
		for _, v := range snap.Views {
			if y >= h {
				break
			}
			slow := "-"
			if v.SlowestS != nil {
				slow = fmt.Sprintf("%.1fs", *v.SlowestS)
			}
			put(0, y, plain, fmt.Sprintf("%6.1f%% %8d %9d %10s  %s %s", v.Percent, v.Samples, v.InFlight, slow, v.View, v.SlowestPath))
			y++
		}
		scr.Show()
		return
	}
	funcs := iv.TopFuncs(0)
	totals := map[string]sample.FuncStat{}
	for _, f := range total.TopFuncs(0) {
		totals[f.Function+"\x00"+f.File] = f
	}
	sort.SliceStable(funcs, func(i, j int) bool {
		a, b := funcs[i], funcs[j]
		ta, tb := totals[a.Function+"\x00"+a.File], totals[b.Function+"\x00"+b.File]
		switch sortBy {
		case 1:
			return a.Total > b.Total
		case 2:
			return ta.Own > tb.Own
		case 3:
			return ta.Total > tb.Total
		}
		return a.Own > b.Own
	})
	head := []string{"%Own", "%Total", "OwnTime", "TotalTime"}
	head[sortBy] = "[" + head[sortBy] + "]"
	put(0, y, bold, fmt.Sprintf("%8s %8s %10s %11s  %s", head[0], head[1], head[2], head[3], "Function (filename)"))
	y++
	for _, f := range funcs {
		if y >= h {
			break
		}
		tf := totals[f.Function+"\x00"+f.File]
		put(0, y, plain, fmt.Sprintf("%7.1f%% %7.1f%% %9.2fs %10.2fs  %s (%s)", f.OwnPct, f.TotalPct, float64(tf.Own)/rate, float64(tf.Total)/rate, f.Function, f.File))
		y++
	}
	scr.Show()
}
