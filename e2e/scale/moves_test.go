//go:build linux && scale

package scale

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/lab"
)

// A churn that moves best paths (FIBGATE_SCALE_CHURN_MOVES=1): a backup
// source in the primary source's AS (two spines of one AS, as RFC 7938
// builds a fabric) holds the whole table one AS longer,
//
//	source (gobgpd, AS 65010) ──┐
//	                            leaf under test (AS 65001) ── observer (gobgpd, AS 65020)
//	backup (gobgpd, AS 65010) ──┘
//
// and the same plan runs: the primary withdraws a prefix and announces it
// again a second later. The leaf's best path moves to the backup (a
// failover: the previous path is gone) and back (a return: the previous
// path, the backup's, is still there). The prefix never leaves the leaf's
// FIB; its route's next hop changes. A neighbour should see the new path
// only once the new route is in the hardware and, where the gate can keep
// the previous path out meanwhile, never lose the prefix: what
// make-before-break promises (docs/design-notes.md, "Make-before-break").
// The observer tells the paths apart by the AS path's length, at its
// best-path watch and on the wire.

// The AS path lengths the observer holds: the leaf's AS and the source's,
// and one more for the backup's.
var (
	primaryLen = 2
	backupLen  = 2 + len(backup.prepend)
)

// moveResult is a moving churn's figures at one vantage point (the
// observer's daemon, or the wire to it).
type moveResult struct {
	failover, back moveStats
}

// moveStats are the figures of one direction of the moves.
type moveStats struct {
	// moved: from the sending to the new path's arrival for good (its
	// first sighting after the last sighting of anything else).
	moved []time.Duration
	// missing: changes whose window (until the prefix's next change, or
	// the judging) did not end on the new path.
	missing int
	// lost: changes during whose window the prefix was gone, and for how
	// long in all, each.
	lost    int
	lostFor []time.Duration
	// Gated leaves: early counts changes whose new path was seen before
	// the leaf confirmed the new route (unconfirmed: it never did within
	// the window), even if it went again; confirmToSeen runs from that
	// confirmation to the new path's first sighting after it.
	early, unconfirmed int
	confirmToSeen      []time.Duration
}

// observedPaths turns the observer's AS path changes into sightings with
// the path's length.
func observedPaths(as []lab.ASPathSighting) []lab.Sighting {
	out := make([]lab.Sighting, len(as))
	for i, a := range as {
		out[i] = lab.Sighting{P: a.P, Present: a.Len > 0, ASPath: a.Len, At: a.At}
	}
	return out
}

// judgeMoves judges every change of plan (each prefix withdrawn by the
// primary and announced again) from the sightings seen since the churn
// began, each in its window: from its sending to the prefix's next
// change's. gt, the gate's record, is nil for a leaf without a gate and
// while draining.
func judgeMoves(plan []change, sent []time.Time, seen []lab.Sighting, gt map[netip.Prefix]gateTimes) *moveResult {
	by := lab.SightingsByPrefix(seen)
	next := make([]time.Time, len(plan)) // zero: no later change
	last := map[netip.Prefix]int{}
	for i, ch := range plan {
		if j, ok := last[ch.p]; ok {
			next[j] = sent[i]
		}
		last[ch.p] = i
	}
	res := &moveResult{}
	for i, ch := range plan {
		st, want := &res.failover, backupLen
		if ch.announce {
			st, want = &res.back, primaryLen
		}
		end := next[i]
		if end.IsZero() {
			end = time.Now()
		}
		var window []lab.Sighting
		for _, s := range by[ch.p] {
			if !s.At.Before(sent[i]) && s.At.Before(end) {
				window = append(window, s)
			}
		}
		isNew := func(s lab.Sighting) bool { return s.Present && s.ASPath == want }
		// The arrival for good: the first sighting of the new path after
		// the last of anything else.
		arrived := -1
		for k := len(window) - 1; k >= 0 && isNew(window[k]); k-- {
			arrived = k
		}
		if arrived >= 0 {
			st.moved = append(st.moved, window[arrived].At.Sub(sent[i]))
		} else {
			st.missing++
		}
		if gone := absent(by[ch.p], sent[i], end); gone > 0 {
			st.lost++
			st.lostFor = append(st.lostFor, gone)
		}
		g, gated := gt[ch.p]
		if !gated {
			continue
		}
		var conf time.Time
		for _, c := range g.confirms {
			if !c.Before(sent[i]) && c.Before(end) {
				conf = c
				break
			}
		}
		if conf.IsZero() {
			st.unconfirmed++
		}
		for _, s := range window {
			if isNew(s) && (conf.IsZero() || s.At.Before(conf)) {
				st.early++
				break
			}
		}
		if conf.IsZero() {
			continue
		}
		for _, s := range window {
			if isNew(s) && !s.At.Before(conf) {
				st.confirmToSeen = append(st.confirmToSeen, s.At.Sub(conf))
				break
			}
		}
	}
	return res
}

// absent is how long a prefix was gone between from and to, from its
// sightings (it was there before the churn began).
func absent(ss []lab.Sighting, from, to time.Time) time.Duration {
	var d time.Duration
	present, at := true, from
	for _, s := range ss {
		if s.At.Before(from) {
			present = s.Present
			continue
		}
		if !s.At.Before(to) {
			break
		}
		if !present {
			d += s.At.Sub(at)
		}
		present, at = s.Present, s.At
	}
	if !present && to.After(at) {
		d += to.Sub(at)
	}
	return d
}

// line summarises one direction for the log.
func (st moveStats) line() string {
	s := fmt.Sprintf("moved %s, %d not seen, %d lost (gone %s)", summary(st.moved), st.missing, st.lost, summary(st.lostFor))
	if st.early > 0 || len(st.confirmToSeen) > 0 {
		s += fmt.Sprintf(", %d before confirmed (%d never confirmed), confirmed to seen %s", st.early, st.unconfirmed, summary(st.confirmToSeen))
	}
	return s
}

// movesLine is a moving churn's summary for the log.
func (r churnResult) movesLine() string {
	s := fmt.Sprintf("%d changes in %.1f s; at the observer: failover %s; return %s; leaf CPU %.1f s",
		r.sent, r.sendIn.Seconds(), r.moves.failover.line(), r.moves.back.line(), r.cpu.Seconds())
	if w := r.wire; w != nil && w.moves != nil {
		s += fmt.Sprintf("; on the wire: failover %s; return %s", w.moves.failover.line(), w.moves.back.line())
	} else if r.wireErr != "" {
		s += "; wire tap failed: " + r.wireErr
	}
	if r.gated {
		s += fmt.Sprintf("; histogram confirm-to-advertise p50 %s, p99 %s (%d); fences p99 %s (%d); %d audit passes (the last %v)",
			ms(r.histConfirm.quantile(0.5)), ms(r.histConfirm.quantile(0.99)), int(r.histConfirm.count), ms(r.histFence.quantile(0.99)), int(r.histFence.count),
			r.auditPasses, r.auditLast.Round(time.Millisecond))
	}
	if !r.quiet {
		s += " (the leaf was not idle when the churn began)"
	}
	return s
}

// renderMoves writes a moving churn's tables for one size: a row per
// leaf and round, one table per direction.
func renderMoves(b *strings.Builder, rs []churnResult) {
	b.WriteString("Best paths moving: a backup source in the primary's AS holds the table one AS longer; the primary withdraws each prefix and announces it again 1 s later, so the leaf's best path moves to the backup (**failover**: the previous path is gone) and back (**return**: the previous path is still there). Per change, from the source's API to the new path (told by its AS path's length) at the observer and on the wire to it (milliseconds); **gone** counts changes during which the observer lost the prefix, and for how long; **before confirmed** counts new paths shown before the leaf's gate confirmed the new route (for a leaf without a gate, –):\n\n")
	base := func(r churnResult) *churnResult {
		for i := range rs {
			if rs[i].mode.key == "gobgpd" && rs[i].round == r.round && rs[i].failure == "" && rs[i].moves != nil {
				return &rs[i]
			}
		}
		return nil
	}
	for _, dir := range []struct {
		name string
		of   func(*moveResult) moveStats
	}{{"Failover", func(m *moveResult) moveStats { return m.failover }}, {"Return", func(m *moveResult) moveStats { return m.back }}} {
		fmt.Fprintf(b, "**%s.**\n\n", dir.name)
		b.WriteString("| leaf | round | at the observer p50 / p99 / max | × gobgpd p50, p99 | on the wire p50 / p99 / max | gone at the observer: changes, for p50 / p99 / max | gone on the wire: changes, for p99 / max | before confirmed: observer, wire | confirmed → on the wire p50 / p99 / max | not seen | leaf CPU |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range rs {
			if r.failure != "" || r.moves == nil {
				fmt.Fprintf(b, "| %s | %d | failed: %s | | | | | | | | |\n", r.mode.title, r.round, r.failure)
				continue
			}
			st := dir.of(r.moves)
			x := "–"
			if g := base(r); g != nil {
				gs := dir.of(g.moves)
				x = ratio(float64(quantile(st.moved, 0.5)), float64(quantile(gs.moved, 0.5))) + ", " + ratio(float64(quantile(st.moved, 0.99)), float64(quantile(gs.moved, 0.99)))
			}
			wire, wireGone, wireEarly, wireConfirm := "tap failed: "+r.wireErr, "–", "–", "–"
			if r.wire != nil && r.wire.moves != nil {
				ws := dir.of(r.wire.moves)
				wire = triple(ws.moved)
				wireGone = thousands(ws.lost) + ", –"
				if ws.lost > 0 {
					wireGone = fmt.Sprintf("%s, %s / %s", thousands(ws.lost), ms(quantile(ws.lostFor, 0.99)), ms(quantile(ws.lostFor, 1)))
				}
				if r.gated {
					wireEarly, wireConfirm = thousands(ws.early), triple(ws.confirmToSeen)
				}
			}
			early := "–"
			if r.gated {
				early = thousands(st.early)
			}
			fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s, %s | %s | %s, %s | %s | %d | %.1f s |\n",
				r.mode.title, r.round, triple(st.moved), x, wire, thousands(st.lost), triple(st.lostFor), wireGone, early, wireEarly, wireConfirm, st.missing, r.cpu.Seconds())
		}
		b.WriteString("\n")
	}
}

// TestJudgeMoves checks the moves' judgement without a lab, on the
// sequences the wire showed in the first runs: a failover whose new path
// went out before the fence's withdrawal, a return held back by a kept
// copy, and a leaf without a gate.
func TestJudgeMoves(t *testing.T) {
	p, q := netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")
	t0 := time.Now().Add(-time.Minute)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	plan := []change{{p: p}, {p: q}, {p: p, announce: true, at: churnLag}, {p: q, announce: true, at: churnLag}}
	sent := []time.Time{at(0), at(0), at(1000), at(1000)}
	path := func(pr netip.Prefix, ms float64, l int) lab.Sighting {
		return lab.Sighting{P: pr, Present: l > 0, ASPath: l, At: at(ms)}
	}
	seen := []lab.Sighting{
		// p's failover: the backup's path early, the fence's withdrawal,
		// the backup's path once confirmed (at 3 ms).
		path(p, 1, backupLen), path(p, 2, 0), path(p, 3.5, backupLen),
		// q's failover: once confirmed (at 4 ms), nothing before.
		path(q, 5, backupLen),
		// p's return: the primary's path early, the backup's kept copy,
		// the primary's once confirmed (at 1003 ms).
		path(p, 1001, primaryLen), path(p, 1002, backupLen), path(p, 1004, primaryLen),
		// q's return: never confirmed, and the primary's path out.
		path(q, 1001, primaryLen),
	}
	gt := map[netip.Prefix]gateTimes{p: {confirms: []time.Time{at(3), at(1003)}}, q: {confirms: []time.Time{at(4)}}}
	m := judgeMoves(plan, sent, seen, gt)
	ms := func(d ...float64) []time.Duration {
		var out []time.Duration
		for _, x := range d {
			out = append(out, time.Duration(x*float64(time.Millisecond)))
		}
		return out
	}
	check := func(name string, got, want moveStats) {
		t.Helper()
		if !slices.Equal(got.moved, want.moved) || got.missing != want.missing || got.lost != want.lost || !slices.Equal(got.lostFor, want.lostFor) ||
			got.early != want.early || got.unconfirmed != want.unconfirmed || !slices.Equal(got.confirmToSeen, want.confirmToSeen) {
			t.Errorf("%s: got %+v, want %+v", name, got, want)
		}
	}
	check("failover", m.failover, moveStats{moved: ms(3.5, 5), lost: 1, lostFor: ms(1.5), early: 1, confirmToSeen: ms(0.5, 1)})
	check("return", m.back, moveStats{moved: ms(4, 1), early: 2, unconfirmed: 1, confirmToSeen: ms(1)})

	// Without a gate: the same times, nothing judged early.
	m = judgeMoves(plan, sent, seen, nil)
	check("failover without a gate", m.failover, moveStats{moved: ms(3.5, 5), lost: 1, lostFor: ms(1.5)})
	// A change whose window ends on another path is missing.
	m = judgeMoves(plan, sent, seen[:2], nil)
	check("failover withdrawn at the end", m.failover, moveStats{moved: nil, missing: 2, lost: 1, lostFor: ms(998)})
}
