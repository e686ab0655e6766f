package gobgp

import (
	"context"
	"errors"
	"net/netip"

	"github.com/fibgate/fibgate/plugin/gobgp/internal/reexport"
)

// InProcessRelease says how a Speaker made by NewInProcess with c
// releases a learned path in this binary: "copy", "toggle" or
// "reexport". why is not nil when it toggles though c asked for neither:
// the re-export reaches into GoBGP's internals, so it is there only when
// the binary was linked with the exact GoBGP it was written for
// (plugin/gobgp/internal/reexport), and a daemon says so at start.
func (c Config) InProcessRelease() (how string, why error) {
	switch {
	case c.ReleaseByCopy:
		return "copy", nil
	case c.ReleaseByToggle:
		return "toggle", nil
	}
	if err := reexport.Available(); err != nil {
		return "toggle", err
	}
	return "reexport", nil
}

// toggleInProcess makes NewInProcess release by toggle whatever the
// Config says, send paths one at a time (serverBackend.sendPaths) and
// watch UPDATEs in the API's form (serverBackend.watchLearned), as with
// any GoBGP but the pinned one. Only this package's tests set it
// (FIBGATE_TEST_RELEASE=toggle, `make test-toggle`), so that the
// in-process suite runs on the toggle too, the release fibgated always
// uses.
var toggleInProcess bool

// rxBackend is the in-process backend that releases by re-export
// (reExporter): one GoBGP operation for a step's released prefixes,
// where the HOLD toggle is two operations and two best-path events a
// prefix.
type rxBackend struct{ serverBackend }

func (b rxBackend) releaseAndReExport(ctx context.Context, edits []reexport.Edit, ps []netip.Prefix) error {
	return reexport.Run(ctx, b.s, edits, ps)
}

// setReader is a backend that reads GoBGP's prefix sets as they are, not
// through the API's text (reexport.ReadPrefixSets): at the full table the
// API writes a million held-set entries as text inside GoBGP's main loop
// for every audit pass. ok false means it could not, having called fn
// for nothing: the caller lists the sets through the API.
type setReader interface {
	readPrefixSets(fn func(name string, es []reexport.Entry)) (ok bool)
}

func (b serverBackend) readPrefixSets(fn func(name string, es []reexport.Entry)) bool {
	return reexport.ReadPrefixSets(b.s, fn) == nil
}

// adjOutReader is a backend that judges a neighbour's adj-out for the
// prefixes asked about only (reexport.Advertised), a slice at a time,
// where GoBGP's API runs the export of the family's whole table in its
// main loop for every read, whatever it names: seconds a neighbour at a
// full table, with every update and release waiting. ok false means it
// could not judge as GoBGP would (a route-server client, ADD-PATH send,
// another GoBGP): the caller reads the adj-out through the API.
type adjOutReader interface {
	advertised(ctx context.Context, neighbour string, ps []netip.Prefix) (out []bool, ok bool, err error)
	// inProcessAdjOut says whether advertised can judge at all in this
	// binary (the pinned GoBGP): if not, every read goes through the API.
	inProcessAdjOut() bool
}

func (b serverBackend) inProcessAdjOut() bool { return reexport.AuditReadable() == nil }

func (b serverBackend) advertised(ctx context.Context, neighbour string, ps []netip.Prefix) ([]bool, bool, error) {
	out, err := reexport.Advertised(ctx, b.s, neighbour, ps)
	if errors.Is(err, reexport.ErrAskAPI) {
		return nil, false, nil
	}
	return out, err == nil, err
}

// ribLister is a backend that lists the prefixes of GoBGP's global RIB
// without copying its destinations in the main loop
// (reexport.RIBPrefixes): a whole read of the RIB then looks them up a
// slice at a time, where GoBGP's ListPath of the whole table held the
// loop for a second or more at a full table. ok false means it could not:
// the caller lists the RIB through the API.
type ribLister interface {
	ribPrefixes(ctx context.Context, v4 bool) (ps []netip.Prefix, ok bool, err error)
}

func (b serverBackend) ribPrefixes(ctx context.Context, v4 bool) ([]netip.Prefix, bool, error) {
	ps, err := reexport.RIBPrefixes(ctx, b.s, v4)
	if errors.Is(err, reexport.ErrAskAPI) {
		return nil, false, nil
	}
	return ps, err == nil, err
}
