package repl

import (
	"errors"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/chzyer/readline"
)

// runTerminal is the REPL at a terminal: line editing, history in
// ~/.krait_history (0600), tab completion, stops and notices announced as
// they happen while krait waits for input (the prompt is redrawn after
// them, as gdb's non-stop mode does), Ctrl-C at the prompt does nothing but
// give a new prompt, Ctrl-D detaches and leaves.
func (r *REPL) runTerminal(stop chan struct{}) error {
	syscall.Umask(0o077) // the history file, and anything else krait writes, is the user's alone
	hist := ""
	if home, err := os.UserHomeDir(); err == nil {
		hist = filepath.Join(home, ".krait_history")
		if f, err := os.OpenFile(hist, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
			f.Chmod(0o600)
			f.Close()
		}
	}
	// readline's own Close leaves the goroutine reading standard input
	// blocked (and waits for it): give it a reader krait cancels first.
	stdin := readline.NewCancelableStdin(os.Stdin)
	rl, err := readline.NewEx(&readline.Config{
		Stdin:           stdin,
		Prompt:          "(krait) ",
		HistoryFile:     hist,
		HistoryLimit:    1000,
		AutoComplete:    completer{r},
		InterruptPrompt: "^C",
		EOFPrompt:       "quit",
		FuncGetWidth: func() int {
			if w := readline.GetScreenWidth(); w > 0 {
				return w
			}
			return 80 // a terminal that says it has no columns
		},
	})
	if err != nil {
		return err
	}
	r.rl = rl
	r.Out = rl.Stdout() // output while the prompt shows clears it and redraws it
	defer func() { stdin.Close(); rl.Close() }()
	go r.watch(stop)
	// Outside the prompt the terminal sends SIGINT for Ctrl-C: it stops a
	// wait for a stop, and is otherwise ignored (never the end of krait).
	r.intr = make(chan os.Signal, 1)
	signal.Notify(r.intr, os.Interrupt)
	defer signal.Stop(r.intr)
	last := ""
	for {
		r.Flush()
		done := r.announce()
		rl.SetPrompt(r.prompt())
		line, err := rl.Readline()
		done()
		select { // a Ctrl-C before the prompt is not meant for the next wait
		case <-r.intr:
		default:
		}
		if errors.Is(err, readline.ErrInterrupt) {
			r.bc.collecting = false // Ctrl-C at commands' ">" abandons them, as in gdb
			continue                // gdb: Ctrl-C at the prompt does nothing
		}
		if err == io.EOF {
			r.printf("quit\n")
			return r.cmdDetach("")
		}
		if err != nil {
			return err
		}
		if strings.TrimSpace(line) == "" {
			// gdb repeats stepping and listing commands on an empty line.
			if f := strings.Fields(last); len(f) > 0 && strings.Contains(" s step n next u until l list c continue fin finish ", " "+f[0]+" ") {
				line = last
			}
		}
		last = line
		if r.Report(r.Exec(line)) {
			return nil
		}
	}
}

// announce prints stops and notices as they arrive until the returned
// function is called (when the user's line is in).
func (r *REPL) announce() func() {
	stop, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-stop:
				return
			case <-r.G.Updates():
				r.flush(true)
			}
		}
	}()
	return func() { close(stop); <-finished }
}

// completer completes commands, info's subcommands, breakpoint numbers,
// file names, and expressions: names, attributes and dict keys in the
// selected frame.
type completer struct{ r *REPL }

func (c completer) Do(line []rune, pos int) ([][]rune, int) {
	text := string(line[:pos])
	fields := strings.Fields(text)
	word := ""
	if len(text) > 0 && text[len(text)-1] != ' ' && len(fields) > 0 {
		word = fields[len(fields)-1]
		fields = fields[:len(fields)-1]
	}
	var cands []string
	switch {
	case len(fields) == 0:
		for _, cmd := range commands {
			cands = append(cands, cmd.names[0])
		}
	case fields[0] == "help" || fields[0] == "h":
		for _, cmd := range commands {
			cands = append(cands, cmd.names[0])
		}
	case fields[0] == "info" || fields[0] == "i":
		cands = infoSubcommands
	case isOneOf(fields[0], "delete", "d", "disable", "enable", "condition", "ignore"):
		if bps, err := c.r.G.Breakpoints(); err == nil {
			for _, bp := range bps {
				cands = append(cands, strconv.Itoa(bp.ID))
			}
		}
	case isOneOf(strings.SplitN(fields[0], "/", 2)[0], exprCommands...):
		return c.expr(line, pos)
	case isOneOf(fields[0], "break", "b", "br", "tbreak", "dprintf", "list", "l"):
		cands = c.r.knownFiles()
	}
	sort.Strings(cands)
	var out [][]rune
	seen := map[string]bool{}
	for _, cand := range cands {
		if strings.HasPrefix(cand, word) && !seen[cand] {
			seen[cand] = true
			out = append(out, []rune(cand[len(word):]+" "))
		}
	}
	return out, len([]rune(word))
}

// exprCommands take an expression, completed by the agent in the
// selected frame (session.Complete): names, attributes, dict keys.
var exprCommands = []string{"print", "p", "inspect", "py-print", "display", "whatis", "set"}

// expr completes the expression under the cursor of an expression
// command's line: readline gets what each candidate adds to the word.
func (c completer) expr(line []rune, pos int) ([][]rune, int) {
	text := string(line[:pos])
	lead := len(text) - len(strings.TrimLeft(text, " \t"))
	arg := lead + strings.IndexAny(text[lead:], " \t")
	if arg < lead || c.r.S.Stopped() == nil {
		return nil, 0
	}
	rest := text[arg:]
	if f := strings.Fields(text); f[0] == "set" && len(f) > 1 && f[1] == "var" && len(rest) > len(" var") {
		i := strings.Index(rest, "var")
		rest = rest[i+3:]
	}
	start, cands, err := c.r.S.Complete(rest, len(rest))
	if err != nil || len(cands) == 0 {
		return nil, 0
	}
	word := rest[start:]
	var out [][]rune
	for _, cand := range cands {
		if strings.HasPrefix(cand.Text, word) {
			out = append(out, []rune(cand.Text[len(word):]))
		}
	}
	return out, len([]rune(word))
}

func isOneOf(s string, names ...string) bool {
	for _, n := range names {
		if s == n {
			return true
		}
	}
	return false
}

// infoSubcommands are what `info` answers.
var infoSubcommands = []string{"args", "breakpoints", "display", "frame", "inferiors", "locals", "source", "threads"}

// knownFiles are file names krait has seen in this session (breakpoints,
// stops, frames), by base name, for completing break and list.
func (r *REPL) knownFiles() []string {
	var out []string
	if bps, err := r.G.Breakpoints(); err == nil {
		for _, bp := range bps {
			out = append(out, filepath.Base(bp.File))
		}
	}
	if st := r.S.Stopped(); st != nil {
		if frames, err := r.S.Stack(); err == nil {
			for _, f := range frames {
				out = append(out, filepath.Base(f.File))
			}
		}
	}
	return out
}
