package trie

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// TestTheRealInternetTableRoundTrips loads the real table (when present),
// checks the walk order, Len, Get and Lookup against the model on a sample,
// then withdraws everything and checks the table is empty again.
func TestTheRealInternetTableRoundTrips(t *testing.T) {
	t.Parallel()
	ds, err := loadDataset()
	if err != nil {
		t.Skipf("test data unavailable: %v", err)
	}
	pfxs := append(slices.Clip(ds.v4), ds.v6...)
	switch {
	case testing.Short():
		pfxs = shuffled(pfxs, 7)[:len(pfxs)/20]
	case raceEnabled:
		pfxs = shuffled(pfxs, 7)[:len(pfxs)/4]
	}
	tb, r := new(Table[int]), newRef()
	for i, p := range pfxs {
		tb.Insert(p, i)
		r.m[p] = i
	}
	want := slices.SortedFunc(slices.Values(pfxs), comparePrefix)
	i := 0
	for p, v := range tb.All() {
		if p != want[i] || v != r.m[p] {
			t.Fatalf("All()[%d] = %v,%v want %v,%v", i, p, v, want[i], r.m[want[i]])
		}
		i++
	}
	if i != len(want) || tb.Len() != len(want) {
		t.Fatalf("All() yielded %d, Len %d, want %d", i, tb.Len(), len(want))
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, a := range routedAddrs(pfxs, 20000, 9) {
		gp, gv, gok := tb.Lookup(a)
		wp, wv, wok := r.lookup(a)
		if gp != wp || gv != wv || gok != wok {
			t.Fatalf("Lookup(%v) = %v,%v,%v want %v,%v,%v", a, gp, gv, gok, wp, wv, wok)
		}
		q := netip.PrefixFrom(a, rng.IntN(a.BitLen()+1)).Masked()
		gp, gv, gok = tb.LookupPrefix(q)
		wp, wv, wok = r.lookupPrefix(q)
		if gp != wp || gv != wv || gok != wok {
			t.Fatalf("LookupPrefix(%v) = %v,%v,%v want %v,%v,%v", q, gp, gv, gok, wp, wv, wok)
		}
	}
	for _, p := range shuffled(pfxs, 8) {
		if v, ok := tb.Delete(p); !ok || v != r.m[p] {
			t.Fatalf("Delete(%v) = %v,%v want %v", p, v, ok, r.m[p])
		}
	}
	if tb.Len() != 0 || tb.root4.memory() != 0 || tb.root6.memory() != 0 {
		t.Fatalf("after withdrawing everything: Len %d, %d+%d bytes left", tb.Len(), tb.root4.memory(), tb.root6.memory())
	}
}
