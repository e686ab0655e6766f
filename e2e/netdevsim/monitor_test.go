//go:build linux

package netdevsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/lab"
)

// monitor is `fibgate monitor --json` on the leaf: the kernel's route
// notifications, each with the time it was read. Its log is parsed as it
// grows, once per line.
type monitor struct {
	*lab.Process
	mu   sync.Mutex
	off  int64
	evs  []monEvent
	part []byte // a line not complete yet
}

// monEvent is one line of `fibgate monitor --json`.
type monEvent struct {
	Time     time.Time `json:"time"`
	Event    string    `json:"event"`
	Table    uint32    `json:"table"`
	Prefix   string    `json:"prefix"`
	Protocol string    `json:"protocol"`
	Flags    []string  `json:"flags"`
}

func startMonitor(t *testing.T, ns, dir string) *monitor {
	t.Helper()
	return &monitor{Process: lab.Start(t, "", dir, "monitor", bin("fibgate"), "monitor", "--netns", ns, "--json", "--dump")}
}

// waitReady waits until the monitor follows the namespace: --dump prints
// the table first (the loopback's local routes at least), so once a line
// is there, every later change is too.
func (m *monitor) waitReady(t *testing.T) {
	t.Helper()
	lab.Eventually(t, 20*time.Second, "fibgate monitor follows the leaf", func() error {
		if m.Exited() {
			b, _ := os.ReadFile(m.Log)
			t.Fatalf("fibgate monitor exited:\n%s", b)
		}
		if len(m.events()) == 0 {
			return fmt.Errorf("no line yet")
		}
		return nil
	})
}

// events returns every event the monitor printed so far.
func (m *monitor) events() []monEvent {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, err := os.Open(m.Log)
	if err != nil {
		return slices.Clone(m.evs)
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, m.off, 1<<40))
	if err != nil {
		return slices.Clone(m.evs)
	}
	m.off += int64(len(b))
	b = append(m.part, b...)
	i := bytes.LastIndexByte(b, '\n')
	m.part = slices.Clone(b[i+1:])
	for _, l := range bytes.Split(b[:i+1], []byte("\n")) {
		var e monEvent
		if bytes.HasPrefix(l, []byte("{")) && json.Unmarshal(l, &e) == nil {
			m.evs = append(m.evs, e)
		}
	}
	return slices.Clone(m.evs)
}

// of returns the main-table events of p from `since` on, oldest first.
func (m *monitor) of(p netip.Prefix, since time.Time) []monEvent {
	var out []monEvent
	for _, e := range m.events() {
		if e.Prefix == p.String() && e.Table == 254 && !e.Time.Before(since) {
			out = append(out, e)
		}
	}
	return out
}

// waitFlag waits until the kernel announced p with flag, from `since` on,
// and returns that event and the ones before it.
func (m *monitor) waitFlag(tb testing.TB, p netip.Prefix, flag string, since time.Time) (monEvent, []monEvent) {
	tb.Helper()
	var at monEvent
	var evs []monEvent
	lab.Eventually(tb, 20*time.Second, fmt.Sprintf("the kernel flags %v %s", p, flag), func() error {
		evs = m.of(p, since)
		for i, e := range evs {
			if slices.Contains(e.Flags, flag) {
				at, evs = e, evs[:i]
				return nil
			}
		}
		return fmt.Errorf("events %v", evs)
	})
	return at, evs
}
