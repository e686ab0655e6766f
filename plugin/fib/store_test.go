package fib

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"unsafe"

	"github.com/fibgate/fibgate/plugin/internal/flat"
)

// TestStoredRoutesKeepEveryField: what the model packs (store.go) comes
// back whole, for the first route of a prefix and the ones behind it, with
// and without a preferred source, in both families, after edits that grow
// and shrink the routes behind the first.
func TestStoredRoutesKeepEveryField(t *testing.T) {
	mk := func(p string, prio uint32, src string) Route {
		pfx := netip.MustParsePrefix(p)
		gw := netip.MustParseAddr("10.0.0.1")
		if pfx.Addr().Is6() {
			gw = netip.MustParseAddr("2001:db8::1")
		}
		r := Route{Table: TableMain, Prefix: pfx, Type: TypeUnicast, Protocol: ProtoBGP, Priority: prio, TOS: 0,
			Scope: 0, NHID: 0, Nexthops: []Nexthop{{Gateway: gw, LinkIndex: 2, Weight: 1}}}
		if src != "" {
			r.PrefSrc = netip.MustParseAddr(src)
		}
		return r
	}
	want := []Route{
		mk("198.51.100.0/24", 20, "192.0.2.1"),
		mk("198.51.100.0/24", 30, ""),
		mk("198.51.100.0/24", 40, "192.0.2.2"),
		mk("203.0.113.0/24", 20, ""),
		mk("2001:db8:1::/48", 1024, "2001:db8::ff"),
		mk("2001:db8:1::/48", 2048, ""),
	}
	f := New()
	for _, r := range want {
		if err := f.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string, want []Route) {
		t.Helper()
		var got []Route
		for r := range f.All() {
			c := *r
			c.Nexthops = slices.Clone(r.Nexthops)
			got = append(got, c)
		}
		sortRoutes := func(rs []Route) {
			slices.SortFunc(rs, func(a, b Route) int {
				if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
					return c
				}
				return int(a.Priority) - int(b.Priority)
			})
		}
		sortRoutes(got)
		w := slices.Clone(want)
		sortRoutes(w)
		if len(got) != len(w) {
			t.Fatalf("%s: %d routes, want %d", step, len(got), len(w))
		}
		for i := range w {
			g := got[i]
			g.Flags = w[i].Flags
			if !reflect.DeepEqual(g, w[i]) {
				t.Errorf("%s: stored %+v, want %+v", step, got[i], w[i])
			}
			if found, ok := f.Find(&w[i]); !ok || found.PrefSrc != w[i].PrefSrc || found.Priority != w[i].Priority {
				t.Errorf("%s: Find(%v prio %d) = %+v %v", step, w[i].Prefix, w[i].Priority, found, ok)
			}
		}
	}
	check("appended", want)
	// The routes behind the first shrink to none and grow again.
	for _, r := range []Route{want[1], want[2]} {
		if _, err := f.Delete(r); err != nil {
			t.Fatal(err)
		}
	}
	check("two deleted", []Route{want[0], want[3], want[4], want[5]})
	if err := f.Append(want[2]); err != nil {
		t.Fatal(err)
	}
	check("one back", []Route{want[0], want[2], want[3], want[4], want[5]})
	if n := f.more.lists; len(n) < 2 {
		t.Errorf("routes behind the first not kept apart: %d lists", len(n))
	}
}

// A stored record is small and holds no pointer: the trie's arrays of
// them are then not scanned by the collector, which a full table's million
// records made the model's largest cost to every collection (issue 10).
func TestRecordIsSmallAndFlat(t *testing.T) {
	if n := unsafe.Sizeof(rec{}); n > 40 {
		t.Errorf("a record is %d bytes, want at most 40", n)
	}
	if flat.HasPointers(reflect.TypeFor[rec]()) {
		t.Error("a record holds a pointer")
	}
}
