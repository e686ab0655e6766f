package main

import (
	"fmt"
	"strconv"
	"time"

	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// Every duration the CLI prints for people goes through shortDuration, so
// the same time reads the same everywhere (stats, top, routes, hw stats):
// 290ms, not 289.905536ms. The --json forms keep Go's exact strings.

// shortDuration shows a duration with the precision a person reads at a
// glance: 850µs, 290ms, 3.2s, 4m10s, 2h05m, 3d04h.
func shortDuration(d time.Duration) string {
	d = max(d, 0)
	// Each range rounds first, so 59.98s reads 1m00s rather than 60.0s.
	if d < time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	if r := d.Round(time.Millisecond); r < time.Second {
		return r.String()
	}
	if r := d.Round(100 * time.Millisecond); r < time.Minute {
		return strconv.FormatFloat(r.Seconds(), 'f', 1, 64) + "s"
	}
	if r := d.Round(time.Second); r < time.Hour {
		return fmt.Sprintf("%dm%02ds", int(r.Minutes()), int(r.Seconds())%60)
	}
	if r := d.Round(time.Minute); r < 48*time.Hour {
		return fmt.Sprintf("%dh%02dm", int(r.Hours()), int(r.Minutes())%60)
	}
	r := d.Round(time.Hour)
	return fmt.Sprintf("%dd%02dh", int(r.Hours())/24, int(r.Hours())%24)
}

// latencyText summarises a latency distribution in one phrase, or says
// there is nothing to summarise yet.
func latencyText(l *pb.LatencySummary) string {
	if l.GetCount() == 0 {
		return "no samples yet"
	}
	return fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s (%d samples)", shortDuration(l.GetP50().AsDuration()),
		shortDuration(l.GetP90().AsDuration()), shortDuration(l.GetP99().AsDuration()), shortDuration(l.GetMax().AsDuration()), l.GetCount())
}
