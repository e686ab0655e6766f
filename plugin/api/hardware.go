package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"google.golang.org/grpc/peer"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/hw/external"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// agentChunk bounds the instructions per ReportRoutes message: a full
// table goes out in many messages well below a client's 4 MiB limit.
const agentChunk = 1000

// hardwareService serves HardwareService: external agents' sessions and
// retries (the simulated ASIC's controls are simService's).
type hardwareService struct {
	pb.UnimplementedHardwareServiceServer
	s *Server
}

// ReportRoutes runs one agent's session: the full table first (ending with
// sync_complete), then changes, while the agent's reports are applied as
// they arrive. A malformed report ends the session with INVALID_ARGUMENT
// naming it; reports for unknown or stale routes are only counted.
func (h *hardwareService) ReportRoutes(stream pb.HardwareService_ReportRoutesServer) error {
	agents := h.s.cfg.agents
	if agents == nil {
		return statusOf(ErrNoAgents)
	}
	ctx, cancel := h.s.streamContext(stream.Context())
	defer cancel()
	name := "unknown"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil && p.Addr.String() != "" {
		name = p.Addr.String()
	}
	snap, updates, err := agents.Attach(ctx, name)
	if err != nil {
		return endOfStream(ctx)
	}

	// Receiving runs beside sending; it ends when the agent closes its
	// side or the stream ends (the handler returning ends it).
	recvErr := make(chan error, 1)
	go func() { recvErr <- h.receive(ctx, stream, agents) }()

	if err := h.sendInstructions(stream, snap, true); err != nil {
		return err
	}
	for {
		select {
		case batch, ok := <-updates:
			if !ok {
				return endOfStream(ctx)
			}
			// Coalesce what queued meanwhile into fuller messages.
			for len(batch) < agentChunk {
				more, ok := tryRecv(updates)
				if !ok {
					break
				}
				batch = append(batch, more...)
			}
			if err := h.sendInstructions(stream, batch, false); err != nil {
				return err
			}
		case err := <-recvErr:
			return err
		case <-ctx.Done():
			return endOfStream(ctx)
		}
	}
}

func tryRecv[T any](c <-chan T) (T, bool) {
	select {
	case v, ok := <-c:
		return v, ok
	default:
		var zero T
		return zero, false
	}
}

func (h *hardwareService) sendInstructions(stream pb.HardwareService_ReportRoutesServer, ins []external.Instruction, initial bool) error {
	for len(ins) > 0 || initial {
		n := min(len(ins), agentChunk)
		msg := &pb.ReportRoutesResponse{Instructions: make([]*pb.RouteInstruction, 0, n)}
		for _, in := range ins[:n] {
			msg.Instructions = append(msg.Instructions, instructionToProto(in, h.s.cfg.linkName))
		}
		ins = ins[n:]
		if initial && len(ins) == 0 {
			msg.SyncComplete, initial = true, false
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
	return nil
}

// receive applies the agent's reports until it closes its side (nil: the
// session ends normally) or sends a malformed one.
func (h *hardwareService) receive(ctx context.Context, stream pb.HardwareService_ReportRoutesServer, agents Agents) error {
	named := false
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if n := req.GetAgent(); n != "" && !named {
			named = true
			h.s.cfg.log.Info("hardware agent named itself", "agent", n)
		}
		for i, r := range req.GetReports() {
			rep, err := reportFromProto(fmt.Sprintf("reports[%d]", i), r)
			if err != nil {
				return statusOf(err)
			}
			_ = agents.Report(rep) // ignored reports are counted by the backend
		}
		if ctx.Err() != nil {
			return endOfStream(ctx)
		}
	}
}

// RetryRoutes has the hardware try again now: one prefix, which must be
// failed (kept advertised on failure counts) or refused, or all of them.
func (h *hardwareService) RetryRoutes(ctx context.Context, req *pb.RetryRoutesRequest) (*pb.RetryRoutesResponse, error) {
	c := h.s.cfg
	if c.retrier == nil {
		return nil, statusOf(ErrNoRetrier)
	}
	table := req.GetTable()
	var p netip.Prefix
	switch {
	case req.GetAll() && req.GetPrefix() != "":
		return nil, statusOf(badField("prefix", "give a prefix or all, not both"))
	case !req.GetAll():
		var err error
		if p, err = parsePrefix(req.GetPrefix()); err != nil {
			return nil, statusOf(&FieldError{Field: "prefix", Err: err})
		}
		if c.routes != nil {
			if err := retryable(c.routes, table, p); err != nil {
				return nil, statusOf(err)
			}
		}
	}
	res, err := c.retrier.RetryNow(ctx, table, p)
	if err != nil {
		return nil, statusOf(err)
	}
	out := &pb.RetryRoutesResponse{Rewritten: uint32(max(res.Rewritten, 0)), RefusedWritten: uint32(max(res.RefusedWritten, 0))}
	for _, e := range res.Errors {
		out.Errors = append(out.Errors, e.Error())
	}
	return out, nil
}

// retryable checks that p is failed (kept advertised on failure counts) or
// refused in table, or with table 0 in at least one table that gates it.
func retryable(routes RouteStore, table uint32, p netip.Prefix) error {
	states, err := lookup(routes, table, p)
	if err != nil {
		return err
	}
	var what []string
	for _, st := range states {
		kept := (st.State == gate.Confirmed || st.State == gate.Released) && st.Flags&fib.OffloadFailed != 0
		if st.State == gate.Failed || st.State == gate.Refused || kept {
			return nil
		}
		what = append(what, fmt.Sprintf("%s in table %d", st.State, st.Table))
	}
	return fmt.Errorf("%w: %s is %s, neither failed nor refused", ErrNothingToRetry, p, strings.Join(what, ", "))
}
