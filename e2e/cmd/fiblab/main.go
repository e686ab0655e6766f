// Command fiblab brings fibgate's containerlab labs up on a plain Linux
// machine, from the same .clab.yml, with network namespaces, veth pairs,
// Debian's FRR and fibgate's binaries (`sudo make lab`), takes them down
// again (`sudo make lab-down`), and probes a running lab's data plane, so
// a user sees packets lost, second by second, while injecting a failure.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/fibgate/fibgate/e2e/clab"
)

const usage = `Usage:
  fiblab up [-bin DIR] [-state DIR] FILE.clab.yml   build the lab and start its nodes
  fiblab down [-state DIR] NAME|FILE.clab.yml       stop every node, delete the namespaces and the state
                                                     (exit 0 when the lab is not up)
  fiblab probe -from NODE -to ADDR[,ADDR] [-rate N] [-for D] [-state DIR] NAME|FILE.clab.yml
                                                     send numbered UDP probes from NODE to the
                                                     addresses and print, every second, how many
                                                     arrived at no node (lost) and where the others
                                                     went; Ctrl-C (or -for) ends with the totals

A node with an FRR image runs Debian's zebra and bgpd (apt-get install frr)
with its bound frr.conf; any other node runs its cmd with -bin (fibgate's
binaries and gobgpd) first on the PATH. Namespaces are named NAME-NODE;
logs, sockets and state live in -state (default /run/fibgate-lab/NAME).
Once up, fiblab prints the commands of the lab README's "Try it" block.
The probe's destinations are received at every node that has them as a
local address (an anycast VIP at all of them), on UDP port 9999.
Needs root. Exit status 2 on bad arguments or a bad topology, 1 when the
lab is not up (probe) or a step fails.

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "up" && args[0] != "down" && args[0] != "probe") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprint(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("fiblab "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	exe, _ := os.Executable()
	bin := fs.String("bin", filepath.Dir(exe), "directory of gobgpd-ext, fibgated, fibgate and gobgpd")
	state := fs.String("state", "", "state directory (default /run/fibgate-lab/NAME)")
	var po probeOptions
	var to string
	if args[0] == "probe" {
		fs.StringVar(&po.from, "from", "", "the node probes leave from (probe)")
		fs.StringVar(&to, "to", "", "addresses to probe, separated by commas (probe)")
		fs.IntVar(&po.rate, "rate", 1000, "probes a second to each address (probe)")
		fs.DurationVar(&po.dur, "for", 0, "stop after this long (probe; default: at Ctrl-C)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "fiblab: %v\n", err)
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	arg := fs.Arg(0)
	if args[0] == "probe" {
		switch {
		case po.from == "":
			fmt.Fprintln(stderr, "fiblab probe: -from: name the node probes leave from, like -from host3")
			return 2
		case po.rate < 1 || po.rate > 100000:
			fmt.Fprintf(stderr, "fiblab probe: -rate %d: want 1 to 100000 probes a second\n", po.rate)
			return 2
		case po.dur < 0:
			fmt.Fprintf(stderr, "fiblab probe: -for %v: want a positive duration\n", po.dur)
			return 2
		}
		var err error
		if po.to, err = parseTo(to); err != nil {
			fmt.Fprintf(stderr, "fiblab probe: %v\n", err)
			return 2
		}
		name := arg
		if t, err := clab.Load(arg); err == nil {
			name = t.Name
		}
		dir := *state
		if dir == "" {
			dir = clab.DefaultStateDir(name)
		}
		if os.Geteuid() != 0 {
			fmt.Fprintln(stderr, "fiblab: needs root (network namespaces): run it with sudo")
			return 2
		}
		if po.state, err = clab.ReadState(dir); err != nil {
			if errors.Is(err, clab.ErrNotUp) {
				err = fmt.Errorf("lab %s is not up (no state in %s): bring it up with sudo make lab", name, dir)
			}
			fmt.Fprintf(stderr, "fiblab probe: %v\n", err)
			return 1
		}
		if err := runProbe(ctx, po, stdout); err != nil {
			fmt.Fprintf(stderr, "fiblab probe: %v\n", err)
			return 1
		}
		return 0
	}
	if args[0] == "down" {
		name := arg
		if t, err := clab.Load(arg); err == nil {
			name = t.Name
		}
		dir := *state
		if dir == "" {
			dir = clab.DefaultStateDir(name)
		}
		if err := clab.DownDir(dir); errors.Is(err, clab.ErrNotUp) {
			fmt.Fprintf(stdout, "lab %s is not up (no state in %s): nothing to take down\n", name, dir)
			return 0
		} else if err != nil {
			fmt.Fprintf(stderr, "fiblab: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "lab %s is down\n", name)
		return 0
	}
	t, err := clab.Load(arg)
	if err != nil {
		fmt.Fprintf(stderr, "fiblab: %v\n", err)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "fiblab: needs root (network namespaces, FRR): run it with sudo")
		return 2
	}
	l, err := clab.Up(ctx, t, clab.Options{StateDir: *state, Bin: *bin, Log: stdout})
	if err != nil {
		fmt.Fprintf(stderr, "fiblab: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "\nlab %s is up; state, logs and sockets in %s\n\n", t.Name, l.State.Dir)
	try, ok, err := t.TryIt()
	if err != nil {
		fmt.Fprintf(stderr, "fiblab: %v\n", err)
	}
	if ok {
		fmt.Fprintf(stdout, "Try it (%s, \"Try it\"):\n\n", filepath.Join(t.Dir, "README.md"))
		for _, line := range l.Localize(try, *bin) {
			fmt.Fprintln(stdout, line)
		}
		fmt.Fprintf(stdout, "\nTake it down: sudo make lab-down (or %s down %s)\n", filepath.Join(*bin, "fiblab"), t.Name)
		return 0
	}
	fmt.Fprintln(stdout, "Where to look:")
	for _, n := range t.Nodes {
		switch {
		case n.FRR():
			fmt.Fprintf(stdout, "  %-16s vtysh --vty_socket %s -c 'show bgp summary'\n", n.Name, filepath.Join(l.NodeDir(n.Name), "frr"))
		default:
			for _, b := range n.Binds {
				if b.Container == "/run/fibgate" {
					fmt.Fprintf(stdout, "  %-16s %s/fibgate watch --socket %s/fibgate.sock\n", n.Name, *bin, filepath.Join(l.NodeDir(n.Name), "run"))
				}
			}
		}
	}
	fmt.Fprintf(stdout, "  shell            ip netns exec %s-host3 ip route get 192.0.2.10\n  down             sudo make lab-down\n", t.Name)
	return 0
}
