// Package logdamp keeps a loop that fails the same way again and again from
// flooding the log. A guard that polls gobgpd every 100 ms wrote 78 identical
// ERROR lines in 8 s while gobgpd was down (issue 12): the first failure is
// what an operator needs, then how long it lasted. So a Line writes a failure
// at once, counts the identical ones that follow, and writes "repeated N
// times in T" at growing intervals (1 s, 2 s, 4 s, ... up to 5 min), like
// flap damping; a different failure, or a success, ends the run.
package logdamp

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Summary intervals: the first summary of a run of identical failures
// comes FirstInterval after its first line, each next one twice as late,
// at most MaxInterval apart, so a long outage costs a few lines an hour.
const (
	FirstInterval = time.Second
	MaxInterval   = 5 * time.Minute
)

// Line is the log line of one retried operation (one message, one level).
// It is safe for concurrent use, though a loop usually owns it.
type Line struct {
	log   *slog.Logger
	level slog.Level
	msg   string

	mu    sync.Mutex
	last  string        // text of the failure being repeated; "" when none
	n     int           // identical failures since the last line written
	since time.Time     // when the last line of the run was written
	wait  time.Duration // from since to the next summary
	now   []any         // Ongoing's latest picture, repeated in summaries
}

// New makes the Line of message msg at level on log (nil: discard).
func New(log *slog.Logger, level slog.Level, msg string) *Line {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Line{log: log, level: level, msg: msg}
}

// Fail reports a failure. An error whose text differs from the one before
// (or the first after a success) is written at once with args; an
// identical one is counted, and written as a summary (err=, repeated=N,
// in=T since the last line) once the current interval has passed.
func (l *Line) Fail(err error, args ...any) {
	text := "<nil>"
	if err != nil {
		text = err.Error()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if text == l.last {
		l.n++
		if now.Sub(l.since) >= l.wait {
			l.summary(now)
			l.wait = min(2*l.wait, MaxInterval)
		}
		return
	}
	l.flush(now)
	l.last, l.n, l.since, l.wait, l.now = text, 0, now, FirstInterval, nil
	l.log.Log(context.Background(), l.level, l.msg, append([]any{"err", text}, args...)...)
}

// Ongoing reports that a condition still holds, with args saying what it
// looks like now (how many, since when). The first report is written at
// once; the ones that follow are counted, and written as a summary with
// the latest err and args once the current interval has passed, however
// they differ from one another. The log then says how big a lasting
// problem is and for how long, not every change of it: the FIB installer's
// refused routes, thousands of them with a full table, are one line and
// then a few an hour. OK ends it.
func (l *Line) Ongoing(err error, args ...any) {
	text := "<nil>"
	if err != nil {
		text = err.Error()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.last != "" {
		l.last, l.now = text, args
		l.n++
		if now.Sub(l.since) >= l.wait {
			l.summary(now)
			l.wait = min(2*l.wait, MaxInterval)
		}
		return
	}
	l.last, l.n, l.since, l.wait, l.now = text, 0, now, FirstInterval, args
	l.log.Log(context.Background(), l.level, l.msg, append([]any{"err", text}, args...)...)
}

// OK reports a success: the run of failures ends, with a last summary of
// what was not written yet. It reports whether a run was open, so the
// caller can say that the operation recovered.
func (l *Line) OK() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	open := l.last != ""
	l.flush(time.Now())
	l.last, l.n, l.now = "", 0, nil
	return open
}

// flush writes the summary of the open run, if it counted anything.
func (l *Line) flush(now time.Time) {
	if l.last != "" && l.n > 0 {
		l.summary(now)
	}
}

func (l *Line) summary(now time.Time) {
	l.log.Log(context.Background(), l.level, l.msg, append([]any{"err", l.last, "repeated", l.n, "in", now.Sub(l.since).Round(time.Millisecond)}, l.now...)...)
	l.n, l.since = 0, now
}
