package gobgp

import (
	"context"
	"net/netip"

	"github.com/fibgate/fibgate/plugin/gobgp/internal/reexport"
)

// ReExportAvailable says whether a Speaker made by NewInProcess in this
// binary releases learned paths by re-export (nil) or, and why not, by
// the HOLD toggle. Re-export reaches into GoBGP's internals, so it is
// there only when the binary was linked with the exact GoBGP it was
// written for (plugin/gobgp/internal/reexport); a daemon says so at start.
func ReExportAvailable() error { return reexport.Available() }

// toggleInProcess makes NewInProcess release by toggle whatever the
// Config says. Only this package's tests set it (FIBGATE_TEST_RELEASE=
// toggle, `make test-toggle`), so that the in-process suite runs on the
// toggle too, the release fibgated always uses.
var toggleInProcess bool

// rxBackend is the in-process backend that releases by re-export
// (reExporter): one GoBGP operation for a step's released prefixes,
// where the HOLD toggle is two operations and two best-path events a
// prefix.
type rxBackend struct{ serverBackend }

func (b rxBackend) releaseAndReExport(ctx context.Context, edits []reexport.Edit, ps []netip.Prefix) error {
	return reexport.Run(ctx, b.s, edits, ps)
}
