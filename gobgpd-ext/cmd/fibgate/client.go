package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/fibgate/fibgate/plugin/api"
)

// connFlags are the flags every API command takes to find the daemon: a
// unix socket by default, or a TCP address with TLS.
type connFlags struct {
	socket  string
	addr    string
	tlsCA   string
	tlsCert string
	tlsKey  string
	timeout time.Duration
}

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.socket, "socket", api.DefaultSocket, "the daemon's unix socket (PATH, or unix:PATH as the daemon logs it)")
	fs.StringVar(&c.addr, "addr", "", "connect over TCP with TLS to HOST:PORT instead of the socket")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "CA file that signed the daemon's certificate (default: system roots)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "client certificate file, for mutual TLS")
	fs.StringVar(&c.tlsKey, "tls-key", "", "client key file, for mutual TLS")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "how long to wait for an answer")
}

// where names the daemon the way errors show it.
func (c *connFlags) where() string {
	if c.addr != "" {
		return c.addr
	}
	return "unix socket " + c.socket
}

// dial checks the flags and connects lazily: gRPC dials on the first call,
// whose error rpcErr turns into one line naming the socket.
func (c *connFlags) dial() (*grpc.ClientConn, error) {
	switch {
	case c.addr == "" && (c.tlsCA != "" || c.tlsCert != "" || c.tlsKey != ""):
		return nil, usageError{errors.New("--tls-ca, --tls-cert and --tls-key need --addr (the unix socket has no TLS)")}
	case (c.tlsCert == "") != (c.tlsKey == ""):
		return nil, usageError{errors.New("--tls-cert and --tls-key go together")}
	case c.timeout <= 0:
		return nil, usageError{fmt.Errorf("--timeout %s must be positive", c.timeout)}
	case strings.HasPrefix(c.addr, "unix:") || strings.HasPrefix(c.addr, "/"):
		// Over a unix socket gRPC would speak TLS to a daemon that does not,
		// and the error would be about a TLS handshake.
		return nil, usageError{fmt.Errorf("--addr %s: --addr is HOST:PORT over TCP with TLS; a unix socket goes in --socket", c.addr)}
	}
	// The daemon logs its socket as unix:PATH; both forms name it.
	c.socket = strings.TrimPrefix(strings.TrimPrefix(c.socket, "unix://"), "unix:")
	target, creds := "unix:"+c.socket, insecure.NewCredentials()
	if c.addr != "" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.tlsCA != "" {
			pool, err := api.LoadCertPool(c.tlsCA)
			if err != nil {
				return nil, usageError{errors.New(strings.TrimPrefix(err.Error(), "api: "))}
			}
			cfg.RootCAs = pool
		}
		if c.tlsCert != "" {
			cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
			if err != nil {
				return nil, usageError{fmt.Errorf("load client certificate: %w", err)}
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		target, creds = c.addr, credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, usageError{fmt.Errorf("connect to %s: %w", c.where(), err)}
	}
	return conn, nil
}

// call bounds one unary call by --timeout.
func (c *connFlags) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// rpcErr turns an RPC error into the one line a user reads: an unreachable
// daemon is named with its socket or address, other errors keep the
// server's message (which names a bad field).
func (c *connFlags) rpcErr(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable:
		msg := st.Message()
		if !strings.Contains(msg, "connection") && !strings.Contains(msg, "dial") {
			// The daemon answered: it is stopping.
			return fmt.Errorf("the fibgate daemon at %s is unavailable: %s", c.where(), msg)
		}
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = strings.TrimSuffix(msg[i+2:], `"`)
		}
		return fmt.Errorf("cannot reach the fibgate daemon at %s: %s (is it running?)", c.where(), msg)
	case codes.DeadlineExceeded:
		return fmt.Errorf("no answer from the fibgate daemon at %s within %s", c.where(), c.timeout)
	case codes.Canceled:
		return nil // interrupted by the user
	}
	return errors.New(st.Message())
}

// parseArgs parses flags wherever they stand among the positional
// arguments ("hw rate 100 --batch 8" and "hw rate --batch 8 100") and
// returns the positional ones. Errors are usage errors; --help prints usage
// and the flags to stdout.
func parseArgs(fs *flag.FlagSet, args []string, usage string, stdout io.Writer) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stdout, usage)
				fmt.Fprintln(stdout, "\nFlags:")
				fs.SetOutput(stdout)
				fs.PrintDefaults()
				return nil, err
			}
			return nil, usageError{fmt.Errorf("%s: %w (see fibgate %s --help)", fs.Name(), err, fs.Name())}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		if used := len(args) - fs.NArg(); used > 0 && args[used-1] == "--" {
			return append(pos, fs.Args()...), nil // after "--" nothing is a flag
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
