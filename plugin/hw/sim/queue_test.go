package sim

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
	"unsafe"
)

// TestFifoMatchesASlice checks the chunked fifo against a plain slice
// across many chunk boundaries, including random access by logical index.
func TestFifoMatchesASlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var f fifo[int]
	var ref []int
	idx := map[int]int{} // value -> logical index
	next, popped := 0, 0
	for range 20 * chunkLen {
		if rng.IntN(3) > 0 || len(ref) == 0 {
			i := f.push(next)
			if i != popped+len(ref) {
				t.Fatalf("push returned index %d, want %d", i, popped+len(ref))
			}
			idx[next] = i
			ref = append(ref, next)
			next++
		} else {
			v, ok := f.pop()
			if !ok || v != ref[0] {
				t.Fatalf("pop = %d %v, want %d", v, ok, ref[0])
			}
			ref = ref[1:]
			popped++
		}
		if f.len() != len(ref) {
			t.Fatalf("len %d, want %d", f.len(), len(ref))
		}
		if len(ref) > 0 {
			v := ref[rng.IntN(len(ref))]
			if got := *f.at(idx[v]); got != v {
				t.Fatalf("at(%d) = %d, want %d", idx[v], got, v)
			}
		}
	}
	n := 0
	f.each(func(v *int) bool {
		if *v != ref[n] {
			t.Fatalf("each: element %d is %d, want %d", n, *v, ref[n])
		}
		n++
		return true
	})
	if n != len(ref) {
		t.Errorf("each visited %d of %d", n, len(ref))
	}
}

// TestFifoReusesItsChunks: a queue that fills and drains in bursts (a
// table's driver events) reuses the chunk it emptied instead of growing a
// new one from four elements each time.
func TestFifoReusesItsChunks(t *testing.T) {
	var f fifo[op]
	burst := func() {
		for i := range chunkLen + chunkLen/2 {
			f.push(op{due: time.Duration(i)})
		}
		for f.len() > 0 {
			f.pop()
		}
	}
	burst()
	const n = 20
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		burst()
	}
	runtime.ReadMemStats(&after)
	// The spare takes the first chunkLen; the other half is a new chunk
	// grown by append (about one chunk's bytes) and the list of chunks.
	chunk := float64(chunkLen) * float64(unsafe.Sizeof(op{}))
	if got := float64(after.TotalAlloc-before.TotalAlloc) / n; got > 1.25*chunk {
		t.Errorf("a burst of 1.5 chunks allocates %.0f bytes, want at most %.0f (the spare reused)", got, 1.25*chunk)
	}
}
