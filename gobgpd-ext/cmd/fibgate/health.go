package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

const healthUsage = `Usage: fibgate health [--socket PATH | --addr HOST:PORT ...]

Asks the daemon's gRPC health service whether the gate is ready: its FIB
view is complete and, for fibgated and gobgpd-ext, the gate is installed in
GoBGP. Prints SERVING or NOT_SERVING. For readiness probes (Kubernetes exec
probes, systemd ExecStartPost): exit 0 only when SERVING, 1 when not serving
or unreachable, 2 on bad flags.
`

// healthCmd is the readiness check: `stats` answers as soon as the API is
// up, health only once the gate judges from a complete view.
func healthCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	var c connFlags
	c.register(fs)
	pos, err := parseArgs(fs, args, healthUsage, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Errorf("health takes no arguments, got %q", pos)}
	}
	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := c.call(ctx)
	defer cancel()
	r, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return c.rpcErr(err)
	}
	fmt.Fprintln(stdout, r.GetStatus())
	if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("%s is %s: the gate is not ready", c.where(), r.GetStatus())
	}
	return nil
}
