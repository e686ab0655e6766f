package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

const hwUsage = `Usage:
  fibgate hw capacity [--ipv4-prefix N] [--ipv4-host N] [--ipv6-prefix N] [--ipv6-host N]
                                   set table sizes (0: unlimited); unnamed ones stay
  fibgate hw latency FIXED [JITTER]  programming delay per route, e.g. 5ms 2ms
  fibgate hw rate ROUTES_PER_SECOND [--batch N]
                                   programming rate (0: unlimited) and batch size
  fibgate hw fail PREFIX           make programming PREFIX fail (offload_failed)
  fibgate hw clear PREFIX          undo 'hw fail'
  fibgate hw probability P         make every programming fail with probability P (0-1)
  fibgate hw stats [--json]        occupancy, counters and settings
  fibgate hw retry PREFIX [--table N] | --all [--table N]
                                   have the hardware try again now: write failed
                                   routes again, make refused writes again

retry works with every backend (kernel, sim, external): the kernel never
asks a driver to program a route again by itself, so a failed route is
written again (deleted and added back as it was) and its driver programs it
afresh; a refused route is written again by the FIB installer. The policy's
retry does the same by itself with back-off. The other subcommands control
the simulated ASIC of a daemon that runs one (labs, demos, tests); a daemon
without one answers "no simulated ASIC in this daemon".

Exit status: 0 on success, 1 when the daemon cannot be reached or refuses,
2 on bad arguments.
`

func hwCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "help" {
		printHwHelp(stdout)
		return flag.ErrHelp
	}
	lead, args, err := leadingConnFlags(args, stdout)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return usageError{errors.New("hw needs a subcommand: capacity, latency, rate, fail, clear, probability, stats or retry (see fibgate hw --help)")}
	}
	name := args[0]
	if name == "help" {
		printHwHelp(stdout)
		return flag.ErrHelp
	}
	sub, ok := hwSubcommands[name]
	if !ok {
		return usageError{fmt.Errorf("hw %s: unknown subcommand (want capacity, latency, rate, fail, clear, probability, stats or retry)", name)}
	}
	fs := flag.NewFlagSet("hw "+name, flag.ContinueOnError)
	var c connFlags
	c.register(fs)
	for flagName, v := range lead {
		if err := fs.Set(flagName, v); err != nil { // parsed once already: cannot fail
			return usageError{fmt.Errorf("hw: --%s %s: %w", flagName, v, err)}
		}
	}
	check := sub.flags(fs)
	pos, err := parseArgs(fs, args[1:], hwUsage, stdout)
	if err != nil {
		return err
	}
	if len(pos) < sub.args[0] || len(pos) > sub.args[1] {
		return usageError{fmt.Errorf("hw %s takes %s, got %q (see fibgate hw --help)", name, argCount(sub.args), pos)}
	}
	// Check the arguments before connecting, so a typo is a usage error.
	call, err := check(pos)
	if err != nil {
		return usageError{err}
	}
	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := c.call(ctx)
	defer cancel()
	return c.rpcErr(call(cctx, conn, stdout))
}

// hwSubcommand is one subcommand of fibgate hw: how many positional
// arguments it takes (least, most), and flags, which registers its flags
// on fs and returns the check of its arguments once they are parsed. The
// check returns the call to make, or what is wrong with the arguments.
type hwSubcommand struct {
	args  [2]int
	flags func(fs *flag.FlagSet) (check func(pos []string) (hwCall, error))
}

// hwCall is a checked subcommand's call to the daemon (the sim's
// controls are SimService's); it prints what it got to stdout.
type hwCall func(ctx context.Context, conn grpc.ClientConnInterface, stdout io.Writer) error

var hwSubcommands = map[string]hwSubcommand{
	"capacity":    {[2]int{0, 0}, hwCapacity},
	"latency":     {[2]int{1, 2}, noFlags(hwLatency)},
	"rate":        {[2]int{1, 1}, hwRate},
	"fail":        {[2]int{1, 1}, noFlags(hwFailure(true))},
	"clear":       {[2]int{1, 1}, noFlags(hwFailure(false))},
	"probability": {[2]int{1, 1}, noFlags(hwProbability)},
	"stats":       {[2]int{0, 0}, hwStats},
	"retry":       {[2]int{0, 1}, hwRetry},
}

// noFlags is the flags of a subcommand that has none besides the
// connection flags.
func noFlags(check func(pos []string) (hwCall, error)) func(*flag.FlagSet) func([]string) (hwCall, error) {
	return func(*flag.FlagSet) func([]string) (hwCall, error) { return check }
}

// hwCapacity is `hw capacity`: the sizes named change, the others stay
// (read from the daemon first).
func hwCapacity(fs *flag.FlagSet) func([]string) (hwCall, error) {
	sizes := []struct {
		name string
		v    *int
	}{
		{"ipv4-prefix", fs.Int("ipv4-prefix", -1, "IPv4 prefix routes the table holds (0: unlimited)")},
		{"ipv4-host", fs.Int("ipv4-host", -1, "IPv4 host (/32) routes")},
		{"ipv6-prefix", fs.Int("ipv6-prefix", -1, "IPv6 prefix routes")},
		{"ipv6-host", fs.Int("ipv6-host", -1, "IPv6 host (/128) routes")},
	}
	return func([]string) (hwCall, error) {
		named := 0
		for _, s := range sizes {
			if *s.v < -1 || *s.v > 1<<32-1 {
				return nil, fmt.Errorf("--%s %d: want 0 (unlimited) or a number of routes", s.name, *s.v)
			}
			if *s.v >= 0 {
				named++
			}
		}
		if named == 0 {
			return nil, errors.New("hw capacity needs at least one of --ipv4-prefix, --ipv4-host, --ipv6-prefix, --ipv6-host")
		}
		return func(ctx context.Context, conn grpc.ClientConnInterface, _ io.Writer) error {
			c := pb.NewSimServiceClient(conn)
			req := &pb.SetSimCapacityRequest{}
			if named < len(sizes) {
				// Keep the sizes the user did not name.
				st, err := c.GetSimStats(ctx, &pb.GetSimStatsRequest{})
				if err != nil {
					return err
				}
				now := st.GetCapacity()
				req = &pb.SetSimCapacityRequest{Ipv4Prefix: uint32(now.GetIpv4Prefix()), Ipv4Host: uint32(now.GetIpv4Host()),
					Ipv6Prefix: uint32(now.GetIpv6Prefix()), Ipv6Host: uint32(now.GetIpv6Host())}
			}
			for i, dst := range []*uint32{&req.Ipv4Prefix, &req.Ipv4Host, &req.Ipv6Prefix, &req.Ipv6Host} {
				if v := *sizes[i].v; v >= 0 {
					*dst = uint32(v)
				}
			}
			_, err := c.SetSimCapacity(ctx, req)
			return err
		}, nil
	}
}

// hwLatency is `hw latency FIXED [JITTER]`.
func hwLatency(pos []string) (hwCall, error) {
	fixed, err := time.ParseDuration(pos[0])
	if err != nil || fixed < 0 {
		return nil, fmt.Errorf("latency %q: want a duration like 5ms", pos[0])
	}
	var jitter time.Duration
	if len(pos) == 2 {
		if jitter, err = time.ParseDuration(pos[1]); err != nil || jitter < 0 {
			return nil, fmt.Errorf("jitter %q: want a duration like 2ms", pos[1])
		}
	}
	return func(ctx context.Context, conn grpc.ClientConnInterface, _ io.Writer) error {
		c := pb.NewSimServiceClient(conn)
		_, err := c.SetSimLatency(ctx, &pb.SetSimLatencyRequest{Fixed: durationpb.New(fixed), Jitter: durationpb.New(jitter)})
		return err
	}, nil
}

// hwRate is `hw rate ROUTES_PER_SECOND [--batch N]`.
func hwRate(fs *flag.FlagSet) func([]string) (hwCall, error) {
	batch := fs.Int("batch", 0, "routes per hardware batch (default: keep)")
	return func(pos []string) (hwCall, error) {
		rate, err := strconv.Atoi(pos[0])
		if err != nil || rate < 0 || rate > 1<<32-1 {
			return nil, fmt.Errorf("rate %q: want routes per second, 0 for unlimited", pos[0])
		}
		if *batch < 0 || *batch > 1<<32-1 {
			return nil, fmt.Errorf("--batch %d: want a positive number of routes", *batch)
		}
		return func(ctx context.Context, conn grpc.ClientConnInterface, _ io.Writer) error {
			c := pb.NewSimServiceClient(conn)
			_, err := c.SetSimRate(ctx, &pb.SetSimRateRequest{RoutesPerSecond: uint32(rate), Batch: uint32(*batch)})
			return err
		}, nil
	}
}

// hwFailure is `hw fail PREFIX` (inject) and `hw clear PREFIX`.
func hwFailure(inject bool) func([]string) (hwCall, error) {
	return func(pos []string) (hwCall, error) {
		prefix, err := netip.ParsePrefix(pos[0])
		if err != nil || prefix != prefix.Masked() {
			return nil, fmt.Errorf("%q is not a prefix in CIDR notation without host bits (like 192.0.2.0/24)", pos[0])
		}
		return func(ctx context.Context, conn grpc.ClientConnInterface, _ io.Writer) error {
			c := pb.NewSimServiceClient(conn)
			var err error
			if inject {
				_, err = c.InjectFailure(ctx, &pb.InjectFailureRequest{Prefix: prefix.String()})
			} else {
				_, err = c.ClearFailure(ctx, &pb.ClearFailureRequest{Prefix: prefix.String()})
			}
			return err
		}, nil
	}
}

// hwProbability is `hw probability P`.
func hwProbability(pos []string) (hwCall, error) {
	p, err := strconv.ParseFloat(pos[0], 64)
	if err != nil || !(p >= 0 && p <= 1) {
		return nil, fmt.Errorf("probability %q: want a number from 0 to 1", pos[0])
	}
	return func(ctx context.Context, conn grpc.ClientConnInterface, _ io.Writer) error {
		c := pb.NewSimServiceClient(conn)
		_, err := c.SetFailProbability(ctx, &pb.SetFailProbabilityRequest{Probability: p})
		return err
	}, nil
}

// hwRetry is `hw retry PREFIX|--all [--table N]`: what was written again,
// and one line per route that could not be.
func hwRetry(fs *flag.FlagSet) func([]string) (hwCall, error) {
	all := fs.Bool("all", false, "every failed or refused route")
	table := fs.Uint("table", 0, "routing table (default every table)")
	return func(pos []string) (hwCall, error) {
		req := &pb.RetryRoutesRequest{All: *all}
		switch {
		case *all && len(pos) > 0:
			return nil, fmt.Errorf("hw retry takes PREFIX or --all, not both")
		case !*all && len(pos) == 0:
			return nil, errors.New("hw retry needs PREFIX or --all")
		case *table > 1<<32-1:
			return nil, fmt.Errorf("--table %d is not a routing table id", *table)
		case len(pos) == 1:
			prefix, err := netip.ParsePrefix(pos[0])
			if err != nil || prefix != prefix.Masked() {
				return nil, fmt.Errorf("%q is not a prefix in CIDR notation without host bits (like 192.0.2.0/24)", pos[0])
			}
			req.Prefix = prefix.String()
		}
		req.Table = uint32(*table)
		return func(ctx context.Context, conn grpc.ClientConnInterface, stdout io.Writer) error {
			resp, err := pb.NewHardwareServiceClient(conn).RetryRoutes(ctx, req)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "written again: %d failed, %d refused\n", resp.GetRewritten(), resp.GetRefusedWritten())
			for _, e := range resp.GetErrors() {
				fmt.Fprintln(stdout, "  "+e)
			}
			if len(resp.GetErrors()) > 0 {
				return fmt.Errorf("%d routes could not be written again", len(resp.GetErrors()))
			}
			return nil
		}, nil
	}
}

// hwStats is `hw stats [--json]`.
func hwStats(fs *flag.FlagSet) func([]string) (hwCall, error) {
	asJSON := fs.Bool("json", false, "print one JSON object")
	return func([]string) (hwCall, error) {
		return func(ctx context.Context, conn grpc.ClientConnInterface, stdout io.Writer) error {
			c := pb.NewSimServiceClient(conn)
			st, err := c.GetSimStats(ctx, &pb.GetSimStatsRequest{})
			if err != nil {
				return err
			}
			printSimStats(stdout, st, *asJSON)
			return nil
		}, nil
	}
}

// leadingConnFlags parses the connection flags written before hw's
// subcommand ("fibgate hw --socket S fail P", as with the other commands'
// flags) and returns those given, by name, with the arguments from the
// subcommand on; the subcommand's flags, after it, override them.
func leadingConnFlags(args []string, stdout io.Writer) (map[string]string, []string, error) {
	fs := flag.NewFlagSet("hw", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c connFlags
	c.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printHwHelp(stdout)
			return nil, nil, err
		}
		return nil, nil, usageError{fmt.Errorf("hw: %w (see fibgate hw --help)", err)}
	}
	set := map[string]string{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = f.Value.String() })
	return set, fs.Args(), nil
}

// printHwHelp is `fibgate hw --help`: the subcommands, then the connection
// flags every one of them takes, before or after the subcommand.
func printHwHelp(w io.Writer) {
	fmt.Fprint(w, hwUsage)
	fmt.Fprintln(w, "\nConnection flags, before or after the subcommand (fibgate hw --socket S fail P):")
	fs := flag.NewFlagSet("hw", flag.ContinueOnError)
	var c connFlags
	c.register(fs)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

func argCount(n [2]int) string {
	switch {
	case n[1] == 0:
		return "no arguments"
	case n[0] == n[1]:
		return "one argument"
	}
	return fmt.Sprintf("%d to %d arguments", n[0], n[1])
}

// simStatsLine is the --json form of hw stats.
type simStatsLine struct {
	Programmed      uint64       `json:"programmed"`
	Trapped         uint64       `json:"trapped"`
	Offloaded       uint64       `json:"offloaded"`
	Failed          uint64       `json:"failed"`
	Queue           uint64       `json:"queue"`
	Used            capacityLine `json:"used"`
	Capacity        capacityLine `json:"capacity"`
	Ops             uint64       `json:"ops"`
	OpsPerSecond    float64      `json:"ops_per_second"`
	WriteErrors     uint64       `json:"write_errors"`
	CapacityMode    string       `json:"capacity_mode"`
	Refused         uint64       `json:"refused"`
	Held            capacityLine `json:"held"`
	Latency         string       `json:"latency"`
	Jitter          string       `json:"jitter"`
	RoutesPerSecond uint32       `json:"routes_per_second"`
	Batch           uint32       `json:"batch"`
	FailProbability float64      `json:"fail_probability"`
}

type capacityLine struct {
	IPv4Prefix uint64 `json:"ipv4_prefix"`
	IPv4Host   uint64 `json:"ipv4_host"`
	IPv6Prefix uint64 `json:"ipv6_prefix"`
	IPv6Host   uint64 `json:"ipv6_host"`
}

func capacityOf(c *pb.SimCapacity) capacityLine {
	return capacityLine{c.GetIpv4Prefix(), c.GetIpv4Host(), c.GetIpv6Prefix(), c.GetIpv6Host()}
}

func printSimStats(w io.Writer, s *pb.GetSimStatsResponse, asJSON bool) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	if asJSON {
		writeJSONLine(bw, simStatsLine{
			Programmed: s.GetProgrammed(), Trapped: s.GetTrapped(), Offloaded: s.GetOffloaded(), Failed: s.GetFailed(),
			Queue: s.GetQueue(), Used: capacityOf(s.GetUsed()), Capacity: capacityOf(s.GetCapacity()), Ops: s.GetOps(),
			OpsPerSecond: s.GetOpsPerSecond(), WriteErrors: s.GetWriteErrors(), Latency: s.GetLatency().AsDuration().String(),
			Jitter: s.GetJitter().AsDuration().String(), RoutesPerSecond: s.GetRoutesPerSecond(), Batch: s.GetBatch(),
			FailProbability: s.GetFailProbability(), CapacityMode: s.GetCapacityMode(), Refused: s.GetRefused(),
			Held: capacityOf(s.GetHeld()),
		})
		return
	}
	limit := func(v uint64) string {
		if v == 0 {
			return "unlimited"
		}
		return strconv.FormatUint(v, 10)
	}
	u, c := s.GetUsed(), s.GetCapacity()
	fmt.Fprintf(bw, "routes     programmed %d (trapped %d, offloaded %d), failed %d, queued %d\n",
		s.GetProgrammed(), s.GetTrapped(), s.GetOffloaded(), s.GetFailed(), s.GetQueue())
	fmt.Fprintf(bw, "ipv4       prefix %d of %s, host %d of %s\n", u.GetIpv4Prefix(), limit(c.GetIpv4Prefix()), u.GetIpv4Host(), limit(c.GetIpv4Host()))
	fmt.Fprintf(bw, "ipv6       prefix %d of %s, host %d of %s\n", u.GetIpv6Prefix(), limit(c.GetIpv6Prefix()), u.GetIpv6Host(), limit(c.GetIpv6Host()))
	if s.GetCapacityMode() == "refuse" {
		h := s.GetHeld()
		fmt.Fprintf(bw, "full       refuse: %d writes refused; the kernel's routes counted: ipv4 prefix %d, host %d, ipv6 prefix %d, host %d\n",
			s.GetRefused(), h.GetIpv4Prefix(), h.GetIpv4Host(), h.GetIpv6Prefix(), h.GetIpv6Host())
	} else {
		fmt.Fprintln(bw, "full       flag: a route that does not fit gets offload_failed")
	}
	fmt.Fprintf(bw, "writes     %d (%.0f/s now), %d refused by the kernel\n", s.GetOps(), s.GetOpsPerSecond(), s.GetWriteErrors())
	fmt.Fprintf(bw, "settings   latency %s + jitter %s, rate %s routes/s in batches of %d, fail probability %g\n",
		shortDuration(s.GetLatency().AsDuration()), shortDuration(s.GetJitter().AsDuration()), limit(uint64(s.GetRoutesPerSecond())), s.GetBatch(), s.GetFailProbability())
}
