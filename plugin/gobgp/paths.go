package gobgp

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// holdLocalPref is the LOCAL_PREF of HOLD paths: the highest there is, so
// a HOLD path wins best-path selection over every learned path.
const holdLocalPref = math.MaxUint32

// pathBuilder makes GoBGP API paths in their binary form (NlriBinary and
// PattrsBinary: wire-format NLRI and attributes, which GoBGP decodes
// directly instead of unpacking protobuf Any messages). The attributes that
// are the same for every path are serialized once.
type pathBuilder struct {
	origin [][]byte // attributes of originated paths, next hop excluded
	hold   [][]byte // attributes of HOLD paths, next hop excluded
	// unspec4 is the NEXT_HOP 0.0.0.0, for the paths of WatchBest's own
	// prefixes (ownPath), built without the Speaker's lock: hops and
	// asPaths are caches written under it.
	unspec4 []byte
	nh4     netip.Addr
	nh6     netip.Addr
	keepGW  bool // Config.KeepGateway
	// hops caches serialized IPv4 NEXT_HOP attributes (the same for every
	// path with that next hop; IPv6 next hops travel in MP_REACH_NLRI
	// together with the prefix). Used under the Speaker's lock.
	hops map[netip.Addr][]byte
	// asPaths caches the serialized AS_PATHs of release toggles' HOLD
	// paths by their ASes (a leaf's upstreams: a handful), which were
	// built and serialized once a release. Used under the Speaker's lock;
	// emptied when it reaches maxASPaths.
	asPaths map[string][]byte
}

// maxASPaths bounds pathBuilder.asPaths.
const maxASPaths = 1024

func newPathBuilder(n *normalized) (*pathBuilder, error) {
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	if n.MED != nil {
		attrs = append(attrs, bgp.NewPathAttributeMultiExitDisc(*n.MED))
	}
	if n.LocalPref != nil {
		attrs = append(attrs, bgp.NewPathAttributeLocalPref(*n.LocalPref))
	}
	if len(n.comms) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(n.comms))
	}
	if len(n.large) > 0 {
		lc := make([]*bgp.LargeCommunity, len(n.large))
		for i, v := range n.large {
			lc[i] = bgp.NewLargeCommunity(v[0], v[1], v[2])
		}
		attrs = append(attrs, bgp.NewPathAttributeLargeCommunities(lc))
	}
	b := &pathBuilder{nh4: n.NextHop4, nh6: n.NextHop6, keepGW: n.KeepGateway, hops: make(map[netip.Addr][]byte)}
	var err error
	if b.origin, err = serialize(attrs); err != nil {
		return nil, fmt.Errorf("originated path attributes: %w", err)
	}
	if b.unspec4, err = bgp.NewPathAttributeNextHop("0.0.0.0").Serialize(); err != nil {
		return nil, fmt.Errorf("next hop 0.0.0.0: %w", err)
	}
	if b.hold, err = serialize([]bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
		bgp.NewPathAttributeLocalPref(holdLocalPref),
		bgp.NewPathAttributeCommunities([]uint32{n.hold}),
	}); err != nil {
		return nil, fmt.Errorf("hold path attributes: %w", err)
	}
	return b, nil
}

func serialize(attrs []bgp.PathAttributeInterface) ([][]byte, error) {
	out := make([][]byte, len(attrs))
	for i, a := range attrs {
		b, err := a.Serialize()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a.GetType(), err)
		}
		out[i] = b
	}
	return out, nil
}

// nextHop picks the next hop of an originated path: the configured one,
// else (only with Config.KeepGateway) the advertisement's, else
// unspecified: GoBGP sends its own session address (next hop self).
func (b *pathBuilder) nextHop(p netip.Prefix, adv netip.Addr) netip.Addr {
	if p.Addr().Is4() {
		if b.nh4.IsValid() {
			return b.nh4
		}
		if b.keepGW && adv.IsValid() && adv.Is4() {
			return adv
		}
		return netip.IPv4Unspecified()
	}
	if b.nh6.IsValid() {
		return b.nh6
	}
	if b.keepGW && adv.IsValid() && adv.Is6() && !adv.Is4In6() && !adv.IsLinkLocalUnicast() {
		return adv
	}
	return netip.IPv6Unspecified()
}

// originated builds the local path that announces p.
func (b *pathBuilder) originated(p netip.Prefix, nh netip.Addr, withdraw bool) (*api.Path, error) {
	return b.build(p, nh, b.origin, withdraw)
}

// holdPath builds the HOLD path of p. Its next hop is unspecified: it is
// never sent, only compared. It is a local path like any other, and GoBGP
// keeps one local path a prefix: added, it replaces the prefix's local
// path; deleted, it deletes it. That is what taking back an originated
// prefix or a kept copy wants. A toggle of a prefix whose paths are not
// the gate's wants holdBeside.
func (b *pathBuilder) holdPath(p netip.Prefix, withdraw bool) (*api.Path, error) {
	return fromElsewhere(b.zebraHoldPath(p, withdraw))
}

// holdSourceAS and holdSourceID name the source of holdBeside's paths.
// GoBGP takes a path that names a source AS from the API as coming from
// that source: still a local path (it has no neighbour address), but not
// the same source as other local paths, so it neither replaces them nor
// is deleted with them. The AS is private (RFC 6996) and only compared.
const (
	holdSourceAS = 65534
	holdSourceID = "0.0.0.1"
)

// holdBeside is holdPath with a source of its own (holdSourceAS): the
// HOLD path of a toggle (a release's, a take-back's, an export re-run's),
// added and deleted beside the prefix's paths. A plain HOLD path replaced
// the prefix's local path, so a toggle destroyed any local path the gate
// had not added: a route a controller added over GoBGP's API, or one
// GoBGP's zebra client redistributed. Released, such a prefix was gone
// from GoBGP, its route deleted, and no neighbour got it
// (TestALocalPathSurvivesReleaseAndTakeBack).
func (b *pathBuilder) holdBeside(p netip.Prefix, withdraw bool) (*api.Path, error) {
	return beside(b.holdPath(p, withdraw))
}

// beside gives a HOLD path holdBeside's source.
func beside(p *api.Path, err error) (*api.Path, error) {
	if p != nil {
		p.SourceAsn, p.SourceId = holdSourceAS, holdSourceID
	}
	return p, err
}

// unspecified is the next hop of a HOLD path of p.
func unspecified(p netip.Prefix) netip.Addr {
	if p.Addr().Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

// fromElsewhere marks a HOLD path as GoBGP marks the routes its zebra
// client learned from zebra (is_from_external), which that client never
// hands back to zebra. GoBGP with [zebra] enabled installs its best paths
// through FRR's zebra, and a HOLD path is the best path of its prefix for
// the moment of a release or a take-back: zebra took its unspecified next
// hop for the route, found it unusable and deleted the prefix's kernel
// route, and put it back when the learned path was best again, so each
// release took the route it had just confirmed out of the kernel and the
// hardware (e2e TestZebraInstallsForTheGate: 1,522 deletions for 2,000
// prefixes). Nothing else in GoBGP reads the mark.
func fromElsewhere(p *api.Path, err error) (*api.Path, error) {
	if p != nil {
		p.IsFromExternal = true
	}
	return p, err
}

// beatPath is WatchBest's heartbeat (heartbeat.go): a HOLD path on
// heartbeatPrefix whose MED is the beat's number, so each beat replaces the
// one before with a path that differs, which GoBGP reports as a new best
// path, and nothing is ever deleted while the heartbeat runs (a deletion
// would send every neighbour a withdrawal of a prefix it never had).
func (b *pathBuilder) beatPath(n uint32, withdraw bool) (*api.Path, error) {
	med, err := bgp.NewPathAttributeMultiExitDisc(n).Serialize()
	if err != nil {
		return nil, fmt.Errorf("heartbeat path: %w", err)
	}
	return b.ownPath(heartbeatPrefix, withdraw, med), nil
}

// ownPath is the HOLD path of one of WatchBest's own IPv4 prefixes
// (snapshotMarker, heartbeatPrefix) with extra attributes. It reads only
// what newPathBuilder wrote, so callers need not hold the Speaker's lock.
func (b *pathBuilder) ownPath(p netip.Prefix, withdraw bool, extra ...[]byte) *api.Path {
	attrs := make([][]byte, 0, len(b.hold)+len(extra)+1)
	attrs = append(append(append(attrs, b.hold...), extra...), b.unspec4)
	return &api.Path{Family: familyV4, NlriBinary: nlriBytes(p), PattrsBinary: attrs, IsWithdraw: withdraw, IsFromExternal: true}
}

// holdPathThrough is the HOLD path of a release toggle, with ases (the
// eBGP neighbour ASes of the learned path it re-exports) as its AS_PATH.
// GoBGP answers the toggle's end (the HOLD path leaving, the learned path
// best again) with a withdrawal to the neighbour the learned path came
// from, which never had it (filterPathFromSourcePeer sends the previous
// best's withdrawal back to the source): one UPDATE per released prefix.
// It checks AS loops on that withdrawal after, and sends none of a local
// path with the neighbour's AS in it. The HOLD path is rejected by the
// gate's policy before any other neighbour could see its AS_PATH, and
// wins best-path selection by its LOCAL_PREF, which GoBGP compares first.
func (b *pathBuilder) holdPathThrough(p netip.Prefix, ases []uint32) (*api.Path, error) {
	if len(ases) == 0 {
		return b.holdBeside(p, false)
	}
	var key [4 * 8]byte
	k := key[:0]
	for _, as := range ases {
		k = binary.BigEndian.AppendUint32(k, as)
	}
	asPath, ok := b.asPaths[string(k)]
	if !ok {
		var err error
		asPath, err = bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, ases)}).Serialize()
		if err != nil {
			return nil, fmt.Errorf("hold path %v: AS path %v: %w", p, ases, err)
		}
		if b.asPaths == nil || len(b.asPaths) >= maxASPaths {
			b.asPaths = make(map[string][]byte)
		}
		b.asPaths[string(k)] = asPath
	}
	return beside(fromElsewhere(b.build(p, unspecified(p), append(append(make([][]byte, 0, len(b.hold)+1), b.hold...), asPath), false)))
}

func (b *pathBuilder) build(p netip.Prefix, nh netip.Addr, common [][]byte, withdraw bool) (*api.Path, error) {
	if !p.Addr().Is4() {
		if !nh.Is6() || nh.Is4In6() || nh.IsLinkLocalUnicast() || nh.Zone() != "" {
			return build(p, nh, common, withdraw)
		}
		return &api.Path{
			Family:       familyV6,
			NlriBinary:   nlriBytes(p),
			PattrsBinary: append(append(make([][]byte, 0, len(common)+1), common...), mpReach6(p, nh)),
			IsWithdraw:   withdraw,
		}, nil
	}
	hop, ok := b.hops[nh]
	if !ok {
		var err error
		if hop, err = bgp.NewPathAttributeNextHop(nh.String()).Serialize(); err != nil {
			return nil, fmt.Errorf("path %v: next hop %v: %w", p, nh, err)
		}
		b.hops[nh] = hop
	}
	return &api.Path{
		Family:       familyV4,
		NlriBinary:   nlriBytes(p),
		PattrsBinary: append(append(make([][]byte, 0, len(common)+1), common...), hop),
		IsWithdraw:   withdraw,
	}, nil
}

// nlriBytes encodes p as BGP does (RFC 4271 4.3): its length, then the
// fewest octets that hold it.
func nlriBytes(p netip.Prefix) []byte {
	a := p.Addr().AsSlice()
	n := (p.Bits() + 7) / 8
	return append([]byte{byte(p.Bits())}, a[:n]...)
}

// mpReach6 encodes the MP_REACH_NLRI attribute of an IPv6 unicast path
// to p with one global (or unspecified) next hop, as GoBGP's
// PathAttributeMpReachNLRI.Serialize does (RFC 4760 3: optional,
// non-transitive; AFI 2, SAFI 1, a 16-byte next hop, no SNPA), in one
// allocation: GoBGP's constructors parse the prefix and the next hop from
// strings, twice per release of an IPv6 prefix (TestMpReach6IsGoBGPs).
func mpReach6(p netip.Prefix, nh netip.Addr) []byte {
	n := (p.Bits() + 7) / 8
	vlen := 2 + 1 + 1 + 16 + 1 + 1 + n
	b := make([]byte, 3+vlen)
	b[0], b[1], b[2] = byte(bgp.BGP_ATTR_FLAG_OPTIONAL), byte(bgp.BGP_ATTR_TYPE_MP_REACH_NLRI), byte(vlen)
	b[3], b[4], b[5], b[6] = 0, byte(bgp.AFI_IP6), byte(bgp.SAFI_UNICAST), 16
	a := nh.As16()
	copy(b[7:23], a[:])
	b[23] = 0 // reserved (SNPAs)
	b[24] = byte(p.Bits())
	pa := p.Addr().As16()
	copy(b[25:], pa[:n])
	return b
}

// build makes a path without caches (IPv6 with a link-local next hop, and
// tests).
func build(p netip.Prefix, nh netip.Addr, common [][]byte, withdraw bool) (*api.Path, error) {
	var (
		nlri   bgp.AddrPrefixInterface
		family *api.Family
		hop    bgp.PathAttributeInterface
	)
	if p.Addr().Is4() {
		nlri, family = bgp.NewIPAddrPrefix(uint8(p.Bits()), p.Addr().String()), familyV4
		hop = bgp.NewPathAttributeNextHop(nh.String())
	} else {
		nlri, family = bgp.NewIPv6AddrPrefix(uint8(p.Bits()), p.Addr().String()), familyV6
		hop = bgp.NewPathAttributeMpReachNLRI(nh.String(), []bgp.AddrPrefixInterface{nlri})
	}
	hb, err := hop.Serialize()
	if err != nil {
		return nil, fmt.Errorf("path %v: next hop %v: %w", p, nh, err)
	}
	return &api.Path{
		Family:       family,
		NlriBinary:   nlriBytes(p),
		PattrsBinary: append(append(make([][]byte, 0, len(common)+1), common...), hb),
		IsWithdraw:   withdraw,
	}, nil
}

// learned says whether a path came from a neighbour: local paths (the
// gate's originated, HOLD and kept paths, the CLI's) have no neighbour address.
func learned(p *api.Path) bool {
	if p.GetIsWithdraw() {
		return false
	}
	a, err := netip.ParseAddr(p.GetNeighborIp())
	return err == nil && !a.IsUnspecified()
}
