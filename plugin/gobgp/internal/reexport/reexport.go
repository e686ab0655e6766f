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
// the same code as patches/gobgp-v3.37.0-reexport.patch proposes upstream;
// it also makes the held set's edits of the release in the same operation
// of GoBGP's main loop, so that a release waits for that loop once.
//
// Reaching into GoBGP's internals is safe only against the exact source
// it was written for, so Available checks, once, that the binary was
// linked with GoBGP v3.37.0 as published (package pinned) and that the
// fields it reads have the types it expects. Anything else (another
// version, a fork, a replace) makes Available return why, and callers
// release by toggle as before.
package reexport

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sync"
	"unsafe"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/fibgate/fibgate/plugin/gobgp/internal/pinned"
)

// Opaque stand-ins for GoBGP's unexported and internal types: only
// pointers to them cross the calls below, and a pointer is a pointer
// whatever it points to.
type (
	peer          struct{}
	tablePath     struct{}
	table         struct{}
	destination   struct{}
	routingPolicy struct{}
)

// definedSet stands for table.DefinedSet, an interface: Go's register
// ABI passes an interface value as two pointer words, as it does this.
type definedSet struct {
	_, _ unsafe.Pointer // the itab, the value
}

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

//go:linkname newDefinedSetFromApiStruct github.com/osrg/gobgp/v3/pkg/server.newDefinedSetFromApiStruct
func newDefinedSetFromApiStruct(a *api.DefinedSet) (definedSet, error)

//go:linkname addDefinedSet github.com/osrg/gobgp/v3/internal/pkg/table.(*RoutingPolicy).AddDefinedSet
func addDefinedSet(r *routingPolicy, set definedSet, replace bool) error

//go:linkname deleteDefinedSet github.com/osrg/gobgp/v3/internal/pkg/table.(*RoutingPolicy).DeleteDefinedSet
func deleteDefinedSet(r *routingPolicy, set definedSet, all bool) error

// globalRibName is table.GLOBAL_RIB_NAME.
const globalRibName = "global"

// layout is where the BgpServer fields Run reads are.
type layout struct {
	globalRib   reflect.StructField // *table.TableManager
	tables      reflect.StructField // TableManager.Tables, map[bgp.RouteFamily]*table.Table
	neighborMap reflect.StructField // map[string]*peer
	policy      reflect.StructField // *table.RoutingPolicy
	definedSets reflect.StructField // RoutingPolicy.definedSetMap, map[table.DefinedType]map[string]table.DefinedSet
	policyMu    reflect.StructField // RoutingPolicy.mu, what AddDefinedSet locks
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
	if err := pinned.Check(); err != nil {
		return layout{}, err
	}
	var l layout
	st := reflect.TypeFor[server.BgpServer]()
	var err error
	if l.globalRib, err = pinned.Field(st, "globalRib", "*table.TableManager"); err != nil {
		return layout{}, err
	}
	if l.tables, err = pinned.Field(l.globalRib.Type.Elem(), "Tables", "map[bgp.RouteFamily]*table.Table"); err != nil {
		return layout{}, err
	}
	if l.neighborMap, err = pinned.Field(st, "neighborMap", "map[string]*server.peer"); err != nil {
		return layout{}, err
	}
	if l.policy, err = pinned.Field(st, "policy", "*table.RoutingPolicy"); err != nil {
		return layout{}, err
	}
	if l.definedSets, err = pinned.Field(l.policy.Type.Elem(), "definedSetMap", "table.DefinedSetMap"); err != nil {
		return layout{}, err
	}
	if k := l.definedSets.Type; k.Kind() != reflect.Map || k.Key().Kind() != reflect.Int || k.Elem().String() != "map[string]table.DefinedSet" {
		return layout{}, fmt.Errorf("RoutingPolicy.definedSetMap is %s, want map[table.DefinedType]map[string]table.DefinedSet", k)
	}
	if l.policyMu, err = pinned.Field(l.policy.Type.Elem(), "mu", "sync.RWMutex"); err != nil {
		return layout{}, err
	}
	return l, nil
}

// directOff sends every edit through GoBGP's own path: the tests' other
// side of the comparison.
var directOff bool

// Entry is one entry of a prefix set: Prefix and the prefixes below it
// whose length is within MinLen..MaxLen.
type Entry struct {
	Prefix         netip.Prefix
	MinLen, MaxLen uint8
}

// Edit is a change to one of GoBGP's prefix sets, as AddDefinedSet
// (Delete false; never a replace) or DeleteDefinedSet (Delete true, only
// the entries listed) would make it. The entries are typed, not text: an
// addition to a set GoBGP has goes into it directly (direct.go) without
// the API's strings.
type Edit struct {
	Name    string
	Entries []Entry
	Delete  bool
}

// apiSet is e as the API writes it, for GoBGP's own path.
func (e Edit) apiSet() *api.DefinedSet {
	d := &api.DefinedSet{DefinedType: api.DefinedType_PREFIX, Name: e.Name, Prefixes: make([]*api.Prefix, len(e.Entries))}
	for i, x := range e.Entries {
		d.Prefixes[i] = &api.Prefix{IpPrefix: x.Prefix.String(), MaskLengthMin: uint32(x.MinLen), MaskLengthMax: uint32(x.MaxLen)}
	}
	return d
}

// Run applies edits in order, then exports the current best path of each
// of ps again to every neighbour, under the export policy of that moment,
// as if it had just been selected: all in one operation of GoBGP's main
// loop, so that a release (the held set's edit, then the export) waits
// for that loop once, where AddDefinedSet, DeleteDefinedSet and an export
// per family would wait for it each.
//
// A neighbour the policy rejects a path for gets nothing (there is no old
// path to withdraw); watchers are not told (the best path did not
// change); prefixes without a best path are skipped; route-server clients
// and neighbours with ADD-PATH send are left out, their exports being per
// path. The paths go to each neighbour in one batch a family, so prefixes
// with the same attributes share UPDATE messages. An edit that fails
// ends the operation with its error, before the export; the edits before
// it stay, as separate calls would have left them. Run must not be
// called unless Available returned nil.
func Run(ctx context.Context, s *server.BgpServer, edits []Edit, ps []netip.Prefix) error {
	if err := Available(); err != nil {
		return err
	}
	if len(ps) == 0 && len(edits) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var fams [2]struct {
		rf    bgp.RouteFamily
		nlris []bgp.AddrPrefixInterface
	}
	fams[0].rf, fams[1].rf = bgp.RF_IPv4_UC, bgp.RF_IPv6_UC
	for _, p := range ps {
		rf, nlri, err := nlriOf(p)
		if err != nil {
			return err
		}
		f := &fams[0]
		if rf != f.rf {
			f = &fams[1]
		}
		f.nlris = append(f.nlris, nlri)
	}
	base := unsafe.Pointer(s)
	return mgmtOperation(s, func() error {
		if len(edits) > 0 {
			pol := *(**routingPolicy)(unsafe.Add(base, lay.policy.Offset))
			if pol == nil {
				return errors.New("GoBGP has no policy yet")
			}
			for _, e := range edits {
				if !e.Delete && !directOff && addDirect(unsafe.Pointer(pol), e) {
					continue
				}
				set, err := newDefinedSetFromApiStruct(e.apiSet())
				if err == nil {
					if e.Delete {
						err = deleteDefinedSet(pol, set, false)
					} else {
						err = addDefinedSet(pol, set, false)
					}
				}
				if err != nil {
					return fmt.Errorf("set %s: %w", e.Name, err)
				}
			}
		}
		for _, f := range fams {
			if len(f.nlris) == 0 {
				continue
			}
			if err := export(base, s, f.rf, f.nlris); err != nil {
				return err
			}
		}
		return nil
	}, true)
}

// nlriOf is p as GoBGP's unicast NLRI of its family, and that family.
func nlriOf(p netip.Prefix) (bgp.RouteFamily, bgp.AddrPrefixInterface, error) {
	rf := bgp.RF_IPv4_UC
	if !p.Addr().Is4() {
		rf = bgp.RF_IPv6_UC
	}
	afi, safi := bgp.RouteFamilyToAfiSafi(rf)
	nlri, err := bgp.NewPrefixFromRouteFamily(afi, safi, p.String())
	if err != nil {
		return rf, nil, fmt.Errorf("prefix %v: %w", p, err)
	}
	return rf, nlri, nil
}

// ribTable is the global RIB's table of the family rf, nil if GoBGP
// carries no such family. Called in GoBGP's main loop.
func ribTable(base unsafe.Pointer, rf bgp.RouteFamily) (*table, error) {
	rib := reflect.NewAt(lay.globalRib.Type, unsafe.Add(base, lay.globalRib.Offset)).Elem()
	if rib.IsNil() {
		return nil, errors.New("GoBGP has not started")
	}
	tv := reflect.NewAt(lay.tables.Type, unsafe.Add(rib.UnsafePointer(), lay.tables.Offset)).Elem().MapIndex(reflect.ValueOf(rf))
	if !tv.IsValid() || tv.IsNil() {
		return nil, nil
	}
	return (*table)(tv.UnsafePointer()), nil
}

// export is Run's export of one family, in GoBGP's main loop.
func export(base unsafe.Pointer, s *server.BgpServer, rf bgp.RouteFamily, nlris []bgp.AddrPrefixInterface) error {
	t, err := ribTable(base, rf)
	if err != nil {
		return err
	}
	if t == nil {
		return fmt.Errorf("family %s is not in the global RIB", rf)
	}
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
}
