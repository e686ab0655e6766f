package gate

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"

	"github.com/fibgate/fibgate/plugin/fib"
)

// pageRoute is a route of a page test: an IPv4 /24 or an IPv6 /64 from i
// (up to 2^24).
func pageRoute(i int) fib.Route {
	if i%3 == 0 {
		return route(fmt.Sprintf("2001:db8:%x:%x::/64", i>>16, i&0xffff))
	}
	return route(fmt.Sprintf("%d.%d.%d.0/24", 10+i>>16, (i>>8)&0xff, i&0xff))
}

// TestPageIsListFilteredAndCut: paging through the tracker with Page,
// from any cursor and with any page size and filter, gives exactly what
// filtering List gives, in List's order, and says whether more follow.
func TestPageIsListFilteredAndCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		rng := rand.New(rand.NewPCG(7, 7))
		for i := range 600 {
			r := pageRoute(i)
			src.add(t, r)
			if rng.IntN(2) == 0 {
				src.flags(r, fib.Offload)
			}
		}
		tr := startTracker(t, src, DefaultPolicy())
		synctest.Wait()
		all := tr.List()
		if len(all) != 600 {
			t.Fatalf("%d states, want 600", len(all))
		}
		filters := map[string]func(Brief) bool{
			"none":      nil,
			"confirmed": func(b Brief) bool { return b.State == Confirmed },
			"ipv6":      func(b Brief) bool { return b.Prefix.Addr().Is6() },
			"in 10.1/16": func(b Brief) bool {
				return b.Prefix.Addr().Is4() && netip.MustParsePrefix("10.1.0.0/16").Contains(b.Prefix.Addr())
			},
			"nothing": func(Brief) bool { return false },
		}
		for name, match := range filters {
			var want []netip.Prefix
			for _, s := range all {
				if match == nil || match(Brief{Table: s.Table, State: s.State, Prefix: s.Prefix}) {
					want = append(want, s.Prefix)
				}
			}
			for _, n := range []int{1, 7, 100, 1000} {
				var got []netip.Prefix
				var after netip.Prefix
				for pages := 0; ; pages++ {
					if pages > len(want)+1 {
						t.Fatalf("%s, pages of %d: no end", name, n)
					}
					page, more := tr.Page(fib.TableMain, after, n, match)
					if len(page) > n || (more && len(page) != n) {
						t.Fatalf("%s, pages of %d: a page of %d, more %v", name, n, len(page), more)
					}
					for _, s := range page {
						got = append(got, s.Prefix)
					}
					if !more {
						break
					}
					after = page[len(page)-1].Prefix
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s, pages of %d: %d prefixes %v...; want %d %v...", name, n, len(got), got[:min(3, len(got))], len(want), want[:min(3, len(want))])
				}
			}
		}
		// States are whole: the same as Get's.
		page, _ := tr.Page(0, netip.Prefix{}, 3, nil)
		for _, s := range page {
			if g, _ := tr.Get(s.Table, s.Prefix); g.State != s.State || g.Scope != s.Scope || !g.SeenAt.Equal(s.SeenAt) {
				t.Errorf("page state %+v, Get %+v", s, g)
			}
		}
	})
}

// BenchmarkPage is a page of 1,000 of 200,000 tracked prefixes through
// Page and through List (what the API did before Page).
func BenchmarkPage(b *testing.B) {
	src := newModelSource()
	for i := range 200_000 {
		src.add(b, pageRoute(i))
	}
	tr := startTracker(b, src, DefaultPolicy())
	after := netip.MustParsePrefix("11.0.0.0/24")
	b.Run("page", func(b *testing.B) {
		for b.Loop() {
			if page, _ := tr.Page(fib.TableMain, after, 1000, nil); len(page) != 1000 {
				b.Fatal(len(page))
			}
		}
	})
	b.Run("list", func(b *testing.B) {
		for b.Loop() {
			if list := tr.List(); len(list) != 200_000 {
				b.Fatal(len(list))
			}
		}
	})
}
