package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fibgate/fibgate/gobgpd-ext/internal/policyfile"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

const policyUsage = `Usage:
  fibgate policy get                 print the policy in force, as a policy file
  fibgate policy set -f FILE         validate FILE and put it in force
  fibgate policy validate -f FILE    check FILE without applying it

A policy file is YAML with the fields of the API's Policy message:

  scopes:
    - name: leaf                # unique
      family: ipv4              # ipv4 or ipv6; omitted: both
      tables: [254]             # omitted: main (254)
      prefixes:                 # omitted: every prefix
        - prefix: 10.0.0.0/8
          min_len: 16           # like a prefix-list's ge
          max_len: 24           # and le
      level: hardware           # fib, hardware (default) or offload
      ecmp: all                 # all (default) or any
      on_failure: withdraw      # withdraw (default) or keep
      pending_timeout: 30s      # omitted: wait forever
      fail_open: false          # true: advertise after pending_timeout
      hold_down: {initial: 1s, max: 1m, multiplier: 2}

FILE "-" reads standard input. An invalid policy is reported with the path
of the field at fault (scopes[1].prefixes[0].max_len) and changes nothing.

Exit status: 0 when valid (and applied), 1 when the daemon cannot be
reached, 2 on bad flags or an invalid policy file (a configuration error,
like the daemons' exit status 2).
`

func policyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) == 0 {
			return usageError{errors.New("policy needs a subcommand: get, set or validate (see fibgate policy --help)")}
		}
		fmt.Fprint(stdout, policyUsage)
		return flag.ErrHelp
	}
	sub := args[0]
	if sub != "get" && sub != "set" && sub != "validate" {
		return usageError{fmt.Errorf("policy %s: unknown subcommand (want get, set or validate)", sub)}
	}
	fs := flag.NewFlagSet("policy "+sub, flag.ContinueOnError)
	var c connFlags
	c.register(fs)
	file := fs.String("f", "", "policy file (YAML; - for standard input)")
	pos, err := parseArgs(fs, args[1:], policyUsage, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Errorf("policy %s takes no arguments, got %q (use -f FILE)", sub, pos)}
	}
	var pol *pb.Policy
	switch {
	case sub == "get" && *file != "":
		return usageError{errors.New("policy get takes no -f: it prints to standard output")}
	case sub != "get" && *file == "":
		return usageError{fmt.Errorf("policy %s needs -f FILE", sub)}
	case sub != "get":
		if pol, err = readPolicyFile(*file); err != nil {
			return err
		}
	}
	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	client := pb.NewPolicyServiceClient(conn)
	cctx, cancel := c.call(ctx)
	defer cancel()
	switch sub {
	case "get":
		r, err := client.GetPolicy(cctx, &pb.GetPolicyRequest{})
		if err != nil {
			return c.rpcErr(err)
		}
		b, err := policyfile.Format(r.GetPolicy())
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	case "set":
		r, err := client.SetPolicy(cctx, &pb.SetPolicyRequest{Policy: pol})
		if err != nil {
			return policyErr(*file, err, c)
		}
		fmt.Fprintf(stdout, "policy set: %d scope(s) in force\n", len(r.GetPolicy().GetScopes()))
	default:
		r, err := client.ValidatePolicy(cctx, &pb.ValidatePolicyRequest{Policy: pol})
		if err != nil {
			return policyErr(*file, err, c)
		}
		fmt.Fprintf(stdout, "policy valid: %d scope(s)\n", len(r.GetPolicy().GetScopes()))
	}
	return nil
}

func readPolicyFile(name string) (*pb.Policy, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, usageError{fmt.Errorf("read policy file: %w", err)}
	}
	p, err := policyfile.Parse(b)
	if err != nil {
		return nil, usageError{fmt.Errorf("%s: %w", displayName(name), err)}
	}
	return p, nil
}

func displayName(file string) string {
	if file == "-" {
		return "standard input"
	}
	return file
}

// policyErr names the file when the daemon found the policy invalid; its
// message already names the field ("scopes[1].name: ..."). An invalid
// policy is the operator's to fix: exit status 2.
func policyErr(file string, err error, c connFlags) error {
	if st, ok := status.FromError(err); ok && st.Code() == codes.InvalidArgument {
		return usageError{fmt.Errorf("invalid policy in %s: %s", displayName(file), strings.Replace(st.Message(), "invalid policy: ", "", 1))}
	}
	return c.rpcErr(err)
}
