package cli

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"krait/internal/dap"
)

// runDap serves the Debug Adapter Protocol on stdin and stdout (krait dap),
// as editors run a debug adapter. Whatever ends it (disconnect, stdin
// closed, SIGINT, SIGTERM, SIGHUP), krait detaches: the process runs on.
func runDap(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dap", flag.ContinueOnError)
	attachTimeout := fs.Duration("attach-timeout", 10*time.Second, "how long to wait for the agent to start")
	if code := parseFlags(fs, "dap", args, stdout, stderr); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "dap", "takes no arguments (the process is named by the attach request)")
	}
	if *attachTimeout <= 0 {
		return usageError(stderr, "dap", "bad --attach-timeout %v (a positive duration)", *attachTimeout)
	}
	sv := dap.NewServer(os.Stdin, stdout)
	sv.AttachTimeout = *attachTimeout
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	served := make(chan error, 1)
	go func() { served <- sv.Serve() }()
	select {
	case err := <-served:
		if err != nil {
			fmt.Fprintf(stderr, "krait: dap: %v\n", err)
			return ExitError
		}
		return ExitOK
	case sig := <-sigs:
		sv.Close()
		return 128 + int(sig.(syscall.Signal))
	}
}
