//go:build gobgp_reexport

package gobgp

import (
	"context"
	"net/netip"
)

// reExport runs GoBGP's export of ps again (BgpServer.ReExport, added by
// patches/gobgp-v3.37.0-reexport.patch; `make build-reexport`), one call a
// family.
func (b serverBackend) reExport(ctx context.Context, ps []netip.Prefix) error {
	var v4, v6 []string
	for _, p := range ps {
		if p.Addr().Is4() {
			v4 = append(v4, p.String())
		} else {
			v6 = append(v6, p.String())
		}
	}
	if len(v4) > 0 {
		if err := b.s.ReExport(ctx, familyV4, v4); err != nil {
			return err
		}
	}
	if len(v6) > 0 {
		return b.s.ReExport(ctx, familyV6, v6)
	}
	return nil
}
