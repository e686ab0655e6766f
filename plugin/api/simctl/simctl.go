// Package simctl connects the simulated ASIC (plugin/hw/sim) to the API's
// HardwareService controls. It lives apart from the server so that the
// server does not depend on the simulator: a daemon without one never links
// it, and the simulator's own types stay out of the API's.
package simctl

import (
	"errors"
	"net/netip"
	"time"

	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/hw/sim"
)

// ASIC is what the controls need of the simulator (a *sim.Sim).
type ASIC interface {
	SetCapacity(c sim.Capacity) error
	SetLatency(fixed, jitter time.Duration) error
	SetRate(perSecond, batch int) error
	SetFailProbability(p float64) error
	InjectFailure(p netip.Prefix) error
	ClearFailure(p netip.Prefix) error
	Stats() sim.Stats
	Config() sim.Config
}

// Control is an api.SimControl over an ASIC; pass it to api.WithSim.
type Control struct {
	asic ASIC
}

var _ api.SimControl = (*Control)(nil)

// New returns the controls of a.
func New(a ASIC) *Control { return &Control{asic: a} }

// fieldName maps the simulator's Config fields to the request fields that
// set them, so an invalid setting is reported with the name the client
// used.
func fieldName(configField string) string {
	switch configField {
	case "Capacity.IPv4Prefix":
		return "ipv4_prefix"
	case "Capacity.IPv4Host":
		return "ipv4_host"
	case "Capacity.IPv6Prefix":
		return "ipv6_prefix"
	case "Capacity.IPv6Host":
		return "ipv6_host"
	case "Latency":
		return "fixed"
	case "Jitter":
		return "jitter"
	case "Rate":
		return "routes_per_second"
	case "Batch":
		return "batch"
	case "FailProbability":
		return "probability"
	}
	return configField
}

// requestErr turns the simulator's *sim.ConfigErrors (joined) into
// api.FieldErrors, which the server answers with INVALID_ARGUMENT.
func requestErr(err error) error {
	if err == nil {
		return nil
	}
	var errs []error
	parts := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts = j.Unwrap()
	}
	for _, e := range parts {
		var ce *sim.ConfigError
		if !errors.As(e, &ce) {
			errs = append(errs, e)
			continue
		}
		errs = append(errs, &api.FieldError{Field: fieldName(ce.Field), Err: errors.New(ce.Reason)})
	}
	return errors.Join(errs...)
}

// SetCapacity sets the table sizes.
func (c *Control) SetCapacity(v api.SimCapacity) error {
	return requestErr(c.asic.SetCapacity(sim.Capacity{IPv4Prefix: v.IPv4Prefix, IPv4Host: v.IPv4Host, IPv6Prefix: v.IPv6Prefix, IPv6Host: v.IPv6Host}))
}

// SetLatency sets the programming delay.
func (c *Control) SetLatency(fixed, jitter time.Duration) error {
	return requestErr(c.asic.SetLatency(fixed, jitter))
}

// SetRate sets the rate; batch 0 keeps the current batch size.
func (c *Control) SetRate(routesPerSecond, batch int) error {
	if batch == 0 {
		batch = c.asic.Config().Batch
	}
	return requestErr(c.asic.SetRate(routesPerSecond, batch))
}

// InjectFailure makes programming p fail.
func (c *Control) InjectFailure(p netip.Prefix) error { return requestErr(c.asic.InjectFailure(p)) }

// ClearFailure undoes InjectFailure.
func (c *Control) ClearFailure(p netip.Prefix) error { return requestErr(c.asic.ClearFailure(p)) }

// SetFailProbability sets the random failure rate.
func (c *Control) SetFailProbability(p float64) error {
	return requestErr(c.asic.SetFailProbability(p))
}

// SimStats gathers counters and settings.
func (c *Control) SimStats() api.SimStats {
	s, cfg := c.asic.Stats(), c.asic.Config()
	capOf := func(v sim.Capacity) api.SimCapacity {
		return api.SimCapacity{IPv4Prefix: v.IPv4Prefix, IPv4Host: v.IPv4Host, IPv6Prefix: v.IPv6Prefix, IPv6Host: v.IPv6Host}
	}
	return api.SimStats{
		Programmed: s.Programmed, Trapped: s.Trapped, Offloaded: s.Offloaded, Failed: s.Failed, Queue: s.Queue,
		Used: capOf(s.Used), Ops: s.Ops, OpsPerSecond: s.OpsPerSecond, WriteErrors: s.WriteErrors,
		Capacity: capOf(cfg.Capacity), Latency: cfg.Latency, Jitter: cfg.Jitter, Rate: cfg.Rate, Batch: cfg.Batch,
		FailProbability: cfg.FailProbability,
		CapacityMode:    string(cfg.CapacityMode), Refused: s.Refused, Held: capOf(s.Held),
	}
}
