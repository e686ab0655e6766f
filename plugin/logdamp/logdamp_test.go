package logdamp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// records collects what a Line writes, as "err repeated in" strings.
type records struct {
	mu    sync.Mutex
	lines []string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Level.String() + " " + rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	return nil
}

func (r *records) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.lines
	r.lines = nil
	return out
}

// TestAnOutageIsOneLineThenSummariesAtGrowingIntervals: the guard's case
// of issue 12, a check failing every 100 ms for 8 s, writes 4 lines
// instead of 80: the failure, then summaries after 1 s, 2 s and 4 s more;
// the success that ends it writes what was still counted.
func TestAnOutageIsOneLineThenSummariesAtGrowingIntervals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r records
		l := New(slog.New(&r), slog.LevelError, "gobgp gate check failed")
		down := errors.New("connection refused")
		if l.OK() {
			t.Error("OK before any failure reports an open run")
		}
		for i := range 80 {
			l.Fail(down, "attempt", i)
			time.Sleep(100 * time.Millisecond)
		}
		want := []string{
			"ERROR gobgp gate check failed err=connection refused attempt=0",
			"ERROR gobgp gate check failed err=connection refused repeated=10 in=1s",
			"ERROR gobgp gate check failed err=connection refused repeated=20 in=2s",
			"ERROR gobgp gate check failed err=connection refused repeated=40 in=4s",
		}
		if got := r.take(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("during the outage:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if !l.OK() {
			t.Error("OK after failures reports no open run")
		}
		// 80 failures: 1 written, 70 summarised, 9 left for OK's summary.
		want = []string{"ERROR gobgp gate check failed err=connection refused repeated=9 in=1s"}
		if got := r.take(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("at recovery: %q, want %q", got, want)
		}
		if l.OK() || len(r.take()) != 0 {
			t.Error("a second OK reported or wrote something")
		}
	})
}

// TestTheIntervalStopsGrowingAtItsMaximum: a day-long outage costs a
// summary every MaxInterval, not ever fewer.
func TestTheIntervalStopsGrowingAtItsMaximum(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r records
		l := New(slog.New(&r), slog.LevelWarn, "retrying")
		start := time.Now()
		for time.Since(start) < 24*time.Hour {
			l.Fail(errors.New("down"))
			time.Sleep(time.Second)
		}
		// 1+2+...+256 s = 511 s, then one every 300 s.
		got := len(r.take())
		want := 1 + 9 + int((24*time.Hour-511*time.Second)/MaxInterval)
		if got < want-1 || got > want+1 {
			t.Errorf("%d lines in a day, want about %d", got, want)
		}
	})
}

// TestADifferentFailureIsWrittenAtOnce: a new error text is news: the
// count of the old one is written, then the new one, and its run starts
// with the first interval again.
func TestADifferentFailureIsWrittenAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r records
		l := New(slog.New(&r), slog.LevelWarn, "installing the gate in GoBGP failed; retrying")
		for range 5 {
			l.Fail(errors.New("connection refused"))
			time.Sleep(100 * time.Millisecond)
		}
		l.Fail(errors.New("permission denied"))
		time.Sleep(time.Second)
		l.Fail(errors.New("permission denied"))
		want := []string{
			"WARN installing the gate in GoBGP failed; retrying err=connection refused",
			"WARN installing the gate in GoBGP failed; retrying err=connection refused repeated=4 in=500ms",
			"WARN installing the gate in GoBGP failed; retrying err=permission denied",
			"WARN installing the gate in GoBGP failed; retrying err=permission denied repeated=1 in=1s",
		}
		if got := r.take(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

// A retry loop writes its failure once, then how long it lasted.
func ExampleLine() {
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "in" { // the clock's, not the example's
				return slog.Attr{}
			}
			return a
		}}))
	l := New(log, slog.LevelError, "gobgp gate check failed")
	for range 3 {
		l.Fail(errors.New("gobgpd unreachable"))
	}
	if l.OK() {
		log.Info("gobgp gate check recovered")
	}
	// Output:
	// level=ERROR msg="gobgp gate check failed" err="gobgpd unreachable"
	// level=ERROR msg="gobgp gate check failed" err="gobgpd unreachable" repeated=2
	// level=INFO msg="gobgp gate check recovered"
}

// TestAnOngoingConditionIsSummarisedWithItsLatestPicture: the FIB
// installer's refused routes, reported every second with their count for
// 8 s, are one line and summaries at growing intervals carrying the count
// and the start as they are then; OK writes the last of them.
func TestAnOngoingConditionIsSummarisedWithItsLatestPicture(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r records
		l := New(slog.New(&r), slog.LevelWarn, "kernel refused routes; writing them again with back-off")
		full := errors.New("operation not permitted: Exceeded number of supported fib entries")
		for i := range 8 {
			l.Ongoing(full, "refused", 100+i, "since", "10:00:00")
			time.Sleep(time.Second)
		}
		want := []string{
			"WARN kernel refused routes; writing them again with back-off err=operation not permitted: Exceeded number of supported fib entries refused=100 since=10:00:00",
			"WARN kernel refused routes; writing them again with back-off err=operation not permitted: Exceeded number of supported fib entries repeated=1 in=1s refused=101 since=10:00:00",
			"WARN kernel refused routes; writing them again with back-off err=operation not permitted: Exceeded number of supported fib entries repeated=2 in=2s refused=103 since=10:00:00",
			"WARN kernel refused routes; writing them again with back-off err=operation not permitted: Exceeded number of supported fib entries repeated=4 in=4s refused=107 since=10:00:00",
		}
		if got := r.take(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if !l.OK() || len(r.take()) != 0 {
			t.Error("OK with nothing left to summarise wrote a line, or saw no run")
		}
		// A Fail line after an Ongoing run does not carry its picture.
		l.Fail(full)
		l.Fail(full)
		time.Sleep(time.Second)
		l.Fail(full)
		want = []string{
			"WARN kernel refused routes; writing them again with back-off err=operation not permitted: Exceeded number of supported fib entries",
			"WARN kernel refused routes; writing them again with back-off err=operation not permitted: Exceeded number of supported fib entries repeated=2 in=1s",
		}
		if got := r.take(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Fail after Ongoing:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}
