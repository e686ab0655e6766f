package trie

import (
	"net/netip"
	"slices"
	"testing"
)

// FuzzTable interprets the input as a program of table operations and runs
// it against the reference model. Each operation takes 6 bytes:
//
//	op     low 3 bits: insert, delete, update-keep, update-delete, get,
//	       lookup, lookupPrefix, subtree; bit 3: IPv6; bits 4-7: a value
//	length prefix length (mod 33 or 129)
//	a..d   address bytes; IPv6 addresses are 2001:db8: followed by a..d
//	       repeated, so operations collide and share long paths
//
// After the program, the full contents, order, counters and shape are
// compared.
func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 24, 10, 1, 2, 0, 0, 25, 10, 1, 2, 128, 5, 32, 10, 1, 2, 200})
	f.Add([]byte{8, 48, 1, 2, 3, 4, 8, 64, 1, 2, 3, 4, 1, 48, 1, 2, 3, 4, 13, 128, 1, 2, 3, 4})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 2, 8, 10, 0, 0, 0, 3, 8, 10, 0, 0, 0, 6, 7, 10, 0, 0, 0, 7, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, prog []byte) {
		tb, r := new(Table[int]), newRef()
		for ; len(prog) >= 6; prog = prog[6:] {
			op, v := prog[0]&7, int(prog[0]>>4)
			var p netip.Prefix
			if prog[0]&8 == 0 {
				p = netip.PrefixFrom(netip.AddrFrom4([4]byte(prog[2:6])), int(prog[1])%33)
			} else {
				b := [16]byte{0x20, 0x01, 0x0d, 0xb8}
				for i := 4; i < 16; i++ {
					b[i] = prog[2+i%4]
				}
				p = netip.PrefixFrom(netip.AddrFrom16(b), int(prog[1])%129)
			}
			m := p.Masked()
			switch op {
			case 0:
				tb.Insert(p, v)
				r.m[m] = v
			case 1:
				got, ok := tb.Delete(p)
				want, wantOK := r.m[m]
				if got != want || ok != wantOK {
					t.Fatalf("Delete(%v) = %v,%v want %v,%v", p, got, ok, want, wantOK)
				}
				delete(r.m, m)
			case 2, 3:
				want, wantOK := r.m[m]
				tb.Update(p, func(old int, ok bool) (int, bool) {
					if old != want || ok != wantOK {
						t.Fatalf("Update(%v) saw %v,%v want %v,%v", p, old, ok, want, wantOK)
					}
					return old + v, op == 2
				})
				if op == 2 {
					r.m[m] = want + v
				} else {
					delete(r.m, m)
				}
			case 4:
				got, ok := tb.Get(p)
				want, wantOK := r.m[m]
				if got != want || ok != wantOK {
					t.Fatalf("Get(%v) = %v,%v want %v,%v", p, got, ok, want, wantOK)
				}
			case 5:
				gp, gv, gok := tb.Lookup(p.Addr())
				wp, wv, wok := r.lookup(p.Addr())
				if gp != wp || gv != wv || gok != wok {
					t.Fatalf("Lookup(%v) = %v,%v,%v want %v,%v,%v", p.Addr(), gp, gv, gok, wp, wv, wok)
				}
			case 6:
				gp, gv, gok := tb.LookupPrefix(p)
				wp, wv, wok := r.lookupPrefix(m)
				if gp != wp || gv != wv || gok != wok {
					t.Fatalf("LookupPrefix(%v) = %v,%v,%v want %v,%v,%v", p, gp, gv, gok, wp, wv, wok)
				}
			case 7:
				if got, want := collect(tb.Subtree(p)), r.subtree(m); !slices.Equal(got, want) {
					t.Fatalf("Subtree(%v) = %v want %v", p, head(got), head(want))
				}
			}
		}
		checkSame(t, tb, r)
	})
}
