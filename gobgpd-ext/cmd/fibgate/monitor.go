package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/kernel"
)

const monitorUsage = `Usage: fibgate monitor [--netns NAME] [--json] [--dump] [--set-notify 0|1|2] [--rcvbuf BYTES] [-v]

Prints one line per kernel route event (add, change, delete; resync for
differences found by a fresh dump after a notification overrun or a link
loss) with the route's hardware flags: offload, trap, offload_failed.

Hardware flag changes are only announced when the sysctl
net.ipv4/ipv6.fib_notify_on_flag_change is 1 (or 2: failures only); fibgate
warns when it is 0, and --set-notify writes it.

Exit status: 0 on interrupt, 1 on a runtime error, 2 on bad flags, a missing
namespace or missing privileges.

Flags:
`

// monitorLine is the --json output: one object per line. Field names are a
// stable interface for scripts.
type monitorLine struct {
	Time     string        `json:"time"`
	Event    string        `json:"event"`
	Change   string        `json:"change,omitempty"` // for "resync": add, change or delete
	Family   string        `json:"family"`
	Table    uint32        `json:"table"`
	Prefix   string        `json:"prefix"`
	Type     string        `json:"type"`
	Protocol string        `json:"protocol"`
	Priority uint32        `json:"priority"`
	TOS      uint8         `json:"tos,omitempty"`
	Flags    []string      `json:"flags"`
	OldFlags []string      `json:"old_flags,omitempty"`
	Nexthops []nexthopLine `json:"nexthops"`
}

type nexthopLine struct {
	Gateway string   `json:"gateway"`
	Dev     string   `json:"dev"`
	Weight  int      `json:"weight"`
	Flags   []string `json:"flags"`
}

func monitor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("monitor", flag.ContinueOnError)
	// Errors are reported in one line by run; --help prints to stdout.
	fs.SetOutput(io.Discard)
	netns := fs.String("netns", "", "follow the named network namespace (/run/netns/NAME) instead of the current one")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	dump := fs.Bool("dump", false, "print the current table first, as add events")
	setNotify := fs.String("set-notify", "", "write fib_notify_on_flag_change (0, 1 or 2) for IPv4 and IPv6 first (default: leave it)")
	rcvbuf := fs.Int("rcvbuf", 32<<20, "notification socket receive buffer in bytes (forced; needs CAP_NET_ADMIN)")
	verbose := fs.Bool("v", false, "log resyncs and overruns to stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, monitorUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return err
		}
		return usageError{fmt.Errorf("monitor: %w (see fibgate monitor --help)", err)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("monitor takes no arguments, got %q", fs.Args())}
	}
	if *rcvbuf < 4096 {
		return usageError{fmt.Errorf("--rcvbuf %d is too small (minimum 4096)", *rcvbuf)}
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	opts := []kernel.ListenerOption{
		kernel.WithNetNS(*netns),
		kernel.WithRcvBuf(*rcvbuf),
		kernel.WithLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))),
	}
	if *setNotify != "" {
		v, err := strconv.Atoi(*setNotify)
		if err != nil {
			return usageError{fmt.Errorf("--set-notify %q: want 0, 1 or 2", *setNotify)}
		}
		m, err := fib.ParseNotifyMode(v)
		if err != nil {
			return usageError{fmt.Errorf("--set-notify: %w", err)}
		}
		opts = append(opts, kernel.WithSetNotifyMode(m))
	}
	l := kernel.NewListener(opts...)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- l.Run(ctx) }()
	// Subscribe once the first dump is in: the snapshot is then the table.
	select {
	case <-l.Ready():
	case err := <-errc:
		return classify(err, *netns)
	}
	events := l.Events(ctx, *dump)

	w := bufio.NewWriter(stdout)
	p := printer{w: w, json: *asJSON, link: l.LinkName}
	for {
		select {
		case batch, ok := <-events:
			if !ok {
				w.Flush()
				return classify(<-errc, *netns)
			}
			for _, ev := range batch {
				p.print(ev)
			}
			if err := w.Flush(); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
		case err := <-errc:
			// Drain what was queued before the listener stopped.
			cancel()
			for batch := range events {
				for _, ev := range batch {
					p.print(ev)
				}
			}
			w.Flush()
			return classify(err, *netns)
		}
	}
}

// classify turns listener errors the user can fix into usage errors (exit 2)
// with one clear line.
func classify(err error, netns string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrNotExist) && netns != "":
		return usageError{fmt.Errorf("network namespace %q does not exist (see `ip netns list`)", netns)}
	case errors.Is(err, os.ErrPermission):
		return usageError{fmt.Errorf("%w: run as root or with CAP_NET_ADMIN (and CAP_SYS_ADMIN for --netns)", err)}
	}
	return err
}

type printer struct {
	w    *bufio.Writer
	json bool
	link func(int) string
}

func (p printer) line(ev kernel.Event) monitorLine {
	r := ev.Route()
	l := monitorLine{
		Time:     ev.Time.UTC().Format(time.RFC3339Nano),
		Event:    ev.Kind.String(),
		Family:   r.Family().String(),
		Table:    r.Table,
		Prefix:   r.Prefix.String(),
		Type:     r.Type.String(),
		Protocol: r.Protocol.String(),
		Priority: r.Priority,
		TOS:      r.TOS,
		Flags:    r.Flags.Names(),
		Nexthops: []nexthopLine{},
	}
	if ev.Kind == kernel.Changed {
		l.OldFlags = ev.Old.Flags.Names()
	}
	// Differences found by a resync say so; snapshot lines (--dump) are adds.
	if ev.Resync {
		l.Change, l.Event = l.Event, "resync"
	}
	for _, nh := range r.Nexthops {
		n := nexthopLine{Dev: p.link(nh.LinkIndex), Weight: max(nh.Weight, 1), Flags: nh.HW.Names()}
		if nh.Gateway.IsValid() {
			n.Gateway = nh.Gateway.String()
		}
		if n.Dev == "" && nh.LinkIndex != 0 {
			n.Dev = "if" + strconv.Itoa(nh.LinkIndex)
		}
		l.Nexthops = append(l.Nexthops, n)
	}
	return l
}

func (p printer) print(ev kernel.Event) {
	l := p.line(ev)
	if p.json {
		b, _ := json.Marshal(l)
		p.w.Write(b)
		p.w.WriteByte('\n')
		return
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %-6s", l.Time, l.Event)
	if l.Change != "" {
		fmt.Fprintf(&sb, " (%s)", l.Change)
	}
	fmt.Fprintf(&sb, " %s table %d %s %s proto %s", l.Family, l.Table, l.Prefix, l.Type, l.Protocol)
	if l.TOS != 0 {
		fmt.Fprintf(&sb, " tos 0x%02x", l.TOS)
	}
	if l.Priority != 0 {
		fmt.Fprintf(&sb, " metric %d", l.Priority)
	}
	for _, nh := range l.Nexthops {
		sb.WriteString(" nexthop")
		if nh.Gateway != "" {
			sb.WriteString(" via " + nh.Gateway)
		}
		if nh.Dev != "" {
			sb.WriteString(" dev " + nh.Dev)
		}
		if nh.Weight > 1 {
			fmt.Fprintf(&sb, " weight %d", nh.Weight)
		}
		if len(nh.Flags) > 0 {
			sb.WriteString(" [" + strings.Join(nh.Flags, ",") + "]")
		}
	}
	flags := "none"
	if len(l.Flags) > 0 {
		flags = strings.Join(l.Flags, ",")
	}
	sb.WriteString(" flags " + flags)
	if l.OldFlags != nil {
		old := "none"
		if len(l.OldFlags) > 0 {
			old = strings.Join(l.OldFlags, ",")
		}
		sb.WriteString(" (was " + old + ")")
	}
	sb.WriteByte('\n')
	p.w.WriteString(sb.String())
}
