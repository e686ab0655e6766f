package audit

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fibgate/fibgate/plugin/gate"
)

// feed serves snapshots to an Auditor: whatever the test set last, with
// the adj-out of only the prefixes the Auditor asks about, like
// plugin/gobgp's AuditBGP.
type feed struct {
	mu  sync.Mutex
	s   *Snapshot
	err error
	// reads counts BGP reads; adjOut lists the prefixes whose adj-out
	// they read, in order; whole says, per read, whether it read the
	// whole RIB (Ask.Known nil).
	reads  int
	adjOut []netip.Prefix
	whole  []bool
	// known lists each read's Ask.Known, and carried whether it came
	// with the Carry of the read before it.
	known   [][]netip.Prefix
	carried []bool
	// large says, per read, whether it came with Ask.Large.
	large []bool
	// swept counts whole reads that left out what the parts read.
	swept int
}

func (f *feed) set(s *Snapshot, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.s, f.err = s, err
}

func (f *feed) sources() Sources {
	get := func() *Snapshot { f.mu.Lock(); defer f.mu.Unlock(); return f.s }
	return Sources{
		Gate: func() []gate.Brief { return get().Gate },
		FIB:  func(pt Part) FIB { return fibIn(get().FIB, pt) },
		BGP: func(_ context.Context, ask Ask) (*BGP, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.reads++
			if f.err != nil {
				return nil, f.err
			}
			// What AuditBGP does: the RIB (of the Known prefixes, if
			// named), let out by the RIB and held sets, then adj-out for
			// the ones Confirm names.
			b := f.s.BGP
			f.whole = append(f.whole, ask.Known == nil)
			f.large = append(f.large, ask.Large)
			f.known = append(f.known, slices.Clone(ask.Known))
			f.carried = append(f.carried, ask.Carry == "sets")
			b.Carry = "sets"
			if ask.Known != nil {
				b.RIB = map[netip.Prefix][]Path{}
				for _, p := range ask.Known {
					if paths, ok := f.s.BGP.RIB[p]; ok {
						b.RIB[p] = paths
					}
				}
			} else if ask.Except != nil {
				f.swept++
				b.RIB = map[netip.Prefix][]Path{}
				for p, paths := range f.s.BGP.RIB {
					if !ask.Except(p) {
						b.RIB[p] = paths
					}
				}
			}
			b.Out, b.LetOut = map[netip.Prefix][]netip.Addr{}, map[netip.Prefix]bool{}
			for p, paths := range b.RIB {
				if len(paths) == 0 || paths[0].Hold || !b.InScope(p) || b.Holds != nil && b.Holds(p) || !ask.Unconfirmed(p) {
					continue
				}
				read := ask.Confirm == nil || ask.Confirm(p)
				b.LetOut[p] = read
				if read {
					b.Checked++
					f.adjOut = append(f.adjOut, p)
					if nbs, ok := f.s.BGP.Out[p]; ok {
						b.Out[p] = nbs
					}
				}
			}
			return &b, nil
		},
	}
}

// fibIn is what the FIB source reads of f in part pt.
func fibIn(f FIB, pt Part) FIB {
	out := f
	out.Gated, out.Installed = map[netip.Prefix][]GatedRoute{}, map[netip.Prefix][]InstalledRoute{}
	for p, rs := range f.Gated {
		if pt.Has(p) {
			out.Gated[p] = rs
		}
	}
	for p, rs := range f.Installed {
		if pt.Has(p) {
			out.Installed[p] = rs
		}
	}
	return out
}

// logBuf collects log lines for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) lines(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), sub)
}

// stray is the healthy world plus a route of the installer's protocol that
// GoBGP knows nothing of, at FIB version ver.
func stray(ver uint64) *Snapshot {
	s := healthy()
	s.FIB.Installed[other] = []InstalledRoute{{Metric: 0, Nexthops: []netip.Addr{nhB}, Version: ver}}
	return s
}

// TestAuditorReportsWhatTwoPassesInARowFind runs the periodic audit on a
// fake clock: a mismatch is reported (and logged once) only from the
// second pass that sees it on the same route, a change of route or a
// failed pass starts over, and its end is logged.
func TestAuditorReportsWhatTwoPassesInARowFind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var f feed
		var logs logBuf
		f.set(stray(1), nil)
		a, err := New(f.sources(), WithInterval(time.Minute), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- a.Run(ctx) }()
		pass := func() { time.Sleep(time.Minute); synctest.Wait() }
		reported := func() []Mismatch { return a.Last().Mismatches }

		pass()
		if got := reported(); len(got) != 0 || a.Last().At.IsZero() || a.Last().Counts.InstalledRoutes != 2 {
			t.Fatalf("after one pass: %v at %v, counts %+v; want nothing reported yet, 2 installed routes compared", got, a.Last().At, a.Last().Counts)
		}
		firstSeen := time.Now()
		pass()
		got := reported()
		if len(got) != 1 || got[0].Kind != RouteWithoutBest || got[0].Prefix != other || !got[0].FirstSeen.Equal(firstSeen) {
			t.Fatalf("after two passes: %+v, want %s on %v first seen %v", got, RouteWithoutBest, other, firstSeen)
		}
		if st := a.Stats(); st.Mismatches[RouteWithoutBest] != 1 || st.Mismatches[HoldLeft] != 0 || len(st.Mismatches) != len(Kinds()) || st.Passes != 2 {
			t.Errorf("stats %+v", st)
		}
		pass()
		if n := logs.lines(`msg="audit: mismatch"`); n != 1 {
			t.Errorf("logged the mismatch %d times over 3 passes, want once", n)
		}

		// The route changed (a new version): it has to be seen twice again.
		f.set(stray(2), nil)
		pass()
		if got := reported(); len(got) != 0 {
			t.Errorf("a changed route reported at once: %+v", got)
		}
		if n := logs.lines("audit: mismatches resolved"); n != 1 {
			t.Errorf("resolution logged %d times, want once", n)
		}
		// A failed pass breaks the chain.
		f.set(stray(2), errors.New("gobgpd unreachable"))
		pass()
		f.set(stray(2), nil)
		pass()
		if got := reported(); len(got) != 0 {
			t.Errorf("reported across a failed pass: %+v", got)
		}
		if st := a.Stats(); st.Failures != 1 || logs.lines("audit pass failed") != 1 || logs.lines("audit pass succeeded again") != 1 {
			t.Errorf("failures %d; log:\n%s", st.Failures, logs.b.String())
		}
		pass()
		if got := reported(); len(got) != 1 {
			t.Errorf("after two good passes: %+v", got)
		}
		// A transient mismatch, in one pass only, is never reported.
		s := healthy()
		s.FIB.Gated[tran][0].Verdict = gate.VerdictPending
		f.set(s, nil)
		pass()
		f.set(healthy(), nil)
		pass()
		if got := reported(); len(got) != 0 || logs.lines("advertised_unconfirmed") != 0 {
			t.Errorf("a transient mismatch was reported: %+v", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestAdjOutIsReadOnlyForWhatThePassBeforeLetOut: GoBGP computes adj-out
// over the whole table in its main loop, so a pass reads it only for the
// prefixes GoBGP's gate let out unconfirmed in the pass before too. A
// prefix let out for one pass (a fence on its way) costs no adj-out read;
// one that stays is confirmed by adj-out in the second pass and reported
// there, no later than before; one the user's policy keeps from every
// neighbour is not reported.
func TestAdjOutIsReadOnlyForWhatThePassBeforeLetOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		leak := func(out bool) *Snapshot {
			s := healthy()
			s.FIB.Gated[tran][0].Verdict, s.FIB.Gated[tran][0].Reason = gate.VerdictPending, "waiting for hardware"
			if !out {
				delete(s.BGP.Out, tran)
			}
			return s
		}
		var f feed
		f.set(leak(true), nil)
		a, pass := startAuditor(t, f.sources(), WithInterval(time.Minute))
		adjOut := func() []netip.Prefix {
			f.mu.Lock()
			defer f.mu.Unlock()
			r := f.adjOut
			f.adjOut = nil
			return r
		}

		pass()
		if got := adjOut(); len(got) != 0 || len(a.Last().Mismatches) != 0 {
			t.Fatalf("first pass read adj-out of %v and reported %v; want neither", got, a.Last().Mismatches)
		}
		pass()
		if got := adjOut(); !slices.Equal(got, []netip.Prefix{tran}) {
			t.Errorf("second pass read adj-out of %v, want %v only", got, tran)
		}
		if got := a.Last().Mismatches; len(got) != 1 || got[0].Kind != AdvertisedUnconfirmed || got[0].Prefix != tran || !slices.Equal(got[0].Neighbours, []netip.Addr{spine}) {
			t.Fatalf("after two passes: %+v, want %s on %v to %v", got, AdvertisedUnconfirmed, tran, spine)
		}

		// Fenced: held again. Nothing is let out, nothing read.
		s := leak(false)
		holdAlso(s, tran)
		f.set(s, nil)
		pass()
		if got := adjOut(); len(got) != 0 || len(a.Last().Mismatches) != 0 {
			t.Errorf("held again: read adj-out of %v, reported %v", got, a.Last().Mismatches)
		}
		// Let out again, but the user's export policy sends it nowhere:
		// read in the second pass, and not reported.
		f.set(leak(false), nil)
		pass()
		pass()
		if got := adjOut(); !slices.Equal(got, []netip.Prefix{tran}) || len(a.Last().Mismatches) != 0 {
			t.Errorf("going nowhere: read adj-out of %v, reported %v; want %v read once, nothing reported", got, a.Last().Mismatches, tran)
		}
	})
}

// TestAuditorDampsItsLog: a burst of new mismatches costs a bounded number
// of log lines, not one each.
func TestAuditorDampsItsLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var f feed
		var logs logBuf
		s := healthy()
		for i := range 25 {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 32)
			s.FIB.Installed[p] = []InstalledRoute{{Metric: 0, Nexthops: []netip.Addr{nhB}}}
		}
		f.set(s, nil)
		a, _ := New(f.sources(), WithInterval(time.Second), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go a.Run(ctx)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if n := len(a.Last().Mismatches); n != 25 {
			t.Fatalf("%d reported, want 25", n)
		}
		if n, m := logs.lines(`msg="audit: mismatch"`), logs.lines("audit: more mismatches"); n != logPerPass || m != 1 || logs.lines("count=15") != 1 {
			t.Errorf("%d single lines and %d summaries, want %d and 1 (count=15):\n%s", n, m, logPerPass, logs.b.String())
		}
	})
}

// TestAuditOnDemandKeepsWhatBothPassesFind: Audit's two passes, recheck
// apart, report only what both found, and leave the periodic result alone.
func TestAuditOnDemandKeepsWhatBothPassesFind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var f feed
		f.set(stray(1), nil)
		a, err := New(f.sources(), WithInterval(0))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Run(t.Context()); err != nil {
			t.Fatalf("Run with the periodic audit off: %v", err)
		}
		go func() {
			time.Sleep(time.Second / 2)
			s := stray(1)
			s.FIB.Gated[tran][0].Verdict = gate.VerdictPending // only in the second pass
			f.set(s, nil)
		}()
		res, err := a.Audit(t.Context(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Mismatches) != 1 || res.Mismatches[0].Kind != RouteWithoutBest || res.At.IsZero() || res.Counts.Destinations != 2 {
			t.Errorf("on demand: %+v", res)
		}
		if !a.Last().At.IsZero() {
			t.Errorf("the periodic result changed: %+v", a.Last())
		}
		f.set(stray(1), fmt.Errorf("gobgpd down"))
		if _, err := a.Audit(t.Context(), time.Second); err == nil || !strings.Contains(err.Error(), "read GoBGP: gobgpd down") {
			t.Errorf("a failing source: %v", err)
		}
	})
}

func TestNewRefusesMissingSourcesAndNegativeDurations(t *testing.T) {
	var f feed
	if _, err := New(Sources{}); err == nil {
		t.Error("no sources accepted")
	}
	if _, err := New(f.sources(), WithInterval(-time.Second)); err == nil {
		t.Error("negative interval accepted")
	}
}

// TestSlowPassesSpaceTheNextOnesOut: a pass that takes 20 s of a 1 min
// interval starts the next one 200 s after it began, so the audit keeps
// to a tenth of the time.
func TestSlowPassesSpaceTheNextOnesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var f feed
		f.set(healthy(), nil)
		src := f.sources()
		read := src.BGP
		src.BGP = func(ctx context.Context, ask Ask) (*BGP, error) {
			time.Sleep(20 * time.Second) // GoBGP answering a full table
			return read(ctx, ask)
		}
		_, stats := startTimed(t, src, WithInterval(time.Minute))
		passes := func(at time.Duration) uint64 { return stats(at).Passes }
		for _, c := range []struct {
			at   time.Duration
			want uint64
		}{{79 * time.Second, 0}, {81 * time.Second, 1}, {279 * time.Second, 1}, {281 * time.Second, 2}} {
			if got := passes(c.at); got != c.want {
				t.Errorf("after %v: %d passes, want %d", c.at, got, c.want)
			}
		}
	})
}

// TestMostPassesReadOnlyTheKnownPrefixesOfGoBGP: reading GoBGP's whole RIB
// holds its main loop, so one periodic pass in fullEvery does, and the
// others read only the prefixes the gate and the FIB know. A path in
// GoBGP of a prefix nothing else knows (a HOLD path left on it) is found
// by the next whole read and reported by the pass after it, which reads
// what the pass before found; the on-demand audit reads everything.
func TestMostPassesReadOnlyTheKnownPrefixesOfGoBGP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A HOLD path on a released prefix with no kernel route and no gate
		// state.
		unknown := netip.MustParsePrefix("100.64.9.0/24")
		left := func() *Snapshot {
			s := healthy()
			s.BGP.RIB[unknown] = []Path{{Nexthop: netip.IPv4Unspecified(), Hold: true, Best: true, ID: "h1"}}
			held := s.BGP.Holds
			s.BGP.Holds = func(p netip.Prefix) bool { return p != unknown && held(p) } // released
			return s
		}
		var f feed
		f.set(healthy(), nil)
		a, pass := startAuditor(t, f.sources(), WithInterval(time.Minute))
		reported := func() []Mismatch { return a.Last().Mismatches }

		pass() // 0: whole
		f.set(left(), nil)
		for range fullEvery - 1 { // 1 to 9: the known prefixes only
			pass()
			if got := reported(); len(got) != 0 {
				t.Fatalf("a partial pass reported %+v", got)
			}
		}
		pass() // 10: whole, finds it
		if got := reported(); len(got) != 0 {
			t.Fatalf("reported after one pass: %+v", got)
		}
		pass() // 11: partial, reads what 10 found
		if got := reported(); len(got) != 1 || got[0].Kind != HoldLeft || got[0].Prefix != unknown {
			t.Fatalf("after the whole pass and the next: %+v, want %s on %v", got, HoldLeft, unknown)
		}
		f.mu.Lock()
		whole := slices.Clone(f.whole)
		f.mu.Unlock()
		want := make([]bool, fullEvery+2)
		want[0], want[fullEvery] = true, true
		if !slices.Equal(whole, want) {
			t.Errorf("whole reads by pass %v, want %v", whole, want)
		}

		res, err := a.Audit(t.Context(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		whole = slices.Clone(f.whole[len(want):])
		f.mu.Unlock()
		if !slices.Equal(whole, []bool{true, true}) || len(res.Mismatches) != 1 {
			t.Errorf("on demand: whole reads %v, mismatches %+v; want two whole reads and the HOLD path", whole, res.Mismatches)
		}
	})
}

// TestPeriodicPassesReadNoWholeRIBAboveTheLimit: over more gate states
// than the limit, periodic passes never list GoBGP's whole RIB (it holds
// GoBGP's main loop for seconds at a full table), say so once, and go
// back to it when the table shrinks; on demand the audit still reads it.
func TestPeriodicPassesReadNoWholeRIBAboveTheLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var f feed
		var logs logBuf
		s := healthy()
		f.set(s, nil)
		a, pass := startAuditor(t, f.sources(), WithInterval(time.Minute), WithWholeRIBLimit(len(s.Gate)-1),
			WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		for range fullEvery + 1 { // two would-be whole passes: 0 and 10
			pass()
		}
		f.mu.Lock()
		whole := slices.Clone(f.whole)
		f.mu.Unlock()
		if slices.Contains(whole, true) || len(whole) != fullEvery+1 {
			t.Errorf("whole reads by pass %v over the limit, want none", whole)
		}
		// And every periodic pass over the limit asks to leave adj-out
		// unread where it costs the whole table; on demand, none does.
		f.mu.Lock()
		large := slices.Clone(f.large)
		f.mu.Unlock()
		if slices.Contains(large, false) || len(large) != fullEvery+1 {
			t.Errorf("large by pass %v over the limit, want every one", large)
		}
		if n := logs.lines("periodic passes read only the prefixes"); n != 1 {
			t.Errorf("logged the limit %d times, want once", n)
		}
		if _, err := a.Audit(t.Context(), time.Second); err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		whole = slices.Clone(f.whole[fullEvery+1:])
		f.mu.Unlock()
		if !slices.Equal(whole, []bool{true, true}) {
			t.Errorf("on demand: whole reads %v, want two", whole)
		}
		f.mu.Lock()
		large = slices.Clone(f.large[fullEvery+1:])
		f.mu.Unlock()
		if slices.Contains(large, true) {
			t.Errorf("on demand: large %v, want none", large)
		}

		// Under the limit again: the next whole pass (20) reads it whole.
		small := healthy()
		small.Gate = small.Gate[:len(small.Gate)-1]
		f.set(small, nil)
		for range fullEvery {
			pass()
		}
		f.mu.Lock()
		last := f.whole[len(f.whole)-1]
		f.mu.Unlock()
		if !last {
			t.Error("pass 20, under the limit again, did not read the whole RIB")
		}
		f.mu.Lock()
		large = slices.Clone(f.large[len(f.large)-fullEvery:])
		f.mu.Unlock()
		if slices.Contains(large, true) {
			t.Errorf("under the limit again: large %v, want none", large)
		}
	})
}

// startTimed runs an Auditor of src on the synctest clock until the test
// ends, and returns it with a function that waits until d after the start
// and returns its Stats.
func startTimed(t *testing.T, src Sources, opts ...Option) (*Auditor, func(d time.Duration) Stats) {
	t.Helper()
	a, err := New(src, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	start := time.Now()
	go a.Run(ctx)
	return a, func(d time.Duration) Stats {
		time.Sleep(time.Until(start.Add(d)))
		synctest.Wait()
		return a.Stats()
	}
}

// startAuditor is startTimed whose pass lets one interval go by and waits
// for the pass it starts.
func startAuditor(t *testing.T, src Sources, opts ...Option) (a *Auditor, pass func()) {
	t.Helper()
	a, _ = startTimed(t, src, opts...)
	return a, func() { time.Sleep(a.Interval()); synctest.Wait() }
}

// TestPeriodicPassesWaitForTheGateToConverge: while the gate is busy with
// much of the table (Sources.Converging), a periodic pass waits until it
// settles, and at most deferFactor intervals, so a gate that never settles
// is still audited; the on-demand audit does not wait.
func TestPeriodicPassesWaitForTheGateToConverge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var f feed
		f.set(healthy(), nil)
		src := f.sources()
		var converging atomic.Bool
		converging.Store(true)
		src.Converging = converging.Load
		var log logBuf
		a, at := startTimed(t, src, WithInterval(time.Minute), WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
		if s := at(150 * time.Second); s.Passes != 0 || s.Deferred != 1 {
			t.Errorf("converging since the start, at 2m30s: %d passes, %d deferred; want 0 and 1", s.Passes, s.Deferred)
		}
		if _, err := a.Audit(t.Context(), time.Second); err != nil {
			t.Errorf("on-demand audit while converging: %v", err)
		}
		converging.Store(false)
		if s := at(152 * time.Second); s.Passes != 1 {
			t.Errorf("a second after the gate converged: %d passes, want 1", s.Passes)
		}
		// Converging for good: the next pass is due a minute later and
		// waits deferFactor minutes at most.
		converging.Store(true)
		due := 152*time.Second + time.Minute + deferFactor*time.Minute
		if s := at(due - 2*time.Second); s.Passes != 1 || s.Deferred != 2 {
			t.Errorf("before the wait's limit: %d passes, %d deferred; want 1 and 2", s.Passes, s.Deferred)
		}
		if s := at(due + 2*time.Second); s.Passes != 2 {
			t.Errorf("after the wait's limit: %d passes, want 2", s.Passes)
		}
		if n := log.lines("still converging"); n != 1 {
			t.Errorf("logged %d passes run while converging, want 1", n)
		}
	})
}

// TestLargePartialPassesGoInPartsAndFindTheSame: over more gate states than
// partedAbove, a partial pass reads and compares one Part at a time (its
// snapshot, not the table's, is live), and reports what a pass in one piece
// reports, with the same counts: mismatches of both families, in several
// parts. Each part's read of GoBGP names only that part's prefixes, and
// takes what the part before it read once for the pass (Ask.Carry).
func TestLargePartialPassesGoInPartsAndFindTheSame(t *testing.T) {
	left := netip.MustParsePrefix("10.9.0.0/24")
	early := netip.MustParsePrefix("2001:db8:1::/48")
	world := func() *Snapshot {
		s := stray(1) // a route without a best path in 192.0.0.0/4
		// A HOLD path left on a released prefix in 0.0.0.0/4.
		s.Gate = append(s.Gate, gate.Brief{Table: 254, Prefix: left, State: gate.Advertised, AdvertisedAt: t0})
		s.FIB.Gated[left] = []GatedRoute{{Table: 254, Verdict: gate.VerdictConfirmed, Reason: "confirmed", Origin: gate.Transit, Version: 3}}
		s.BGP.RIB[left] = []Path{hold("h1"), {Nexthop: nhA, Learned: true}}
		// An IPv6 prefix out before its route is confirmed.
		s.Gate = append(s.Gate, gate.Brief{Table: 254, Prefix: early, State: gate.Pending})
		s.FIB.Gated[early] = []GatedRoute{{Table: 254, Verdict: gate.VerdictPending, Reason: "pending", Origin: gate.Transit, Version: 4}}
		s.BGP.RIB[early] = []Path{{Nexthop: netip.MustParseAddr("fd00::2"), Learned: true, Best: true}}
		s.BGP.Out[early] = []netip.Addr{spine}
		held := s.BGP.Holds
		s.BGP.Holds = func(p netip.Prefix) bool { return p != left && p != early && held(p) } // both released
		slices.SortFunc(s.Gate, func(a, b gate.Brief) int {
			return cmp.Or(cmp.Compare(a.Table, b.Table), a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
		})
		return s
	}
	run := func(partedAbove int) (Result, *feed) {
		var f feed
		f.set(world(), nil)
		var res Result
		synctest.Test(t, func(t *testing.T) {
			a, pass := startAuditor(t, f.sources(), WithInterval(time.Minute), WithWholeRIBLimit(0),
				func(a *Auditor) { a.partedAbove = partedAbove })
			pass()
			pass()
			res = a.Last()
		})
		return res, &f
	}
	one, f1 := run(1 << 30)
	parted, fp := run(0)

	kinds := map[Kind]bool{}
	for _, m := range one.Mismatches {
		kinds[m.Kind] = true
	}
	if len(one.Mismatches) < 4 || !kinds[RouteWithoutBest] || !kinds[HoldLeft] || !kinds[AdvertisedUnconfirmed] {
		t.Fatalf("in one piece: %s; want the stray route, the HOLD path and the early IPv6 prefix", dump(one.Mismatches))
	}
	if !reflect.DeepEqual(parted.Mismatches, one.Mismatches) || parted.Counts != one.Counts {
		t.Errorf("in parts: %s\ncounts %+v\nin one piece: %s\ncounts %+v", dump(parted.Mismatches), parted.Counts, dump(one.Mismatches), one.Counts)
	}
	if f1.reads != 2 || slices.Contains(f1.carried, true) {
		t.Errorf("in one piece: %d reads of GoBGP (carried %v), want one a pass", f1.reads, f1.carried)
	}
	n := len(parts())
	if fp.reads != 2*n {
		t.Fatalf("in parts: %d reads of GoBGP over two passes, want %d", fp.reads, 2*n)
	}
	for i, known := range fp.known {
		pt := parts()[i%n]
		for _, p := range known {
			if !pt.Has(p) {
				t.Errorf("read %d (part %v) asked about %v", i, pt, p)
			}
		}
		if want := i%n != 0; fp.carried[i] != want {
			t.Errorf("read %d (part %v): carried %v, want %v", i, pt, fp.carried[i], want)
		}
	}
}

// TestLargeWholePassesGoInPartsAndFindTheSame: a whole pass over more gate
// states than partedAbove reads each part's known prefixes, then sweeps the
// rest of GoBGP's RIB in one listing that leaves out what the parts read.
// It reports what a whole pass in one piece reports, also a HOLD path left
// on a prefix no gate state and no FIB route knows, which only the sweep
// reads.
func TestLargeWholePassesGoInPartsAndFindTheSame(t *testing.T) {
	unknown := netip.MustParsePrefix("100.64.9.0/24")
	unknown6 := netip.MustParsePrefix("2001:db8:9::/48")
	world := func() *Snapshot {
		s := stray(1)
		s.BGP.RIB[unknown] = []Path{{Nexthop: netip.IPv4Unspecified(), Hold: true, Best: true, ID: "h1"}}
		s.BGP.RIB[unknown6] = []Path{{Nexthop: netip.MustParseAddr("fd00::2"), Learned: true, Best: true}}
		held := s.BGP.Holds
		s.BGP.Holds = func(p netip.Prefix) bool { return p != unknown && held(p) } // released
		return s
	}
	run := func(partedAbove int) (whole, res Result, f *feed) {
		f = new(feed)
		f.set(world(), nil)
		synctest.Test(t, func(t *testing.T) {
			a, pass := startAuditor(t, f.sources(), WithInterval(time.Minute),
				func(a *Auditor) { a.partedAbove = partedAbove })
			pass() // 0: whole
			whole = a.Last()
			pass() // 1: partial, reads what 0 found
			res = a.Last()
		})
		return whole, res, f
	}
	wholeOne, one, f1 := run(1 << 30)
	wholeParted, parted, fp := run(0)
	if !wholeOne.Counts.WholeRIB || !wholeParted.Counts.WholeRIB || wholeParted.Counts != wholeOne.Counts {
		t.Errorf("pass 0 (whole): counts %+v in parts, %+v in one piece", wholeParted.Counts, wholeOne.Counts)
	}
	kinds := map[Kind]bool{}
	for _, m := range one.Mismatches {
		kinds[m.Kind] = true
	}
	if !kinds[HoldLeft] || !kinds[RouteWithoutBest] || !kinds[NexthopsDiffer] {
		t.Fatalf("in one piece: %s; want the HOLD path and the learned path no part knows, and the stray route", dump(one.Mismatches))
	}
	if !reflect.DeepEqual(parted.Mismatches, one.Mismatches) || parted.Counts != one.Counts {
		t.Errorf("in parts: %s\ncounts %+v\nin one piece: %s\ncounts %+v", dump(parted.Mismatches), parted.Counts, dump(one.Mismatches), one.Counts)
	}
	if f1.swept != 0 || fp.swept != 1 {
		t.Errorf("sweeps: %d in one piece, %d in parts; want 0 and 1 (pass 0)", f1.swept, fp.swept)
	}
	if n := len(parts()); fp.reads != 2*n+1 {
		t.Errorf("in parts: %d reads of GoBGP over a whole and a partial pass, want %d", fp.reads, 2*n+1)
	}
}
