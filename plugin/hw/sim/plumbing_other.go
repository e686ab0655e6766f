//go:build !linux

package sim

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
)

// plumbing is the kernel side, which exists only on Linux; elsewhere only
// WithoutForwarding in trap mode runs.
type plumbing struct {
	mirror dataplane
	neigh  *neighbours
}

type neighbours struct{}

func (*neighbours) resolved(int, netip.Addr) bool { return false }
func (*neighbours) run(context.Context)           {}

func openPlumbing(string, Config, bool, *slog.Logger, func(netip.Addr)) (*plumbing, error) {
	return nil, errors.New("the data plane and neighbour watching need Linux; use WithoutForwarding in trap mode")
}

func (p *plumbing) close() error { return nil }
