package gobgp

import (
	"context"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
)

// GoBGP's zebra client ([zebra] in gobgpd's config) hands every best path
// to FRR's zebra, which installs it: GoBGP's own way into the kernel, kept
// with fibgate's installer off (install.enabled: false). HOLD paths carry
// the mark that client skips (fromElsewhere), so a release or a take-back
// never makes zebra delete the route it has just confirmed. zebraGone
// covers what the mark hides besides.

// zebraHoldPath is holdPath without fromElsewhere's mark: a HOLD path
// GoBGP's zebra client hands to zebra like any best path.
func (b *pathBuilder) zebraHoldPath(p netip.Prefix, withdraw bool) (*api.Path, error) {
	return b.build(p, unspecified(p), b.hold, withdraw)
}

// zebraGone tells GoBGP's zebra client that the prefixes in ps are gone.
// Their last best path was a HOLD path, which that client skips: when a
// learned path went while a release's or a take-back's HOLD path was
// best, zebra heard neither that HOLD path nor the withdrawal after it,
// and kept the learned path's route in the kernel. A HOLD path it does
// see, added and deleted at once, ends with the withdrawal it missed, and
// zebra deletes its route. Neighbours get nothing of it: the gate's
// policy rejects a HOLD path, and a withdrawal of a prefix they never had
// is ignored (RFC 4271). Without zebra it costs two of GoBGP's operations
// for a prefix whose path went during a toggle, which is rare.
func (s *Speaker) zebraGone(ctx context.Context, ps []netip.Prefix) error {
	if len(ps) == 0 {
		return nil
	}
	s.turn.Lock()
	defer s.turn.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.usable(); err != nil {
		return err
	}
	paths := make([]*api.Path, 0, 2*len(ps))
	for _, w := range []bool{false, true} {
		for _, p := range ps {
			h, err := beside(s.pb.zebraHoldPath(p, w))
			if err != nil {
				return err
			}
			paths = append(paths, h)
		}
	}
	return s.b.sendPaths(ctx, paths)
}
