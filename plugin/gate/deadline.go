package gate

import (
	"container/heap"
)

// numStates sizes arrays indexed by State.
const numStates = int(Refused) + 1

// deadlines is a min-heap of (time, prefix): when the tracker must look at
// a prefix again by itself (a pending timeout, the end of a hold-down, the
// end of a withdrawn prefix's retention). Entries are not removed when a
// deadline moves; the tracker skips those whose time is not the entry's
// current one (entry.heapAt), so a change costs O(log n) and never a scan.
type deadlines struct{ h dlHeap }

type dlItem struct {
	at stamp
	k  prefixKey
}

type dlHeap []dlItem

func (h dlHeap) Len() int           { return len(h) }
func (h dlHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h dlHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dlHeap) Push(x any)        { *h = append(*h, x.(dlItem)) }
func (h *dlHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

func (d *deadlines) push(k prefixKey, at stamp) { heap.Push(&d.h, dlItem{at: at, k: k}) }

func (d *deadlines) peek() (prefixKey, stamp, bool) {
	if len(d.h) == 0 {
		return prefixKey{}, 0, false
	}
	return d.h[0].k, d.h[0].at, true
}

func (d *deadlines) pop() { heap.Pop(&d.h) }
