package intern

import (
	"net/netip"
	"testing"
	"unsafe"
)

func TestValueRoundTripsAndSharesEqualValues(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	if got := Of(a).Get(); got != a {
		t.Errorf("Of(%v).Get() = %v", a, got)
	}
	if Of(a) != Of(netip.MustParseAddr("192.0.2.1")) {
		t.Error("equal addresses give different values")
	}
	if Of(netip.Addr{}) != (Value[netip.Addr]{}) || (Value[netip.Addr]{}).Get().IsValid() {
		t.Error("the zero address is not the zero Value")
	}
	if Of("") != (Value[string]{}) || Of("reason").Get() != "reason" {
		t.Error("strings do not round-trip")
	}
	if n := unsafe.Sizeof(Value[netip.Addr]{}); n != 8 {
		t.Errorf("Value is %d bytes, want 8", n)
	}
}
