//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/lab"
)

// The safety invariant of TestChaos, judged from two records the test keeps
// outside every daemon, both stamped on the test's clock:
//   - the observer's best paths (lab.BestWatch): when each prefix arrived
//     and left;
//   - the leaf's kernel over netlink (lab.RouteWatch): the main table, where
//     the FIB installer writes the route BGP chose, and the simulated ASIC's
//     mirror table, which holds exactly what the hardware forwards (the sim
//     writes an entry once it has programmed a route, and removes it when
//     programming fails or the route goes).
//
// The hardware holds a prefix's current route while the mirror table has
// an entry for it with the same next hops as the main table's route. An
// arrival at the observer is safe when the hardware held the current route
// then. The daemons' own confirmation times would not do: they die with a
// killed daemon, and they are the gate's belief, not the hardware's.

// span is a time the hardware held a prefix's current route; to is zero
// while it still does.
type span struct{ from, to time.Time }

func (s span) String() string {
	if s.to.IsZero() {
		return fmt.Sprintf("[%s, now)", clock(s.from))
	}
	return fmt.Sprintf("[%s, %s)", clock(s.from), clock(s.to))
}

func clock(t time.Time) string { return t.Format("15:04:05.000") }

// hardwareSpans turns the route events of the main table and the mirror
// table into the spans in which each prefix's current route was in
// hardware.
func hardwareSpans(evs []lab.RouteEvent, main, mirror uint32) map[netip.Prefix][]span {
	type state struct {
		main, mirror     string
		inMain, inMirror bool
	}
	st := map[netip.Prefix]*state{}
	out := map[netip.Prefix][]span{}
	for _, e := range evs {
		s := st[e.Prefix]
		if s == nil {
			s = &state{}
			st[e.Prefix] = s
		}
		was := s.inMain && s.inMirror && s.main == s.mirror
		switch e.Table {
		case main:
			s.inMain, s.main = e.Present, e.NH
		case mirror:
			s.inMirror, s.mirror = e.Present, e.NH
		default:
			continue
		}
		is := s.inMain && s.inMirror && s.main == s.mirror
		switch {
		case is && !was:
			out[e.Prefix] = append(out[e.Prefix], span{from: e.At})
		case was && !is:
			out[e.Prefix][len(out[e.Prefix])-1].to = e.At
		}
	}
	return out
}

// hwCheck judges arrivals at the observer against the hardware spans.
type hwCheck struct {
	// universe is what the source may announce; nothing else may arrive.
	universe map[netip.Prefix]bool
	// slack allows for the two records being read by two goroutines of the
	// test: an arrival may be stamped before the mirror entry it followed.
	slack time.Duration
	// inflight: a prefix released while its route was in hardware may reach
	// the observer after the hardware lost it (an injected failure right
	// after the release) by at most this much, provided the gate then
	// withdraws it within reaction or the hardware has it again within
	// inflight of the arrival. A gate that released a prefix without its
	// route in hardware would do neither.
	inflight, reaction time.Duration
}

// violation is an arrival that broke the invariant.
type violation struct {
	at  time.Time
	msg string
}

func (v violation) String() string { return clock(v.at) + " " + v.msg }

// verdict is what a judgement found.
type verdict struct {
	arrivals, covered, inFlight int
	// undecided arrivals need a future the records do not have yet.
	undecided  int
	minMargin  time.Duration // least time from hardware to arrival
	violations []violation
	// exposure is the longest time the observer held a prefix whose route
	// the hardware had lost (until the observer lost it too, or the
	// hardware had it again): the gate's reaction time, plus the daemon's
	// downtime when it was killed.
	exposure   time.Duration
	exposureOf string
}

// judge checks every arrival up to `upTo` (later ones need records the
// test may not have read yet). Unless final, an arrival whose judgement
// needs what happens after `upTo` is left undecided.
func (c hwCheck) judge(sights []lab.Sighting, hw map[netip.Prefix][]span, upTo time.Time, final bool) verdict {
	v := verdict{minMargin: -1}
	for p, ss := range lab.SightingsByPrefix(sights) {
		spans := hw[p]
		for i, s := range ss {
			if !s.Present {
				continue
			}
			if s.At.After(upTo) {
				break
			}
			v.arrivals++
			if !c.universe[p] {
				v.violations = append(v.violations, violation{s.At, fmt.Sprintf("%v reached the observer: the source never announced it", p)})
				continue
			}
			var next *lab.Sighting
			if i+1 < len(ss) {
				next = &ss[i+1]
			}
			switch ok, margin, why := c.arrival(s.At, spans, next, upTo, final); {
			case ok && why == "":
				v.covered++
				if v.minMargin < 0 || margin < v.minMargin {
					v.minMargin = margin
				}
			case ok:
				v.inFlight++
			case why == "":
				v.undecided++
			default:
				v.violations = append(v.violations, violation{s.At, fmt.Sprintf("%v reached the observer: %s", p, why)})
			}
		}
		if d, at := exposure(ss, spans, upTo); d > v.exposure {
			v.exposure, v.exposureOf = d, fmt.Sprintf("%v from %s", p, clock(at))
		}
	}
	slices.SortFunc(v.violations, func(a, b violation) int { return a.at.Compare(b.at) })
	return v
}

// arrival judges one arrival at t, given p's hardware spans and the
// observer's next sighting of p (nil: none yet). ok with an empty why is a
// covered arrival (margin after the hardware took the route); ok with a
// why was in flight; !ok with a why is a violation, without one undecided.
func (c hwCheck) arrival(t time.Time, spans []span, next *lab.Sighting, upTo time.Time, final bool) (ok bool, margin time.Duration, why string) {
	var before *span // the last span that ended before t
	for i := range spans {
		s := &spans[i]
		if s.from.After(t.Add(c.slack)) {
			break
		}
		if s.to.IsZero() || s.to.After(t) {
			return true, t.Sub(s.from), ""
		}
		before = s
	}
	if before == nil || t.Sub(before.to) > c.inflight {
		return false, 0, fmt.Sprintf("the leaf's hardware did not hold its route (%s)", around(spans, t))
	}
	// Lost from hardware just before: in flight if the gate then takes it
	// back or the hardware has it again at once.
	if next != nil && !next.Present && next.At.Sub(t) <= c.reaction {
		return true, 0, "in flight"
	}
	for _, s := range spans {
		if s.from.After(t) && s.from.Sub(t) <= c.inflight {
			return true, 0, "in flight"
		}
	}
	if !final && upTo.Sub(t) < c.reaction {
		return false, 0, ""
	}
	return false, 0, fmt.Sprintf("the hardware lost its route %v before and the observer kept it (%s)", t.Sub(before.to).Round(time.Millisecond), around(spans, t))
}

// around describes the hardware spans near t, for a violation's message.
func around(spans []span, t time.Time) string {
	if len(spans) == 0 {
		return "never in hardware"
	}
	var near []string
	for _, s := range spans {
		if (s.to.IsZero() || s.to.After(t.Add(-5*time.Second))) && s.from.Before(t.Add(5*time.Second)) {
			near = append(near, s.String())
		}
	}
	if len(near) == 0 {
		return "in hardware only more than 5 s away"
	}
	return "in hardware " + strings.Join(near, ", ")
}

// exposure returns the longest time, up to upTo, in which the observer held
// p while the hardware did not, and when it began.
func exposure(ss []lab.Sighting, spans []span, upTo time.Time) (time.Duration, time.Time) {
	// The observer's holding spans.
	var held []span
	for _, s := range ss {
		if s.Present {
			held = append(held, span{from: s.At})
		} else if len(held) > 0 && held[len(held)-1].to.IsZero() {
			held[len(held)-1].to = s.At
		}
	}
	end := func(s span) time.Time {
		if s.to.IsZero() {
			return upTo
		}
		return s.to
	}
	var longest time.Duration
	var at time.Time
	for _, h := range held {
		// Walk h, skipping the parts the hardware covered.
		cur := h.from
		for _, s := range spans {
			if !end(s).After(cur) {
				continue
			}
			if s.from.After(end(h)) {
				break
			}
			if s.from.After(cur) {
				if d := s.from.Sub(cur); d > longest {
					longest, at = d, cur
				}
			}
			cur = end(s)
		}
		if end(h).After(cur) {
			if d := end(h).Sub(cur); d > longest {
				longest, at = d, cur
			}
		}
	}
	return longest, at
}

// TestHardwareCheckCatchesLeaks runs the checker on made-up records: it
// must pass what a correct gate does and catch what a leaking one does.
func TestHardwareCheckCatchesLeaks(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	p := netip.MustParsePrefix("100.64.0.1/32")
	q := netip.MustParsePrefix("100.64.0.2/32")
	route := func(ms int, table uint32, present bool, nh string) lab.RouteEvent {
		return lab.RouteEvent{At: at(ms), Table: table, Prefix: p, Present: present, NH: nh}
	}
	c := hwCheck{universe: map[netip.Prefix]bool{p: true}, slack: 10 * time.Millisecond, inflight: time.Second, reaction: 5 * time.Second}
	// The route is written at 0, in hardware at 300 (mirror entry), fails
	// at 2000 (mirror entry gone), is programmed again at 4000 and leaves
	// the kernel at 6000.
	evs := []lab.RouteEvent{
		route(0, 254, true, "10.0.3.2@2"), route(300, 4242, true, "10.0.3.2@2"),
		route(2000, 4242, false, ""), route(4000, 4242, true, "10.0.3.2@2"),
		route(6000, 254, false, ""), route(6300, 4242, false, ""),
	}
	hw := hardwareSpans(evs, 254, 4242)
	if got := fmt.Sprint(hw[p]); got != "[[12:00:00.300, 12:00:02.000) [12:00:04.000, 12:00:06.000)]" {
		t.Fatalf("spans %s", got)
	}
	if other := hardwareSpans(append(evs, route(7000, 254, true, "10.0.3.2@2"), route(7100, 4242, true, "10.0.9.9@3")), 254, 4242); len(other[p]) != 2 {
		t.Errorf("a mirror entry with other next hops counted as the current route: %v", other[p])
	}
	end := at(20000)
	arrive := func(ms int) lab.Sighting { return lab.Sighting{P: p, Present: true, At: at(ms)} }
	leave := func(ms int) lab.Sighting { return lab.Sighting{P: p, At: at(ms)} }
	cases := []struct {
		name   string
		sights []lab.Sighting
		want   string // "" passes; else words of the violation
	}{
		{"arrival once programmed, departure after the failure", []lab.Sighting{arrive(320), leave(2050)}, ""},
		{"arrival stamped a little before the mirror entry", []lab.Sighting{arrive(295)}, ""},
		{"arrival before the hardware had the route", []lab.Sighting{arrive(100)}, "did not hold"},
		{"arrival well after the failure, even if withdrawn later", []lab.Sighting{arrive(3500), leave(3600)}, "did not hold"},
		{"in flight at the failure, then withdrawn", []lab.Sighting{arrive(2100), leave(2400)}, ""},
		{"in flight at the failure, never withdrawn", []lab.Sighting{arrive(2100)}, "kept it"},
		{"in flight when the route left the kernel, then withdrawn", []lab.Sighting{arrive(6100), leave(6200)}, ""},
		{"long after the route left the kernel", []lab.Sighting{arrive(7500)}, "did not hold"},
		{"a prefix the source never announced", []lab.Sighting{{P: q, Present: true, At: at(400)}}, "never announced"},
	}
	for _, tc := range cases {
		v := c.judge(tc.sights, hw, end, true)
		got := fmt.Sprint(v.violations)
		switch {
		case tc.want == "" && len(v.violations) > 0:
			t.Errorf("%s: violation %q", tc.name, got)
		case tc.want != "" && !strings.Contains(got, tc.want):
			t.Errorf("%s: got %q, want a violation saying %q", tc.name, got, tc.want)
		}
	}
	// Not final: an in-flight arrival whose departure may still come is
	// undecided, not a violation.
	v := c.judge([]lab.Sighting{arrive(2100)}, hw, at(3000), false)
	if len(v.violations) != 0 || v.undecided != 1 {
		t.Errorf("undecided in-flight arrival: %+v", v)
	}
	// Exposure: held from 320 to 2600, hardware lost at 2000: 600 ms.
	v = c.judge([]lab.Sighting{arrive(320), leave(2600)}, hw, end, true)
	if v.exposure != 600*time.Millisecond || v.minMargin != 20*time.Millisecond {
		t.Errorf("exposure %v (want 600ms), margin %v (want 20ms)", v.exposure, v.minMargin)
	}
}
