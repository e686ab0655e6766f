package backoff

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestSleepWaitsTheDelayOrUntilTheContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if !Sleep(context.Background(), 3*time.Second) || time.Since(start) != 3*time.Second {
			t.Errorf("Sleep(3s) returned after %v, want true after 3s", time.Since(start))
		}
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Second, cancel)
		start = time.Now()
		if Sleep(ctx, time.Hour) || time.Since(start) != time.Second {
			t.Errorf("Sleep(1h) cancelled after 1s returned after %v, want false at once", time.Since(start))
		}
	})
}
