package gate

import (
	"slices"
	"time"
)

// latencyWindow is how many recent samples the summaries are taken over.
const latencyWindow = 8192

// LatencySummary describes recent durations: how many, and their
// percentiles, so operators see how long hardware takes without a
// metrics stack.
type LatencySummary struct {
	Count           int
	P50, P90, P99   time.Duration
	Max             time.Duration
	LastObservation time.Time
}

// latencies is a ring of the most recent samples. The caller locks.
type latencies struct {
	buf  []time.Duration
	next int
	last time.Time
}

func (l *latencies) add(d time.Duration) {
	if len(l.buf) < cap(l.buf) {
		l.buf = append(l.buf, d)
	} else {
		l.buf[l.next] = d
		l.next = (l.next + 1) % len(l.buf)
	}
	l.last = time.Now()
}

func (l *latencies) summary() LatencySummary {
	if len(l.buf) == 0 {
		return LatencySummary{}
	}
	s := slices.Clone(l.buf)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return LatencySummary{Count: len(s), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: s[len(s)-1], LastObservation: l.last}
}
