// Package audit checks that what BGP advertises and holds agrees with the
// kernel FIB, the hardware state and the gate's own states, like SONiC's
// route_check. The gate keeps these in step by construction; the audit is
// the independent look that finds where they drifted anyway: a bug, a
// failed call nobody retried, or a hand edit (a route added with ip(8), a
// path added with the gobgp CLI).
//
// The package has two halves. Compare is a pure function over snapshots,
// so every kind of disagreement can be tested exhaustively without a
// kernel or a BGP daemon. An Auditor takes the snapshots (Sources, wired
// by the daemon: the gate's tracker, the listener's FIB model, and
// plugin/gobgp's Speaker.AuditBGP for GoBGP), runs passes periodically,
// and reports a disagreement only when two passes in a row found it, so a
// change that was still travelling through the pipeline during one pass
// is never reported.
//
// The package knows neither netlink nor GoBGP: it imports only fib and
// gate, and plugin/gobgp fills BGP.
package audit

import (
	"net/netip"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
)

// Kind is what disagrees.
type Kind uint8

const (
	// AdvertisedUnconfirmed: GoBGP advertises a prefix of the gate's scope
	// whose route the hardware has not confirmed (and no fail-open or
	// on_failure: keep rule lets out): the safety invariant is broken.
	AdvertisedUnconfirmed Kind = iota + 1
	// ConfirmedUnadvertised: the gate handed the prefix to BGP longer than
	// the grace period ago (state advertised), but GoBGP's gate still
	// holds it back: a stuck release.
	ConfirmedUnadvertised
	// NexthopsDiffer: the FIB installer's kernel route does not forward
	// to the next hops of GoBGP's learned best path, or is missing.
	NexthopsDiffer
	// HoldLeft: a HOLD path is in GoBGP for a prefix that is released or
	// out of the gate's scope; the gate adds HOLD paths only for moments.
	HoldLeft
	// RouteWithoutBest: a kernel route of the installer's protocol in its
	// table for which GoBGP has no learned best path: it forwards traffic
	// BGP does not know about, and the gate would judge it as transit.
	RouteWithoutBest
)

// numKinds bounds the kinds, for arrays indexed by Kind.
const numKinds = int(RouteWithoutBest) + 1

var kindNames = [numKinds]string{"", "advertised_unconfirmed", "confirmed_unadvertised", "nexthops_differ", "hold_left", "route_without_best"}

// String is the kind's name in logs, metrics (label kind) and JSON.
func (k Kind) String() string {
	if int(k) < numKinds && k > 0 {
		return kindNames[k]
	}
	return "unknown"
}

// Kinds lists every kind in order, so that metrics can export zeros.
func Kinds() []Kind {
	return []Kind{AdvertisedUnconfirmed, ConfirmedUnadvertised, NexthopsDiffer, HoldLeft, RouteWithoutBest}
}

// Mismatch is one disagreement.
type Mismatch struct {
	Kind   Kind
	Prefix netip.Prefix
	// Table is the routing table of the kernel route concerned; 0 when
	// there is none.
	Table uint32
	// Neighbours are, for AdvertisedUnconfirmed, the neighbours GoBGP
	// advertises the prefix to.
	Neighbours []netip.Addr
	// Detail says what disagrees, for people.
	Detail string
	// FirstSeen is when a pass first found it (set by the Auditor).
	FirstSeen time.Time
	// ident is what must stay the same for two passes to find the same
	// mismatch: the route's FIB version, the path's identity, the time
	// the gate released it. A route that changed between two passes is a
	// new route, whose disagreement may be a transient one.
	ident string
}

// key identifies a mismatch across passes.
func (m *Mismatch) key() string {
	return m.Kind.String() + "|" + m.Prefix.String() + "|" + itoa(uint64(m.Table)) + "|" + m.ident
}

// Snapshot is what one audit pass compares.
type Snapshot struct {
	// Gate is every state the gate tracks, sorted by table, then prefix,
	// as gate.Tracker.Briefs returns them (Compare sorts a copy otherwise).
	Gate []gate.Brief
	FIB  FIB
	BGP  BGP
}

// BGP is what GoBGP advertises and holds, as plugin/gobgp reads it.
type BGP struct {
	// At is when the reading began.
	At time.Time
	// Neighbours are the established neighbours whose adj-out was read.
	Neighbours []netip.Addr
	// LetOut holds the prefixes in the gate's scope, with no confirmed
	// route (Ask.Unconfirmed), that GoBGP's gate lets out as the RIB and
	// the held sets say: a best path that is not a HOLD path, and not
	// held (or the gate is not first in the export chain). The value says
	// whether their adj-out was read (Ask.Confirm, Ask.Large); if so, Out
	// says where they go. This judgement is cheap and leaves out the user's export
	// policies, which may still keep them from every neighbour.
	LetOut map[netip.Prefix]bool
	// Out maps the prefixes GoBGP advertises to the neighbours they go
	// to, among the Checked ones. GoBGP computes adj-out from today's
	// policy and best paths, so it is what GoBGP would send now, not a
	// record of what was sent.
	Out map[netip.Prefix][]netip.Addr
	// Checked counts the prefixes whose adj-out was read.
	Checked int
	// RIB is GoBGP's global RIB (IPv4 and IPv6 unicast): the paths of each
	// destination in GoBGP's order, best first.
	RIB map[netip.Prefix][]Path
	// Holds says whether the gate's export policy in GoBGP holds p back
	// (its held sets, judged as GoBGP judges them); false when the gate
	// is not in GoBGP's export chain at all.
	Holds func(p netip.Prefix) bool
	// InScope says whether p is in the gate's BGP scope: held until
	// released.
	InScope func(p netip.Prefix) bool
	// Copied says whether the gate has p out on a copy of a learned path
	// (kept while a new route is programmed, or released by copy:
	// plugin/gobgp, copy.go), so a kept copy there is no copy left
	// behind, and a HOLD path there is one; nil: none.
	Copied func(p netip.Prefix) bool
	// Carry is the source's to fill: what it read once for a pass in
	// parts, handed back with the next part's Ask.Carry.
	Carry any
}

// Path is one path of a destination of GoBGP's global RIB.
type Path struct {
	// Nexthop is the path's next hop; unspecified for local paths.
	Nexthop netip.Addr
	// Learned: from a neighbour. Local paths (originated by the gate, its
	// HOLD paths, paths added with the gobgp CLI) are not.
	Learned bool
	// Hold: the path carries the gate's HOLD community.
	Hold bool
	// Kept: the path is a copy of a learned path that the gate keeps out
	// while a new route is programmed (plugin/gobgp, keep.go) or releases
	// the prefix with (copy.go): out although the held set holds the
	// prefix, and, like a HOLD path, nothing the installer forwards on.
	Kept bool
	// Best: GoBGP's best path, or one of its multipath set. Under a kept
	// copy that is best, the learned paths GoBGP would choose without it
	// (the installer's) are marked Best too.
	Best bool
	// ID tells this path from a later one of the same kind (GoBGP's path
	// UUID, or its age); plugin/gobgp sets it on HOLD paths and kept
	// copies only, the paths a mismatch names.
	ID string
}

// FIB is what the kernel FIB and the hardware hold, as the gate's model of
// them (the listener, with the hardware backend's flags) has them.
type FIB struct {
	// At is when it was read.
	At time.Time
	// Gated are the forwarding routes of the gated tables that a scope of
	// the policy covers, by prefix (one per table).
	Gated map[netip.Prefix][]GatedRoute
	// Installer says which routes are the FIB installer's; nil when the
	// daemon installs nothing, and then Installed is empty.
	Installer *Installer
	// Installed are the routes of the installer's protocol in its table,
	// by prefix, whatever their metric.
	Installed map[netip.Prefix][]InstalledRoute
}

// GatedRoute is the forwarding route of a gated prefix in one table, with
// what the gate's policy makes of its hardware state.
type GatedRoute struct {
	Table uint32
	// Verdict and Reason are the scope's judgement of the route's
	// hardware flags (gate.Scope.Judge).
	Verdict gate.Verdict
	Reason  string
	// Origin is how the gate releases the prefix in BGP; 0: it never does.
	Origin gate.Origin
	// FailOpen says the scope lets a pending route out after its pending
	// timeout; KeepOnFailure that it keeps a failed one out.
	FailOpen, KeepOnFailure bool
	// Version is the route's FIB version (fib.FIB.Version).
	Version uint64
}

// Installer identifies the FIB installer's routes.
type Installer struct {
	Table    uint32
	Protocol fib.Protocol
	Metric   uint32
	// Resolve, when set, turns GoBGP's next hops of a prefix into the
	// gateways the installer writes for them (a next hop that is not
	// directly connected resolves over another route, as zebra does), so
	// such a route is not reported as NexthopsDiffer; nil: they are
	// written as they are.
	Resolve func(nexthops []netip.Addr) []netip.Addr
}

// InstalledRoute is a kernel route of the installer's protocol.
type InstalledRoute struct {
	Metric uint32
	// Nexthops are its gateways, sorted.
	Nexthops []netip.Addr
	// Version is the FIB version of the prefix's forwarding route.
	Version uint64
}

// Counts say how much a pass compared, so a clean result can be told from
// one that looked at nothing.
type Counts struct {
	Neighbours int
	// Checked prefixes had their adj-out read (in scope, route not
	// confirmed); Advertised of them GoBGP advertises.
	Checked         int
	Advertised      int
	Destinations    int
	GatedRoutes     int
	InstalledRoutes int
	GateStates      int
	// WholeRIB: the pass read GoBGP's whole RIB, not only the prefixes
	// the gate and the FIB know.
	WholeRIB bool
}

// add sums the counts of a pass's parts; every part reads the same
// neighbours.
func (c *Counts) add(o Counts) {
	c.Neighbours = max(c.Neighbours, o.Neighbours)
	c.Checked += o.Checked
	c.Advertised += o.Advertised
	c.Destinations += o.Destinations
	c.GatedRoutes += o.GatedRoutes
	c.InstalledRoutes += o.InstalledRoutes
	c.GateStates += o.GateStates
}

// CountsOf counts what s holds.
func CountsOf(s *Snapshot) Counts {
	c := Counts{Neighbours: len(s.BGP.Neighbours), Checked: s.BGP.Checked, Advertised: len(s.BGP.Out), Destinations: len(s.BGP.RIB), GateStates: len(s.Gate)}
	for _, rs := range s.FIB.Gated {
		c.GatedRoutes += len(rs)
	}
	for _, rs := range s.FIB.Installed {
		c.InstalledRoutes += len(rs)
	}
	return c
}
