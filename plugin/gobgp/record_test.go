package gobgp

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestRecordCountsOutPrefixesPerBit: the counts weighForms decides by
// (record.lacking) are what a walk of the record finds, after every one of
// random changes of states (out or not, not-to bits gained and lost,
// states dropped to zero), including changes made while the record is
// walked.
func TestRecordCountsOutPrefixesPerBit(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	rec := newRecord()
	ps := make([]netip.Prefix, 200)
	for i := range ps {
		ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
	}
	randState := func() prefixState {
		var st prefixState
		switch r.IntN(4) {
		case 0: // zero: leaves the record
		case 1:
			st.released, st.transit = true, true
		case 2:
			st.kept = true
		default:
			st.held = true // known, not out
		}
		if !st.zero() {
			st.notTo = r.Uint64() & (1<<3 | 1<<7 | 1<<63)
		}
		return st
	}
	check := func(step int) {
		t.Helper()
		var out int64
		var per [maxNotTo]int64
		for _, st := range rec.all() {
			if !st.out() {
				continue
			}
			out++
			for b := range maxNotTo {
				if st.notTo&(1<<b) != 0 {
					per[b]++
				}
			}
		}
		if rec.out != out || rec.outNotTo != per {
			t.Fatalf("step %d: counted %d out, per bit %v; the walk finds %d, %v", step, rec.out, rec.outNotTo, out, per)
		}
		for _, b := range []int{3, 7, 63} {
			if got, want := rec.lacking(b), out-per[b]; got != want {
				t.Fatalf("step %d: lacking(%d) = %d, want %d", step, b, got, want)
			}
		}
	}
	for step := range 5000 {
		if step%500 == 499 {
			for p := range rec.all() { // set while walked, as Rescope does
				rec.set(p, randState())
			}
		} else {
			rec.set(ps[r.IntN(len(ps))], randState())
		}
		check(step)
	}
	if rec.out == 0 || rec.outNotTo[63] == 0 {
		t.Fatal("the random states never made a prefix out with bit 63: the test checks nothing")
	}
}
