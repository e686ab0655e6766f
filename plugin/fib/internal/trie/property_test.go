package trie

import (
	"net/netip"
	"slices"
	"testing"
)

// TestRandomOperationsMatchTheReferenceModel runs long seeded sequences of
// every operation against the map model, checking each answer, and checks
// the full contents, order, counters and structure at intervals and after
// draining the table again.
func TestRandomOperationsMatchTheReferenceModel(t *testing.T) {
	seeds, steps := 8, 60000
	switch {
	case testing.Short():
		seeds, steps = 3, 8000
	case raceEnabled:
		steps = 25000
	}
	for seed := range seeds {
		t.Run("seed"+string(rune('0'+seed)), func(t *testing.T) {
			t.Parallel()
			runRandomOps(t, uint64(seed), steps)
		})
	}
}

func runRandomOps(t *testing.T, seed uint64, steps int) {
	g := newGen(seed)
	tb := new(Table[int])
	r := newRef()
	for step := range steps {
		switch op := g.rng.IntN(100); {
		case op < 35:
			p, v := g.prefix(), step
			tb.Insert(p, v)
			r.m[p.Masked()] = v
		case op < 55:
			p := g.pick(r)
			got, gotOK := tb.Delete(p)
			want, wantOK := r.m[p.Masked()]
			delete(r.m, p.Masked())
			if got != want || gotOK != wantOK {
				t.Fatalf("step %d: Delete(%v) = %v,%v want %v,%v", step, p, got, gotOK, want, wantOK)
			}
		case op < 65:
			p := g.pick(r)
			mode := g.rng.IntN(3)
			var seenOld int
			var seenOK bool
			tb.Update(p, func(old int, ok bool) (int, bool) {
				seenOld, seenOK = old, ok
				switch mode {
				case 0:
					return old + 1, true // modify or create
				case 1:
					return 0, false // delete
				}
				return old, ok // keep as is
			})
			want, wantOK := r.m[p.Masked()]
			if seenOld != want || seenOK != wantOK {
				t.Fatalf("step %d: Update(%v) saw %v,%v want %v,%v", step, p, seenOld, seenOK, want, wantOK)
			}
			switch {
			case mode == 0:
				r.m[p.Masked()] = want + 1
			case mode == 1:
				delete(r.m, p.Masked())
			}
		case op < 75:
			p := g.pick(r)
			got, gotOK := tb.Get(p)
			want, wantOK := r.m[p.Masked()]
			if got != want || gotOK != wantOK {
				t.Fatalf("step %d: Get(%v) = %v,%v want %v,%v", step, p, got, gotOK, want, wantOK)
			}
		case op < 88:
			a := g.addr()
			gp, gv, gok := tb.Lookup(a)
			wp, wv, wok := r.lookup(a)
			if gp != wp || gv != wv || gok != wok {
				t.Fatalf("step %d: Lookup(%v) = %v,%v,%v want %v,%v,%v", step, a, gp, gv, gok, wp, wv, wok)
			}
		case op < 97:
			p := g.prefix()
			gp, gv, gok := tb.LookupPrefix(p)
			wp, wv, wok := r.lookupPrefix(p.Masked())
			if gp != wp || gv != wv || gok != wok {
				t.Fatalf("step %d: LookupPrefix(%v) = %v,%v,%v want %v,%v,%v", step, p, gp, gv, gok, wp, wv, wok)
			}
		default:
			p := g.pick(r)
			if got, want := collect(tb.Subtree(p)), r.subtree(p.Masked()); !slices.Equal(got, want) {
				t.Fatalf("step %d: Subtree(%v):\n got %v\nwant %v", step, p, head(got), head(want))
			}
		}
		if step%2000 == 0 {
			checkSame(t, tb, r)
		}
	}
	checkSame(t, tb, r)

	// drain in random order; the trie must shrink back to empty roots
	keys := make([]netip.Prefix, 0, len(r.m))
	for p := range r.m {
		keys = append(keys, p)
	}
	g.rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	for i, p := range keys {
		if _, ok := tb.Delete(p); !ok {
			t.Fatalf("drain: Delete(%v) found nothing", p)
		}
		delete(r.m, p)
		if i%500 == 0 {
			checkSame(t, tb, r)
		}
	}
	checkSame(t, tb, r)
	if tb.root4.memory() != 0 || tb.root6.memory() != 0 {
		t.Fatalf("empty table still holds %d+%d bytes below its roots", tb.root4.memory(), tb.root6.memory())
	}
}
