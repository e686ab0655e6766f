// Command fiblab brings fibgate's containerlab labs up on a plain Linux
// machine, from the same .clab.yml, with network namespaces, veth pairs,
// Debian's FRR and fibgate's binaries (`sudo make lab`), and takes them
// down again (`sudo make lab-down`).
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

A node with an FRR image runs Debian's zebra and bgpd (apt-get install frr)
with its bound frr.conf; any other node runs its cmd with -bin (fibgate's
binaries and gobgpd) first on the PATH. Namespaces are named NAME-NODE;
logs, sockets and state live in -state (default /run/fibgate-lab/NAME).
Needs root. Exit status 2 on bad arguments or a bad topology.

Flags:
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "up" && args[0] != "down") {
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
	fmt.Fprintf(stdout, "\nlab %s is up; state, logs and sockets in %s\n\nWhere to look:\n", t.Name, l.State.Dir)
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
