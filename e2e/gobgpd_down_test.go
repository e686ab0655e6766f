//go:build linux

package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/lab"
)

// TestGobgpdDownIsLoggedWithBackOff is issue 12 #7: while gobgpd was down,
// fibgated logged an ERROR every 100 ms (each guard check, 78 lines in
// 8 s). Now a failure is logged once, then summarised at growing
// intervals (plugin/logdamp), and the recovery is logged.
func TestGobgpdDownIsLoggedWithBackOff(t *testing.T) {
	if testing.Short() {
		t.Skip("namespaces and gobgpd: skipped in -short mode")
	}
	lab.RequireRoot(t)
	l := sidecarLeaf(t, "leaf", lab.NewNS(t, "leaf"), lab.GobgpdConf{AS: 65001, RouterID: "10.0.9.1"}, `log_level: info
notify_mode: "1"
backend:
  type: sim
  sim:
    latency: 1ms
api:
  socket: %s
`)
	lab.Eventually(t, 20*time.Second, "gate installed", func() error {
		if !strings.Contains(readLog(t, l.proc.Log, 0), "gobgp gate installed") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	from := logSize(t, l.proc.Log)
	l.gobgpd.Stop(t)
	// The outage is what is measured: 6 s is 60 guard intervals.
	const outage = 6 * time.Second
	time.Sleep(outage)
	during := readLog(t, l.proc.Log, from)
	var loud []string
	for line := range strings.SplitSeq(during, "\n") {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") {
			loud = append(loud, line)
		}
	}
	t.Logf("%d warning and error lines in a %v outage of gobgpd:\n%s", len(loud), outage, strings.Join(loud, "\n"))
	switch {
	case len(loud) == 0:
		t.Error("the outage was not logged at all")
	case len(loud) > 15:
		t.Errorf("%d warning and error lines in %v: the retry loops are not damped (was one per 100 ms)", len(loud), outage)
	}
	if !strings.Contains(during, "repeated") {
		t.Error("no \"repeated N in T\" summary of the identical failures")
	}

	l.gobgpd.Restart(t)
	lab.Eventually(t, 20*time.Second, "recovery logged and gate back", func() error {
		after := readLog(t, l.proc.Log, from)
		for _, want := range []string{"gobgp gate check recovered", "gobgp gate installed"} {
			if !strings.Contains(after, want) {
				return fmt.Errorf("no %q yet", want)
			}
		}
		return nil
	})
}

func logSize(t *testing.T, file string) int64 {
	t.Helper()
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// readLog returns a daemon's log from byte offset from on.
func readLog(t *testing.T, file string, from int64) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) < from {
		return ""
	}
	return string(b[from:])
}
