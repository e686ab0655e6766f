package flat

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestHasPointers(t *testing.T) {
	type flat struct {
		A [16]byte
		B uint64
		C bool
	}
	type withString struct {
		N int
		S string
	}
	for _, c := range []struct {
		typ  reflect.Type
		want bool
	}{
		{reflect.TypeFor[flat](), false},
		{reflect.TypeFor[[4]flat](), false},
		{reflect.TypeFor[[0]*int](), false},
		{reflect.TypeFor[withString](), true},
		{reflect.TypeFor[netip.Prefix](), true}, // the address's zone handle
		{reflect.TypeFor[[2]map[int]int](), true},
		{reflect.TypeFor[[]byte](), true},
	} {
		if got := HasPointers(c.typ); got != c.want {
			t.Errorf("HasPointers(%v) = %v, want %v", c.typ, got, c.want)
		}
	}
}
