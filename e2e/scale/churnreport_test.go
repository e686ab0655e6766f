//go:build linux && scale

package scale

import (
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/lab"
)

// The steady-churn section of docs/scale.md lies between these markers;
// TestScaleBench keeps it when it rewrites the rest, and TestSteadyChurn
// replaces only it.
const (
	churnBegin = "<!-- steady-churn: written by TestSteadyChurn -->\n"
	churnEnd   = "<!-- /steady-churn -->\n"
)

// churnSection returns the steady-churn section of a scale.md, markers
// included, or "".
func churnSection(doc string) string {
	i := strings.Index(doc, churnBegin)
	if i < 0 {
		return ""
	}
	j := strings.Index(doc[i:], churnEnd)
	if j < 0 {
		return doc[i:]
	}
	return doc[i : i+j+len(churnEnd)]
}

// churnReport collects TestSteadyChurn's results and renders its section.
type churnReport struct {
	cfg     benchSettings
	churn   churnSettings
	started time.Time
	results []churnResult
	tables  map[string]table
}

func (rp *churnReport) add(r churnResult, tab table) {
	if rp.tables == nil {
		rp.tables = map[string]table{}
	}
	rp.tables[r.size] = tab
	rp.results = append(rp.results, r)
}

// write puts the section into dir/scale.md in place of the old one, or
// at its end.
func (rp *churnReport) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	file := filepath.Join(dir, "scale.md")
	old, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	doc := string(old)
	cur := churnSection(doc)
	sec := rp.render(cur)
	if cur != "" {
		doc = strings.Replace(doc, cur, sec, 1)
	} else {
		if doc != "" && !strings.HasSuffix(doc, "\n\n") {
			doc += "\n"
		}
		doc += sec
	}
	return os.WriteFile(file, []byte(doc), 0o644)
}

// p99Target is issue 10's target for confirm-to-advertise at the 99th
// percentile.
const p99Target = 5 * time.Millisecond

// render returns the section with this run's sizes, and the sizes of
// old (the section as it was) that this run did not measure.
func (rp *churnReport) render(old string) string {
	var b strings.Builder
	b.WriteString(churnBegin)
	b.WriteString("## Steady churn on top of the table\n\n")
	b.WriteString(churnHead)
	var sizes []string
	for _, r := range rp.results {
		if !slices.Contains(sizes, r.size) {
			sizes = append(sizes, r.size)
		}
	}
	// The old section's parts in their order, this run's in place of
	// theirs or after them.
	parts := churnSizes(old)
	var order []string
	for _, p := range parts {
		order = append(order, p.key)
	}
	for _, size := range sizes {
		if !slices.Contains(order, rp.key(size)) {
			order = append(order, rp.key(size))
		}
	}
	for _, key := range order {
		if i := slices.IndexFunc(sizes, func(s string) bool { return rp.key(s) == key }); i >= 0 {
			rp.renderSize(&b, sizes[i])
			continue
		}
		for _, p := range parts {
			if p.key == key {
				b.WriteString(p.text)
			}
		}
	}
	b.WriteString(churnTail)
	b.WriteString(churnEnd)
	return b.String()
}

// churnPart is one part of the section, markers included: a size, and
// the settings it was measured with when they are not the defaults.
type churnPart struct{ key, text string }

// key names the part of a size measured with this run's settings: the
// size, and the audit interval when it is not the default.
func (rp *churnReport) key(size string) string {
	if rp.churn.audit != "" {
		size += "/audit=" + rp.churn.audit
	}
	if rp.churn.moves {
		size += "/moves"
	}
	return size
}

const churnSizeBegin, churnSizeEnd = "<!-- churn size: ", "<!-- /churn size -->\n"

// churnSizes splits a section into its sizes' parts.
func churnSizes(sec string) []churnPart {
	var out []churnPart
	for {
		i := strings.Index(sec, churnSizeBegin)
		if i < 0 {
			return out
		}
		sec = sec[i:]
		j := strings.Index(sec, churnSizeEnd)
		if j < 0 {
			return out
		}
		key, _, _ := strings.Cut(strings.TrimPrefix(sec, churnSizeBegin), " ")
		out = append(out, churnPart{key: key, text: sec[:j+len(churnSizeEnd)]})
		sec = sec[j+len(churnSizeEnd):]
	}
}

// renderSize writes one size's part: how it was run, then its tables.
func (rp *churnReport) renderSize(b *strings.Builder, size string) {
	tab := rp.tables[size]
	var rs []churnResult
	for _, r := range rp.results {
		if r.size == size {
			rs = append(rs, r)
		}
	}
	with := ""
	if rp.churn.audit != "" {
		with = ", audit.interval " + rp.churn.audit
	}
	if rp.churn.moves {
		with += ", best paths moving"
	}
	fmt.Fprintf(b, "%s%s -->\n### %s: %s prefixes (%s IPv4, %s IPv6), %s changes/s for %v%s\n\n", churnSizeBegin, rp.key(size),
		size, thousands(tab.len()), thousands(len(tab.v4)), thousands(len(tab.v6)), thousands(rp.churn.rate), rp.churn.duration, with)
	fmt.Fprintf(b, "- **Command:** `%s`\n", rp.cfg.command)
	fmt.Fprintf(b, "- **Date:** %s\n", rp.started.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(b, "- **Machine:** %s\n", machine())
	fmt.Fprintf(b, "- **Software:** %s\n", software())
	lo, hi := -1.0, 0.0
	var seen []string
	disturbed, ran := 0, 0
	for _, r := range rs {
		if r.failure != "" {
			continue
		}
		ran++
		if lo < 0 || r.load < lo {
			lo = r.load
		}
		hi = max(hi, r.load)
		if len(r.foreign) > 0 {
			disturbed++
		}
		for _, f := range r.foreign {
			if name, _, _ := strings.Cut(f, " "); !slices.Contains(seen, name) {
				seen = append(seen, name)
			}
		}
	}
	fmt.Fprintf(b, "- **Load:** 1-minute load average when each churn began: %.2f to %.2f", max(lo, 0), hi)
	if hi > 6 {
		fmt.Fprintf(b, ". **Measured under load: other work kept the %d cores busy, so the absolute times are inflated and noisy; compare the ratios, which come from the same minutes**", runtime.NumCPU())
	}
	b.WriteString("\n")
	if disturbed == 0 {
		b.WriteString("- **Other labs:** none running while the churns ran\n")
	} else {
		fmt.Fprintf(b, "- **Other labs:** %d of %d churns ran while processes this run did not start were running (%s)\n", disturbed, ran, strings.Join(seen, ", "))
	}
	fmt.Fprintf(b, "- **Rounds:** %d, the leaves interleaved in each round; one row per run\n", rp.cfg.rounds)
	audit := "the daemons' default (`audit.interval` 1m)"
	if rp.churn.audit != "" {
		audit = "`audit.interval: " + rp.churn.audit + "`"
	}
	fmt.Fprintf(b, "- **Gated leaves' consistency audit:** %s\n\n", audit)
	if rp.churn.moves {
		renderMoves(b, rs)
		b.WriteString(churnSizeEnd)
		return
	}
	base := func(r churnResult) *churnResult {
		for i := range rs {
			if rs[i].mode.key == "gobgpd" && rs[i].round == r.round && rs[i].failure == "" {
				return &rs[i]
			}
		}
		return nil
	}
	b.WriteString("End to end, from the source's API to the observer, per change (milliseconds), and against stock gobgpd in the same round:\n\n")
	b.WriteString("| leaf | round | changes sent | re-announce p50 / p99 / max | × gobgpd p50, p99 | withdraw p50 / p99 / max | × gobgpd p50, p99 | on the wire: re-announce p50 / p99 / max, withdraw p50 / p99 | not shown, merged | leaf CPU | × gobgpd | table loaded after |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		if r.failure != "" {
			fmt.Fprintf(b, "| %s | %d | failed: %s | | | | | | | | | |\n", r.mode.title, r.round, r.failure)
			continue
		}
		wire := "tap failed: " + r.wireErr
		if w := r.wire; w != nil {
			wire = triple(w.announce) + ", " + pair(w.withdraw)
		}
		g := base(r)
		x := func(f func(churnResult) []time.Duration, q float64) string {
			if g == nil {
				return "–"
			}
			return ratio(float64(quantile(f(r), q)), float64(quantile(f(*g), q)))
		}
		ann := func(c churnResult) []time.Duration { return c.announce }
		wd := func(c churnResult) []time.Duration { return c.withdraw }
		cpu := "–"
		if g != nil {
			cpu = ratio(r.cpu.Seconds(), g.cpu.Seconds())
		}
		title := r.mode.title
		if r.profiled {
			title += " (profiled)"
		}
		if !r.quiet {
			title += " (not idle before the churn)"
		}
		fmt.Fprintf(b, "| %s | %d | %s in %.1f s (steady %.0f/s) | %s | %s, %s | %s | %s, %s | %s | %d, %d | %.1f s | %s | %.0f s |\n",
			title, r.round, thousands(r.sent), r.sendIn.Seconds(), r.steadyRate,
			triple(r.announce), x(ann, 0.5), x(ann, 0.99), triple(r.withdraw), x(wd, 0.5), x(wd, 0.99), wire,
			r.missing, r.merged, r.cpu.Seconds(), cpu, r.loaded.Seconds())
	}
	var gated []churnResult
	for _, r := range rs {
		if r.gated && r.failure == "" {
			gated = append(gated, r)
		}
	}
	if len(gated) > 0 {
		b.WriteString("\nGated leaves, per re-announced prefix, from the gate's own timestamps (milliseconds): the route entering the FIB, its confirmation, its release to GoBGP; and the gate's histograms over the churn (Prometheus, interpolated within their buckets):\n\n")
		b.WriteString("| leaf | round | source → FIB p50 / p99 | FIB → confirmed p50 / p99 | confirmed → released p50 / p99 / max | histogram confirm-to-advertise p50 / p99 (n) | histogram BGP's advertise calls p50 / p99 (n) | histogram time-to-hardware p50 / p99 (n) | confirmed → observer p50 / p99 / max | confirmed → on the wire p50 / p99 / max | at the observer, on the wire before confirmed | route never left the FIB | announced to the observer while the leaf had no route: count, held p50 / p99 / max | on the wire while the leaf had no route | withdrawal at the observer after the route left: count, p50 / p99 / max | histogram fences p50 / p99 (n) | histogram watch delay p50 / p99 (n) | audit passes (last took) |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range gated {
			leak := "0"
			if r.leaked > 0 {
				leak = fmt.Sprintf("**%d**, held %s", r.leaked, triple(r.leakedFor))
			}
			title := r.mode.title
			if r.gateErr != "" {
				title += " (partial: " + r.gateErr + ")"
			}
			wireConfirm, wireEarly, wireLeak := "–", "–", "–"
			if w := r.wire; w != nil {
				wireConfirm, wireEarly, wireLeak = triple(w.confirmToObs), strconv.Itoa(w.early), strconv.Itoa(w.leaked)
				if w.leaked > 0 {
					wireLeak = "**" + wireLeak + "**"
				}
			}
			fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s / %s (%s) | %s / %s (%s) | %s / %s (%s) | %s | %s | %d, %s | %d | %s | %s | %s, %s | %s / %s (%s) | %s / %s (%s) | %d (%.1f s) |\n",
				title, r.round, pair(r.toFIB), pair(r.toHW), triple(r.confirmToRelease),
				ms(r.histConfirm.quantile(0.5)), ms(r.histConfirm.quantile(0.99)), thousands(int(r.histConfirm.count)),
				ms(r.histCall.quantile(0.5)), ms(r.histCall.quantile(0.99)), thousands(int(r.histCall.count)),
				ms(r.histHW.quantile(0.5)), ms(r.histHW.quantile(0.99)), thousands(int(r.histHW.count)),
				triple(r.confirmToObs), wireConfirm, r.early, wireEarly, r.stayed, leak, wireLeak, thousands(len(r.lateWithdraw)), triple(r.lateWithdraw),
				ms(r.histFence.quantile(0.5)), ms(r.histFence.quantile(0.99)), thousands(int(r.histFence.count)),
				ms(r.histWatch.quantile(0.5)), ms(r.histWatch.quantile(0.99)), thousands(int(r.histWatch.count)),
				r.auditPasses, r.auditLast.Seconds())
		}
		b.WriteString("\nIssue 10's target, confirm-to-advertise p99 under 5 ms:\n")
		for _, r := range gated {
			p99 := quantile(r.confirmToRelease, 0.99)
			verdict := "met"
			if p99 >= p99Target {
				verdict = "**not met**"
			}
			wire := "–"
			if r.wire != nil {
				wire = ms(quantile(r.wire.confirmToObs, 0.99))
			}
			fmt.Fprintf(b, "- %s, round %d: %s (confirmed → released p99 %s ms); the UPDATE reaches the neighbour %s ms after the confirmation at p99, its daemon shows it after %s ms\n",
				r.mode.title, r.round, verdict, ms(p99), wire, ms(quantile(r.confirmToObs, 0.99)))
		}
	}
	b.WriteString("\n")
	b.WriteString(churnSizeEnd)
}

const churnHead = `Written by ` + "`make bench-churn`" + ` (TestSteadyChurn in e2e/scale); do not edit.

**Lab:** the same three namespaces and leaves as above, with stock gobgpds at the edges:

    source (gobgpd, AS 65010) ── leaf under test (AS 65001) ── observer (gobgpd, AS 65020)

- The test loads the table into the source over its API before the leaf starts, and waits until the
  observer has all of it and the leaf's daemons have been idle (under a fifth of a CPU) for a second.
- **The churn:** the source withdraws prefixes of the table (an even spread in a fixed random order,
  both families) at half the rate and announces each again 1 s later, each prefix once: the full
  rate from the first second to the last withdrawal, half of it in the first and the last second.
  A 10 ms ticker sends the changes due by then in one AddPathStream message; **steady** is the rate
  the source was handed them at in the full-rate part.
- **End to end** runs from the moment the test hands a change to the source's API to the moment the
  observer's best-path watch (WatchEvent) delivers it to the test; both on this machine's clock. It
  includes both edge gobgpds, so it overstates every leaf by the same amount. **Not shown** counts
  changes the observer never showed within a minute after the churn; **merged** re-announcements
  whose withdrawal never reached it.
- **On the wire** runs to the moment the leaf's UPDATE reached the observer's end of the link: a
  packet socket there (internal/lab's WireTap) reassembles the leaf's BGP stream and stamps each
  message with the kernel's receive time of its last packet. It leaves out the observer's own
  handling, which is not the leaf's: at the full table the observer's gobgpd spent a third of its
  CPU collecting garbage, and on two shared cores its collections delayed what it showed by up to
  seven seconds while the leaf's UPDATEs had long arrived (docs/design-notes.md, "Steady churn").
- **Gated leaves:** after the churn the test reads every re-announced prefix from the gate's API: when
  its route entered the FIB (seen), was confirmed by the sim (latency 0) and was released to GoBGP.
  The gate stamps the release when GoBGP's call returns, so **confirmed → released** (and the
  gate's histogram, the same figure) is the tracker's wait for its turn plus GoBGP taking the release
  (in the sidecar, over gRPC); **confirmed → observer** (to the observer's first sighting after the
  confirmation) adds GoBGP's export to the observer and the observer's own handling;
  **confirmed → on the wire** adds the export alone.
- **Safety:** **at the observer before confirmed** counts re-announcements the observer showed before
  the leaf confirmed them. That is not yet a leak: the leaf's old route may still have been in the FIB
  and the hardware (its installer had not removed it yet). **Announced to the observer while the leaf
  had no route** is the leak and must be 0: the observer got the prefix between the gate seeing the
  route leave the FIB after the withdrawal and its confirmation of the new one; **held** is how long
  it had the prefix within that time. The same counts **on the wire** are stricter: an UPDATE is on
  the wire before the observer shows it, so an early one cannot hide behind the observer's lag.
  **Route never left the FIB** counts re-announcements that reached the installer before the
  withdrawal was carried out. **Withdrawal at the observer after the route left** is no leak (a
  router removes its route and tells its neighbours in parallel, and the observer held the old
  announcement, made while the route was there) but shows how far GoBGP's export to the neighbour
  trails the installer; it may arrive after the new route's confirmation.
- **Leaf CPU** is the leaf's daemons' user and system time over the churn and its drain.
- **Audit passes:** the gated leaves' periodic consistency audit (plugin/audit) that ended during the
  churn and its drain. While prefixes are pending, a pass reads GoBGP's adj-out in GoBGP's main loop.

`

const churnTail = "Run it with `sudo make bench-churn SIZES=120k,full RATE=1000 CHURN_FOR=30s` (defaults: 120k, 1,000\n" +
	"changes/s, 30 s, the leaves ext, ext-copy, sidecar and gobgpd); `PPROF=dir` also takes gobgpd-ext's CPU profile of the\n" +
	"churn, a 5 s execution trace and its live heap after the drain. Ratios are the meaningful figures on a shared machine.\n\n"

// quantile is the q-th quantile of ds by nearest rank; 0 when empty.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// ms renders d in milliseconds; "–" for a missing figure (negative).
func ms(d time.Duration) string {
	switch {
	case d < 0:
		return "–"
	case d == time.Duration(math.MaxInt64):
		return "> 2 min"
	case d < 10*time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64)
	case d < 100*time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64)
	}
	return strconv.FormatFloat(float64(d)/1e6, 'f', 0, 64)
}

func pair(ds []time.Duration) string {
	if len(ds) == 0 {
		return "–"
	}
	return ms(quantile(ds, 0.5)) + " / " + ms(quantile(ds, 0.99))
}

func triple(ds []time.Duration) string {
	if len(ds) == 0 {
		return "–"
	}
	return pair(ds) + " / " + ms(quantile(ds, 1))
}

// summary is p50, p99 and max of ds for a log line.
func summary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	return fmt.Sprintf("p50 %s, p99 %s, max %s ms (%d)", ms(quantile(ds, 0.5)), ms(quantile(ds, 0.99)), ms(quantile(ds, 1)), len(ds))
}

// histogram is a Prometheus histogram as scraped: cumulative counts per
// upper bound, +Inf last. A plain counter or gauge has only its value.
type histogram struct {
	bounds []float64 // seconds
	counts []uint64
	count  uint64
	value  float64
}

// minus is h's observations since an earlier scrape of the same
// histogram.
func (h histogram) minus(earlier histogram) histogram {
	out := histogram{bounds: h.bounds, counts: slices.Clone(h.counts), count: h.count - earlier.count}
	if len(earlier.counts) == len(h.counts) {
		for i := range out.counts {
			out.counts[i] -= earlier.counts[i]
		}
	}
	return out
}

// quantile estimates the q-th quantile as Prometheus' histogram_quantile
// does: linearly within the bucket it falls in. It is -1 without
// observations, and MaxInt64 beyond the last finite bucket.
func (h histogram) quantile(q float64) time.Duration {
	if h.count == 0 || len(h.counts) == 0 {
		return -1
	}
	rank := q * float64(h.count)
	lo, below := 0.0, uint64(0)
	for i, c := range h.counts {
		if float64(c) >= rank {
			if math.IsInf(h.bounds[i], 1) {
				return time.Duration(math.MaxInt64)
			}
			in := float64(c - below)
			f := 1.0
			if in > 0 {
				f = (rank - float64(below)) / in
			}
			return time.Duration((lo + f*(h.bounds[i]-lo)) * float64(time.Second))
		}
		lo, below = h.bounds[i], c
	}
	return time.Duration(math.MaxInt64)
}

// parseHistograms reads every histogram of a Prometheus text exposition
// (the _bucket and _count lines; labels other than le are not expected),
// and the value of every sample without labels.
func parseHistograms(text string) (map[string]histogram, error) {
	out := map[string]histogram{}
	for _, l := range strings.Split(text, "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		// The value is the last field: a label's value may hold spaces
		// (fibgate_build_info's gobgp names a patched GoBGP's directory).
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		series, rest := l[:i], l[i+1:]
		value, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", l, err)
		}
		// A labelled histogram's series are keyed by the name and its
		// other labels: fibgate_speaker_call_seconds{call="advertise"}.
		name, labels, _ := strings.Cut(strings.TrimSuffix(series, "}"), "{")
		var le string
		var other []string
		for _, kv := range strings.Split(labels, ",") {
			if v, ok := strings.CutPrefix(kv, `le="`); ok {
				le = strings.TrimSuffix(v, `"`)
			} else if kv != "" {
				other = append(other, kv)
			}
		}
		key := func(base string) string {
			if len(other) == 0 {
				return base
			}
			return base + "{" + strings.Join(other, ",") + "}"
		}
		switch {
		case strings.HasSuffix(name, "_bucket") && le != "":
			base := key(strings.TrimSuffix(name, "_bucket"))
			bound, err := strconv.ParseFloat(le, 64)
			if err != nil {
				return nil, fmt.Errorf("metrics line %q: bucket bound: %w", l, err)
			}
			h := out[base]
			h.bounds, h.counts = append(h.bounds, bound), append(h.counts, uint64(value))
			out[base] = h
		case strings.HasSuffix(name, "_count") && len(out[key(strings.TrimSuffix(name, "_count"))].bounds) > 0:
			base := key(strings.TrimSuffix(name, "_count"))
			h := out[base]
			h.count = uint64(value)
			out[base] = h
		case labels == "":
			out[name] = histogram{value: value}
		}
	}
	return out, nil
}

// TestChurnHelpers checks TestSteadyChurn's arithmetic without a lab:
// the plan churns each prefix once with its re-announcement churnLag
// after its withdrawal, the histogram quantiles follow
// histogram_quantile, and each benchmark keeps the other's part of
// scale.md.
func TestChurnHelpers(t *testing.T) {
	tab, err := sample(5000, true)
	if err != nil {
		t.Fatal(err)
	}
	const rate = 1000
	plan := churnPlan(tab, rate, 3*time.Second)
	if len(plan) != 3000 {
		t.Fatalf("plan of %d changes, want 3000", len(plan))
	}
	at := map[netip.Prefix]time.Duration{}
	v6, steady := 0, 0
	for i, ch := range plan {
		w, seen := at[ch.p]
		switch {
		case i > 0 && ch.at < plan[i-1].at:
			t.Fatalf("change %d is due before change %d", i, i-1)
		case !ch.announce && seen:
			t.Fatalf("change %d withdraws %v a second time", i, ch.p)
		case !ch.announce:
			at[ch.p] = ch.at
			if ch.p.Addr().Is6() {
				v6++
			}
		case !seen:
			t.Fatalf("change %d announces %v before withdrawing it", i, ch.p)
		case ch.at-w != churnLag:
			t.Fatalf("%v announced %v after its withdrawal, want %v", ch.p, ch.at-w, churnLag)
		}
		if ch.at >= time.Second && ch.at < 2*time.Second {
			steady++
		}
	}
	if steady != rate {
		t.Errorf("%d changes due in the second second, want %d", steady, rate)
	}
	if v6 == 0 || v6 == len(at) {
		t.Errorf("%d of %d churned prefixes are IPv6: want both families", v6, len(at))
	}

	h, err := parseHistograms(`# HELP x_seconds x
x_seconds_bucket{le="0.001"} 10
x_seconds_bucket{le="0.002"} 90
x_seconds_bucket{le="0.004"} 100
x_seconds_bucket{le="+Inf"} 100
x_seconds_sum 0.1
x_seconds_count 100
y_seconds_bucket{call="advertise",le="0.001"} 3
y_seconds_bucket{call="advertise",le="+Inf"} 4
y_seconds_count{call="advertise"} 4
y_seconds_bucket{call="withdraw",le="0.001"} 0
y_seconds_bucket{call="withdraw",le="+Inf"} 0
y_seconds_count{call="withdraw"} 0
fibgate_build_info{gobgp="v3.37.0 => /src/bin/gobgp-v3.37.0-reexport",goversion="go1.26.8",version="(devel)"} 1
up 1
`)
	if err != nil {
		t.Fatal(err)
	}
	if a := h[`y_seconds{call="advertise"}`]; a.count != 4 || !slices.Equal(a.counts, []uint64{3, 4}) {
		t.Errorf("labelled histogram %+v, want 2 buckets of 3 and 4, count 4", a)
	}
	if w := h[`y_seconds{call="withdraw"}`]; w.count != 0 || len(w.bounds) != 2 {
		t.Errorf("labelled histogram %+v, want 2 empty buckets", w)
	}
	if up := h["up"]; up.value != 1 {
		t.Errorf("plain value %+v, want 1", up)
	}
	x := h["x_seconds"].minus(histogram{bounds: h["x_seconds"].bounds, counts: []uint64{0, 0, 0, 0}})
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.05, 500 * time.Microsecond}, {0.5, 1500 * time.Microsecond}, {0.95, 3 * time.Millisecond}} {
		if got := x.quantile(c.q); got != c.want {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := (histogram{}).quantile(0.5); got != -1 {
		t.Errorf("quantile of nothing = %v, want -1", got)
	}
	if got := quantile([]time.Duration{4, 1, 3, 2}, 0.5); got != 2 {
		t.Errorf("median of 1..4 by nearest rank = %v, want 2", got)
	}

	t0 := time.Now()
	msAt := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	p := netip.MustParsePrefix("192.0.2.0/24")
	ss := []lab.Sighting{{P: p, Present: false, At: msAt(10)}, {P: p, Present: true, At: msAt(30)}, {P: p, Present: false, At: msAt(40)}, {P: p, Present: true, At: msAt(100)}}
	for _, c := range []struct {
		t    int
		want bool
	}{{0, true}, {10, false}, {35, true}, {50, false}, {120, true}} {
		if got := presentAt(ss, msAt(c.t)); got != c.want {
			t.Errorf("present at %d ms: %v, want %v", c.t, got, c.want)
		}
	}
	for _, c := range []struct {
		from, to int
		want     time.Duration
	}{{0, 5, 5}, {5, 20, 5}, {20, 90, 10}, {45, 95, 0}, {45, 110, 10}, {35, 35, 0}} {
		if got := heldWithin(ss, msAt(c.from), msAt(c.to)); got != c.want*time.Millisecond {
			t.Errorf("held from %d to %d ms: %v, want %v ms", c.from, c.to, got, c.want)
		}
	}
	for _, c := range []struct {
		from, to int
		want     bool
	}{{0, 30, false}, {0, 31, true}, {30, 100, false}, {40, 101, true}} {
		if got := announcedWithin(ss, msAt(c.from), msAt(c.to)); got != c.want {
			t.Errorf("announced between %d and %d ms: %v, want %v", c.from, c.to, got, c.want)
		}
	}

	// Each benchmark keeps the other's part of scale.md, and a churn run
	// replaces only the sizes it measured.
	dir := t.TempDir()
	stock, _ := modeByKey("gobgpd")
	churn := func(sizes ...string) {
		t.Helper()
		rp := &churnReport{cfg: benchSettings{command: "churn " + strings.Join(sizes, ","), rounds: 1}, churn: churnSettings{rate: rate, duration: time.Second}, started: time.Now()}
		for _, size := range sizes {
			rp.add(churnResult{size: size, round: 1, mode: stock, quiet: true, announce: []time.Duration{time.Millisecond}}, tab)
		}
		if err := rp.write(dir); err != nil {
			t.Fatal(err)
		}
	}
	churn("1k")
	bench := &report{cfg: benchSettings{command: "bench", rounds: 1}, started: time.Now()}
	if err := bench.write(dir); err != nil {
		t.Fatal(err)
	}
	churn("2k")
	churn("1k")
	b, err := os.ReadFile(filepath.Join(dir, "scale.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	sec := churnSection(doc)
	parts := churnSizes(sec)
	switch {
	case !strings.HasPrefix(doc, "# Full-table scale") || strings.Count(doc, churnBegin) != 1 || !strings.HasSuffix(doc, churnEnd):
		t.Errorf("scale.md after churn, bench, churn, churn: want the bench's report, then one churn section:\n%s", doc)
	case len(parts) != 2 || parts[0].key != "1k" || parts[1].key != "2k":
		t.Errorf("churn sizes %v, want 1k then 2k:\n%s", parts, sec)
	case !strings.Contains(parts[0].text, "`churn 1k`") || !strings.Contains(parts[1].text, "`churn 2k`"):
		t.Errorf("each size names the command that measured it:\n%s", sec)
	}
}
