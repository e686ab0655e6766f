package backoff

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx ends, and reports whether the whole delay
// passed. With a Counter it is the wait of a retry loop that stops with
// its context:
//
//	if !backoff.Sleep(ctx, c.Next()) {
//		return ctx.Err()
//	}
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
