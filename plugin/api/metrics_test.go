package api_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fibgate/fibgate/plugin/api"
)

func TestBuildInfoIsOneGaugeLabelledWithTheVersions(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := api.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(api.NewBuildInfo("v1.2.0", "go1.26.8", "v3.37.0")); err != nil {
		t.Fatalf("build info next to NewMetrics' metrics: %v", err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "fibgate_build_info" {
			continue
		}
		if len(f.GetMetric()) != 1 {
			t.Fatalf("%d series, want 1", len(f.GetMetric()))
		}
		m := f.GetMetric()[0]
		if v := m.GetGauge().GetValue(); v != 1 {
			t.Errorf("value %v, want 1", v)
		}
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		want := map[string]string{"version": "v1.2.0", "goversion": "go1.26.8", "gobgp": "v3.37.0"}
		if len(got) != len(want) {
			t.Errorf("labels %v, want %v", got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("label %s=%q, want %q", k, got[k], v)
			}
		}
		return
	}
	t.Fatal("fibgate_build_info was not gathered")
}
