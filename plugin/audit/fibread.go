package audit

import (
	"net/netip"
	"slices"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
)

var roots = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// ReadFIB takes the FIB part of a snapshot from the gate's model of the
// kernel FIB (the listener's, with the hardware backend's flags): the
// forwarding route of every prefix a scope of pol covers, judged as the
// gate judges it and classified by classify (nil: nothing is released),
// and the routes of the installer's protocol in its table (in: nil when
// nothing is installed). It only reads f; call it inside
// kernel.Listener.View.
func ReadFIB(f *fib.FIB, pol gate.Policy, classify gate.Classifier, in *Installer) FIB {
	out := FIB{At: time.Now(), Gated: map[netip.Prefix][]GatedRoute{}, Installer: in, Installed: map[netip.Prefix][]InstalledRoute{}}
	tables := pol.Tables()
	if in != nil && !slices.Contains(tables, in.Table) {
		tables = append(tables, in.Table)
	}
	for _, table := range tables {
		for _, root := range roots {
			var last netip.Prefix
			for r := range f.Subtree(table, root) {
				first := r.Prefix != last
				last = r.Prefix
				if in != nil && table == in.Table && r.Protocol == in.Protocol {
					ir := InstalledRoute{Metric: r.Priority, Version: f.Version(table, r.Prefix)}
					for _, nh := range r.Nexthops {
						if nh.Gateway.IsValid() {
							ir.Nexthops = append(ir.Nexthops, nh.Gateway)
						}
					}
					slices.SortFunc(ir.Nexthops, netip.Addr.Compare)
					out.Installed[r.Prefix] = append(out.Installed[r.Prefix], ir)
				}
				if !first {
					continue
				}
				sc, ok := pol.Match(table, r.Prefix)
				if !ok {
					continue
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
				out.Gated[r.Prefix] = append(out.Gated[r.Prefix], g)
			}
		}
	}
	return out
}
