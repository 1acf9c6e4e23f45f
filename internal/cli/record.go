package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"krait/internal/procinfo"
	"krait/internal/sample"
)

// pidList is a repeatable --pid that also takes comma-separated lists.
type pidList struct {
	pids []int
	bad  string
}

func (p *pidList) String() string { return fmt.Sprint(p.pids) }
func (p *pidList) Set(v string) error {
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			if p.bad == "" {
				p.bad = f
			}
			continue
		}
		p.pids = append(p.pids, n)
	}
	return nil
}

// durationFlag takes seconds ("10", as py-spy) or a Go duration ("1m30s").
type durationFlag struct{ d time.Duration }

func (d *durationFlag) String() string { return d.d.String() }
func (d *durationFlag) Set(v string) error {
	if v == "unlimited" {
		d.d = 0
		return nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 {
		d.d = time.Duration(f * float64(time.Second))
		return nil
	}
	x, err := time.ParseDuration(v)
	if err != nil || x < 0 {
		return fmt.Errorf("bad duration %q (seconds, or e.g. 1m30s)", v)
	}
	d.d = x
	return nil
}

// profFlags are the flags record and top share.
type profFlags struct {
	fs           *flag.FlagSet
	pids         pidList
	all          *bool
	server       *string
	rate         *float64
	idle, gil    *bool
	subprocesses *bool
	nonblocking  *bool
	by           *string
	asJSON       *bool
	dur          durationFlag
	command      []string
}

func newProfFlags(name string) *profFlags {
	f := &profFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	fs := f.fs
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.Var(&f.pids, "pid", "process id to sample (repeatable, or comma-separated)")
	fs.Var(&f.pids, "p", "short for --pid")
	f.all = fs.Bool("all", false, "every Python process krait ps finds")
	f.server = fs.String("server", "", "with --all: only processes whose server kind contains this (gunicorn, mod_wsgi, uwsgi, …)")
	f.rate = fs.Float64("rate", 100, "samples per second")
	fs.Float64Var(f.rate, "r", 100, "short for --rate")
	f.idle = fs.Bool("idle", false, "include threads that are not running (waiting for I/O, locks, sleeping)")
	fs.BoolVar(f.idle, "i", false, "short for --idle")
	f.gil = fs.Bool("gil", false, "only the thread holding the GIL")
	fs.BoolVar(f.gil, "g", false, "short for --gil")
	f.subprocesses = fs.Bool("subprocesses", false, "also sample the processes' children (gunicorn workers, mod_wsgi daemons), including those started later")
	fs.BoolVar(f.subprocesses, "s", false, "short for --subprocesses")
	f.nonblocking = fs.Bool("nonblocking", false, "never pause the processes (stacks may be torn)")
	f.by = fs.String("by", "", "view: group by the Django view of the request each thread serves")
	f.asJSON = fs.Bool("json", false, "print JSON")
	fs.BoolVar(f.asJSON, "j", false, "short for --json")
	fs.Var(&f.dur, "duration", "how long to sample: seconds or e.g. 1m30s (default: until Ctrl-C or every process exits)")
	fs.Var(&f.dur, "d", "short for --duration")
	return f
}

// parse parses args; a command after "--" is kept. It returns an exit code
// >= 0 when krait should stop.
func (f *profFlags) parse(cmd string, args []string, stdout, stderr io.Writer) int {
	if i := indexOf(args, "--"); i >= 0 {
		f.command = args[i+1:]
		args = args[:i]
	}
	if code := parsePIDFlags(f.fs, cmd, args, &f.pids, stdout, stderr); code >= 0 {
		return code
	}
	// Bare process ids are accepted too: krait record 4242.
	for _, a := range f.fs.Args() {
		n, err := strconv.Atoi(a)
		if err != nil || n <= 0 {
			fmt.Fprintf(stderr, "krait %s: unexpected argument %q (a command to run goes after --; see krait help %s)\n", cmd, a, cmd)
			return ExitUsage
		}
		f.pids.pids = append(f.pids.pids, n)
	}
	modes := 0
	for _, on := range []bool{len(f.pids.pids) > 0, *f.all, len(f.command) > 0} {
		if on {
			modes++
		}
	}
	if modes != 1 {
		fmt.Fprintf(stderr, "krait %s: give one of --pid PID..., --all, or -- COMMAND ARGS...\n", cmd)
		return ExitUsage
	}
	if *f.server != "" && !*f.all {
		fmt.Fprintf(stderr, "krait %s: --server goes with --all\n", cmd)
		return ExitUsage
	}
	if *f.rate <= 0 || *f.rate > 10000 {
		fmt.Fprintf(stderr, "krait %s: --rate must be between 1 and 10000 samples per second\n", cmd)
		return ExitUsage
	}
	if *f.by != "" && *f.by != "view" {
		fmt.Fprintf(stderr, "krait %s: --by takes view\n", cmd)
		return ExitUsage
	}
	return -1
}

func indexOf(args []string, s string) int {
	for i, a := range args {
		if a == s {
			return i
		}
	}
	return -1
}

// start opens the processes to sample (or starts the command) and returns
// the sampler, and a function to wait for the command. An exit code >= 0
// means krait stops.
func (f *profFlags) start(cmd string, stderr io.Writer) (*sample.Sampler, *exec.Cmd, int) {
	opt := sample.Options{Rate: *f.rate, Idle: *f.idle, GIL: *f.gil, NonBlocking: *f.nonblocking, Subprocesses: *f.subprocesses}
	// A server's master stands for its workers: they are followed as
	// with --subprocesses.
	if _, masters := procinfo.ExpandServers(f.pids.pids); len(masters) > 0 {
		opt.Subprocesses = true
	}
	warn := func(msg string) { fmt.Fprintf(stderr, "krait %s: %s\n", cmd, msg) }
	switch {
	case len(f.command) > 0:
		c := exec.Command(f.command[0], f.command[1:]...)
		c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := c.Start(); err != nil {
			fmt.Fprintf(stderr, "krait %s: cannot run %s: %v\n", cmd, f.command[0], err)
			return nil, nil, ExitError
		}
		s := sample.New(opt, []int{c.Process.Pid})
		s.Warn = warn
		s.Add(c.Process.Pid)
		return s, c, -1
	case *f.all:
		var pids []int
		all, _ := procinfo.Survey(os.Getpid())
		for _, pid := range all {
			if *f.server != "" {
				info, err := procinfo.Read(pid)
				if err != nil || !strings.Contains(strings.ToLower(info.Server), strings.ToLower(*f.server)) {
					continue
				}
			}
			pids = append(pids, pid)
		}
		s := sample.New(opt, pids)
		s.Warn = warn
		opened := 0
		for _, pid := range pids {
			if err := s.Open(pid); err != nil {
				if !strings.Contains(err.Error(), "not a Python process") {
					warn(err.Error())
				}
				continue
			}
			opened++
		}
		if opened == 0 {
			fmt.Fprintf(stderr, "krait %s: no Python process to sample%s\n", cmd, serverNote(*f.server))
			return nil, nil, ExitNoProcess
		}
		return s, nil, -1
	}
	s := sample.New(opt, f.pids.pids)
	s.Warn = warn
	var firstErr error
	opened := 0
	for _, pid := range f.pids.pids {
		if err := s.Open(pid); err != nil {
			if len(f.pids.pids) == 1 {
				return nil, nil, fail(stderr, err)
			}
			if firstErr == nil {
				firstErr = err
			}
			warn(err.Error())
			continue
		}
		opened++
	}
	if opened == 0 {
		return nil, nil, exitFor(firstErr)
	}
	return s, nil, -1
}

func serverNote(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf(" (server %q)", s)
}

// exitFor is fail's exit code without its message (already printed).
func exitFor(err error) int { return fail(io.Discard, err) }

// recordSummary is the JSON contract of krait record --json.
type recordSummary struct {
	Output        string            `json:"output"`
	Format        string            `json:"format"`
	Samples       int64             `json:"samples"`
	ThreadSamples int64             `json:"thread_samples"`
	DurationS     float64           `json:"duration_s"`
	RateRequested float64           `json:"rate_requested"`
	RateAchieved  float64           `json:"rate_achieved"`
	Late          int64             `json:"late"`
	Errors        int64             `json:"errors"`
	Processes     []sample.ProcInfo `json:"processes"`
	TopFunctions  []sample.FuncStat `json:"top_functions"`
	Views         []sample.ViewStat `json:"views"`
}

func runRecord(args []string, stdout, stderr io.Writer) int {
	f := newProfFlags("record")
	fs := f.fs
	output := fs.String("output", "", "file to write (- for standard output; default krait-PID-TIME.EXT)")
	fs.StringVar(output, "o", "", "short for --output")
	format := fs.String("format", "flamegraph", "flamegraph (SVG), speedscope, pprof or raw (collapsed stacks)")
	fs.StringVar(format, "f", "flamegraph", "short for --format")
	threads := fs.Bool("threads", false, "a root frame per thread")
	fs.BoolVar(threads, "t", false, "short for --threads")
	if code := f.parse("record", args, stdout, stderr); code >= 0 {
		return code
	}
	ext := map[string]string{"flamegraph": "svg", "speedscope": "speedscope.json", "pprof": "pb.gz", "raw": "txt"}[*format]
	if ext == "" {
		fmt.Fprintf(stderr, "krait record: unknown --format %q (flamegraph, speedscope, pprof or raw)\n", *format)
		return ExitUsage
	}
	s, child, code := f.start("record", stderr)
	if code >= 0 {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.dur.d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.dur.d)
		defer cancel()
	}
	progressDone := make(chan struct{})
	progressStopped := make(chan struct{})
	if isTerminal(os.Stderr) {
		go progress(s, stderr, progressDone, progressStopped)
	} else {
		close(progressStopped)
	}
	start := time.Now()
	s.Run(ctx)
	close(progressDone)
	<-progressStopped
	stop()
	if child != nil {
		// Reaped only now: a wait of krait's while the sampler holds the
		// command's threads would take their ptrace stops (the kernel
		// reports a tracee's stops to any wait of its tracer's process).
		// The command goes on if recording stopped first (--duration).
		go func() { _ = child.Wait() }()
	}
	p := s.Profile()
	procs := s.Procs()
	name := *output
	if name == "" {
		who := "cmd"
		if len(procs) > 0 {
			who = strconv.Itoa(procs[0].PID)
		}
		name = fmt.Sprintf("krait-%s-%s.%s", who, start.Format("20060102T150405"), ext)
	}
	meta := sample.Meta{Rate: *f.rate, Start: s.Started, Duration: s.Ended.Sub(s.Started), Title: "krait record"}
	fold := sample.FoldOptions{ByView: *f.by == "view", Threads: *threads, Processes: len(procs) > 1}
	var out io.Writer = stdout
	var file *os.File
	if name != "-" {
		var err error
		if file, err = os.Create(name); err != nil {
			fmt.Fprintf(stderr, "krait record: %v\n", err)
			return ExitError
		}
		out = file
	}
	var err error
	switch *format {
	case "raw":
		err = sample.WriteRaw(out, p, fold)
	case "speedscope":
		err = sample.WriteSpeedscope(out, p, meta, *f.by == "view")
	case "pprof":
		err = sample.WritePprof(out, p, meta)
	default:
		sub := fmt.Sprintf("%d samples at %.0f/s over %.1fs, %d processes", p.ThreadSamples, s.Rate(), meta.Duration.Seconds(), len(procs))
		err = sample.WriteFlamegraph(out, p.Fold(fold), "krait record: "+title(procs), sub)
	}
	if file != nil {
		if cerr := file.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "krait record: writing %s: %v\n", name, err)
		return ExitError
	}
	if *f.asJSON {
		sum := recordSummary{Output: name, Format: *format, Samples: s.Rounds(), ThreadSamples: p.ThreadSamples,
			DurationS: meta.Duration.Seconds(), RateRequested: *f.rate, RateAchieved: s.Rate(), Late: s.Late(), Errors: s.Errors(),
			Processes: procs, TopFunctions: p.TopFuncs(20), Views: p.Views()}
		if sum.Processes == nil {
			sum.Processes = []sample.ProcInfo{}
		}
		return writeJSON(stdout, stderr, sum)
	}
	if name != "-" {
		fmt.Fprintf(stderr, "krait record: wrote %s (%d samples, %.1f/s, %d errors)\n", name, s.Rounds(), s.Rate(), s.Errors())
	}
	return ExitOK
}

func title(procs []sample.ProcInfo) string {
	if len(procs) == 1 {
		return fmt.Sprintf("process %d (%s)", procs[0].PID, procs[0].Command)
	}
	return fmt.Sprintf("%d processes", len(procs))
}

// progress shows samples, rate and errors on the terminal.
func progress(s *sample.Sampler, stderr io.Writer, done, stopped chan struct{}) {
	defer close(stopped)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			fmt.Fprintf(stderr, "\r%-110s\r", "")
			return
		case <-t.C:
			line := fmt.Sprintf("krait record: %d samples, %.1f/s, %d errors, %d processes (Ctrl-C to stop and write)", s.Rounds(), s.Rate(), s.Errors(), s.Live())
			fmt.Fprintf(stderr, "\r%-110s", line)
		}
	}
}
