package fib

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// checkShared holds the model's shared values to their counts: every id a
// stored route names is held and counted once per route naming it, the
// pool holds nothing else, and the routes behind the first are in lists
// that no two prefixes share. A count too low frees a list a route still
// names (its next hops would read as another's); too high leaks it.
func checkShared(t *testing.T, f *FIB, step string) {
	t.Helper()
	nhs, srcs, more := map[uint32]int32{}, map[uint32]int32{}, map[uint32]bool{}
	for _, tb := range f.tables {
		for p, r := range tb.All() {
			if r.more != 0 {
				if more[r.more] {
					t.Fatalf("%s: %v shares its list of routes %d", step, p, r.more)
				}
				more[r.more] = true
			}
			for i := range f.count(&r) {
				s := f.at(&r, i)
				if s.nhs != 0 {
					nhs[s.nhs]++
				}
				if s.src != 0 {
					srcs[s.src]++
				}
			}
		}
	}
	if got := f.nhs.held(); got != len(nhs) {
		t.Fatalf("%s: pool holds %d next-hop lists, routes name %d", step, got, len(nhs))
	}
	for id, n := range nhs {
		if v := f.nhs.vals[id]; !v.live || v.refs != n {
			t.Fatalf("%s: next-hop list %d named %d times, live %v count %d", step, id, n, v.live, v.refs)
		}
	}
	if got := f.srcs.held(); got != len(srcs) {
		t.Fatalf("%s: %d preferred sources held, routes name %d", step, got, len(srcs))
	}
	for id, n := range srcs {
		if v := f.srcs.vals[id]; !v.live || v.refs != n {
			t.Fatalf("%s: source %d named %d times, live %v count %d", step, id, n, v.live, v.refs)
		}
	}
	if used := len(f.more.lists) - 1 - len(f.more.free); len(f.more.lists) > 0 && used != len(more) {
		t.Fatalf("%s: %d lists of routes in use, prefixes name %d", step, used, len(more))
	}
}

// Random kernel operations over a few prefixes, next hops and sources, in
// both families: after each one the counts are exact, and every route reads
// back with the next hops and source it was stored with (a reused id would
// show another route's).
func TestSharedValuesAreCountedExactly(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	pfx := []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/25"), netip.MustParsePrefix("2001:db8:1::/48"),
		netip.MustParsePrefix("2001:db8:2::/64"),
	}
	gws := func(p netip.Prefix, n int) []Nexthop {
		var out []Nexthop
		for i := range n {
			var gw netip.Addr
			if p.Addr().Is4() {
				gw = netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + rng.IntN(4) + 4*i)})
			} else {
				gw = netip.AddrFrom16([16]byte{0xfe, 0x80, 15: byte(1 + rng.IntN(4) + 4*i)})
			}
			out = append(out, Nexthop{Gateway: gw, LinkIndex: 2})
		}
		return out
	}
	srcOf := func(p netip.Prefix) netip.Addr {
		if rng.IntN(2) == 0 {
			return netip.Addr{}
		}
		if p.Addr().Is4() {
			return netip.AddrFrom4([4]byte{192, 0, 2, byte(250 + rng.IntN(3))})
		}
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(250 + rng.IntN(3))})
	}
	f := New(WithNotifyMode(IPv4, NotifyAll), WithNotifyMode(IPv6, NotifyAll))
	reqs := []NLFlags{NLMCreate | NLMExcl, NLMCreate | NLMAppend, NLMCreate | NLMReplace, NLMCreate}
	for step := range 4000 {
		p := pfx[rng.IntN(len(pfx))]
		r := Route{Table: TableMain, Prefix: p, Type: TypeUnicast, Protocol: ProtoBGP,
			Priority: uint32(rng.IntN(3)), Nexthops: gws(p, 1+rng.IntN(2)), PrefSrc: srcOf(p)}
		switch op := rng.IntN(10); {
		case op < 4:
			_, _ = f.Add(r, reqs[rng.IntN(len(reqs))])
		case op < 6:
			_, _ = f.Delete(Route{Table: TableMain, Prefix: p, Priority: r.Priority})
		case op < 8:
			if cur, ok := f.First(TableMain, p); ok {
				f.SetFlags(&cur, []HWFlags{0, Offload, Trap, OffloadFailed}[rng.IntN(4)])
			}
		default:
			if cur, ok := f.First(TableMain, p); ok && len(cur.Nexthops) > 1 {
				f.SetNexthopFlags(&cur, rng.IntN(len(cur.Nexthops)), Offload)
			}
		}
		checkShared(t, f, fmt.Sprintf("step %d", step))
		for q := range f.All() {
			got, ok := f.Find(q)
			if !ok || got.PrefSrc != q.PrefSrc || len(got.Nexthops) != len(q.Nexthops) {
				t.Fatalf("step %d: %v reads back as %v", step, q, got)
			}
			for i := range q.Nexthops {
				if q.Nexthops[i].Gateway.Is4() != q.Prefix.Addr().Is4() {
					t.Fatalf("step %d: %v has another family's next hop: a list id was reused under it", step, q)
				}
			}
		}
	}
	for _, p := range pfx {
		for {
			if _, err := f.Delete(Route{Table: TableMain, Prefix: p}); err != nil {
				break
			}
		}
	}
	checkShared(t, f, "emptied")
	if f.nhs.held() != 0 || f.srcs.held() != 0 || f.Len() != 0 {
		t.Errorf("emptied model holds %d lists, %d sources, %d routes", f.nhs.held(), f.srcs.held(), f.Len())
	}
}
