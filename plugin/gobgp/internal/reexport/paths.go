package reexport

import (
	"context"
	"fmt"
	_ "unsafe" // go:linkname

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

//go:linkname api2Path github.com/osrg/gobgp/v3/pkg/server.api2Path
func api2Path(resource api.TableType, path *api.Path, isWithdraw bool) (*tablePath, error)

//go:linkname addPathStream github.com/osrg/gobgp/v3/pkg/server.(*BgpServer).addPathStream
func addPathStream(s *server.BgpServer, vrfID string, pathList []*tablePath) error

// AddPaths adds and withdraws (IsWithdraw) paths in GoBGP's global table,
// in order, in one operation of GoBGP's main loop: what gobgpd does with
// one AddPathStream message.
//
// Why: in process, GoBGP's Go API has AddPath and DeletePath, one path
// and one main-loop operation each, which waits behind whatever the loop
// is doing (a neighbour's UPDATEs, a collection's assists). Release by
// copy and the fences' HOLD paths send hundreds of paths a second, each
// such a round trip under the Speaker's lock: at the full table 4.4 ms on
// average, 822 round trips in 5 s holding the lock that the releases and
// the fences wait for (docs/design-notes.md, "Release by copy at the full
// table, profiled"). The paths are also converted outside the loop, as
// AddPathStream's handler does.
//
// The difference from AddPath: GoBGP keeps no UUID for these paths (only
// DeletePath by UUID reads it; fibgate deletes by path). The paths are
// checked as a whole before any is applied (GoBGP's fixupApiPath), so an
// error leaves none of them in. AddPaths must not be called unless
// Available returned nil.
func AddPaths(ctx context.Context, s *server.BgpServer, paths []*api.Path) error {
	if err := Available(); err != nil {
		return err
	}
	if len(paths) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	list := make([]*tablePath, len(paths))
	for i, p := range paths {
		tp, err := api2Path(api.TableType_GLOBAL, p, p.IsWithdraw)
		if err != nil {
			return fmt.Errorf("path %d of %d: %w", i+1, len(paths), err)
		}
		list[i] = tp
	}
	return addPathStream(s, "", list)
}
