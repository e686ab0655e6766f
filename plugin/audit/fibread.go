package audit

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/internal/chunk"
)

var roots = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// ReadFIB takes the FIB part of a snapshot from the gate's model of the
// kernel FIB (the listener's, with the hardware backend's flags): the
// forwarding route of every prefix a scope of pol covers, judged as the
// gate judges it and classified by classify (nil: nothing is released),
// and the routes of the installer's protocol in its table (in: nil when
// nothing is installed). It only reads f; call it inside
// kernel.Listener.View, or use ReadFIBIn.
func ReadFIB(f *fib.FIB, pol gate.Policy, classify gate.Classifier, in *Installer) FIB {
	return ReadFIBIn(func(fn func(*fib.FIB)) { fn(f) }, pol, classify, in, Whole)
}

// ReadFIBIn is ReadFIB over a model it may read only inside view
// (kernel.Listener.View), one piece of the address space per call: an
// IPv4 /8 or an IPv6 /12, and the shorter prefixes of a family in one.
// The listener applies the kernel's notifications only between the calls,
// and a reader waiting behind it waits too (a Go RWMutex lets no reader
// in while a writer waits): read in one call, a full table held the whole
// pipeline for a second and more, every audit pass. The pieces are not
// one instant of the FIB; the audit compares sources read at different
// instants anyway, and reports only what two passes agree on. It reads
// only the routes of part (Whole: all).
func ReadFIBIn(view func(func(*fib.FIB)), pol gate.Policy, classify gate.Classifier, in *Installer, part Part) FIB {
	tables := pol.Tables()
	// The maps are made at the size the tables have: grown from empty, a
	// full table's two maps left several times their final size of
	// garbage behind (ReadFIB allocated 642 MB for 1M routes, where the
	// snapshot keeps about 260), and held old and new arrays at once.
	// A part's maps grow from empty: its share of a table is not known
	// without a walk, and a part's growth is a part's worth of garbage.
	var gated, installed int
	if part == Whole {
		view(func(f *fib.FIB) {
			for _, t := range tables {
				gated += f.TableLen(t)
			}
			if in != nil {
				installed = f.TableLen(in.Table)
			}
		})
	}
	rd := fibReader{out: FIB{At: time.Now(), Gated: make(map[netip.Prefix][]GatedRoute, gated), Installer: in,
		Installed: make(map[netip.Prefix][]InstalledRoute, installed)}}
	if in != nil && !slices.Contains(tables, in.Table) {
		tables = append(tables, in.Table)
	}
	for _, table := range tables {
		for _, root := range roots {
			if part != Whole && part.within.Addr().Is4() != root.Addr().Is4() {
				continue
			}
			bits := chunkBits(root)
			// The prefixes shorter than a piece, each looked up.
			view(func(f *fib.FIB) {
				for b := range bits {
					for p := range prefixesOf(root, b) {
						if !part.Has(p) {
							continue
						}
						rs := f.Routes(table, p)
						for i := range rs {
							rd.route(f, table, &rs[i], i == 0, pol, classify, in)
						}
					}
				}
			})
			for piece := range prefixesOf(root, bits) {
				if !part.Has(piece) {
					continue // a piece is no shorter than a part: all of it is in one
				}
				view(func(f *fib.FIB) {
					var last netip.Prefix
					for r := range f.Subtree(table, piece) {
						first := r.Prefix != last
						last = r.Prefix
						rd.route(f, table, r, first, pol, classify, in)
					}
				})
			}
		}
	}
	return rd.out
}

// fibReader is one ReadFIBIn: the snapshot it fills, and the arenas its
// per-prefix slices come from. Nearly every prefix has one gated route,
// one installed route and one next hop: a slice of one, allocated apiece,
// was three allocations a route (a full table's snapshot: 3.2 million
// objects for the collector, for one pass).
type fibReader struct {
	out   FIB
	gated chunk.Arena[GatedRoute]
	inst  chunk.Arena[InstalledRoute]
	addrs chunk.Arena[netip.Addr]
}

// chunkBits is the prefix length of ReadFIBIn's pieces of a family.
func chunkBits(root netip.Prefix) int {
	if root.Addr().Is4() {
		return 8
	}
	return 12
}

// prefixesOf yields the prefixes of length bits within root (of length 0).
func prefixesOf(root netip.Prefix, bits int) func(func(netip.Prefix) bool) {
	return func(yield func(netip.Prefix) bool) {
		for i := range 1 << bits {
			// i's bits, most significant first, from the address's first bit.
			var a [16]byte
			binary.BigEndian.PutUint32(a[:4], uint32(i)<<(32-bits))
			addr := netip.AddrFrom16(a)
			if root.Addr().Is4() {
				addr = netip.AddrFrom4([4]byte(a[:4]))
			}
			if !yield(netip.PrefixFrom(addr, bits)) {
				return
			}
		}
	}
}

// route adds one route of the model to the snapshot; first says it is
// the first (forwarding) route of its prefix.
func (rd *fibReader) route(f *fib.FIB, table uint32, r *fib.Route, first bool, pol gate.Policy, classify gate.Classifier, in *Installer) {
	out := &rd.out
	if in != nil && table == in.Table && r.Protocol == in.Protocol && r.NHID == 0 { // over an object: another daemon's (kernel.Installer.Owns)
		ir := InstalledRoute{Metric: r.Priority, Version: f.Version(table, r.Prefix)}
		var gws [8]netip.Addr
		nhs := gws[:0]
		for _, nh := range r.Nexthops {
			if nh.Gateway.IsValid() {
				nhs = append(nhs, fib.ZonedHop(nh)) // as the installer writes it
			}
		}
		if len(nhs) > 0 {
			slices.SortFunc(nhs, netip.Addr.Compare)
			ir.Nexthops = rd.addrs.Of(nhs...)
		}
		out.Installed[r.Prefix] = rd.inst.Add(out.Installed[r.Prefix], ir)
	}
	if !first {
		return
	}
	sc, ok := pol.Match(table, r.Prefix)
	if !ok {
		return
	}
	g := GatedRoute{Table: table, FailOpen: sc.FailOpen && sc.PendingTimeout > 0,
		KeepOnFailure: sc.OnFailure == gate.FailureKeep, Version: f.Version(table, r.Prefix)}
	g.Verdict, g.Reason = sc.Judge(r)
	if g.Verdict == gate.VerdictConfirmed {
		g.Reason = "confirmed"
	}
	if classify != nil {
		if o, ok := classify(r); ok {
			g.Origin = o
		}
	}
	out.Gated[r.Prefix] = rd.gated.Add(out.Gated[r.Prefix], g)
}
