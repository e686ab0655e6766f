package fib

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// randomRoute draws routes from a small space so that operations collide
// often: few prefixes, tables, tos values, metrics and gateways.
func randomRoute(rng *rand.Rand, v6 bool) Route {
	r := Route{Table: TableMain, Type: TypeUnicast, Protocol: ProtoStatic}
	if rng.IntN(4) == 0 {
		r.Table = 100
	}
	if v6 {
		r.Prefix = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(rng.IntN(3))}), 48)
		r.Priority = uint32(1024 + rng.IntN(2))
	} else {
		r.Prefix = netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, byte(rng.IntN(3)), 0}), 24)
		r.TOS = []uint8{0, 0, 4, 8}[rng.IntN(4)]
		r.Priority = uint32(rng.IntN(2))
	}
	n := 1 + rng.IntN(2)
	if rng.IntN(3) == 0 {
		r.Nexthops = []Nexthop{{LinkIndex: 2 + rng.IntN(2)}} // device route: no ECMP in IPv6
		return r
	}
	for range n {
		var gw netip.Addr
		if v6 {
			gw = netip.AddrFrom16([16]byte{0xfe, 0x80, 15: byte(1 + rng.IntN(4))})
		} else {
			gw = netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + rng.IntN(4))})
		}
		if r.Nexthops == nil || r.Nexthops[0].Gateway != gw {
			r.Nexthops = append(r.Nexthops, Nexthop{Gateway: gw, LinkIndex: 2})
		}
	}
	return r
}

// TestMirrorFollowsTheKernel drives a kernel-like model with random adds,
// appends, prepends, replaces, deletes and flag changes, feeds every message
// it emits to a mirror through Apply, and checks after each step that the
// mirror equals the kernel exactly (order and hardware state included).
func TestMirrorFollowsTheKernel(t *testing.T) {
	steps := 20000
	if testing.Short() || raceEnabled {
		steps = 3000
	}
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			k := New(WithNotifyMode(IPv4, NotifyAll), WithNotifyMode(IPv6, NotifyAll))
			m := New()
			var log []string
			for i := range steps {
				r := randomRoute(rng, rng.IntN(2) == 0)
				var msgs []Message
				var err error
				op := rng.IntN(10)
				switch op {
				case 0, 1:
					msgs, err = k.Add(r, reqAdd)
				case 2:
					msgs, err = k.Add(r, reqAppend)
				case 3:
					msgs, err = k.Add(r, reqPrepend)
				case 4:
					msgs, err = k.Add(r, reqReplace)
				case 5, 6:
					if rng.IntN(2) == 0 {
						r.Nexthops = r.Nexthops[:1]
					}
					msgs, err = k.Delete(r)
				default:
					// A driver reports state for some stored route.
					var all []*Route
					for x := range k.All() {
						all = append(all, x)
					}
					if len(all) == 0 {
						continue
					}
					s := all[rng.IntN(len(all))].Clone()
					fl := []HWFlags{0, Trap, Offload, OffloadFailed}[rng.IntN(4)]
					if s.Family() == IPv6 && len(s.Nexthops) > 1 && rng.IntN(2) == 0 {
						msgs = k.SetNexthopFlags(&s, rng.IntN(len(s.Nexthops)), fl)
					} else {
						msgs = k.SetFlags(&s, fl)
					}
				}
				if err != nil && !errors.Is(err, ErrExists) && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrNoCreate) {
					t.Fatalf("step %d op %d: %v", i, op, err)
				}
				for _, msg := range msgs {
					log = append(log, msg.String())
					if _, err := m.Apply(msg); err != nil {
						t.Fatalf("step %d: apply: %v\nrecent: %v", i, err, tail(log, 8))
					}
				}
				if !Equal(k, m) {
					t.Fatalf("step %d (op %d): mirror differs\nkernel:\n%s\nmirror:\n%s\nrecent: %v", i, op, dump(k), dump(m), tail(log, 8))
				}
			}
			if k.Len() == 0 {
				t.Fatalf("test exercised nothing: empty kernel model")
			}
		})
	}
}

func tail(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func dump(f *FIB) string {
	s := ""
	for r := range f.All() {
		s += "  " + r.String() + "\n"
	}
	return s
}

func TestDiffReportsExactlyTheDifferences(t *testing.T) {
	a, b := New(), New()
	keep, gone, added := gwRoute("192.0.2.0/24", "10.0.0.1"), gwRoute("198.51.100.0/24", "10.0.0.1"), gwRoute("2001:db8::/64", "fe80::1")
	flagged := gwRoute("203.0.113.0/24", "10.0.0.1")
	for _, r := range []Route{keep, gone, flagged} {
		if err := a.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []Route{keep, added, flagged} {
		if err := b.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	b.SetFlags(&flagged, Trap)
	ch := Diff(a, b)
	var got []string
	for _, c := range ch {
		kind := "change"
		if c.Old == nil {
			kind = "add"
		} else if c.New == nil {
			kind = "delete"
		}
		got = append(got, kind+" "+c.Route().Prefix.String())
	}
	want := []string{"change 203.0.113.0/24", "add 2001:db8::/64", "delete 198.51.100.0/24"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Diff = %v, want %v", got, want)
	}
	if len(Diff(b, b)) != 0 {
		t.Errorf("Diff of a model with itself is not empty")
	}
}
