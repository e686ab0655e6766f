package gobgp

import (
	"net/netip"
	"testing"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// TestNLRIBytesMatchGoBGP: the hand-made NLRI encoding is GoBGP's own.
func TestNLRIBytesMatchGoBGP(t *testing.T) {
	for _, s := range []string{"0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/23", "10.1.2.3/32", "2001:db8::/32", "2001:db8:1:2::/64", "::/0", "2001:db8::1/128"} {
		p := netip.MustParsePrefix(s)
		var n bgp.AddrPrefixInterface = bgp.NewIPAddrPrefix(uint8(p.Bits()), p.Addr().String())
		if p.Addr().Is6() {
			n = bgp.NewIPv6AddrPrefix(uint8(p.Bits()), p.Addr().String())
		}
		want, err := n.Serialize()
		if err != nil {
			t.Fatal(err)
		}
		if got := nlriBytes(p); string(got) != string(want) {
			t.Errorf("%v: %x, GoBGP %x", p, got, want)
		}
	}
}
