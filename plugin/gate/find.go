package gate

import (
	"cmp"
	"net/netip"
	"slices"
)

// Find returns the states of prefix p in every table that has it, by
// table id: the answer to a lookup that names no table (the API's table 0,
// "every table"). It reads every state, so a caller that knows the table
// uses Get.
func (t *Tracker) Find(p netip.Prefix) []RouteState {
	p = p.Masked()
	t.mu.RLock()
	var out []RouteState
	for k, e := range t.entries.all() {
		if k.prefix() == p {
			out = append(out, t.public(k, e))
		}
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b RouteState) int { return cmp.Compare(a.Table, b.Table) })
	return out
}
