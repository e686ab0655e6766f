package gobgp

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestStepsShortenWhileFencesCome: Advertise's steps are sized to hold the
// lock stepTime from what a prefix cost, and for fencePressure after a
// fence took prefixes back, urgentStepTime, so that the fences of a burst
// of withdrawals (WatchBest fences it one batch of events after another)
// wait for short steps; at least minStep, at most the limit.
func TestStepsShortenWhileFencesCome(t *testing.T) {
	var z stepSizer
	if n := z.size(10000, 4096); n != minStep {
		t.Errorf("first step %d, want minStep %d (it measures)", n, minStep)
	}
	z.took(100, 10*time.Millisecond) // 100 µs a prefix
	if n, want := z.size(10000, 4096), int(stepTime/(100*time.Microsecond)); n != want {
		t.Errorf("step at 100 µs a prefix: %d, want %d", n, want)
	}
	if n := z.size(100, 4096); n != 100 {
		t.Errorf("step of the last 100: %d", n)
	}
	if n := z.size(10000, 100); n != 100 {
		t.Errorf("step with a limit of 100: %d", n)
	}
	z.fence()
	if n, want := z.size(10000, 4096), max(int(urgentStepTime/(100*time.Microsecond)), minStep); n != want {
		t.Errorf("step right after a fence: %d, want %d", n, want)
	}
	z.took(10, 100*time.Millisecond) // 10 ms a prefix, averaged in
	if n := z.size(10000, 4096); n != minStep {
		t.Errorf("urgent step of slow prefixes: %d, want minStep %d", n, minStep)
	}
	z.mu.Lock()
	z.perPrefix, z.perAll, z.fenced = 100*time.Microsecond, 100*time.Microsecond, time.Now().Add(-fencePressure)
	z.mu.Unlock()
	if n, want := z.size(10000, 4096), int(stepTime/(100*time.Microsecond)); n != want {
		t.Errorf("step %v after the last fence: %d, want %d again", fencePressure, n, want)
	}
}

// stepModel is a GoBGP a step waits for: fixed whatever the step's size
// (its main loop finishing an UPDATE, gRPC), with the spread of the
// scale lab's (a step of one took 15-300 ms while a table was learned),
// and per a prefix.
type stepModel struct {
	fixed, per time.Duration
	spread     float64 // the fixed part is uniform in fixed·[1-spread, 1+spread]
	rng        *rand.Rand
}

func (m stepModel) cost(n int) time.Duration {
	f := float64(m.fixed) * (1 + m.spread*(2*m.rng.Float64()-1))
	return time.Duration(f) + time.Duration(n)*m.per
}

// drain runs the sizer over a backlog of n prefixes as Speaker.run does
// and returns the steps' sizes.
func drain(z *stepSizer, m stepModel, n int) []int {
	var sizes []int
	for n > 0 {
		k := z.size(n, 4096)
		z.took(k, m.cost(k))
		sizes = append(sizes, k)
		n -= k
	}
	return sizes
}

// TestStepsBudgetWhatAPrefixAdds: what a step costs whatever its size is
// not counted as a cost a prefix. With a GoBGP whose round trips wait 60
// ms (release by copy while a table is learned: two round trips a step),
// budgeting a step's whole time kept every step at minStep, about 1,000
// prefixes a second; the sizer must let the prefixes add stepTime to the
// fixed part and no more, so a fence waits at most stepTime longer than
// it would behind a step of one. Without a fixed part
// the steps are what they were. The sizes grow at most twofold a step,
// a stalled probe does not blow them up, and fences still shorten them.
func TestStepsBudgetWhatAPrefixAdds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	median := func(s []int) int {
		s = slices.Clone(s)
		slices.Sort(s)
		return s[len(s)/2]
	}
	settled := func(sizes []int) []int { // what the sizer took once it had learned
		var big []int
		for _, n := range sizes[len(sizes)/2:] {
			if n > smallStep {
				big = append(big, n)
			}
		}
		return big
	}

	t.Run("no fixed part", func(t *testing.T) {
		var z stepSizer
		sizes := settled(drain(&z, stepModel{per: 50 * time.Microsecond, rng: rng}, 200000))
		want := int(stepTime / (50 * time.Microsecond))
		if m := median(sizes); m < want*9/10 || m > want*11/10 {
			t.Errorf("median step %d at 50 µs a prefix, want about %d", m, want)
		}
	})

	t.Run("a fixed part", func(t *testing.T) {
		var z stepSizer
		m := stepModel{fixed: 60 * time.Millisecond, per: 40 * time.Microsecond, spread: 0.75, rng: rng}
		all := drain(&z, m, 200000)
		sizes := settled(all)
		want := int(stepTime / m.per) // the prefixes add stepTime to the fixed part
		if got := median(sizes); got < want/3 || got > want*2 {
			t.Errorf("median step %d with a fixed 60 ms and 40 µs a prefix, want about %d (the whole cost a prefix would give %d)",
				got, want, minStep)
		}
		for _, n := range sizes {
			if add := time.Duration(n) * m.per; add > 4*stepTime {
				t.Errorf("a step of %d: its prefixes added %v to a fixed %v", n, add, m.fixed)
				break
			}
		}
		reach := minStep
		for i, n := range all {
			if n <= smallStep {
				continue // a probe
			}
			if n > 2*reach && n > minStep {
				t.Fatalf("step %d grew from %d to %d", i, reach, n)
			}
			reach = max(n, reach*3/4)
		}
	})

	t.Run("steps double", func(t *testing.T) {
		// A fixed part that all but fills the steps makes the cost a
		// prefix come out near nothing; the next step may double, not
		// jump to the limit.
		var z stepSizer
		z.took(minStep, 70*time.Millisecond)
		for range fixedSamples {
			z.took(probeStep, 60*time.Millisecond)
		}
		for range probeEvery - 1 { // and no probe due
			z.took(minStep, 61*time.Millisecond)
		}
		if n := z.size(100000, 4096); n > 2*minStep {
			t.Errorf("after steps of %d a step of %d", minStep, n)
		}
	})

	t.Run("steps of no measurable cost", func(t *testing.T) {
		var z stepSizer // a step of 1,000 in 500 ns: under a nanosecond a prefix
		z.took(1000, 500*time.Nanosecond)
		z.took(2000, 500*time.Nanosecond)
		if n := z.size(100000, 4096); n < minStep || n > 4096 {
			t.Errorf("step %d", n)
		}
	})

	t.Run("a stalled probe", func(t *testing.T) {
		var z stepSizer
		m := stepModel{fixed: 2 * time.Millisecond, per: 50 * time.Microsecond, rng: rng}
		drain(&z, m, 50000)
		z.took(probeStep, 2*time.Second) // GoBGP stalled once, in a probe
		sizes := drain(&z, m, 20000)
		want := int(stepTime / m.per)
		for _, n := range sizes {
			if n > 2*want {
				t.Fatalf("after a stalled probe a step of %d, where %d holds the lock %v", n, want, stepTime)
			}
		}
	})

	t.Run("fences", func(t *testing.T) {
		var z stepSizer
		m := stepModel{fixed: 60 * time.Millisecond, per: 40 * time.Microsecond, spread: 0.5, rng: rng}
		drain(&z, m, 100000)
		z.fence()
		n := z.size(100000, 4096)
		if want := max(int(urgentStepTime/m.per), minStep); n > 2*want {
			t.Errorf("step right after a fence: %d, want about %d", n, want)
		}
	})
}
