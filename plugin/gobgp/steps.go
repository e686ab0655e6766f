package gobgp

import (
	"slices"
	"sync"
	"time"
)

// stepTime is how long the prefixes of one locked step of Advertise or
// Withdraw should hold the Speaker's lock. A fence (WatchBest taking back
// a prefix whose best path changed) waits for the step in progress, and
// while it waits GoBGP exports a path learned again for that prefix: the
// step is a queue between "best path changed" and "held" (WatchBest's own
// backlog is the other). A step's size is what the last ones cost a
// prefix, so under load (a full table converging: 100-500 µs a prefix on
// two busy cores, where a fixed 4,096-prefix step held the lock for
// seconds) steps shrink. What a step costs whatever its size (below) is
// not in the budget: a fence would wait for it with a step of one.
const stepTime = 25 * time.Millisecond

// urgentStepTime is stepTime while fences come (for fencePressure after
// the last that took a prefix back): withdrawals come in bursts (a
// session going down, a route server sending its table again), and
// WatchBest fences a burst's events one batch after another, each
// waiting for the step in progress. With
// full steps between them, the last prefixes of a burst of 100 were held
// 100-200 ms after their withdrawal during a release of 20,000
// (docs/design-notes.md, "Fences during a bulk release").
const urgentStepTime = 4 * time.Millisecond

// fencePressure is how long after a fence steps stay urgent.
const fencePressure = time.Second

// minStep is the smallest step: below it a step's own calls would cost
// more than its releases.
const minStep = 64

// A step also costs something whatever its size: its round trips to
// GoBGP, each waiting for the main loop to finish what it is doing (while
// a table is learned, an UPDATE of hundreds of prefixes: 20-300 ms at
// 120k) and, in the sidecar, for gRPC. Counted as a cost a prefix, that
// wait shrank every step to minStep while it lasted: release by copy (two
// round trips a step) and the sidecar released about 1,000 prefixes a
// second while GoBGP learned a table (docs/design-notes.md, "Steps
// sized by what a prefix adds"; BenchmarkAdvertiseBehindAWait, every
// call waiting 20 ms: 1,500 prefixes a second where it is 19,000-21,000
// now). So the sizer learns that part apart: every probeEvery steps with
// more than minStep waiting it takes a probe, a step of probeStep
// prefixes, whose time is the part; the median of the last fixedSamples
// such steps (small ones with too little waiting count too) is
// subtracted from every larger step's time before it is divided by its
// prefixes.
const (
	probeEvery   = 8
	probeStep    = 1
	smallStep    = 4 // a step this small measures the fixed part
	fixedSamples = 9
)

// minPerPrefix keeps the cost a prefix positive when the fixed part,
// measured apart and noisy, comes out above a step's whole time.
const minPerPrefix = time.Microsecond

// stepSizer sizes the locked steps of Advertise and Withdraw from the
// cost a prefix adds to a step (an average that follows a changing load
// within a few steps) and shortens them while fences come. Sizes grow at
// most twofold a step beyond what the whole cost a prefix (fixed part
// included, the estimate that cannot come out low) allows: the part a
// prefix is the difference of two noisy times, and a step too large holds
// every fence behind it.
type stepSizer struct {
	mu        sync.Mutex
	perPrefix time.Duration   // what a prefix adds to a step; 0: nothing measured yet
	perAll    time.Duration   // a step's whole time over its prefixes
	fixed     []time.Duration // the last small steps' times, oldest first
	reach     int             // the largest recent step, decaying
	sinceFix  int             // steps since the last small one
	fenced    time.Time       // when a fence last took prefixes back
}

// size is how many of n prefixes the next step takes, at most limit.
func (z *stepSizer) size(n, limit int) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	budget := stepTime
	if time.Since(z.fenced) < fencePressure {
		budget = urgentStepTime
	}
	if z.perPrefix == 0 {
		return min(n, limit, minStep) // the first step measures
	}
	if n > minStep && z.sinceFix >= probeEvery {
		z.sinceFix = 0 // taken once, whatever took hears of it
		return probeStep
	}
	want := int(budget / z.perPrefix)
	safe := int(budget / z.perAll)
	want = min(want, max(safe, 2*z.reach))
	return min(n, limit, max(want, minStep))
}

// took records that a step of n prefixes held the lock for d.
func (z *stepSizer) took(n int, d time.Duration) {
	if n == 0 || d <= 0 {
		return
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	// Never 0: size divides by it.
	all := max(d/time.Duration(n), time.Nanosecond)
	if z.perPrefix == 0 {
		// The first: all of it, as if nothing were fixed.
		z.perPrefix, z.perAll, z.reach = all, all, n
	}
	if n <= smallStep {
		z.fixed = append(z.fixed, d)
		if len(z.fixed) > fixedSamples {
			z.fixed = z.fixed[1:]
		}
		z.sinceFix = 0
		return
	}
	z.sinceFix++
	per := max((d-z.fixedPart())/time.Duration(n), minPerPrefix)
	z.reach = max(n, z.reach*3/4)
	z.perAll = (3*z.perAll + all) / 4
	z.perPrefix = max((3*z.perPrefix+per)/4, minPerPrefix)
}

// fixedPart is the median of the small steps' times, 0 before the first.
func (z *stepSizer) fixedPart() time.Duration {
	if len(z.fixed) == 0 {
		return 0
	}
	s := slices.Clone(z.fixed)
	slices.Sort(s)
	return s[len(s)/2]
}

// fence records that a fence took prefixes back.
func (z *stepSizer) fence() {
	z.mu.Lock()
	z.fenced = time.Now()
	z.mu.Unlock()
}
