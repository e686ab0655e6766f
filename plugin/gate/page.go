package gate

import (
	"container/heap"
	"net/netip"
	"slices"
)

// Page returns up to n states that match, sorted as List sorts them,
// after the key (table, after), or from the first key when after is not
// valid, and whether more match beyond them. Unlike List it builds only
// the states it returns: a page of a full table costs one pass over the
// entries, not a copy of all of them (List built a million RouteStates,
// about 300 MB, for every page the API served; a listing of a full
// table took longer than a page's deadline). match sees a Brief, which
// costs nothing to make; nil matches everything.
func (t *Tracker) Page(table uint32, after netip.Prefix, n int, match func(Brief) bool) ([]RouteState, bool) {
	if n <= 0 {
		return nil, false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	// The n+1 smallest matching keys after the cursor, largest on top.
	h := make(keyHeap, 0, n+1)
	for k, e := range t.entries.all() {
		p := k.prefix() // once: a key keeps the prefix as bytes
		if after.IsValid() && compareKeys(k.table, p, table, after) <= 0 {
			continue
		}
		if len(h) == n+1 && compareKeys(k.table, p, h[0].table, h[0].prefix()) >= 0 {
			continue
		}
		if match != nil && !match(Brief{Table: k.table, State: e.st.State, Prefix: p, AdvertisedAt: t.ep.time(e.st.AdvertisedAt)}) {
			continue
		}
		if len(h) == n+1 {
			h[0] = k
			heap.Fix(&h, 0)
		} else {
			heap.Push(&h, k)
		}
	}
	more := len(h) > n
	slices.SortFunc(h, prefixKey.compare)
	h = h[:min(len(h), n)]
	out := make([]RouteState, len(h))
	for i, k := range h {
		out[i] = t.public(k, t.entries.get(k))
	}
	return out, more
}

// keyHeap is a max-heap of keys in List's order.
type keyHeap []prefixKey

func (h keyHeap) Len() int           { return len(h) }
func (h keyHeap) Less(i, j int) bool { return h[i].compare(h[j]) > 0 }
func (h keyHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *keyHeap) Push(x any)        { *h = append(*h, x.(prefixKey)) }
func (h *keyHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
