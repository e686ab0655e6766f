package bgpmetrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Spaced serves GoBGP's own collector (github.com/osrg/gobgp/v3/pkg/metrics,
// the bgp_* series gobgpd serves) without letting scrapes stall GoBGP. That
// collector asks for every neighbour's advertised count, which GoBGP
// computes in its main loop by running the export policy over the whole
// RIB for each neighbour: 1.1-1.3 s at 300,000 prefixes with no policy,
// 1.8-2.7 s with the gate's, so seconds at a full table. Nothing else runs
// in GoBGP meanwhile: no UPDATE, fence or release. A Prometheus scraping
// every 15 s would hold a full-table leaf's GoBGP a third of the time.
//
// So c's series are read again only once at least spacing times the last
// read's duration has passed (about 1% of GoBGP's time); a read that took
// longer than syncLimit is redone in the background while scrapes get the
// previous values, so no scrape waits for it either. The first read, and
// every read of a small table, happen in the scrape as before. Two series
// of its own say how old the values are and what the last read cost:
// fibgate_gobgp_metrics_age_seconds and
// fibgate_gobgp_metrics_collect_seconds.
func Spaced(c prometheus.Collector) prometheus.Collector {
	return &spaced{c: c, now: time.Now}
}

const (
	// spacing: a read of c is at most 1% of the time since the last one.
	spacing = 100
	// syncLimit: a read that took longer is redone in the background.
	syncLimit = 50 * time.Millisecond
)

var (
	ageDesc = prometheus.NewDesc("fibgate_gobgp_metrics_age_seconds",
		"How old the bgp_* series are: GoBGP's collector is read again no sooner than 100 times its last read's duration, in the background when that took over 50 ms, because the read stops GoBGP (it runs the export policy over the whole RIB for every neighbour).", nil, nil)
	costDesc = prometheus.NewDesc("fibgate_gobgp_metrics_collect_seconds",
		"How long the last read of GoBGP's collector (the bgp_* series) took; GoBGP handled nothing else meanwhile.", nil, nil)
)

type spaced struct {
	c   prometheus.Collector
	now func() time.Time

	read sync.Mutex // one read of c at a time

	mu       sync.Mutex
	ms       []prometheus.Metric // c's series as last read
	at       time.Time           // when that read began
	took     time.Duration
	read1    bool // a read has completed
	inFlight bool // a background read is running
}

func (s *spaced) Describe(out chan<- *prometheus.Desc) {
	s.c.Describe(out)
	out <- ageDesc
	out <- costDesc
}

func (s *spaced) Collect(out chan<- prometheus.Metric) {
	s.mu.Lock()
	due := !s.read1 || s.now().Sub(s.at) >= spacing*s.took
	switch {
	case due && (!s.read1 || s.took <= syncLimit):
		s.mu.Unlock()
		s.refresh()
		s.mu.Lock()
	case due && !s.inFlight:
		s.inFlight = true
		go func() {
			s.refresh()
			s.mu.Lock()
			s.inFlight = false
			s.mu.Unlock()
		}()
	}
	ms, at, took := s.ms, s.at, s.took
	s.mu.Unlock()
	for _, m := range ms {
		out <- m
	}
	out <- prometheus.MustNewConstMetric(ageDesc, prometheus.GaugeValue, s.now().Sub(at).Seconds())
	out <- prometheus.MustNewConstMetric(costDesc, prometheus.GaugeValue, took.Seconds())
}

// refresh reads c's series and keeps them; a read that finds one just
// completed by another scrape keeps that one.
func (s *spaced) refresh() {
	s.read.Lock()
	defer s.read.Unlock()
	s.mu.Lock()
	fresh := s.read1 && s.now().Sub(s.at) < spacing*s.took
	s.mu.Unlock()
	if fresh {
		return
	}
	start := s.now()
	ch := make(chan prometheus.Metric, 64)
	var ms []prometheus.Metric
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ch {
			ms = append(ms, m)
		}
	}()
	s.c.Collect(ch)
	close(ch)
	<-done
	took := s.now().Sub(start)
	s.mu.Lock()
	s.ms, s.at, s.took, s.read1 = ms, start, took, true
	s.mu.Unlock()
}
