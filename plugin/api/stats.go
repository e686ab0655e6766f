package api

import (
	"context"

	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/hw/external"
	"github.com/fibgate/fibgate/plugin/kernel"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// statsService serves StatsService from whatever sources the daemon has.
type statsService struct {
	pb.UnimplementedStatsServiceServer
	s *Server
}

// GetStats gathers the counters of the gate, the listener and the external
// backend; the parts the daemon lacks are left out (the gate's as zeros).
func (st *statsService) GetStats(context.Context, *pb.GetStatsRequest) (*pb.GetStatsResponse, error) {
	c := st.s.cfg
	var g gate.TrackerStats
	if c.gateStats != nil {
		g = c.gateStats.Stats()
	}
	var l *kernel.Stats
	if c.listenerStats != nil {
		v := c.listenerStats.Stats()
		l = &v
	}
	var x *external.Stats
	if c.agents != nil {
		v := c.agents.Stats()
		x = &v
	}
	out := statsToProto(g, l, x)
	if r, ok := c.gateStats.(RetryStats); ok {
		addRetryStats(out, r.RetryStats())
	}
	return out, nil
}
