//go:build linux && scale

package scale

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestScaleBench is the full-table benchmark (`make bench-scale`): every
// size, then every round, runs every mode on a fresh lab, so the modes
// are interleaved on the same machine. Settings, all optional:
//
//	FIBGATE_SCALE_SIZES     sizes, "120k" by default: counts (20000, 120k, 1m) or "full"
//	FIBGATE_SCALE_MODES     modes by key (ext, ext-fib, ext-kernel, ext-copy, ext-zebra, sidecar, sidecar-kernel, gobgpd, gobgpd-zebra, frr, originated; ext-toggle only by name); all by default
//	FIBGATE_SCALE_ROUNDS    rounds per size, 1 by default; the report shows medians
//	FIBGATE_SCALE_FAMILIES  "ipv4,ipv6" (default: the table's mix) or "ipv4"
//	FIBGATE_SCALE_TIMEOUT   how long a leaf may take; default 10 min for the full table, scaled by size, at least 2 min
//	FIBGATE_SCALE_REPORT    directory for scale.md and scale.svg (rewritten after every run)
//	FIBGATE_SCALE_COMMAND   the command line the report names
//	FIBGATE_SCALE_SETTINGS  YAML appended to the gated leaves' settings, to compare one setting
//	                        side by side ("bgp:\n  not_to_sets: false\n"; not with originated)
//	FIBGATE_SCALE_PPROF     a directory for the leaf's CPU profile of the convergence (gobgpd-ext, stock gobgpd, or fibgated in the sidecar leaves), its allocations, a 5 s execution trace, and its live heap once the observer is full
//	FIBGATE_SCALE_PPROF_FOR how long that profile runs from the moment the leaf listens; 15s by default
//	FIBGATE_SCALE_HEAPS     with FIBGATE_SCALE_PPROF, how often to sample the leaf's heap from the moment it listens to the end of its run (profiles as of the last collection, and a log line with the runtime's heap, next GC and peak RSS over time); none by default
//	FIBGATE_SCALE_AFTER     how long to keep the leaf running once the observer is full, then log its daemons' peak RSS again (what comes after the convergence, such as the periodic audit's first pass, counts then); none by default
//
// A leaf that is not full in time is a result ("not full after T: X of
// N"), not a failure; the test fails only when the lab itself does.
func TestScaleBench(t *testing.T) {
	cfg, err := benchConfig()
	if err != nil {
		t.Fatal(err)
	}
	rep := &report{cfg: cfg, started: time.Now()}
	for _, size := range cfg.sizes {
		n, _ := parseSize(size)
		tab, err := sample(n, cfg.ipv6)
		if err != nil {
			t.Fatal(err)
		}
		timeout := cfg.timeout
		if timeout == 0 {
			all, _ := sample(0, cfg.ipv6)
			timeout = max(2*time.Minute, time.Duration(float64(10*time.Minute)*float64(tab.len())/float64(all.len()))).Round(time.Second)
		}
		for round := 1; round <= cfg.rounds; round++ {
			for _, m := range cfg.modes {
				t.Run(fmt.Sprintf("%s/%d/%s", size, round, m.key), func(t *testing.T) {
					r := run(t, m, tab, timeout, cfg.prof)
					r.size, r.round = size, round
					t.Logf("%s, %s (%d IPv4 + %d IPv6), round %d: %s; RSS %.0f MiB, CPU %.1f s, %d kernel routes; UPDATEs sent to the source %d, to the observer %d; %s",
						m.title, size, len(tab.v4), len(tab.v6), round, r.outcome(), mib(r.peakRSS), r.cpu.Seconds(), r.kernel, r.toSource, r.toObserver, strings.Join(r.each, "; "))
					rep.add(r, tab)
				})
				if cfg.dir != "" {
					if err := rep.write(cfg.dir); err != nil {
						t.Fatalf("write the report: %v", err)
					}
				}
			}
		}
	}
}

// benchSettings are TestScaleBench's settings from the environment.
type benchSettings struct {
	sizes   []string
	modes   []mode
	rounds  int
	ipv6    bool
	timeout time.Duration
	dir     string
	command string
	prof    profiling
}

func benchConfig() (benchSettings, error) {
	env := func(k, def string) string {
		if v := strings.TrimSpace(os.Getenv(k)); v != "" {
			return v
		}
		return def
	}
	c := benchSettings{rounds: 1, dir: os.Getenv("FIBGATE_SCALE_REPORT"), command: env("FIBGATE_SCALE_COMMAND", "go test -tags scale -run TestScaleBench ./e2e/scale/")}
	for _, s := range strings.Split(env("FIBGATE_SCALE_SIZES", "120k"), ",") {
		if _, err := parseSize(s); err != nil {
			return c, fmt.Errorf("FIBGATE_SCALE_SIZES: %w", err)
		}
		c.sizes = append(c.sizes, strings.TrimSpace(s))
	}
	if s := env("FIBGATE_SCALE_MODES", "all"); s == "all" {
		for _, m := range modes {
			if !m.explicit {
				c.modes = append(c.modes, m)
			}
		}
	} else {
		for _, k := range strings.Split(s, ",") {
			m, ok := modeByKey(strings.TrimSpace(k))
			if !ok {
				var keys []string
				for _, m := range modes {
					keys = append(keys, m.key)
				}
				return c, fmt.Errorf("FIBGATE_SCALE_MODES: no mode %q; the modes are %s", k, strings.Join(keys, ", "))
			}
			c.modes = append(c.modes, m)
		}
	}
	r, err := strconv.Atoi(env("FIBGATE_SCALE_ROUNDS", "1"))
	if err != nil || r < 1 {
		return c, fmt.Errorf("FIBGATE_SCALE_ROUNDS=%q: want a count of 1 or more", os.Getenv("FIBGATE_SCALE_ROUNDS"))
	}
	c.rounds = r
	switch f := strings.ReplaceAll(env("FIBGATE_SCALE_FAMILIES", "ipv4,ipv6"), " ", ""); f {
	case "ipv4,ipv6", "ipv6,ipv4":
		c.ipv6 = true
	case "ipv4":
	default:
		return c, fmt.Errorf("FIBGATE_SCALE_FAMILIES=%q: want ipv4,ipv6 or ipv4", f)
	}
	if s := os.Getenv("FIBGATE_SCALE_TIMEOUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("FIBGATE_SCALE_TIMEOUT=%q: want a duration such as 10m", s)
		}
		c.timeout = d
	}
	c.prof = profiling{dir: os.Getenv("FIBGATE_SCALE_PPROF"), span: 15 * time.Second}
	if s := os.Getenv("FIBGATE_SCALE_PPROF_FOR"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Second {
			return c, fmt.Errorf("FIBGATE_SCALE_PPROF_FOR=%q: want a duration of 1s or more", s)
		}
		c.prof.span = d
	}
	if s := os.Getenv("FIBGATE_SCALE_HEAPS"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 500*time.Millisecond {
			return c, fmt.Errorf("FIBGATE_SCALE_HEAPS=%q: want a duration of 500ms or more", s)
		}
		if c.prof.dir == "" {
			return c, fmt.Errorf("FIBGATE_SCALE_HEAPS needs FIBGATE_SCALE_PPROF, the directory for the samples")
		}
		c.prof.heaps = d
	}
	if s := os.Getenv("FIBGATE_SCALE_AFTER"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return c, fmt.Errorf("FIBGATE_SCALE_AFTER=%q: want a duration such as 90s", s)
		}
		c.prof.after = d
	}
	return c, nil
}
