package gobgp

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/fibgate/fibgate/plugin/internal/pkey"
)

// TestComplementFormJudgesOutPrefixesLikeTheMemberForm is the property the
// complement form rests on (ntform.go): with GoBGP's longest-match
// semantics, for every out prefix, the set in complement form (the scope
// with the out prefixes lacking the AS carved out, and stale carve-outs of
// prefixes no longer out) matches exactly when the member form does, and
// so does a set holding both forms, as during a switch.
func TestComplementFormJudgesOutPrefixesLikeTheMemberForm(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for iter := range 500 {
		rs := randScope(r)
		s := newScope(32, rs)
		out, member := make(map[netip.Prefix]bool), make(map[netip.Prefix]bool)
		for range r.IntN(16) {
			if p := randPrefix(r); s.contains(p) {
				out[p], member[p] = true, r.IntN(2) == 0
			}
		}
		carved := make(map[pkey.Key]struct{})
		for p := range out {
			if !member[p] {
				carved[pkey.Of(p)] = struct{}{}
			}
		}
		for range r.IntN(4) {
			if p := randPrefix(r); !out[p] {
				carved[pkey.Of(p)] = struct{}{} // stale: taken back, carve-out left
			}
		}
		comp, mem := make(map[netip.Prefix]lengths), map[netip.Prefix]lengths{nullPrefix(32): {{32, 32}}}
		for _, e := range complementEntries(s, carved, true) {
			comp[e.prefix] = append(comp[e.prefix], e.iv)
		}
		for p, m := range member {
			if m {
				mem[p] = append(mem[p], exactEntry(p).iv)
			}
		}
		both := clone(mem)
		for p, l := range comp {
			both[p] = append(append(lengths(nil), both[p]...), l...)
		}
		for p := range out {
			for name, set := range map[string]map[netip.Prefix]lengths{"member": mem, "complement": comp, "both": both} {
				if got := gobgpMatch(set, p); got != member[p] {
					t.Fatalf("iteration %d: scope %v, out %v, members %v: %s form matches %v: %v, want %v (stored %v)",
						iter, rs, out, member, name, p, got, member[p], set)
				}
			}
		}
	}
}
