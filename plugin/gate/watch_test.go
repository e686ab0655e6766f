package gate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
)

// TestSlowWatchersAreDroppedAndTheRestGetEverything is issue 12's slow
// watchers against the tracker itself: 50 watches with a limit that are
// never read, one unlimited watch that reads, and churn of 500 routes
// added and removed 20 times. The backlog never passes the limit per
// watcher, every slow watcher is dropped with ErrWatcherTooSlow and
// unsubscribed, and the reader gets every change.
func TestSlowWatchersAreDroppedAndTheRestGetEverything(t *testing.T) {
	const (
		watchers = 50
		limit    = 1000
		routes   = 500
		cycles   = 20
	)
	synctest.Test(t, func(t *testing.T) {
		src := newModelSource()
		tr := startTracker(t, src, DefaultPolicy())
		var mu sync.Mutex
		var drops []error
		for range watchers {
			tr.Watch(t.Context(), true, WatchLimit(limit, func(err error) {
				mu.Lock()
				drops = append(drops, err)
				mu.Unlock()
			}))
		}
		ctx, cancel := context.WithCancel(t.Context())
		reader := tr.Watch(ctx, false)
		got := make(chan int)
		go func() {
			n := 0
			for b := range reader {
				n += len(b)
			}
			got <- n
		}()

		maxItems := 0
		for range cycles {
			for i := range routes {
				src.add(t, route(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)))
			}
			synctest.Wait()
			for i := range routes {
				src.del(t, route(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)))
			}
			synctest.Wait()
			if _, items := tr.hub.Backlog(); items > maxItems {
				maxItems = items
			}
		}
		t.Logf("%d slow watchers, limit %d states: at most %d states queued in all", watchers, limit, maxItems)
		// Each slow watcher holds at most max(limit, two batches) and a
		// batch is at most one cycle's routes; the reader holds none.
		if bound := watchers * max(limit, 2*routes); maxItems > bound {
			t.Errorf("%d states queued at most, want at most %d", maxItems, bound)
		}
		mu.Lock()
		if len(drops) != watchers {
			t.Errorf("%d slow watchers dropped, want %d", len(drops), watchers)
		}
		for _, err := range drops {
			if !errors.Is(err, ErrWatcherTooSlow) {
				t.Errorf("drop error %v does not match ErrWatcherTooSlow", err)
			}
		}
		mu.Unlock()
		if subs, items := tr.hub.Backlog(); subs != 1 || items != 0 {
			t.Errorf("after the drops: %d watches, %d states queued; want only the reader, with nothing queued", subs, items)
		}
		cancel()
		if n := <-got; n != 2*routes*cycles {
			t.Errorf("the reader got %d states, want every one of %d", n, 2*routes*cycles)
		}
		synctest.Wait()
		if subs, items := tr.hub.Backlog(); subs != 0 || items != 0 {
			t.Errorf("after the reader left: %d watches, %d states queued; want none", subs, items)
		}
	})
}
