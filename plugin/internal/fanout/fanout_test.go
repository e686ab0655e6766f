package fanout

import (
	"context"
	"runtime"
	"slices"
	"testing"
	"time"
)

func collect(t *testing.T, ch <-chan []int) []int {
	t.Helper()
	var got []int
	timeout := time.After(10 * time.Second)
	for {
		select {
		case b, ok := <-ch:
			if !ok {
				return got
			}
			got = append(got, b...)
		case <-timeout:
			t.Fatal("stream did not close within 10 s")
		}
	}
}

func TestEveryConsumerGetsEveryBatchInOrder(t *testing.T) {
	var h Hub[int]
	a := h.Subscribe(context.Background(), []int{0})
	b := h.Subscribe(context.Background(), nil)
	for i := 1; i <= 1000; i++ {
		h.Publish([]int{i})
	}
	h.Publish(nil)
	h.Close()
	want := make([]int, 1001)
	for i := range want {
		want[i] = i
	}
	if got := collect(t, a); !slices.Equal(got, want) {
		t.Errorf("first consumer got %d values, want 0..1000 in order", len(got))
	}
	if got := collect(t, b); !slices.Equal(got, want[1:]) {
		t.Errorf("second consumer got %d values, want 1..1000 in order", len(got))
	}
}

func TestASlowConsumerDoesNotBlockThePublisher(t *testing.T) {
	var h Hub[int]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_ = h.Subscribe(ctx, nil) // never read
	done := make(chan struct{})
	go func() {
		for i := range 100000 {
			h.Publish([]int{i})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("publisher blocked by a consumer that does not read")
	}
}

func TestCancelledConsumersLeaveNoGoroutine(t *testing.T) {
	var h Hub[int]
	before := runtime.NumGoroutine()
	for range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		ch := h.Subscribe(ctx, []int{1})
		cancel()
		for range ch {
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines left behind", n-before)
	}
	h.mu.Lock()
	left := len(h.subs)
	h.mu.Unlock()
	if left != 0 {
		t.Errorf("%d cancelled consumers still registered", left)
	}
	if ch := h.Subscribe(context.Background(), nil); ch == nil {
		t.Fatal("nil channel")
	}
	h.Close()
	if got := collect(t, h.Subscribe(context.Background(), []int{7})); !slices.Equal(got, []int{7}) {
		t.Errorf("subscriber after Close got %v, want its first batch then close", got)
	}
}

func TestAnEmptyFirstBatchIsDelivered(t *testing.T) {
	var h Hub[int]
	ch := h.Subscribe(context.Background(), []int{})
	select {
	case b := <-ch:
		if b == nil || len(b) != 0 {
			t.Errorf("first batch = %#v, want an empty batch", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("empty snapshot not delivered")
	}
	h.Close()
}
