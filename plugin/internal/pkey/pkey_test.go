package pkey

import (
	"net/netip"
	"testing"
	"unsafe"
)

func TestKeyRoundTripsAndSeparatesFamilies(t *testing.T) {
	for _, s := range []string{"0.0.0.0/0", "10.0.0.0/8", "198.51.100.7/32", "::/0", "::/96", "::ffff:10.0.0.0/104", "2001:db8::/32", "2001:db8::1/128"} {
		p := netip.MustParsePrefix(s)
		if got := Of(p).Prefix(); got != p {
			t.Errorf("Of(%v).Prefix() = %v", p, got)
		}
	}
	// 10.0.0.0/8 and ::ffff:10.0.0.0/8 share address bytes and length.
	if Of(netip.MustParsePrefix("10.0.0.0/8")) == Of(netip.PrefixFrom(netip.MustParseAddr("::ffff:10.0.0.0"), 8)) {
		t.Error("an IPv4 prefix and its mapped IPv6 form have one key")
	}
	if n := unsafe.Sizeof(Key{}); n != 18 {
		t.Errorf("Key is %d bytes, want 18", n)
	}
}
