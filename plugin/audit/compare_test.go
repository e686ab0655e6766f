package audit

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
)

var (
	tran  = netip.MustParsePrefix("203.0.113.0/24")
	orig  = netip.MustParsePrefix("198.51.100.0/24")
	other = netip.MustParsePrefix("192.0.2.0/24")
	nhA   = netip.MustParseAddr("10.1.1.2")
	nhB   = netip.MustParseAddr("10.0.1.2")
	spine = netip.MustParseAddr("10.0.1.2")
	t0    = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	inst  = &Installer{Table: fib.TableMain, Protocol: fib.ProtoBGP, Metric: 20}
)

// healthy is a world where everything agrees: tran learned via nhA,
// installed, confirmed and advertised; orig originated the same way. Every
// prefix is in scope; nothing but the released ones escapes the held set.
func healthy() *Snapshot {
	released := map[netip.Prefix]bool{tran: true, orig: true}
	return &Snapshot{
		Gate: []gate.Brief{
			{Table: 254, Prefix: tran, State: gate.Advertised, AdvertisedAt: t0},
			{Table: 254, Prefix: orig, State: gate.Advertised, AdvertisedAt: t0},
		},
		FIB: FIB{At: t0.Add(time.Minute), Installer: inst,
			Gated: map[netip.Prefix][]GatedRoute{
				tran: {{Table: 254, Verdict: gate.VerdictConfirmed, Reason: "confirmed", Origin: gate.Transit, Version: 7}},
				orig: {{Table: 254, Verdict: gate.VerdictConfirmed, Reason: "confirmed", Origin: gate.Originated, Version: 8}},
			},
			Installed: map[netip.Prefix][]InstalledRoute{tran: {{Metric: 20, Nexthops: []netip.Addr{nhA}, Version: 7}}},
		},
		BGP: BGP{At: t0.Add(time.Minute), Neighbours: []netip.Addr{spine},
			Out: map[netip.Prefix][]netip.Addr{tran: {spine}, orig: {spine}},
			RIB: map[netip.Prefix][]Path{
				tran: {{Nexthop: nhA, Learned: true, Best: true, ID: "l1"}},
				orig: {{Nexthop: netip.IPv4Unspecified(), Best: true, ID: "o1"}},
			},
			Holds:   func(p netip.Prefix) bool { return !released[p] },
			InScope: func(netip.Prefix) bool { return true },
		},
	}
}

// holdAlso makes GoBGP's held set hold p too.
func holdAlso(s *Snapshot, p netip.Prefix) {
	old := s.BGP.Holds
	s.BGP.Holds = func(q netip.Prefix) bool { return q == p || old(q) }
}

func hold(id string) Path {
	return Path{Nexthop: netip.IPv4Unspecified(), Hold: true, Best: true, ID: id}
}

// TestCompare injects each kind of disagreement into a healthy world, and
// the near misses that must not count.
func TestCompare(t *testing.T) {
	type want struct {
		kind   Kind
		prefix netip.Prefix
		detail string // a part of Detail
	}
	for _, c := range []struct {
		name   string
		break_ func(s *Snapshot)
		want   []want
	}{
		{"a healthy world has no mismatch", func(*Snapshot) {}, nil},
		{"an advertised prefix whose route waits for hardware breaks the invariant", func(s *Snapshot) {
			s.FIB.Gated[tran][0].Verdict, s.FIB.Gated[tran][0].Reason = gate.VerdictPending, "waiting for hardware"
		}, []want{{AdvertisedUnconfirmed, tran, "table 254: waiting for hardware (gate: " + gate.Advertised.String() + ")"}}},
		{"an advertised prefix with no route at all breaks the invariant", func(s *Snapshot) {
			s.BGP.Out[other] = []netip.Addr{spine}
		}, []want{{AdvertisedUnconfirmed, other, "no gated table of the FIB has a route"}}},
		{"a pending prefix GoBGP's gate lets out, adj-out not read, counts", func(s *Snapshot) {
			s.FIB.Gated[tran][0].Verdict, s.FIB.Gated[tran][0].Reason = gate.VerdictPending, "waiting for hardware"
			delete(s.BGP.Out, tran)
			s.BGP.LetOut = map[netip.Prefix]bool{tran: false}
		}, []want{{AdvertisedUnconfirmed, tran, "GoBGP's gate lets it out (adj-out not read), but its route is not confirmed"}}},
		{"a pending prefix GoBGP's gate lets out that adj-out shows going nowhere does not", func(s *Snapshot) {
			s.FIB.Gated[tran][0].Verdict = gate.VerdictPending
			delete(s.BGP.Out, tran) // the user's export policy rejects it
			s.BGP.LetOut = map[netip.Prefix]bool{tran: true}
		}, nil},
		{"an advertised prefix out of the gate's scope is not the gate's", func(s *Snapshot) {
			s.BGP.Out[other] = []netip.Addr{spine}
			s.BGP.InScope = func(p netip.Prefix) bool { return p != other }
		}, nil},
		{"fail-open lets a pending route out once the gate says so", func(s *Snapshot) {
			s.FIB.Gated[tran][0].Verdict, s.FIB.Gated[tran][0].FailOpen = gate.VerdictPending, true
		}, nil},
		{"fail-open does not excuse a route the gate has not let out", func(s *Snapshot) {
			s.FIB.Gated[tran][0].Verdict, s.FIB.Gated[tran][0].FailOpen = gate.VerdictPending, true
			s.Gate[0].State = gate.Pending
		}, []want{{AdvertisedUnconfirmed, tran, "(gate: " + gate.Pending.String() + ")"}}},
		{"on_failure keep lets a failed route stay out", func(s *Snapshot) {
			s.FIB.Gated[tran][0].Verdict, s.FIB.Gated[tran][0].KeepOnFailure = gate.VerdictFailed, true
		}, nil},
		{"a confirmed route in another gated table is enough", func(s *Snapshot) {
			s.FIB.Gated[tran] = append([]GatedRoute{{Table: 100, Verdict: gate.VerdictPending}}, s.FIB.Gated[tran]...)
		}, nil},
		{"a release GoBGP's held set undid is stuck", func(s *Snapshot) {
			delete(s.BGP.Out, tran)
			holdAlso(s, tran)
		}, []want{{ConfirmedUnadvertised, tran, "GoBGP's held set holds it back"}}},
		{"a release within the grace period is still on its way", func(s *Snapshot) {
			delete(s.BGP.Out, tran)
			holdAlso(s, tran)
			s.Gate[0].AdvertisedAt = s.BGP.At.Add(-time.Second)
		}, nil},
		{"a HOLD path best on a released prefix: stuck, and left behind", func(s *Snapshot) {
			delete(s.BGP.Out, tran)
			s.BGP.RIB[tran] = append([]Path{hold("h1")}, Path{Nexthop: nhA, Learned: true, ID: "l1"})
		}, []want{{ConfirmedUnadvertised, tran, "a HOLD path is its best path"}, {HoldLeft, tran, "a prefix the gate released"}}},
		{"an originated prefix whose local path is gone", func(s *Snapshot) {
			delete(s.BGP.Out, orig)
			delete(s.BGP.RIB, orig)
		}, []want{{ConfirmedUnadvertised, orig, "GoBGP has no path for it"}}},
		{"a released prefix GoBGP lets out but no neighbour takes is the user's policy", func(s *Snapshot) {
			delete(s.BGP.Out, tran)
		}, nil},
		{"a confirmed prefix not yet handed to BGP is the tracker's queue", func(s *Snapshot) {
			delete(s.BGP.Out, tran)
			s.Gate[0].State = gate.Confirmed
			holdAlso(s, tran)
		}, nil},
		{"a route the gate never releases (no origin) is not stuck", func(s *Snapshot) {
			delete(s.BGP.Out, tran)
			s.FIB.Gated[tran][0].Origin = 0
			holdAlso(s, tran)
		}, nil},
		{"the installer's route forwards elsewhere than the best path", func(s *Snapshot) {
			s.FIB.Installed[tran][0].Nexthops = []netip.Addr{nhB}
		}, []want{{NexthopsDiffer, tran, "installed via 10.0.1.2, GoBGP's best path is via 10.1.1.2"}}},
		{"a next hop behind another route is installed through that route's gateway", func(s *Snapshot) {
			s.FIB.Installed[tran][0].Nexthops = []netip.Addr{nhB}
			in := *inst // not the shared one
			s.FIB.Installer = &in
			s.FIB.Installer.Resolve = func(nhs []netip.Addr) []netip.Addr {
				if slices.Equal(nhs, []netip.Addr{nhA}) {
					return []netip.Addr{nhB}
				}
				return nhs
			}
		}, nil},
		{"a resolved next hop installed through another gateway is a difference", func(s *Snapshot) {
			s.FIB.Installed[tran][0].Nexthops = []netip.Addr{nhB}
			in := *inst
			s.FIB.Installer = &in
			s.FIB.Installer.Resolve = func([]netip.Addr) []netip.Addr { return []netip.Addr{netip.MustParseAddr("10.9.9.9")} }
		}, []want{{NexthopsDiffer, tran, "installed via 10.0.1.2, GoBGP's best path is via 10.1.1.2"}}},
		{"a learned best path without the installer's route", func(s *Snapshot) {
			delete(s.FIB.Installed, tran)
		}, []want{{NexthopsDiffer, tran, "the installer has no route for it"}}},
		{"a route of the installer's protocol with another metric is not the installer's", func(s *Snapshot) {
			s.FIB.Installed[tran][0].Metric = 0
		}, []want{{NexthopsDiffer, tran, "the installer has no route for it"}}},
		{"a multipath set is installed whole", func(s *Snapshot) {
			s.BGP.RIB[tran] = append(s.BGP.RIB[tran], Path{Nexthop: nhB, Learned: true, Best: true, ID: "l2"})
			s.FIB.Installed[tran][0].Nexthops = []netip.Addr{nhB, nhA}
			slices.SortFunc(s.FIB.Installed[tran][0].Nexthops, netip.Addr.Compare)
		}, nil},
		{"half a multipath set is a difference", func(s *Snapshot) {
			s.BGP.RIB[tran] = append(s.BGP.RIB[tran], Path{Nexthop: nhB, Learned: true, Best: true, ID: "l2"})
		}, []want{{NexthopsDiffer, tran, "installed via 10.1.1.2, GoBGP's best path is via 10.0.1.2,10.1.1.2"}}},
		{"under a HOLD path the route stays as it was", func(s *Snapshot) {
			s.FIB.Installed[tran][0].Nexthops = []netip.Addr{nhB}
			s.BGP.RIB[tran] = append([]Path{hold("h1")}, s.BGP.RIB[tran]...)
			holdAlso(s, tran) // being taken back
			s.Gate[0].State = gate.Pending
		}, nil},
		{"a route of the installer's protocol that GoBGP has no path for", func(s *Snapshot) {
			s.FIB.Installed[other] = []InstalledRoute{{Metric: 0, Nexthops: []netip.Addr{nhB}, Version: 9}}
		}, []want{{RouteWithoutBest, other, "via 10.0.1.2 metric 0), but GoBGP has no path for it"}}},
		{"an installed route under a local best path", func(s *Snapshot) {
			s.FIB.Installed[orig] = []InstalledRoute{{Metric: 20, Nexthops: []netip.Addr{nhB}}}
		}, []want{{RouteWithoutBest, orig, "best path for it is local"}}},
		{"an installed route whose best path has no usable next hop", func(s *Snapshot) {
			s.BGP.RIB[tran][0].Nexthop = netip.MustParseAddr("fe80::1")
		}, []want{{RouteWithoutBest, tran, "no usable next hop"}}},
		{"an installed route under HOLD and local paths only", func(s *Snapshot) {
			s.BGP.RIB[tran] = []Path{hold("h1"), {Nexthop: netip.IPv4Unspecified(), ID: "o2"}}
			holdAlso(s, tran)
			s.Gate[0].State = gate.Pending
		}, []want{{RouteWithoutBest, tran, "only HOLD and local paths"}}},
		{"a HOLD path on a held prefix is the gate's own", func(s *Snapshot) {
			s.BGP.RIB[other] = []Path{hold("h1")}
		}, nil},
		{"a HOLD path out of the gate's scope is left behind", func(s *Snapshot) {
			s.BGP.RIB[other] = []Path{hold("h1")}
			s.BGP.Holds = func(p netip.Prefix) bool { return p != other && p != tran && p != orig }
			s.BGP.InScope = func(p netip.Prefix) bool { return p != other }
		}, []want{{HoldLeft, other, "out of the gate's scope"}}},
		{"a HOLD path that lost best-path selection is left behind too", func(s *Snapshot) {
			s.BGP.RIB[tran] = append(s.BGP.RIB[tran], Path{Nexthop: netip.IPv4Unspecified(), Hold: true, ID: "h1"})
		}, []want{{HoldLeft, tran, "a prefix the gate released"}}},
		{"a copy kept out while the new route is programmed is the gate's own", func(s *Snapshot) {
			// plugin/gobgp keep.go: the best path moved to nhB with new
			// attributes; the previous one stays out as a local copy, the
			// prefix held under it, the new route installed and pending.
			holdAlso(s, tran)
			delete(s.BGP.Out, tran) // adj-out is not read for it
			s.BGP.RIB[tran] = []Path{{Nexthop: netip.IPv4Unspecified(), Kept: true, Best: true, ID: "k1"}, {Nexthop: nhB, Learned: true, ID: "l2"}}
			s.FIB.Installed[tran] = []InstalledRoute{{Metric: 20, Nexthops: []netip.Addr{nhB}, Version: 9}}
			s.FIB.Gated[tran][0].Verdict, s.FIB.Gated[tran][0].Reason, s.FIB.Gated[tran][0].Version = gate.VerdictPending, "waiting for hardware", 9
		}, nil},
		{"a kept copy on a released prefix is left behind", func(s *Snapshot) {
			s.BGP.RIB[tran] = append(s.BGP.RIB[tran], Path{Nexthop: netip.IPv4Unspecified(), Kept: true, ID: "k1"})
		}, []want{{HoldLeft, tran, "kept copy"}}},
		{"a prefix released by copy is out on it, its route checked against the paths under it", func(s *Snapshot) {
			// plugin/gobgp copy.go: held in the set, out on the copy; the
			// reader marks the learned paths under it Best.
			holdAlso(s, tran)
			s.BGP.Copied = func(p netip.Prefix) bool { return p == tran }
			s.BGP.RIB[tran] = []Path{{Nexthop: netip.IPv4Unspecified(), Kept: true, Best: true, ID: "k1"}, {Nexthop: nhA, Learned: true, Best: true, ID: "l1"}}
		}, nil},
		{"under a copy, an installed route elsewhere than the learned paths differs", func(s *Snapshot) {
			holdAlso(s, tran)
			s.BGP.Copied = func(p netip.Prefix) bool { return p == tran }
			s.BGP.RIB[tran] = []Path{{Nexthop: netip.IPv4Unspecified(), Kept: true, Best: true, ID: "k1"}, {Nexthop: nhB, Learned: true, Best: true, ID: "l2"}}
		}, []want{{NexthopsDiffer, tran, "GoBGP's best path is via " + nhB.String()}}},
		{"a HOLD path in place of a prefix's copy is left behind, and keeps it back", func(s *Snapshot) {
			holdAlso(s, tran)
			delete(s.BGP.Out, tran)
			s.BGP.Copied = func(p netip.Prefix) bool { return p == tran }
			s.BGP.RIB[tran] = append([]Path{hold("h1")}, Path{Nexthop: nhA, Learned: true, ID: "l1"})
		}, []want{{ConfirmedUnadvertised, tran, "held set holds it back"}, {HoldLeft, tran, "a prefix the gate released"}}},
		{"without an installer, kernel routes are not compared", func(s *Snapshot) {
			s.FIB.Installer, s.FIB.Installed = nil, nil
		}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := healthy()
			c.break_(s)
			got := Compare(s, DefaultGrace)
			if len(got) != len(c.want) {
				t.Fatalf("got %d mismatches, want %d:\n%s", len(got), len(c.want), dump(got))
			}
			for i, w := range c.want {
				g := got[i]
				if g.Kind != w.kind || g.Prefix != w.prefix || !strings.Contains(g.Detail, w.detail) {
					t.Errorf("mismatch %d: %s %v %q, want %s %v containing %q", i, g.Kind, g.Prefix, g.Detail, w.kind, w.prefix, w.detail)
				}
			}
			if c.want != nil && c.want[0].kind == AdvertisedUnconfirmed {
				// Neighbours come from adj-out; none when it was not read.
				want := []netip.Addr{spine}
				if _, read := s.BGP.Out[got[0].Prefix]; !read {
					want = nil
				}
				if !slices.Equal(got[0].Neighbours, want) {
					t.Errorf("neighbours %v, want %v", got[0].Neighbours, want)
				}
			}
		})
	}
}

func dump(ms []Mismatch) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "  %s %v table %d: %s\n", m.Kind, m.Prefix, m.Table, m.Detail)
	}
	return b.String()
}

// world is one prefix's situation across GoBGP, the FIB and the gate,
// every dimension the audit looks at.
type world struct {
	out, inScope, held bool
	verdict            gate.Verdict
	hasRoute           bool
	failOpen, keep     bool
	state              gate.State
	oldRelease         bool
	origin             gate.Origin
	rib                int // index into ribs
	installed          int // index into installs
	installer          bool
}

var ribs = []struct {
	name  string
	paths []Path
}{
	{"no path", nil},
	{"learned via A", []Path{{Nexthop: nhA, Learned: true, Best: true}}},
	{"learned multipath A, B", []Path{{Nexthop: nhA, Learned: true, Best: true}, {Nexthop: nhB, Learned: true, Best: true}}},
	{"learned via A, B second", []Path{{Nexthop: nhA, Learned: true, Best: true}, {Nexthop: nhB, Learned: true}}},
	{"local best", []Path{{Nexthop: netip.IPv4Unspecified(), Best: true}, {Nexthop: nhA, Learned: true}}},
	{"HOLD over learned", []Path{{Hold: true, Best: true}, {Nexthop: nhA, Learned: true}}},
	{"HOLD alone", []Path{{Hold: true, Best: true}}},
	{"learned via link-local", []Path{{Nexthop: netip.MustParseAddr("fe80::1"), Learned: true, Best: true}}},
	{"learned, HOLD not best", []Path{{Nexthop: nhA, Learned: true, Best: true}, {Hold: true}}},
}

var installs = []struct {
	name   string
	routes []InstalledRoute
}{
	{"none", nil},
	{"own via A", []InstalledRoute{{Metric: 20, Nexthops: []netip.Addr{nhA}}}},
	{"own via B", []InstalledRoute{{Metric: 20, Nexthops: []netip.Addr{nhB}}}},
	{"own via A, B", []InstalledRoute{{Metric: 20, Nexthops: []netip.Addr{nhB, nhA}}}}, // sorted, as ReadFIB gives them
	{"foreign metric via A", []InstalledRoute{{Metric: 0, Nexthops: []netip.Addr{nhA}}}},
}

// TestCompareEveryWorld enumerates every combination of one prefix's
// dimensions and checks each kind against its definition, written out
// plainly here as the reference.
func TestCompareEveryWorld(t *testing.T) {
	n := 0
	for w := range worlds() {
		n++
		s := w.snapshot()
		got := map[Kind]bool{}
		for _, m := range Compare(s, DefaultGrace) {
			if m.Prefix != tran || got[m.Kind] {
				t.Fatalf("%+v: unexpected %s %v", w, m.Kind, m.Prefix)
			}
			got[m.Kind] = true
		}
		paths := ribs[w.rib].paths
		holdBest := len(paths) > 0 && paths[0].Hold
		var want []netip.Addr // the installer's next hops
		for _, p := range paths {
			if !holdBest && p.Best && p.Learned && p.Nexthop != netip.MustParseAddr("fe80::1") {
				want = append(want, p.Nexthop)
			}
		}
		slices.SortFunc(want, netip.Addr.Compare)
		learnedBelow := false // the first non-HOLD path is learned and usable
		for _, p := range paths {
			if !p.Hold {
				learnedBelow = p.Learned && p.Nexthop != netip.MustParseAddr("fe80::1")
				break
			}
		}
		up := w.state == gate.Confirmed || w.state == gate.Advertised
		confirmed := w.hasRoute && (w.verdict == gate.VerdictConfirmed ||
			up && w.failOpen && w.verdict == gate.VerdictPending || up && w.keep && w.verdict == gate.VerdictFailed)
		var own []netip.Addr
		hasOwn := false
		for _, r := range installs[w.installed].routes {
			if r.Metric == 20 {
				own, hasOwn = r.Nexthops, true
			}
		}
		expect := map[Kind]bool{
			AdvertisedUnconfirmed: w.out && w.inScope && !confirmed,
			ConfirmedUnadvertised: w.state == gate.Advertised && w.oldRelease && w.hasRoute && w.origin != 0 &&
				(w.held || holdBest || len(paths) == 0 && w.origin == gate.Originated),
			NexthopsDiffer:   w.installer && len(want) > 0 && (!hasOwn || !slices.Equal(own, want)),
			HoldLeft:         slices.ContainsFunc(paths, func(p Path) bool { return p.Hold }) && !w.held,
			RouteWithoutBest: w.installer && len(installs[w.installed].routes) > 0 && !learnedBelow && len(want) == 0,
		}
		if need := NeedsAdjOut(s)(tran); need != (!confirmed) {
			t.Fatalf("%+v: NeedsAdjOut %v, want %v", w, need, !confirmed)
		}
		for _, k := range Kinds() {
			if got[k] != expect[k] {
				t.Fatalf("%s: got %s %v, want %v\nworld %+v (rib %q, installed %q)", tran, k, got[k], expect[k], w, ribs[w.rib].name, installs[w.installed].name)
			}
		}
	}
	t.Logf("%d worlds", n)
}

// worlds yields every combination of world's dimensions, but those that
// differ only where nothing is read (the flags of a missing route, the
// kernel routes of a daemon without an installer).
func worlds() func(func(world) bool) {
	bools := []bool{false, true}
	return func(yield func(world) bool) {
		for _, out := range bools {
			for _, inScope := range bools {
				for _, held := range bools {
					for _, hasRoute := range bools {
						for _, verdict := range []gate.Verdict{gate.VerdictPending, gate.VerdictConfirmed, gate.VerdictFailed} {
							for _, fo := range []int{0, 1, 2} { // neither, fail-open, keep
								for _, state := range []gate.State{0, gate.Pending, gate.Confirmed, gate.Advertised, gate.Failed} {
									for _, old := range bools {
										for _, origin := range []gate.Origin{0, gate.Transit, gate.Originated} {
											for rib := range ribs {
												for installed := range installs {
													for _, installer := range bools {
														if !hasRoute && (verdict != gate.VerdictPending || fo != 0) || !installer && installed != 0 {
															continue
														}
														w := world{out: out, inScope: inScope, held: held, verdict: verdict, hasRoute: hasRoute,
															failOpen: fo == 1, keep: fo == 2, state: state, oldRelease: old, origin: origin,
															rib: rib, installed: installed, installer: installer}
														if !yield(w) {
															return
														}
													}
												}
											}
										}
									}
								}
							}
						}
					}
				}
			}
		}
	}
}

func (w world) snapshot() *Snapshot {
	at := t0.Add(time.Hour)
	rel := at.Add(-time.Second)
	if w.oldRelease {
		rel = at.Add(-time.Minute)
	}
	s := &Snapshot{
		FIB: FIB{Gated: map[netip.Prefix][]GatedRoute{}, Installed: map[netip.Prefix][]InstalledRoute{}},
		BGP: BGP{At: at, Out: map[netip.Prefix][]netip.Addr{}, RIB: map[netip.Prefix][]Path{},
			Holds: func(netip.Prefix) bool { return w.held }, InScope: func(netip.Prefix) bool { return w.inScope }},
	}
	if w.state != 0 {
		s.Gate = []gate.Brief{{Table: 254, Prefix: tran, State: w.state, AdvertisedAt: rel}}
	}
	if w.hasRoute {
		s.FIB.Gated[tran] = []GatedRoute{{Table: 254, Verdict: w.verdict, Origin: w.origin, FailOpen: w.failOpen, KeepOnFailure: w.keep}}
	}
	if w.installer {
		s.FIB.Installer = inst
		if rs := installs[w.installed].routes; rs != nil {
			s.FIB.Installed[tran] = rs
		}
	}
	if w.out {
		s.BGP.Out[tran] = []netip.Addr{spine}
	}
	if ps := ribs[w.rib].paths; ps != nil {
		s.BGP.RIB[tran] = ps
	}
	return s
}
