// Package reexport runs GoBGP's export of a few prefixes' best paths
// again, inside a *server.BgpServer built from the GoBGP this module
// pins (v3.37.0).
//
// Why: GoBGP v3 exports a prefix only when its best path changes, so a
// gate that stops rejecting a prefix in its export policy must make the
// best path change to have it sent (the HOLD toggle: two management
// operations and two best-path events a prefix, most of gobgpd-ext's
// cost over stock gobgpd; docs/design-notes.md, "Release by re-export").
// GoBGP has no call that exports one prefix again. This package is that
// call, built from GoBGP's own unexported functions through go:linkname,
// the same code as patches/gobgp-v3.37.0-reexport.patch proposes upstream.
//
// Reaching into GoBGP's internals is safe only against the exact source
// it was written for, so Available checks, once, that the binary was
// linked with GoBGP v3.37.0 as published (its go.sum hash, or vendored at
// that version; no replace) and that the fields it reads have the types it
// expects.
// Anything else (another version, a fork, a vendored patch) makes
// Available return why, and callers release by toggle as before.
package reexport

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"runtime/debug"
	"sync"
	"unsafe"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// The GoBGP this package was written against: what `go mod download -json
// github.com/osrg/gobgp/v3@v3.37.0` reports.
const (
	gobgpModule  = "github.com/osrg/gobgp/v3"
	gobgpVersion = "v3.37.0"
	gobgpSum     = "h1:+ObuOdvj7G7nxrT0fKFta+EAupdWf/q1WzbXydr8IOY="
	thisModule   = "github.com/fibgate/fibgate"
)

// Opaque stand-ins for GoBGP's unexported and internal types: only
// pointers to them cross the calls below, and a pointer is a pointer
// whatever it points to.
type (
	peer        struct{}
	tablePath   struct{}
	table       struct{}
	destination struct{}
)

//go:linkname mgmtOperation github.com/osrg/gobgp/v3/pkg/server.(*BgpServer).mgmtOperation
func mgmtOperation(s *server.BgpServer, f func() error, checkActive bool) error

//go:linkname processOutgoingPaths github.com/osrg/gobgp/v3/pkg/server.(*BgpServer).processOutgoingPaths
func processOutgoingPaths(s *server.BgpServer, p *peer, paths, olds []*tablePath) []*tablePath

//go:linkname sendfsmOutgoingMsg github.com/osrg/gobgp/v3/pkg/server.sendfsmOutgoingMsg
func sendfsmOutgoingMsg(p *peer, paths []*tablePath, notification *bgp.BGPMessage, stayIdle bool)

//go:linkname isRouteServerClient github.com/osrg/gobgp/v3/pkg/server.(*peer).isRouteServerClient
func isRouteServerClient(p *peer) bool

//go:linkname isAddPathSendEnabled github.com/osrg/gobgp/v3/pkg/server.(*peer).isAddPathSendEnabled
func isAddPathSendEnabled(p *peer, family bgp.RouteFamily) bool

//go:linkname getDestination github.com/osrg/gobgp/v3/internal/pkg/table.(*Table).GetDestination
func getDestination(t *table, nlri bgp.AddrPrefixInterface) *destination

//go:linkname getBestPath github.com/osrg/gobgp/v3/internal/pkg/table.(*Destination).GetBestPath
func getBestPath(d *destination, id string, as uint32) *tablePath

// globalRibName is table.GLOBAL_RIB_NAME.
const globalRibName = "global"

// layout is where the two BgpServer fields the export reads are.
type layout struct {
	globalRib   reflect.StructField // *table.TableManager
	tables      reflect.StructField // TableManager.Tables, map[bgp.RouteFamily]*table.Table
	neighborMap reflect.StructField // map[string]*peer
}

var (
	once   sync.Once
	lay    layout
	reason error
)

// Available says whether Run may be used in this binary: nil, or why
// not. The answer is computed once.
func Available() error {
	once.Do(func() { lay, reason = check() })
	return reason
}

func check() (layout, error) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return layout{}, errors.New("no build information in this binary")
	}
	if err := checkBuild(bi); err != nil {
		return layout{}, err
	}
	var l layout
	st := reflect.TypeFor[server.BgpServer]()
	var err error
	if l.globalRib, err = field(st, "globalRib", "*table.TableManager"); err != nil {
		return layout{}, err
	}
	if l.tables, err = field(l.globalRib.Type.Elem(), "Tables", "map[bgp.RouteFamily]*table.Table"); err != nil {
		return layout{}, err
	}
	if l.neighborMap, err = field(st, "neighborMap", "map[string]*server.peer"); err != nil {
		return layout{}, err
	}
	return l, nil
}

// checkBuild says whether bi is a build with the GoBGP this package was
// written for. A vendored build (go mod vendor) records no hash; its
// version is the vendor directory's, which go mod vendor checked against
// go.sum, so it is taken on its version.
func checkBuild(bi *debug.BuildInfo) error {
	if len(bi.Deps) == 0 && bi.Main.Path == thisModule {
		// A test binary of this module: go test records no dependencies,
		// and this module's go.mod pins GoBGP (TestGoModPinsGoBGP).
		return nil
	}
	for _, m := range bi.Deps {
		if m.Path != gobgpModule {
			continue
		}
		if m.Replace != nil {
			return fmt.Errorf("%s is replaced by %s %s", gobgpModule, m.Replace.Path, m.Replace.Version)
		}
		if m.Version != gobgpVersion || (m.Sum != "" && m.Sum != gobgpSum) {
			return fmt.Errorf("%s is %s %s, written for %s %s", gobgpModule, m.Version, m.Sum, gobgpVersion, gobgpSum)
		}
		return nil
	}
	return fmt.Errorf("%s not in this binary's build information", gobgpModule)
}

func field(t reflect.Type, name, want string) (reflect.StructField, error) {
	f, ok := t.FieldByName(name)
	if !ok {
		return f, fmt.Errorf("%s has no field %s", t, name)
	}
	if got := f.Type.String(); got != want {
		return f, fmt.Errorf("%s.%s is %s, want %s", t, name, got, want)
	}
	return f, nil
}

// Run exports the current best path of each of ps in family rf again to
// every neighbour, under the export policy of the moment, as if it had
// just been selected, in one operation of GoBGP's main loop. A neighbour
// the policy rejects a path for gets nothing (there is no old path to
// withdraw); watchers are not told (the best path did not change);
// prefixes without a best path are skipped; route-server clients and
// neighbours with ADD-PATH send are left out, their exports being per
// path. The paths go to each neighbour in one batch, so prefixes with the
// same attributes share UPDATE messages. Run must not be called unless
// Available returned nil.
func Run(ctx context.Context, s *server.BgpServer, rf bgp.RouteFamily, ps []netip.Prefix) error {
	if err := Available(); err != nil {
		return err
	}
	if len(ps) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	afi, safi := bgp.RouteFamilyToAfiSafi(rf)
	nlris := make([]bgp.AddrPrefixInterface, 0, len(ps))
	for _, p := range ps {
		nlri, err := bgp.NewPrefixFromRouteFamily(afi, safi, p.String())
		if err != nil {
			return fmt.Errorf("prefix %v: %w", p, err)
		}
		nlris = append(nlris, nlri)
	}
	base := unsafe.Pointer(s)
	return mgmtOperation(s, func() error {
		rib := reflect.NewAt(lay.globalRib.Type, unsafe.Add(base, lay.globalRib.Offset)).Elem()
		if rib.IsNil() {
			return errors.New("GoBGP has not started")
		}
		tables := reflect.NewAt(lay.tables.Type, unsafe.Add(rib.UnsafePointer(), lay.tables.Offset)).Elem()
		tv := tables.MapIndex(reflect.ValueOf(rf))
		if !tv.IsValid() || tv.IsNil() {
			return fmt.Errorf("family %s is not in the global RIB", rf)
		}
		t := (*table)(tv.UnsafePointer())
		best := make([]*tablePath, 0, len(nlris))
		for _, nlri := range nlris {
			if d := getDestination(t, nlri); d != nil {
				if b := getBestPath(d, globalRibName, 0); b != nil {
					best = append(best, b)
				}
			}
		}
		if len(best) == 0 {
			return nil
		}
		it := reflect.NewAt(lay.neighborMap.Type, unsafe.Add(base, lay.neighborMap.Offset)).Elem().MapRange()
		for it.Next() {
			p := (*peer)(it.Value().UnsafePointer())
			if isRouteServerClient(p) || isAddPathSendEnabled(p, rf) {
				continue
			}
			if paths := processOutgoingPaths(s, p, best, nil); len(paths) > 0 {
				sendfsmOutgoingMsg(p, paths, nil, false)
			}
		}
		return nil
	}, true)
}
