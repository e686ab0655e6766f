package bgpmetrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fibgate/fibgate/plugin/gobgp"
)

type speaker struct{ kept, notTo int }

func (s speaker) Kept() int         { return s.kept }
func (s speaker) NotToEntries() int { return s.notTo }

// TestHooksFeedTheMetrics: each hook counts what its event says, and the
// gauges read the Speaker at scrape time.
func TestHooksFeedTheMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := RegisterGauges(reg, speaker{kept: 3, notTo: 7}); err != nil {
		t.Fatal(err)
	}
	if n := len(m.Options()); n != 3 {
		t.Fatalf("%d hooks, want the guard's, the fence's and the watch's", n)
	}
	m.guard(gobgp.GuardEvent{})
	m.guard(gobgp.GuardEvent{Unsafe: true})
	m.fence(gobgp.FenceEvent{Prefixes: 5, Took: 2 * time.Millisecond, Waited: time.Millisecond})
	m.beat(gobgp.WatchBeat{Delivered: time.Millisecond, Read: 3 * time.Millisecond})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			switch {
			case mt.GetCounter() != nil:
				got[f.GetName()] = mt.GetCounter().GetValue()
			case mt.GetGauge() != nil:
				got[f.GetName()] = mt.GetGauge().GetValue()
			case mt.GetHistogram() != nil:
				got[f.GetName()] = float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	want := map[string]float64{
		"fibgate_gobgp_gate_reinstalls_total": 2, "fibgate_gobgp_unsafe_reloads_total": 1,
		"fibgate_gobgp_fenced_prefixes_total": 5, "fibgate_gobgp_fence_seconds": 1, "fibgate_gobgp_fence_wait_seconds": 1,
		"fibgate_gobgp_watch_delay_seconds": 1, "fibgate_gobgp_watch_delivery_seconds": 1,
		"fibgate_gobgp_kept_copies": 3, "fibgate_gobgp_not_to_entries": 7,
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("gathered %v, want exactly %v", got, want)
	}
	if _, err := New(nil); err != nil {
		t.Errorf("New(nil): %v", err)
	}
	if err := RegisterGauges(nil, speaker{}); err != nil {
		t.Errorf("RegisterGauges(nil): %v", err)
	}
}
