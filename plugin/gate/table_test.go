package gate

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// TestTableSweepsWhatNoEntryNames: values keep their ids while named, the
// ones a sweep does not see named are freed and their ids given to new
// values, and the zero value is id 0 without being stored.
func TestTableSweepsWhatNoEntryNames(t *testing.T) {
	var tb table[string]
	if tb.of("") != 0 || tb.get(0) != "" {
		t.Fatal("the zero value is not id 0")
	}
	ids := make([]text, 10)
	for i := range ids {
		ids[i] = tb.of(fmt.Sprint("reason ", i))
		if again := tb.of(fmt.Sprint("reason ", i)); again != ids[i] {
			t.Fatalf("value %d: ids %d and %d", i, ids[i], again)
		}
	}
	keep := []text{ids[2], ids[7], 0}
	tb.sweep(slices.Values(keep))
	for i, x := range ids {
		want := ""
		if x == ids[2] || x == ids[7] {
			want = fmt.Sprint("reason ", i)
		}
		if got := tb.get(x); got != want {
			t.Errorf("after the sweep, id %d (value %d) = %q, want %q", x, i, got, want)
		}
	}
	if tb.live != 2 || len(tb.ids) != 2 {
		t.Errorf("live %d, ids %d after the sweep: want 2", tb.live, len(tb.ids))
	}
	n := len(tb.vals)
	for i := range 8 {
		tb.of(fmt.Sprint("new ", i))
	}
	if len(tb.vals) != n {
		t.Errorf("8 new values after 8 were freed grew the table from %d to %d slots", n, len(tb.vals))
	}
	if tb.get(ids[2]) != "reason 2" || tb.of("reason 7") != ids[7] {
		t.Error("a value named through the sweep lost its id")
	}
	if tb.due(0) {
		t.Error("due with 10 values after a sweep that left 2")
	}
	for i := range 300 {
		tb.of(fmt.Sprint("more ", i))
	}
	if !tb.due(0) || tb.due(100_000) {
		t.Errorf("due: %v with 310 values and no entries, %v with 100k entries; want true, false", tb.due(0), tb.due(100_000))
	}
}

// TestEntryTableKeepsEntriesInPlace: entries stay where they are across
// adds (pointers to them stay good through new pages), a dropped entry's
// slot is reused, zeroed, by a later add, and all yields the live ones.
func TestEntryTableKeepsEntriesInPlace(t *testing.T) {
	var et entryTable
	key := func(i int) prefixKey {
		return keyFor(254, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32))
	}
	const n = 3*entryPage + 5
	ptrs := make([]*entry, n)
	for i := range n {
		e := et.add(key(i))
		e.ver = uint64(i)
		ptrs[i] = e
	}
	for i := range n {
		if e := et.get(key(i)); e != ptrs[i] || e.ver != uint64(i) {
			t.Fatalf("entry %d moved or changed: %p ver %d, want %p ver %d", i, e, e.ver, ptrs[i], i)
		}
	}
	et.drop(key(7))
	if et.get(key(7)) != nil || et.len() != n-1 {
		t.Fatalf("dropped entry still there (len %d)", et.len())
	}
	if ptrs[7].ver != 7 {
		t.Error("a dropped entry was cleared before its slot was reused")
	}
	e := et.add(key(n))
	if e != ptrs[7] || e.ver != 0 {
		t.Errorf("the new entry is not the dropped one's slot, zeroed: %p ver %d", e, e.ver)
	}
	seen := 0
	for k, e := range et.all() {
		if et.get(k) != e {
			t.Fatalf("all yields %v with an entry that is not its own", k)
		}
		seen++
	}
	if seen != n {
		t.Errorf("all yielded %d entries, want %d", seen, n)
	}
}

// TestFlapsDoNotGrowTheTexts: every hold-down has a reason of its own (it
// names its end), so a flapping prefix makes a new text a flap. The
// tracker sweeps the ones no state names any more, and the states read
// back right through the sweeps.
func TestFlapsDoNotGrowTheTexts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		r := route("10.0.0.0/24")
		src.add(t, r)
		src.flags(r, fib.Offload)
		tr := startTracker(t, src, DefaultPolicy())
		const flaps = 1000
		for i := 1; i <= flaps; i++ {
			src.flags(r, 0)
			synctest.Wait()
			src.flags(r, fib.Offload)
			st := stateOf(t, tr, "10.0.0.0/24")
			if st.State != HeldDown || !strings.HasPrefix(st.Reason, fmt.Sprintf("flapped %d times: held down for ", i)) && i > 1 || st.Scope != DefaultScope().Name {
				t.Fatalf("flap %d: %v %q in scope %q", i, st.State, st.Reason, st.Scope)
			}
			time.Sleep(time.Until(st.HoldUntil) + time.Millisecond)
			if st := stateOf(t, tr, "10.0.0.0/24"); st.State != Confirmed || st.Reason != "" {
				t.Fatalf("after the hold-down of flap %d: %v %q", i, st.State, st.Reason)
			}
		}
		tr.mu.RLock()
		n := len(tr.texts.ids)
		tr.mu.RUnlock()
		if n > 300 {
			t.Errorf("%d texts after %d flaps of one prefix", n, flaps)
		}
	})
}
