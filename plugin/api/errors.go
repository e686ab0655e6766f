package api

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fibgate/fibgate/plugin/gate"
)

// Errors the services return; statusOf maps each to its gRPC code. They
// are exported so that code calling the services in process (tests, a
// future HTTP gateway) can match them with errors.Is.
var (
	// ErrNotFound: the route asked for is not gated (NOT_FOUND).
	ErrNotFound = errors.New("not found")
	// ErrNoSim: the daemon runs no simulated ASIC (FAILED_PRECONDITION).
	ErrNoSim = errors.New("no simulated ASIC in this daemon")
	// ErrSeveralTables: a lookup in every table (table 0) found the prefix
	// in more than one; the request must name one (FAILED_PRECONDITION).
	ErrSeveralTables = errors.New("in several tables")
	// ErrNoAgents: the daemon has no external hardware backend
	// (FAILED_PRECONDITION).
	ErrNoAgents = errors.New("no external hardware backend in this daemon (agents cannot connect)")
	// ErrNoGate: the daemon runs no gate, so it has no policy or routes
	// (FAILED_PRECONDITION).
	ErrNoGate = errors.New("no gate in this daemon")
	// ErrNoAudit: the daemon has no BGP side, so there is nothing to
	// audit (FAILED_PRECONDITION).
	ErrNoAudit = errors.New("no BGP in this daemon, so no audit (gobgpd-ext and fibgated audit)")
	// ErrNoRetrier: the daemon cannot write routes again (FAILED_PRECONDITION).
	ErrNoRetrier = errors.New("this daemon cannot retry routes")
	// ErrNothingToRetry: the prefix named is neither failed nor refused
	// (FAILED_PRECONDITION).
	ErrNothingToRetry = errors.New("nothing to retry")
	// ErrShuttingDown: the server is stopping; the client should reconnect
	// (UNAVAILABLE).
	ErrShuttingDown = errors.New("fibgate API server is shutting down")
)

// FieldError says which field of a request is wrong (INVALID_ARGUMENT, with
// the field in a google.rpc.BadRequest detail).
type FieldError struct {
	Field string // e.g. "prefix", "reports[2].prefix"
	Err   error
}

// Error names the field first, so the one line a client shows says where
// to look.
func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap lets errors.Is see the cause.
func (e *FieldError) Unwrap() error { return e.Err }

func badField(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// statusOf is the one place where errors become gRPC statuses: typed errors
// get their code, and a request's bad field is named both in the message
// and in a BadRequest detail, so a client shows one clear line and a
// program can find the field.
func statusOf(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var (
		fe   *FieldError
		pfe  *gate.FieldError
		code codes.Code
		msg  = err.Error()
		bad  []*errdetails.BadRequest_FieldViolation
	)
	switch {
	case errors.As(err, &fe):
		// Every field error of a joined error is named (the simulator
		// reports all its bad settings at once).
		code = codes.InvalidArgument
		for _, e := range joined(err) {
			if errors.As(e, &fe) {
				bad = append(bad, &errdetails.BadRequest_FieldViolation{Field: fe.Field, Description: fe.Err.Error()})
			}
		}
	case errors.As(err, &pfe):
		// Policy fields are named from the policy down, as in a policy
		// file; the detail names them from the request.
		code = codes.InvalidArgument
		bad = append(bad, &errdetails.BadRequest_FieldViolation{Field: "policy." + pfe.Field, Description: pfe.Err.Error()})
	case errors.Is(err, gate.ErrInvalidPolicy):
		code = codes.InvalidArgument
	case errors.Is(err, ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrNoSim), errors.Is(err, ErrSeveralTables), errors.Is(err, ErrNoAgents), errors.Is(err, ErrNoGate), errors.Is(err, ErrNoAudit),
		errors.Is(err, ErrNoRetrier), errors.Is(err, ErrNothingToRetry):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrShuttingDown):
		code = codes.Unavailable
	case errors.Is(err, gate.ErrWatcherTooSlow):
		code = codes.ResourceExhausted
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	default:
		code = codes.Internal
	}
	// errors.Join puts one error per line; a status is read as one line.
	st := status.New(code, strings.ReplaceAll(msg, "\n", "; "))
	if len(bad) > 0 {
		if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: bad}); err == nil {
			st = d
		}
	}
	return st.Err()
}

// joined flattens errors.Join trees one level, so each joined error is
// looked at.
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
