package trie

import "math/bits"

// bitset256 is a fixed 256-bit set, the occupancy map of one 8-bit stride.
// Bit i lives in word i>>6 at position i&63 (least significant bit first), so
// "higher index" means "higher bit", which the ART ancestor search relies on.
type bitset256 [4]uint64

func (b *bitset256) test(i uint8) bool {
	return b[i>>6]&(1<<(i&63)) != 0
}

func (b *bitset256) set(i uint8) {
	b[i>>6] |= 1 << (i & 63)
}

func (b *bitset256) clear(i uint8) {
	b[i>>6] &^= 1 << (i & 63)
}

func (b *bitset256) isEmpty() bool {
	return b[0]|b[1]|b[2]|b[3] == 0
}

// count returns the number of set bits.
func (b *bitset256) count() int {
	return bits.OnesCount64(b[0]) + bits.OnesCount64(b[1]) +
		bits.OnesCount64(b[2]) + bits.OnesCount64(b[3])
}

// first returns the lowest set bit; the set must not be empty.
func (b *bitset256) first() uint8 {
	for w, x := range b {
		if x != 0 {
			return uint8(w<<6 + bits.TrailingZeros64(x))
		}
	}
	panic("trie: first of empty bitset")
}

// below returns the number of set bits strictly below i. It is the position
// of i's item in a popcount-compressed slice, both for an existing item and
// for the insertion point of a new one. Kept small enough to be inlined.
func (b *bitset256) below(i uint8) int {
	m := &belowMask[i]
	return bits.OnesCount64(b[0]&m[0]) + bits.OnesCount64(b[1]&m[1]) +
		bits.OnesCount64(b[2]&m[2]) + bits.OnesCount64(b[3]&m[3])
}

// belowMask[i] has the bits 0..i-1 set. Computed once, read-only after.
var belowMask = func() (t [256]bitset256) {
	for i := range t {
		for j := range i {
			t[i].set(uint8(j))
		}
	}
	return t
}()

// lowMask returns a word with the lowest s bits set, clamping s to [0, 64].
func lowMask(s int) uint64 {
	return uint64(1)<<uint(max(s, 0)) - 1
}

// topAnd returns the highest index set in both b and m.
func (b *bitset256) topAnd(m *bitset256) (uint8, bool) {
	for j := 3; j >= 0; j-- {
		if w := b[j] & m[j]; w != 0 {
			return uint8(j<<6 + 63 - bits.LeadingZeros64(w)), true
		}
	}
	return 0, false
}

// ART indexing of the prefixes inside one stride.
//
// A prefix of in-stride length l (0..7) whose first stride octet is o gets the
// index (1<<l) | o>>(8-l): index 1 is the stride's /0, 2..3 its /1s, ...,
// 128..255 its /7s. The parent of index i is i>>1, so the indices of all
// prefixes covering a given one are found by shifting right. Length 8 (a
// prefix that ends exactly on the stride boundary) is not indexed here; it is
// a "fringe" and kept in its own bitset keyed by the octet.

// artIndex returns the ART index of the in-stride prefix (o, l), l in 0..7.
func artIndex(o uint8, l int) uint8 {
	return uint8(1)<<l | o>>(8-l)
}

// artPrefix is the inverse of artIndex: the first octet and in-stride length.
func artPrefix(idx uint8) (o uint8, l int) {
	l = bits.Len8(idx) - 1
	return (idx - uint8(1)<<l) << (8 - l), l
}

// ancestors[i] holds index i and every index that covers it. Intersecting a
// node's prefix bitset with ancestors[i] and taking the highest bit is the
// longest-prefix match inside one stride. Computed once, read-only after.
var ancestors = func() (t [256]bitset256) {
	for i := 1; i < 256; i++ {
		for j := i; j > 0; j >>= 1 {
			t[i].set(uint8(j))
		}
	}
	return t
}()

// lastLevel returns the index of the /7 that contains octet o; ancestors of
// it are all in-stride prefixes (lengths 0..7) covering o.
func lastLevel(o uint8) uint8 {
	return 128 | o>>1
}
