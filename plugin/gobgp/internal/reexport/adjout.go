package reexport

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sync"
	"unsafe"

	"github.com/osrg/gobgp/v3/pkg/config/oc"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/fibgate/fibgate/plugin/gobgp/internal/pinned"
)

// This file serves the consistency audit's reads of GoBGP (plugin/gobgp,
// AuditBGP) without holding GoBGP's main loop for a whole table:
//   - Advertised answers the audit's one question of a neighbour's
//     adj-out: would GoBGP send these prefixes' best paths to it now?
//     GoBGP's API answers it only through ListPath on ADJ_OUT with
//     EnableFiltered, which runs the export of every best path of the
//     family for that neighbour in the main loop and builds an adj-RIB of
//     them all, whatever prefixes the request names: seconds a neighbour
//     at a full table, with every update and release waiting
//     (TestAuditBGPCost; docs/design-notes.md, "The audit's adj-out, a
//     slice at a time"). Advertised runs the same export for the named
//     prefixes only, a slice of them per operation of the loop.
//   - RIBPrefixes lists the RIB's prefixes, where ListPath of the whole
//     table copies every destination in the loop first; the audit then
//     looks them up a slice at a time.

//go:linkname filterpath github.com/osrg/gobgp/v3/pkg/server.(*BgpServer).filterpath
func filterpath(s *server.BgpServer, p *peer, path, old *tablePath) *tablePath

//go:linkname selectionOptions github.com/osrg/gobgp/v3/internal/pkg/table.SelectionOptions
var selectionOptions oc.RouteSelectionOptionsConfig

// ErrAskAPI is Advertised's answer when it cannot judge as GoBGP would:
// for a neighbour whose export GoBGP judges per path rather than per best
// path (a route-server client, or ADD-PATH send for the family), when
// GoBGP selects no best path at all, or in a binary without the pinned
// GoBGP. The caller asks GoBGP's API instead.
var ErrAskAPI = errors.New("ask GoBGP's API")

// AdvertisedSlice is how many prefixes one operation of GoBGP's main loop
// judges: an export is a few microseconds, so a slice holds the loop for
// a few milliseconds at most.
const AdvertisedSlice = 256

var (
	ribOnce     sync.Once
	destsF      reflect.StructField // table.Table.destinations
	withdrawOff uintptr             // table.Path.IsWithdraw's offset
	ribErr      error
)

// learnRIB finds table.Table's destinations and table.Path's IsWithdraw
// through the global RIB's types (Table.destinations,
// Destination.knownPathList), checking each on the way.
func learnRIB() error {
	ribOnce.Do(func() {
		var err error
		if destsF, err = pinned.Field(lay.tables.Type.Elem().Elem(), "destinations", "map[string]*table.Destination"); err != nil {
			ribErr = err
			return
		}
		known, err := pinned.Field(destsF.Type.Elem().Elem(), "knownPathList", "[]*table.Path")
		if err != nil {
			ribErr = err
			return
		}
		w, err := pinned.Field(known.Type.Elem().Elem(), "IsWithdraw", "bool")
		if err != nil {
			ribErr = err
			return
		}
		withdrawOff = w.Offset
	})
	return ribErr
}

// AuditReadable says whether Advertised and RIBPrefixes can read GoBGP
// in this binary: nil, or an error wrapping ErrAskAPI that says why not.
func AuditReadable() error {
	if err := Available(); err != nil {
		return fmt.Errorf("%w: %w", ErrAskAPI, err)
	}
	if err := learnRIB(); err != nil {
		return fmt.Errorf("%w: %w", ErrAskAPI, err)
	}
	return nil
}

// Advertised says, for each of ps, whether GoBGP would send its best path
// to the neighbour (as GoBGP's neighbour map names it: its address) now:
// the path GoBGP's API lists unfiltered in that neighbour's adj-out. It
// runs GoBGP's own export of the path (filterpath: the checks before the
// policy, the export policy, the checks after it) for the named prefixes
// only, AdvertisedSlice of them per operation of GoBGP's main loop, so
// other work gets the loop between slices; a prefix may change between
// two slices, as it may between a read and its use. An error wrapping
// ErrAskAPI says to ask GoBGP's API instead.
func Advertised(ctx context.Context, s *server.BgpServer, neighbour string, ps []netip.Prefix) ([]bool, error) {
	if err := AuditReadable(); err != nil {
		return nil, err
	}
	nlris, rfs := make([]bgp.AddrPrefixInterface, len(ps)), make([]bgp.RouteFamily, len(ps))
	for i, p := range ps {
		var err error
		if rfs[i], nlris[i], err = nlriOf(p.Masked()); err != nil {
			return nil, err
		}
	}
	out := make([]bool, len(ps))
	base := unsafe.Pointer(s)
	for lo := 0; lo < len(ps); lo += AdvertisedSlice {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+AdvertisedSlice, len(ps))
		err := mgmtOperation(s, func() error {
			if selectionOptions.DisableBestPathSelection {
				return ErrAskAPI
			}
			v := reflect.NewAt(lay.neighborMap.Type, unsafe.Add(base, lay.neighborMap.Offset)).Elem().MapIndex(reflect.ValueOf(neighbour))
			if !v.IsValid() || v.IsNil() {
				return fmt.Errorf("neighbor that has %v doesn't exist", neighbour)
			}
			p := (*peer)(v.UnsafePointer())
			if isRouteServerClient(p) {
				return ErrAskAPI
			}
			// The families' tables, once an operation.
			t4, err := ribTable(base, bgp.RF_IPv4_UC)
			if err != nil {
				return err
			}
			t6, _ := ribTable(base, bgp.RF_IPv6_UC)
			for i := lo; i < hi; i++ {
				if isAddPathSendEnabled(p, rfs[i]) {
					return ErrAskAPI
				}
				t := t4
				if rfs[i] == bgp.RF_IPv6_UC {
					t = t6
				}
				if t == nil {
					continue // a family GoBGP does not carry: nothing to send
				}
				d := getDestination(t, nlris[i])
				if d == nil {
					continue
				}
				best := getBestPath(d, globalRibName, 0)
				if best == nil {
					continue
				}
				if sent := filterpath(s, p, best, nil); sent != nil {
					out[i] = !*(*bool)(unsafe.Add(unsafe.Pointer(sent), withdrawOff))
				}
			}
			return nil
		}, true)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// RIBPrefixes returns the prefixes of GoBGP's global RIB in a unicast
// family (IPv4 when v4), read in one operation of its main loop that only
// copies out the destinations' keys (the prefix's bytes and length, as
// table.tableKey writes them; no path is touched). Why: GoBGP's ListPath
// of a whole table copies every destination in its main loop before it
// lists them, a second or more at a full table with every update and
// release waiting; the audit reads the whole RIB rarely, but then it
// looks the keys up a slice at a time (ListPath with exact prefixes)
// instead. A key of another form makes it fail with ErrAskAPI.
func RIBPrefixes(ctx context.Context, s *server.BgpServer, v4 bool) ([]netip.Prefix, error) {
	if err := AuditReadable(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rf, keyLen := bgp.RF_IPv4_UC, 5
	if !v4 {
		rf, keyLen = bgp.RF_IPv6_UC, 17
	}
	var keys []string
	base := unsafe.Pointer(s)
	err := mgmtOperation(s, func() error {
		t, err := ribTable(base, rf)
		if t == nil || err != nil {
			return err // nil: a family GoBGP does not carry
		}
		m := reflect.NewAt(destsF.Type, unsafe.Add(unsafe.Pointer(t), destsF.Offset)).Elem()
		keys = make([]string, 0, m.Len())
		k := reflect.New(destsF.Type.Key()).Elem()
		for it := m.MapRange(); it.Next(); {
			k.SetIterKey(it)
			keys = append(keys, k.String())
		}
		return nil
	}, true)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, len(keys))
	for i, k := range keys {
		if len(k) != keyLen {
			return nil, fmt.Errorf("%w: a destination's key of %d bytes in %s", ErrAskAPI, len(k), rf)
		}
		var b [16]byte
		copy(b[:], k[:keyLen-1])
		a := netip.AddrFrom16(b)
		if v4 {
			a = netip.AddrFrom4([4]byte(b[:4]))
		}
		// A prefix with bits set past its length would not be found again
		// by an exact lookup of its masked form: the API lists it as is.
		p := netip.PrefixFrom(a, int(k[keyLen-1]))
		if !p.IsValid() || p.Masked() != p {
			return nil, fmt.Errorf("%w: a destination's key %x in %s", ErrAskAPI, k, rf)
		}
		out[i] = p
	}
	return out, nil
}
