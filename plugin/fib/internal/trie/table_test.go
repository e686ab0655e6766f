package trie

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

var (
	mp = netip.MustParsePrefix
	ma = netip.MustParseAddr
)

// build returns a table holding pfxs, each with its index as value, and the
// matching reference model.
func build(t *testing.T, pfxs ...string) (*Table[int], *ref) {
	t.Helper()
	tb, r := new(Table[int]), newRef()
	for i, s := range pfxs {
		p := mp(s)
		if !tb.Insert(p, i) {
			t.Fatalf("Insert(%v) rejected", p)
		}
		r.m[p.Masked()] = i
	}
	checkSame(t, tb, r)
	return tb, r
}

func TestLookupFindsTheLongestMatch(t *testing.T) {
	tests := []struct {
		name   string
		stored []string
		addr   string
		want   string // "" means no match
	}{
		{"an empty table matches nothing", nil, "10.0.0.1", ""},
		{"the IPv4 default route matches any IPv4 address", []string{"0.0.0.0/0"}, "203.0.113.9", "0.0.0.0/0"},
		{"the IPv4 default route does not match IPv6", []string{"0.0.0.0/0"}, "2001:db8::1", ""},
		{"the IPv6 default route matches any IPv6 address", []string{"::/0"}, "2001:db8::1", "::/0"},
		{"a /32 host route matches only its address", []string{"10.0.0.0/8", "10.1.2.3/32"}, "10.1.2.3", "10.1.2.3/32"},
		{"a /32 host route does not match its neighbour", []string{"10.0.0.0/8", "10.1.2.3/32"}, "10.1.2.4", "10.0.0.0/8"},
		{"a /128 host route matches only its address", []string{"::/0", "2001:db8::1/128"}, "2001:db8::1", "2001:db8::1/128"},
		{"a /128 host route does not match its neighbour", []string{"::/0", "2001:db8::1/128"}, "2001:db8::2", "::/0"},
		{"a /7 just below the first stride boundary", []string{"10.0.0.0/7", "0.0.0.0/0"}, "11.255.0.1", "10.0.0.0/7"},
		{"a /8 on the first stride boundary", []string{"10.0.0.0/7", "10.0.0.0/8"}, "10.9.9.9", "10.0.0.0/8"},
		{"a /9 just past the first stride boundary", []string{"10.0.0.0/8", "10.128.0.0/9"}, "10.200.0.1", "10.128.0.0/9"},
		{"a /15 below the second boundary", []string{"10.0.0.0/8", "10.2.0.0/15"}, "10.3.0.1", "10.2.0.0/15"},
		{"a /16 on the second boundary", []string{"10.2.0.0/15", "10.3.0.0/16"}, "10.3.7.7", "10.3.0.0/16"},
		{"a /17 past the second boundary", []string{"10.3.0.0/16", "10.3.128.0/17"}, "10.3.200.1", "10.3.128.0/17"},
		{"a /24 on the third boundary", []string{"10.3.0.0/16", "10.3.4.0/24"}, "10.3.4.200", "10.3.4.0/24"},
		{"a /25 past the third boundary", []string{"10.3.4.0/24", "10.3.4.128/25"}, "10.3.4.200", "10.3.4.128/25"},
		{"a /25 does not match the other half", []string{"10.3.4.0/24", "10.3.4.128/25"}, "10.3.4.1", "10.3.4.0/24"},
		{"a /31 next to a /32", []string{"10.3.4.2/31", "10.3.4.3/32"}, "10.3.4.2", "10.3.4.2/31"},
		{"a lone deep prefix is found through path compression", []string{"192.0.2.128/25"}, "192.0.2.129", "192.0.2.128/25"},
		{"a lone deep prefix that does not cover falls back", []string{"0.0.0.0/0", "192.0.2.128/25"}, "192.0.2.1", "0.0.0.0/0"},
		{"a shorter prefix deeper in the path is still found", []string{"10.0.0.0/8", "10.1.0.0/16", "10.1.1.0/24"}, "10.1.2.3", "10.1.0.0/16"},
		{"an IPv6 /48 below a /32", []string{"2001:db8::/32", "2001:db8:1::/48"}, "2001:db8:1::5", "2001:db8:1::/48"},
		{"an IPv6 /64 on a boundary deep in the trie", []string{"2001:db8::/32", "2001:db8:1:2::/64", "2001:db8:1:3::/64"}, "2001:db8:1:2::9", "2001:db8:1:2::/64"},
		{"a 4in6 address is IPv6 and ignores IPv4 routes", []string{"10.0.0.0/8"}, "::ffff:10.1.2.3", ""},
		{"a 4in6 address matches a 4in6 prefix", []string{"10.0.0.0/8", "::ffff:10.0.0.0/104"}, "::ffff:10.1.2.3", "::ffff:10.0.0.0/104"},
		{"an IPv4 address ignores 4in6 prefixes", []string{"::ffff:10.0.0.0/104"}, "10.1.2.3", ""},
		{"a zoned IPv6 address is looked up without its zone", []string{"fe80::/10"}, "fe80::1%eth0", "fe80::/10"},
		{"the invalid address matches nothing", []string{"0.0.0.0/0", "::/0"}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, r := build(t, tt.stored...)
			var a netip.Addr
			if tt.addr != "" {
				a = ma(tt.addr)
			}
			p, v, ok := tb.Lookup(a)
			if tt.want == "" {
				if ok {
					t.Fatalf("Lookup(%v) = %v, want no match", a, p)
				}
				return
			}
			if !ok || p != mp(tt.want) || v != r.m[p] {
				t.Fatalf("Lookup(%v) = %v,%v,%v want %v,%v", a, p, v, ok, tt.want, r.m[mp(tt.want)])
			}
		})
	}
}

func TestInsertCanonicalisesAndOverwrites(t *testing.T) {
	tests := []struct {
		name   string
		insert []string
		want   []string // All() in order
	}{
		{"a non-canonical prefix is stored masked", []string{"10.1.2.3/8"}, []string{"10.0.0.0/8"}},
		{"masked and unmasked forms are one key", []string{"10.1.2.3/8", "10.0.0.0/8"}, []string{"10.0.0.0/8"}},
		{"a non-canonical IPv6 prefix is stored masked", []string{"2001:db8::1/32"}, []string{"2001:db8::/32"}},
		{"both families are kept apart and IPv4 comes first", []string{"::/0", "0.0.0.0/0"}, []string{"0.0.0.0/0", "::/0"}},
		{"order is by address, then shorter first", []string{"10.0.0.0/16", "10.0.0.0/8", "9.0.0.0/8", "10.0.0.0/24"},
			[]string{"9.0.0.0/8", "10.0.0.0/8", "10.0.0.0/16", "10.0.0.0/24"}},
		{"4in6 prefixes sort with IPv6", []string{"::ffff:10.0.0.0/104", "10.0.0.0/8", "::/0"},
			[]string{"10.0.0.0/8", "::/0", "::ffff:10.0.0.0/104"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, _ := build(t, tt.insert...)
			var got []string
			for p := range tb.All() {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("All() = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("overwriting keeps one entry with the new value", func(t *testing.T) {
		for _, s := range []string{"0.0.0.0/0", "10.0.0.0/8", "10.1.2.0/24", "10.1.2.128/25", "10.1.2.3/32", "2001:db8::/48", "::1/128"} {
			tb := new(Table[int])
			tb.Insert(mp(s), 1)
			tb.Insert(mp(s), 2)
			if v, ok := tb.Get(mp(s)); !ok || v != 2 || tb.Len() != 1 {
				t.Fatalf("%s: Get = %v,%v Len %d, want 2,true,1", s, v, ok, tb.Len())
			}
		}
	})
}

func TestInvalidPrefixesAreRejected(t *testing.T) {
	invalid := []netip.Prefix{
		{},
		netip.PrefixFrom(ma("10.0.0.0"), 33),
		netip.PrefixFrom(ma("2001:db8::"), 129),
		netip.PrefixFrom(ma("10.0.0.0"), -1),
		netip.PrefixFrom(netip.Addr{}, 0),
	}
	tb, r := build(t, "0.0.0.0/0", "::/0")
	for _, p := range invalid {
		if tb.Insert(p, 9) {
			t.Errorf("Insert(%#v) accepted", p)
		}
		if _, ok := tb.Get(p); ok {
			t.Errorf("Get(%#v) found something", p)
		}
		if _, ok := tb.Delete(p); ok {
			t.Errorf("Delete(%#v) removed something", p)
		}
		if _, _, ok := tb.LookupPrefix(p); ok {
			t.Errorf("LookupPrefix(%#v) matched", p)
		}
		called := false
		tb.Update(p, func(int, bool) (int, bool) { called = true; return 1, true })
		if called {
			t.Errorf("Update(%#v) called fn", p)
		}
		for range tb.Subtree(p) {
			t.Errorf("Subtree(%#v) yielded", p)
		}
	}
	checkSame(t, tb, r)
}

func TestDeleteRestoresTheTable(t *testing.T) {
	tests := []struct {
		name   string
		stored []string
		del    string
		found  bool
	}{
		{"deleting from an empty table finds nothing", nil, "10.0.0.0/8", false},
		{"deleting an absent prefix finds nothing", []string{"10.0.0.0/8"}, "10.0.0.0/9", false},
		{"deleting an absent prefix next to a leaf finds nothing", []string{"10.1.2.0/24"}, "10.1.3.0/24", false},
		{"deleting an absent prefix with a different length finds nothing", []string{"10.1.2.0/24"}, "10.1.2.0/25", false},
		{"deleting the default route", []string{"0.0.0.0/0", "10.0.0.0/8"}, "0.0.0.0/0", true},
		{"deleting a non-canonical spelling", []string{"10.0.0.0/8"}, "10.9.9.9/8", true},
		{"deleting a /32 host route", []string{"10.0.0.0/8", "10.1.2.3/32", "10.1.2.4/32"}, "10.1.2.3/32", true},
		{"deleting a /128 host route", []string{"2001:db8::1/128", "2001:db8::2/128"}, "2001:db8::2/128", true},
		{"deleting one of two leaves collapses their node into a leaf", []string{"10.1.2.0/24", "10.1.3.0/24"}, "10.1.3.0/24", true},
		{"deleting a deep sibling collapses a chain of nodes", []string{"2001:db8:1:2:3:4:5:6/128", "2001:db8:1:2:3:4:5:7/128"}, "2001:db8:1:2:3:4:5:7/128", true},
		{"deleting the in-node prefix turns the node into the remaining leaf", []string{"10.1.0.0/16", "10.1.2.3/32"}, "10.1.0.0/16", true},
		{"deleting the leaf turns the node into the remaining fringe", []string{"10.1.0.0/16", "10.1.2.3/32"}, "10.1.2.3/32", true},
		{"deleting keeps nodes that still hold two prefixes", []string{"10.1.0.0/16", "10.1.2.0/24", "10.1.3.0/24"}, "10.1.0.0/16", true},
		{"deleting a 4in6 prefix leaves IPv4 alone", []string{"10.0.0.0/8", "::ffff:10.0.0.0/104"}, "::ffff:10.0.0.0/104", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, r := build(t, tt.stored...)
			p := mp(tt.del)
			v, ok := tb.Delete(p)
			want, wantOK := r.m[p.Masked()]
			if ok != tt.found || ok != wantOK || v != want {
				t.Fatalf("Delete(%v) = %v,%v want %v,%v", p, v, ok, want, tt.found)
			}
			delete(r.m, p.Masked())
			checkSame(t, tb, r) // includes the canonical-shape check
			// the result must be identical to building without the prefix
			fresh, _ := build(t, slices.DeleteFunc(slices.Clone(tt.stored), func(s string) bool { return mp(s).Masked() == p.Masked() })...)
			if got, want := shape(&tb.root4)+shape(&tb.root6), shape(&fresh.root4)+shape(&fresh.root6); got != want {
				t.Fatalf("after Delete the trie is\n%s\na fresh build is\n%s", got, want)
			}
		})
	}
}

// shape renders the node structure (which slots hold nodes, leaves, entries)
// so two tries can be compared independently of slice capacities.
func shape(n *node[int]) string {
	s := fmt.Sprintf("{k%x l%x f%x p%x", n.kidBits, n.leafBits, n.fringeBits, n.pfxBits)
	for _, c := range n.kids {
		s += shape(c)
	}
	return s + "}"
}

func TestUpdateGetsOrSetsInOneCall(t *testing.T) {
	inc := func(old int, ok bool) (int, bool) { return old + 1, true }
	del := func(int, bool) (int, bool) { return 0, false }
	tests := []struct {
		name    string
		stored  []string
		pfx     string
		fn      func(int, bool) (int, bool)
		wantOld int
		wantOK  bool
		after   []string // All() afterwards
	}{
		{"update creates an absent prefix", nil, "10.0.0.0/8", inc, 0, false, []string{"10.0.0.0/8"}},
		{"update modifies a present prefix", []string{"10.0.0.0/8"}, "10.0.0.0/8", inc, 0, true, []string{"10.0.0.0/8"}},
		{"update deleting a present prefix removes it", []string{"10.0.0.0/8", "10.1.0.0/16"}, "10.1.0.0/16", del, 0, true, []string{"10.0.0.0/8"}},
		{"update deleting an absent prefix stores nothing", []string{"10.0.0.0/8"}, "10.2.0.0/16", del, 0, false, []string{"10.0.0.0/8"}},
		{"update deleting collapses path-compressed nodes", []string{"10.1.2.0/24", "10.1.3.0/24"}, "10.1.2.0/24", del, 0, true, []string{"10.1.3.0/24"}},
		{"update creates below an existing leaf by splitting it", []string{"10.1.2.0/24"}, "10.1.2.128/25", inc, 0, false, []string{"10.1.2.0/24", "10.1.2.128/25"}},
		{"update sees the value of a non-canonical spelling", []string{"2001:db8::/32"}, "2001:db8::1/32", inc, 0, true, []string{"2001:db8::/32"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, r := build(t, tt.stored...)
			p := mp(tt.pfx)
			var gotOld int
			var gotOK bool
			tb.Update(p, func(old int, ok bool) (int, bool) {
				gotOld, gotOK = old, ok
				return tt.fn(old, ok)
			})
			if gotOld != r.m[p.Masked()] || gotOK != tt.wantOK {
				t.Fatalf("fn saw %v,%v want %v,%v", gotOld, gotOK, r.m[p.Masked()], tt.wantOK)
			}
			if v, keep := tt.fn(gotOld, gotOK); keep {
				r.m[p.Masked()] = v
			} else {
				delete(r.m, p.Masked())
			}
			checkSame(t, tb, r)
			var got []string
			for q := range tb.All() {
				got = append(got, q.String())
			}
			if !slices.Equal(got, tt.after) {
				t.Fatalf("All() = %v, want %v", got, tt.after)
			}
		})
	}
}

func TestLookupPrefixFindsTheLongestCover(t *testing.T) {
	stored := []string{"0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.128/25", "192.0.2.0/24",
		"::/0", "2001:db8::/32", "2001:db8:0:1::/64"}
	tests := []struct{ name, pfx, want string }{
		{"a stored prefix covers itself", "10.1.0.0/16", "10.1.0.0/16"},
		{"a more specific prefix is covered by the closest stored one", "10.1.3.0/24", "10.1.0.0/16"},
		{"a /32 below a /25", "10.1.2.200/32", "10.1.2.128/25"},
		{"a /25 sibling is covered by the /24, not by the other /25", "10.1.2.0/25", "10.1.2.0/24"},
		{"a shorter prefix than anything stored falls back to the default", "10.0.0.0/7", "0.0.0.0/0"},
		{"a path-compressed leaf covers a longer prefix", "192.0.2.64/26", "192.0.2.0/24"},
		{"a path-compressed leaf does not cover a shorter prefix", "192.0.0.0/16", "0.0.0.0/0"},
		{"the default route covers itself", "0.0.0.0/0", "0.0.0.0/0"},
		{"an IPv6 /56 below a /32", "2001:db8:0:100::/56", "2001:db8::/32"},
		{"an IPv6 /128 below a /64", "2001:db8:0:1::1/128", "2001:db8:0:1::/64"},
		{"a non-canonical query is masked first", "10.1.2.3/16", "10.1.0.0/16"},
	}
	tb, r := build(t, stored...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, v, ok := tb.LookupPrefix(mp(tt.pfx))
			if !ok || p != mp(tt.want) || v != r.m[p] {
				t.Fatalf("LookupPrefix(%v) = %v,%v,%v want %v", tt.pfx, p, v, ok, tt.want)
			}
		})
	}
	t.Run("nothing covers a prefix in an empty family", func(t *testing.T) {
		tb, _ := build(t, "10.0.0.0/8")
		if p, _, ok := tb.LookupPrefix(mp("2001:db8::/32")); ok {
			t.Fatalf("got %v", p)
		}
	})
}

func TestSubtreeWalksCoveredPrefixesInOrder(t *testing.T) {
	stored := []string{"0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.128/25", "10.1.2.3/32", "10.2.0.0/15",
		"11.0.0.0/8", "192.0.2.0/24", "::/0", "2001:db8::/32", "2001:db8:1::/48", "2001:db9::/32"}
	tests := []struct {
		name string
		pfx  string
		want []string
	}{
		{"the IPv4 default route covers all of IPv4 only", "0.0.0.0/0", []string{"0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24",
			"10.1.2.3/32", "10.1.2.128/25", "10.2.0.0/15", "11.0.0.0/8", "192.0.2.0/24"}},
		{"a /8 covers its subtree", "10.0.0.0/8", []string{"10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "10.1.2.128/25", "10.2.0.0/15"}},
		{"an unstored /7 covers two /8s", "10.0.0.0/7", []string{"10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "10.1.2.128/25", "10.2.0.0/15", "11.0.0.0/8"}},
		{"a /24 covers its /25 and /32", "10.1.2.0/24", []string{"10.1.2.0/24", "10.1.2.3/32", "10.1.2.128/25"}},
		{"a /25 covers only its half", "10.1.2.128/25", []string{"10.1.2.128/25"}},
		{"a /32 covers itself", "10.1.2.3/32", []string{"10.1.2.3/32"}},
		{"an unstored /16 inside a /15", "10.3.0.0/16", nil},
		{"a prefix above a path-compressed leaf reaches it", "192.0.0.0/16", []string{"192.0.2.0/24"}},
		{"a prefix below a path-compressed leaf does not", "192.0.2.0/25", nil},
		{"an IPv6 /31 covers two /32s", "2001:db8::/31", []string{"2001:db8::/32", "2001:db8:1::/48", "2001:db9::/32"}},
	}
	tb, _ := build(t, stored...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for p := range tb.Subtree(mp(tt.pfx)) {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Subtree(%v) = %v, want %v", tt.pfx, got, tt.want)
			}
		})
	}
}

func TestIteratorsStopWhenTheLoopBreaks(t *testing.T) {
	var stored []string
	for i := range 40 {
		stored = append(stored, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16+i%9).Masked().String())
	}
	stored = append(stored, "::/0", "2001:db8::/32")
	tb, r := build(t, stored...)
	want := r.all()
	for stop := range len(want) + 1 {
		var got []kv
		for p, v := range tb.All() {
			if len(got) == stop {
				break
			}
			got = append(got, kv{p, v})
		}
		if !slices.Equal(got, want[:stop]) {
			t.Fatalf("All() broken after %d yielded %v", stop, got)
		}
		got = got[:0]
		for p, v := range tb.Subtree(mp("10.0.0.0/8")) {
			if len(got) == stop {
				break
			}
			got = append(got, kv{p, v})
		}
		if w := r.subtree(mp("10.0.0.0/8")); !slices.Equal(got, w[:min(stop, len(w))]) {
			t.Fatalf("Subtree broken after %d yielded %v", stop, got)
		}
	}
}

func TestMemoryEstimateTracksGrowthAndShrink(t *testing.T) {
	tb := new(Table[int])
	empty := tb.MemoryEstimate()
	g := newGen(42)
	var ps []netip.Prefix
	for range 5000 {
		p := g.prefix()
		tb.Insert(p, 1)
		ps = append(ps, p)
	}
	full := tb.MemoryEstimate()
	if full <= empty+8*tb.Len() {
		t.Fatalf("estimate %d for %d prefixes is implausibly small", full, tb.Len())
	}
	for _, p := range ps {
		tb.Delete(p)
	}
	if tb.Len() != 0 || tb.MemoryEstimate() != empty {
		t.Fatalf("after deleting everything: Len %d, estimate %d, want 0, %d", tb.Len(), tb.MemoryEstimate(), empty)
	}
}
