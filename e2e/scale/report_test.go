//go:build linux && scale

package scale

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// report collects TestScaleBench's results and renders docs/scale.md and
// docs/scale.svg.
type report struct {
	cfg     benchSettings
	started time.Time
	results []result
	tables  map[string]table // size -> its prefixes
}

func (rp *report) add(r result, tab table) {
	if rp.tables == nil {
		rp.tables = map[string]table{}
	}
	rp.tables[r.size] = tab
	rp.results = append(rp.results, r)
}

// cell is one mode at one size: the median of its rounds.
type cell struct {
	m      mode
	rounds []result
	full   bool // every round was full
	time   time.Duration
	rss    uint64
	cpu    time.Duration
	kernel int
}

func (rp *report) cells(size string) []cell {
	var out []cell
	for _, m := range rp.cfg.modes {
		c := cell{m: m, full: true}
		var ts, cs []time.Duration
		var rs []uint64
		for _, r := range rp.results {
			if r.size != size || r.mode.key != m.key {
				continue
			}
			c.rounds = append(c.rounds, r)
			c.full = c.full && r.full && r.failure == ""
			ts, cs, rs = append(ts, r.elapsed), append(cs, r.cpu), append(rs, r.peakRSS)
			c.kernel = r.kernel
		}
		if len(c.rounds) == 0 {
			continue
		}
		c.time, c.cpu, c.rss = median(ts), median(cs), median(rs)
		out = append(out, c)
	}
	return out
}

func median[T time.Duration | uint64](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// ratio renders a/b, or "–" when either is missing.
func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func (rp *report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString(reportHead)
	fmt.Fprintf(&b, "- **Command:** `%s`\n", rp.cfg.command)
	fmt.Fprintf(&b, "- **Date:** %s\n", rp.started.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- **Machine:** %s\n", machine())
	fmt.Fprintf(&b, "- **Software:** %s\n", software())
	lo, hi := -1.0, 0.0
	for _, r := range rp.results {
		if lo < 0 || r.load < lo {
			lo = r.load
		}
		hi = max(hi, r.load)
	}
	fmt.Fprintf(&b, "- **Load:** 1-minute load average before each leaf started: %.2f to %.2f (it carries the previous leaf's work too)\n", lo, hi)
	disturbed := 0
	var seen []string
	for _, r := range rp.results {
		if len(r.foreign) > 0 {
			disturbed++
			for _, f := range r.foreign {
				if name, _, _ := strings.Cut(f, " "); !slices.Contains(seen, name) {
					seen = append(seen, name)
				}
			}
		}
	}
	if disturbed == 0 {
		b.WriteString("- **Other labs:** none running while the leaves ran\n")
	} else {
		fmt.Fprintf(&b, "- **Other labs:** **%d of %d leaves started while processes this run did not start were running (%s): their figures are disturbed**\n",
			disturbed, len(rp.results), strings.Join(seen, ", "))
	}
	fmt.Fprintf(&b, "- **Rounds:** %d per size, the modes interleaved in each round; figures are medians over the rounds\n\n", rp.cfg.rounds)
	var sizes []string
	for _, r := range rp.results {
		if !slices.Contains(sizes, r.size) {
			sizes = append(sizes, r.size)
		}
	}
	for _, size := range sizes {
		tab := rp.tables[size]
		fmt.Fprintf(&b, "## %s: %s prefixes (%s IPv4, %s IPv6)\n\n", size, thousands(tab.len()), thousands(len(tab.v4)), thousands(len(tab.v6)))
		cs := rp.cells(size)
		var stock, frr *cell
		for i := range cs {
			switch cs[i].m.key {
			case "gobgpd":
				stock = &cs[i]
			case "frr":
				frr = &cs[i]
			}
		}
		// Ratios compare leaves that both got full: a cut-off run's
		// figures are only lower bounds.
		rt := func(c *cell, base *cell, f func(*cell) float64) string {
			if base == nil || !base.full || !c.full {
				return "–"
			}
			return ratio(f(c), f(base))
		}
		secs := func(c *cell) float64 { return c.time.Seconds() }
		rss := func(c *cell) float64 { return mib(c.rss) }
		cpu := func(c *cell) float64 { return c.cpu.Seconds() }
		b.WriteString("| leaf | time to full | × gobgpd | × FRR | peak RSS | × gobgpd | × FRR | CPU | × gobgpd | × FRR | kernel routes | listening, first prefix | UPDATEs sent: source, observer |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for i := range cs {
			c := &cs[i]
			t := fmt.Sprintf("%.2f s", c.time.Seconds())
			if !c.full {
				t = c.rounds[0].outcome()
			}
			row := []string{c.m.title, t, rt(c, stock, secs), rt(c, frr, secs),
				fmt.Sprintf("%.0f MiB", mib(c.rss)), rt(c, stock, rss), rt(c, frr, rss),
				fmt.Sprintf("%.1f s", c.cpu.Seconds()), rt(c, stock, cpu), rt(c, frr, cpu)}
			first := c.rounds[0]
			row = append(row, thousands(c.kernel), fmt.Sprintf("%.2f s, %.2f s", first.listen.Seconds(), first.first.Seconds()))
			if c.m.key == "frr" {
				row = append(row, "–")
			} else {
				row = append(row, thousands(first.toSource)+", "+thousands(first.toObserver))
			}
			b.WriteString("| " + strings.Join(row, " | ") + " |\n")
		}
		if rp.cfg.rounds > 1 {
			b.WriteString("\nEvery round:\n")
			for _, c := range cs {
				var rs []string
				for _, r := range c.rounds {
					rs = append(rs, r.outcome())
				}
				fmt.Fprintf(&b, "- %s: %s\n", c.m.title, strings.Join(rs, "; "))
			}
		}
		b.WriteString("\n")
	}
	b.WriteString(reportTail)
	// TestSteadyChurn's section stays as it was.
	if old, err := os.ReadFile(filepath.Join(dir, "scale.md")); err == nil {
		if sec := churnSection(string(old)); sec != "" {
			b.WriteString("\n" + sec)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "scale.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "scale.svg"), []byte(rp.plot(sizes)), 0o644)
}

// machine describes the host: CPUs, memory, kernel.
func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb uint64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %.0f GiB", float64(kb)/(1<<20))
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	s := fmt.Sprintf("nproc %d", runtime.NumCPU())
	if model != "" {
		s += " (" + model + ")"
	}
	return s + mem + ", Linux " + strings.TrimSpace(string(kernel))
}

// software names the versions that were measured.
func software() string {
	out := func(name string, args ...string) string {
		b, err := exec.Command(name, args...).Output()
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(string(b))
	}
	gobgp, _ := gobgpVersion()
	commit := out("git", "rev-parse", "--short", "HEAD")
	// The report's own files do not count: the plot is written before
	// this line is.
	if out("git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs/scale.md", ":!docs/scale.svg") != "" {
		commit += " with uncommitted changes"
	}
	return fmt.Sprintf("fibgate %s; GoBGP %s; FRR %s; BIRD %s; %s",
		commit, gobgp, out("dpkg-query", "-W", "-f", "${Version}", "frr"), out("dpkg-query", "-W", "-f", "${Version}", "bird2"), runtime.Version())
}

// gobgpVersion reads the GoBGP version go.mod requires.
func gobgpVersion() (string, error) {
	b, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/osrg/gobgp/v3").Output()
	return strings.TrimSpace(string(b)), err
}

const reportHead = `# Full-table scale: how long until the neighbour has the table

Written by ` + "`make bench-scale`" + ` (TestScaleBench in e2e/scale); do not edit.

**Lab:** three network namespaces, built fresh for every leaf:

    source (BIRD, AS 65010) ── leaf under test (AS 65001) ── observer (BIRD, AS 65020)

- The prefixes are an even sample of a real Internet table (plugin/fib/fibtest), IPv4 and IPv6 in the
  table's proportion, each family on its own session; prefixes overlapping the lab's addresses
  (10.0.0.0/8, fd00::/8) are left out. "full" is the whole table.
- The source holds them as BIRD static routes and is loaded before the leaf starts.
- The leaf is passive; the source and the observer connect the moment it listens. BIRD delays its
  first connect by 0.75 to 1 s, the same for every leaf.
- The observer's "Routes: N imported" is read every 150 ms with the reader's own clock. **Time to
  full** runs from the start of the leaf's first daemon to the first reading with every prefix.
- **Peak RSS** is VmHWM and **CPU** user plus system time, summed over the leaf's daemons when the
  observer is full; **kernel routes** are the leaf's main-table routes then (connected routes left
  out). **UPDATEs sent** are the UPDATE messages the leaf's GoBGP had sent each neighbour by then
  (both families, first round): stock gobgpd sends its source none, and neither does a gated leaf
  since its release's HOLD path carries the source's AS (before, GoBGP sent the source a withdrawal
  for every prefix released; docs/design-notes.md, "Found in GoBGP v3.37").

**Leaves:**
- gobgpd-ext gated: gobgpd with the gate inside, the simulated ASIC with no latency and no rate limit;
  every prefix waits for its route's hardware flag (level hardware) or only for the kernel FIB (level
  fib). The FIB installer writes every best path into the kernel. A confirmed prefix is let through
  the gate and GoBGP asked to export it again (bgp.release: auto, re-export in gobgpd-ext).
- gobgpd-ext gated, no sim: the same at level fib with no simulated ASIC (backend kernel), so what it
  waits for is what FRR's suppress-fib-pending waits for, and its figures are the gate's own cost
  without the sim's (which models and mirrors every route a second time).
- gobgpd-ext gated, release by copy: the first leaf with bgp.release: copy: a confirmed prefix goes out
  as a copy of its learned path added by the gate, and no learned path is ever exported
  (plugin/gobgp/copy.go).
- gobgpd-ext gated, release by HOLD toggle (run only when named: ext-toggle): the first leaf with
  bgp.release: toggle, fibgated's release: a path that wins is added and deleted so that GoBGP exports
  the prefix again (two GoBGP operations a prefix where the re-export is one a step).
- gobgpd-ext gated, installing through FRR's zebra: the first leaf with GoBGP's own zebra client to
  a zebra of the leaf's (FRR's) and fibgate's installer off (` + "`install.enabled: false`" + `, as
  deploy/examples/gobgpd-zebra.toml): zebra writes the routes the sim confirms. Its figures add
  zebra's.
- gobgpd + fibgated: a stock gobgpd with fibgated as its sidecar, the same settings; with no sim too.
  There fibgated's own peak RSS (in the run's log) is all the memory the gate costs.
- stock gobgpd: no kernel install and no gate, the baseline.
- stock gobgpd installing through FRR's zebra: GoBGP's zebra client to a zebra of the leaf's, no
  gate: ext-zebra's baseline, GoBGP's own way into the kernel.
- FRR: bgpd and zebra with ` + "`bgp suppress-fib-pending`" + `: it installs into the kernel too, and
  advertises a prefix only once zebra has installed it. The anchor: what a routing daemon that waits
  for the FIB costs.
- gobgpd-ext originating: the table as static kernel routes in the leaf (written before the leaf
  starts), announced by the gate itself (` + "`bgp.originate_protocols: [static]`" + `) once the sim
  confirms them; no source.

`

const reportTail = `![observer count over time per leaf](scale.svg)

Run it with ` + "`sudo make bench-scale SIZES=120k,full MODES=ext,gobgpd,frr ROUNDS=3`" + ` (defaults: 120k,
every leaf, one round). A leaf that is not full within its timeout (10 min for the full table,
scaled by size, at least 2 min) shows how far it got.
`

// colours of the modes in the plot, in the order of modes.
var colours = []string{"#2a9d8f", "#8ab17d", "#e9c46a", "#264653", "#e76f51", "#9b5de5"}

// plot draws the observer's count over time, one panel per size, one line
// per mode (its first round).
func (rp *report) plot(sizes []string) string {
	const w, panelH, left, top, chartW, chartH = 900, 300, 80, 60, 560, 220
	h := top + panelH*len(sizes)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	b.WriteString(`<text x="10" y="20" font-size="14" font-weight="bold">Prefixes at the observer over time, from the leaf's start</text>` + "\n")
	for i, size := range sizes {
		y0 := top + i*panelH
		tab := rp.tables[size]
		var rs []result
		var tmax time.Duration
		for _, r := range rp.results {
			if r.size == size && r.round == 1 {
				rs = append(rs, r)
				if len(r.points) > 0 {
					tmax = max(tmax, r.points[len(r.points)-1].At)
				}
			}
		}
		tmax = max(tmax, time.Second)
		n := max(tab.len(), 1)
		x := func(d time.Duration) float64 { return float64(left) + float64(chartW)*d.Seconds()/tmax.Seconds() }
		y := func(c int) float64 { return float64(y0+chartH) - float64(chartH)*float64(c)/float64(n) }
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s: %s prefixes</text>`+"\n", left, y0-8, size, thousands(tab.len()))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", left, y0, chartW, chartH)
		for k := 0; k <= 4; k++ {
			c := n * k / 4
			fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%s</text><line x1="%d" x2="%d" y1="%.0f" y2="%.0f" stroke="#eee"/>`+"\n",
				left-6, y(c)+4, thousands(c), left, left+chartW, y(c), y(c))
			d := tmax * time.Duration(k) / 4
			fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">%.1f s</text>`+"\n", x(d), y0+chartH+16, d.Seconds())
		}
		for j, r := range rs {
			col := colours[slices.IndexFunc(modes, func(m mode) bool { return m.key == r.mode.key })%len(colours)]
			var pts []string
			prev := 0
			for _, p := range r.points {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f %.1f,%.1f", x(p.At), y(prev), x(p.At), y(p.Count)))
				prev = p.Count
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", col, strings.Join(pts, " "))
			ly := y0 + 10 + j*18
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d">%s: %s</text>`+"\n",
				left+chartW+14, ly, col, left+chartW+30, ly+10, r.mode.key, shortOutcome(r))
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func shortOutcome(r result) string {
	switch {
	case r.failure != "":
		return r.failure
	case !r.full:
		return fmt.Sprintf("%d of %d after %v", r.count, r.n, r.timeout)
	}
	return fmt.Sprintf("%.2f s", r.elapsed.Seconds())
}

// thousands renders n with thousands separators: 901,899.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
