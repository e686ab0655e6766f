package chunk

import (
	"slices"
	"testing"
)

// Slices from one chunk are neighbours: appending to one must copy it
// out, never write over the next.
func TestSlicesDoNotOverlap(t *testing.T) {
	var a Arena[int]
	x, y := a.Of(1), a.Of(2, 3)
	x = a.Add(x, 9)
	if !slices.Equal(x, []int{1, 9}) || !slices.Equal(y, []int{2, 3}) {
		t.Fatalf("x %v, y %v; want [1 9] and [2 3]", x, y)
	}
	if z := a.Add(nil, 4); !slices.Equal(z, []int{4}) || !slices.Equal(y, []int{2, 3}) {
		t.Fatalf("z %v, y %v; want [4] and [2 3]", z, y)
	}
	big := make([]int, Size)
	if b := a.Of(big...); len(b) != Size {
		t.Fatalf("a slice longer than a chunk's quarter: len %d, want %d", len(b), Size)
	}
}
