package backoff

import (
	"testing"
	"time"
)

func TestDelaysDoubleUpToTheCap(t *testing.T) {
	p := Policy{Initial: time.Second, Max: 5 * time.Minute, Jitter: -1}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300}
	for n, w := range want {
		if got := p.Delay(n); got != w*time.Second {
			t.Errorf("Delay(%d) = %s, want %s", n, got, w*time.Second)
		}
	}
	if got := p.Base(10000); got != 5*time.Minute {
		t.Errorf("Base(10000) = %s, want the cap (no overflow)", got)
	}
}

func TestAMultiplierOtherThanTwo(t *testing.T) {
	p := Policy{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 3, Jitter: -1}
	for n, w := range []time.Duration{100, 300, 900, 1000} {
		if got := p.Delay(n); got != w*time.Millisecond {
			t.Errorf("Delay(%d) = %s, want %s", n, got, w*time.Millisecond)
		}
	}
}

func TestJitterStaysWithinItsShareAndSpreads(t *testing.T) {
	p := Policy{Initial: time.Second, Max: time.Minute}
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := p.Delay(3)
		if d > 8*time.Second || d < time.Duration(float64(8*time.Second)*(1-DefaultJitter)) {
			t.Fatalf("Delay(3) = %s, want within [%s, 8s]", d, time.Duration(float64(8*time.Second)*(1-DefaultJitter)))
		}
		seen[d] = true
	}
	if len(seen) < 100 {
		t.Errorf("1000 delays took only %d values: no jitter", len(seen))
	}
	if got := p.jittered(10*time.Second, 1); got != 8*time.Second {
		t.Errorf("the largest jitter takes %s off 10s, want 2s", 10*time.Second-got)
	}
}

func TestCounterCountsAndResets(t *testing.T) {
	c := Counter{Policy: Policy{Initial: time.Second, Max: 4 * time.Second, Jitter: -1}}
	for _, w := range []time.Duration{1, 2, 4, 4} {
		if got := c.Next(); got != w*time.Second {
			t.Errorf("Next() = %s, want %s", got, w*time.Second)
		}
	}
	if c.Attempts() != 4 {
		t.Errorf("Attempts() = %d, want 4", c.Attempts())
	}
	c.Reset()
	if got := c.Next(); got != time.Second {
		t.Errorf("after Reset Next() = %s, want 1s", got)
	}
}
