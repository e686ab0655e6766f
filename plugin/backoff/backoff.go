// Package backoff computes how long a retry loop waits before its next
// attempt: exponential growth from an initial delay up to a cap, with
// jitter. Every retry loop of fibgate takes its delays from here (the FIB
// installer's refused writes, the gate's rewrites of routes whose hardware
// programming failed, the bootstrap and the best-path watch while gobgpd is
// down), so they grow, cap and spread out the same way.
//
// Jitter matters when many things fail at once: a full hardware table
// refuses thousands of routes in the same instant, and without jitter they
// would all be retried in the same instant again, every time.
package backoff

import (
	"math"
	"math/rand/v2"
	"time"
)

// DefaultJitter is the share of a delay that is random: a delay d is
// drawn uniformly from [d*(1-DefaultJitter), d].
const DefaultJitter = 0.2

// Policy says how delays grow. The zero Multiplier means 2 and the zero
// Jitter means DefaultJitter; a negative Jitter turns jitter off (for
// tests that need exact delays).
type Policy struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	Jitter     float64
}

// Base is the delay before attempt n+1 after n failed attempts (n >= 0)
// without jitter: Initial × Multiplier^n, at most Max (and at least
// Initial when Max is smaller).
func (p Policy) Base(n int) time.Duration {
	m := p.Multiplier
	if m < 1 {
		m = 2
	}
	d := float64(p.Initial) * math.Pow(m, float64(max(n, 0)))
	if limit := float64(max(p.Max, p.Initial)); d > limit || math.IsInf(d, 0) || math.IsNaN(d) {
		return max(p.Max, p.Initial)
	}
	return time.Duration(d)
}

// Delay is Base(n) less a random share of up to Jitter of it, so that
// retries started together spread out, and no delay exceeds Max.
func (p Policy) Delay(n int) time.Duration {
	return p.jittered(p.Base(n), rand.Float64())
}

func (p Policy) jittered(d time.Duration, r float64) time.Duration {
	j := p.Jitter
	switch {
	case j == 0:
		j = DefaultJitter
	case j < 0:
		return d
	case j > 1:
		j = 1
	}
	return d - time.Duration(float64(d)*j*r)
}

// Counter is a Policy with its attempt count, for a loop that retries one
// thing: Next returns the delay before the next attempt and counts it,
// Reset starts over after a success. Not safe for concurrent use.
type Counter struct {
	Policy Policy
	n      int
}

// Next returns the delay before the next attempt and counts the attempt.
func (c *Counter) Next() time.Duration {
	d := c.Policy.Delay(c.n)
	c.n++
	return d
}

// Reset forgets the attempts made: the next delay is Initial again.
func (c *Counter) Reset() { c.n = 0 }

// Attempts returns how many delays Next has handed out since the last Reset.
func (c *Counter) Attempts() int { return c.n }
