// Command fibgate is the operator's tool for fibgate: it watches the kernel
// FIB with hardware flags (monitor), runs the gate with its API on a
// namespace (serve), and talks to a running gate over the API (routes,
// watch, policy, hw, stats, audit). The BGP-facing daemons are fibgated and
// gobgpd-ext.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/fibgate/fibgate/gobgpd-ext/internal/version"
)

// Exit statuses: 2 is for errors the user can fix (flags, namespace,
// privileges), as documented in --help.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError marks an error caused by how fibgate was invoked.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

const topUsage = `fibgate — advertise a prefix only after the hardware has installed it.

Usage:
  fibgate <command> [flags]

Commands:
  serve     run the gate and its API on a namespace's FIB with a hardware backend (kernel, sim, external)
  monitor   print kernel route events with their hardware flags (offload, trap, offload_failed)
  routes    list gated prefixes and where each stands (pending, confirmed, failed, ...)
  watch     print gated prefixes' states, then every change
  policy    get, set or validate the gating policy (a YAML file)
  hw        steer the simulated ASIC: capacity, latency, rate, failures, stats
  stats     print the gate's counters and time-to-hardware latencies
  audit     compare what GoBGP advertises with the FIB, the hardware and the gate
  health    exit 0 only when the gate is ready (readiness probes)
  top       live view: prefixes per state, confirmation rates, time to hardware, longest pending
  version   print fibgate's version, the Go release and the GoBGP version (also --version)

Run 'fibgate <command> --help' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command until it finishes or ctx ends and returns the
// exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdout, stderr)
	case "monitor":
		err = monitor(ctx, args[1:], stdout, stderr)
	case "routes":
		err = routesCmd(ctx, args[1:], stdout, stderr)
	case "watch":
		err = watchCmd(ctx, args[1:], stdout, stderr)
	case "policy":
		err = policyCmd(ctx, args[1:], stdout, stderr)
	case "hw":
		err = hwCmd(ctx, args[1:], stdout, stderr)
	case "stats":
		err = statsCmd(ctx, args[1:], stdout, stderr)
	case "audit":
		err = auditCmd(ctx, args[1:], stdout, stderr)
	case "top":
		err = topCmd(ctx, args[1:], stdout, stderr)
	case "health":
		err = healthCmd(ctx, args[1:], stdout, stderr)
	case "version", "-version", "--version":
		if len(args) > 1 {
			fmt.Fprintf(stderr, "fibgate: version takes no arguments, got %q\n", args[1:])
			return exitUsage
		}
		fmt.Fprintln(stdout, "fibgate", version.Get())
		return exitOK
	case "-h", "--help", "help":
		fmt.Fprint(stdout, topUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "fibgate: unknown command %q\n\n%s", args[0], topUsage)
		return exitUsage
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, new(mismatchFound)):
		return exitMismatch // the list is on stdout
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "fibgate: %v\n", err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "fibgate: %v\n", err)
		return exitError
	}
}
