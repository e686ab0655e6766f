package gobgp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// ErrAnotherGate is why Bootstrap refuses a GoBGP that another fibgate is
// gating now: its heartbeat (heartbeat.go) is replaced while this one
// looks. Two gates on one GoBGP would each hold and release the same
// prefixes by their own view, take back what the other let out, and
// delete each other's HOLD paths. The daemons retry Bootstrap, so the
// second one takes over once the first has stopped.
var ErrAnotherGate = errors.New("another fibgate is gating this gobgpd")

// otherGateWait is how long Bootstrap watches a heartbeat it finds: more
// than two beats, as GoBGP gives a path's age in whole seconds.
const otherGateWait = 2*heartbeatEvery + 500*time.Millisecond

// refuseOtherGate returns ErrAnotherGate when a heartbeat of the gate's
// HOLD community is in GoBGP and is replaced within otherGateWait. One
// left by a fibgate that was killed stays as it is (the new gate deletes
// it), and one that goes away was its clean stop: neither refuses.
func (s *Speaker) refuseOtherGate(ctx context.Context) error {
	first, ok, err := s.heartbeatAge(ctx)
	if err != nil || !ok {
		return err
	}
	t := time.NewTimer(otherGateWait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	again, ok, err := s.heartbeatAge(ctx)
	if err != nil || !ok || again.Equal(first) {
		return err
	}
	return fmt.Errorf("%w: its heartbeat on %v was replaced at %s while this one looked; stop the other fibgated (or gobgpd-ext) first",
		ErrAnotherGate, heartbeatPrefix, again.Format(time.RFC3339))
}

// heartbeatAge reads the age GoBGP gives the HOLD path on heartbeatPrefix,
// if there is one.
func (s *Speaker) heartbeatAge(ctx context.Context) (age time.Time, ok bool, err error) {
	req := &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyV4,
		Prefixes: []*api.TableLookupPrefix{{Prefix: heartbeatPrefix.String(), Type: api.TableLookupPrefix_EXACT}}}
	var perr error
	err = s.b.listPath(ctx, req, func(d *api.Destination) {
		for _, p := range d.Paths {
			if p.IsWithdraw || !pathIs(p, heartbeatPrefix) {
				continue
			}
			_, comms, err := pathAttrs(p)
			if err != nil {
				perr = err
				return
			}
			if slices.Contains(comms, s.cfg.hold) {
				age, ok = p.GetAge().AsTime(), true
			}
		}
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("gobgp speaker: read the heartbeat: %w", err)
	}
	return age, ok, nil
}
