package fanout

import (
	"context"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
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
	if left := h.Consumers(); left != 0 {
		t.Errorf("%d cancelled consumers still registered", left)
	}
	if ch := h.Subscribe(context.Background(), nil); ch == nil {
		t.Fatal("nil channel")
	}
	if n := h.Consumers(); n != 1 {
		t.Errorf("%d consumers counted with one subscribed", n)
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

func TestAnUnlimitedConsumerGetsEveryBatchHoweverFarBehind(t *testing.T) {
	var h Hub[int]
	ch := h.Subscribe(context.Background(), nil)
	const n = 100000
	for i := range n {
		h.Publish([]int{i})
	}
	if subs, items := h.Backlog(); subs != 1 || items != n {
		t.Fatalf("backlog = %d consumers, %d items; want 1, %d", subs, items, n)
	}
	h.Close()
	got := collect(t, ch)
	if len(got) != n || got[0] != 0 || got[n-1] != n-1 {
		t.Fatalf("got %d values, want all %d: an unlimited consumer must never lose one", len(got), n)
	}
}

func TestALimitedConsumerThatFallsBehindIsDroppedAndReleased(t *testing.T) {
	var h Hub[int]
	behind := make(chan int, 1)
	ch := h.Subscribe(context.Background(), nil, WithLimit(10, func(n int) { behind <- n }))
	h.Publish([]int{1, 2, 3, 4}) // offered, not read: 4 behind
	h.Publish([]int{5, 6, 7, 8}) // 8 behind, two batches waiting
	if subs, items := h.Backlog(); subs != 1 || items != 8 {
		t.Fatalf("backlog = %d consumers, %d items; want 1, 8", subs, items)
	}
	h.Publish([]int{9, 10, 11}) // 11 > 10: dropped
	if subs, items := h.Backlog(); subs != 0 || items != 0 {
		t.Errorf("after the drop: backlog = %d consumers, %d items; want 0, 0", subs, items)
	}
	select {
	case n := <-behind:
		if n != 11 {
			t.Errorf("onDrop got %d items behind, want 11", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("onDrop not called")
	}
	// Whatever was offered before the drop may still arrive; then the
	// channel closes, and nothing from after the drop comes.
	h.Publish([]int{12})
	for _, v := range collect(t, ch) {
		if v > 4 {
			t.Errorf("got %d after the drop", v)
		}
	}
}

func TestTheFirstBatchAndACaughtUpConsumersBigBatchDoNotCount(t *testing.T) {
	var h Hub[int]
	dropped := make(chan int, 1)
	snapshot := make([]int, 1000)
	ch := h.Subscribe(context.Background(), snapshot, WithLimit(10, func(n int) { dropped <- n }))
	h.Publish([]int{1}) // behind by 1 besides the snapshot: within the limit
	if b := <-ch; len(b) != 1000 {
		t.Fatalf("first batch has %d items, want the snapshot's 1000", len(b))
	}
	if b := <-ch; len(b) != 1 {
		t.Fatalf("second batch has %d items, want 1", len(b))
	}
	// Larger than the limit, to a consumer that is caught up (the batch
	// it just took may not be marked as taken yet: that is allowed for).
	big := make([]int, 50)
	h.Publish(big)
	if b := <-ch; len(b) != 50 {
		t.Fatalf("big batch has %d items, want 50", len(b))
	}
	select {
	case n := <-dropped:
		t.Fatalf("dropped %d behind, want no drop", n)
	default:
	}
	h.Close()
	collect(t, ch)
}

func TestACancelledConsumerThatNeverReadIsGoneAtOnce(t *testing.T) {
	var h Hub[int]
	ctx, cancel := context.WithCancel(context.Background())
	_ = h.Subscribe(ctx, nil) // never read
	for i := range 1000 {
		h.Publish([]int{i})
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		subs, items := h.Backlog()
		if subs == 0 && items == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after cancel: %d consumers, %d items still queued", subs, items)
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
}

// item is a churned value of a realistic size (a gate.RouteState is about
// 250 bytes), so the heap figures mean something.
type item [32]uint64

const itemSize = int(unsafe.Sizeof(item{}))

func heapNow() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// churn publishes cycles*perCycle fresh items in batches of batch to h
// and returns the highest backlog and live heap above base seen after
// each cycle.
func churn(h *Hub[item], cycles, perCycle, batch int, base uint64) (maxItems int, maxHeap uint64) {
	for range cycles {
		for i := 0; i < perCycle; i += batch {
			b := make([]item, batch)
			for j := range b {
				b[j][0] = uint64(i + j)
			}
			h.Publish(b)
			if _, n := h.Backlog(); n > maxItems {
				maxItems = n
			}
		}
		if hp := heapNow(); hp > base && hp-base > maxHeap {
			maxHeap = hp - base
		}
	}
	return maxItems, maxHeap
}

// TestNonReadingWatchersUnderChurnStayBounded is issue 12's case in
// memory: 50 watchers that never read and a 5k-item churn loop, 20 cycles.
// Unlimited (the control), they hold every item published; limited, each
// is dropped once it is limit items behind, its queue released, and the
// live heap stays under the bound.
func TestNonReadingWatchersUnderChurnStayBounded(t *testing.T) {
	const (
		watchers = 50
		cycles   = 20
		perCycle = 5000
		batch    = 100
		limit    = 20000
	)
	run := func(opts ...SubscribeOption) (maxItems int, maxHeap, after uint64, dropped int) {
		var h Hub[item]
		base := heapNow()
		ctx, cancel := context.WithCancel(context.Background())
		var chans []<-chan []item
		for range watchers {
			chans = append(chans, h.Subscribe(ctx, nil, opts...))
		}
		maxItems, maxHeap = churn(&h, cycles, perCycle, batch, base)
		subs, _ := h.Backlog()
		dropped = watchers - subs
		cancel()
		for _, ch := range chans {
			for range ch {
			}
		}
		if hp := heapNow(); hp > base {
			after = hp - base
		}
		return maxItems, maxHeap, after, dropped
	}

	ctlItems, ctlHeap, ctlAfter, _ := run()
	t.Logf("unlimited (control): %d items queued at most, live heap +%.1f MB, +%.1f MB after the watchers left",
		ctlItems, mb(ctlHeap), mb(ctlAfter))
	if want := watchers * cycles * perCycle; ctlItems != want {
		t.Errorf("control queued %d items at most, want all %d (it should show the problem)", ctlItems, want)
	}

	var drops atomic.Int64
	items, heap, after, dropped := run(WithLimit(limit, func(int) { drops.Add(1) }))
	t.Logf("limit %d items: %d items queued at most, live heap +%.1f MB, +%.1f MB after the watchers were dropped",
		limit, items, mb(heap), mb(after))
	if items > watchers*limit {
		t.Errorf("queued %d items at most, want at most %d watchers x %d", items, watchers, limit)
	}
	// The watchers share the batches, so the heap holds one copy of the
	// last limit items at most; allow the same again for the runtime.
	if bound := uint64(2 * limit * itemSize); heap > bound {
		t.Errorf("live heap grew by %.1f MB, want under %.1f MB", mb(heap), mb(bound))
	}
	if dropped != watchers || drops.Load() != watchers {
		t.Errorf("%d watchers unsubscribed and %d told, want all %d", dropped, drops.Load(), watchers)
	}
	if after > 1<<20 {
		t.Errorf("%.1f MB still live after every watcher was dropped, want under 1 MB", mb(after))
	}
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }
