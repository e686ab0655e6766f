package gate

import (
	"net/netip"
	"testing"
	"testing/synctest"

	"github.com/fibgate/fibgate/plugin/fib"
)

func TestFindLooksInEveryTable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		s := DefaultScope()
		s.Tables = []uint32{100, fib.TableMain}
		tr := startTracker(t, src, Policy{Scopes: []Scope{s}})
		vrf := route("192.0.2.0/24")
		vrf.Table = 100
		src.add(t, route("192.0.2.0/24"))
		src.add(t, vrf)
		src.add(t, route("198.51.100.0/24"))
		synctest.Wait()

		got := tr.Find(netip.MustParsePrefix("192.0.2.0/24"))
		if len(got) != 2 || got[0].Table != 100 || got[1].Table != fib.TableMain {
			t.Errorf("Find(192.0.2.0/24) = %v, want table 100 then main", got)
		}
		if got := tr.Find(netip.MustParsePrefix("198.51.100.0/24")); len(got) != 1 || got[0].Table != fib.TableMain {
			t.Errorf("Find(198.51.100.0/24) = %v, want main alone", got)
		}
		if got := tr.Find(netip.MustParsePrefix("203.0.113.0/24")); len(got) != 0 {
			t.Errorf("Find of a prefix nowhere = %v", got)
		}
	})
}
