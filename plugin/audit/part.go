package audit

import (
	"net/netip"

	"github.com/fibgate/fibgate/plugin/gate"
)

// Part is a piece of the address space that a pass over a large table
// reads and compares at a time: the prefixes whose address lies in
// it, whatever their length. Every comparison is of one prefix's data from
// each source, so a pass in parts finds what a pass in one piece finds,
// while it holds a part's snapshot at a time instead of the table's: at
// the full Internet table the snapshots of a pass in one piece raised
// gobgpd-ext's peak RSS by 0.7-0.9 GiB (a fifth) after the table was in
// (docs/design-notes.md, "The audit in parts"). The zero Part is the
// whole address space.
type Part struct {
	within netip.Prefix // invalid: everything
}

// Whole is the Part of every prefix: what a pass in one piece reads.
var Whole = Part{}

// Has says whether p is in the part.
func (pt Part) Has(p netip.Prefix) bool {
	return !pt.within.IsValid() || pt.within.Contains(p.Addr())
}

// String names the part in logs.
func (pt Part) String() string {
	if !pt.within.IsValid() {
		return "all"
	}
	return pt.within.String()
}

// partBits is the length of the parts' prefixes: 16 parts of each
// family. In the real Internet table the largest are IPv6's 2000::/4 (15%
// of the table: nearly all of IPv6), then IPv4's 192.0.0.0/4 and
// 176.0.0.0/4 (13% each), so a part's snapshot is at most about a seventh
// of the table's.
const partBits = 4

// partedAbove is the number of gate states above which a pass goes in
// parts: below it a pass's snapshot is small, and one read of each
// source costs GoBGP less than one per part.
const partedAbove = 100_000

// parts lists the parts of the address space, IPv4 then IPv6, in address
// order.
func parts() []Part {
	out := make([]Part, 0, 2<<partBits)
	for _, root := range roots {
		for p := range prefixesOf(root, partBits) {
			out = append(out, Part{within: p})
		}
	}
	return out
}

// gateIn returns the states of sts (sorted by table, then prefix) whose
// prefixes are in pt, in the same order.
func gateIn(sts []gate.Brief, pt Part) []gate.Brief {
	if !pt.within.IsValid() {
		return sts
	}
	var out []gate.Brief
	for i := range sts {
		if pt.Has(sts[i].Prefix) {
			out = append(out, sts[i])
		}
	}
	return out
}
