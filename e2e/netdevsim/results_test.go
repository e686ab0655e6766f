//go:build linux

package netdevsim

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The guest runs this package's test binary with -test.v and its output on
// the VM's second serial port. Every check inside is a subtest, so each one
// ends in a line such as
//
//	--- FAIL: TestInsideVM/gobgpd-ext/trap/ipv4 (2.31s)
//
// and its log lines come after "=== RUN" or "=== NAME" of its name. The
// host reads them back into a tree and replays it as its own subtests.

// Markers the guest's /init writes around the test binary's output.
const (
	startMarker = "FIBGATE-NETDEVSIM-START"
	exitMarker  = "FIBGATE-NETDEVSIM-EXIT"
)

// guestTest is one test of the guest run.
type guestTest struct {
	name     string // the last element of its name
	result   string // PASS, FAIL, SKIP, or "" when the run ended first
	elapsed  string
	output   []string
	children []*guestTest
}

// guestRun is what the guest printed.
type guestRun struct {
	root    *guestTest // TestInsideVM
	started bool       // the start marker came
	exit    int        // the test binary's exit status; -1 without the marker
	uptime  [2]float64 // guest seconds since boot at the start and exit markers
	other   []string   // lines outside any test (PASS, FAIL, the TestMain's)
}

var (
	headerLine = regexp.MustCompile(`^=== (RUN|CONT|NAME|PAUSE)\s+(\S+)$`)
	resultLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(([0-9.]+s)\)$`)
)

// parseGuest reads the guest's output lines. root names the test the
// guest ran; tests outside it are ignored.
func parseGuest(lines []string, root string) *guestRun {
	r := &guestRun{root: &guestTest{name: root}, exit: -1}
	var current *guestTest
	find := func(full string) *guestTest {
		parts := strings.Split(full, "/")
		if parts[0] != root {
			return nil
		}
		t := r.root
	next:
		for _, p := range parts[1:] {
			for _, c := range t.children {
				if c.name == p {
					t = c
					continue next
				}
			}
			c := &guestTest{name: p}
			t.children = append(t.children, c)
			t = c
		}
		return t
	}
	for _, l := range lines {
		l = strings.TrimRight(l, "\r")
		if f := strings.Fields(l); len(f) >= 1 && (f[0] == startMarker || f[0] == exitMarker) {
			i := 0
			if f[0] == startMarker {
				r.started = true
			} else {
				i = 1
				if len(f) > 1 {
					r.exit, _ = strconv.Atoi(f[1])
				}
			}
			if len(f) > 1+i {
				r.uptime[i], _ = strconv.ParseFloat(f[1+i], 64)
			}
			current = nil
			continue
		}
		if m := headerLine.FindStringSubmatch(l); m != nil {
			current = find(m[2])
			continue
		}
		if m := resultLine.FindStringSubmatch(l); m != nil {
			if t := find(m[2]); t != nil {
				t.result, t.elapsed = m[1], m[3]
			}
			if m[2] == root {
				current = nil
			}
			continue
		}
		if current == nil {
			if l != "" {
				r.other = append(r.other, l)
			}
			continue
		}
		current.output = append(current.output, strings.TrimPrefix(l, "    "))
	}
	return r
}

// failed says whether t or a test below it failed.
func (t *guestTest) failed() bool {
	if t.result == "FAIL" {
		return true
	}
	for _, c := range t.children {
		if c.failed() {
			return true
		}
	}
	return false
}

// replay reports the guest test g as the host's test t: its log, its
// subtests, and its result.
func replay(t *testing.T, g *guestTest) {
	for _, c := range g.children {
		t.Run(c.name, func(t *testing.T) { replay(t, c) })
	}
	out := strings.Join(g.output, "\n")
	switch {
	case g.result == "":
		t.Errorf("no result: the VM run ended inside this check\n%s", out)
	case g.result == "SKIP":
		t.Skipf("skipped in the VM: %s", lastLine(g.output))
	case g.result == "FAIL" && !childFailed(g):
		t.Errorf("failed in the VM (%s):\n%s", g.elapsed, out)
	case g.result == "FAIL":
		if out != "" {
			t.Logf("in the VM (%s):\n%s", g.elapsed, out)
		}
	case len(g.output) > 0:
		t.Logf("passed in the VM (%s):\n%s", g.elapsed, out)
	default:
		t.Logf("passed in the VM (%s)", g.elapsed)
	}
}

func childFailed(g *guestTest) bool {
	for _, c := range g.children {
		if c.failed() {
			return true
		}
	}
	return false
}

func lastLine(ls []string) string {
	for i := len(ls) - 1; i >= 0; i-- {
		if s := strings.TrimSpace(ls[i]); s != "" {
			return s
		}
	}
	return "(no reason given)"
}

func (r *guestRun) String() string {
	return fmt.Sprintf("exit %d, %d checks", r.exit, count(r.root))
}

func count(t *guestTest) int {
	if len(t.children) == 0 {
		return 1
	}
	n := 0
	for _, c := range t.children {
		n += count(c)
	}
	return n
}

// TestParseGuestOutput reads back recorded -test.v output of the guest.
func TestParseGuestOutput(t *testing.T) {
	out := `FIBGATE-NETDEVSIM-START 6.02 0.51
=== RUN   TestInsideVM
=== RUN   TestInsideVM/gobgpd-ext
=== RUN   TestInsideVM/gobgpd-ext/trap
=== RUN   TestInsideVM/gobgpd-ext/trap/ipv4
    scenarios_test.go:40: 203.0.113.0/24 at the observer 12ms after its trap flag
=== RUN   TestInsideVM/gobgpd-ext/trap/ipv6
    scenarios_test.go:52: 2001:db8:113::/48 reached the observer before its trap flag
        second line
=== RUN   TestInsideVM/gobgpd-ext/recovery
    scenarios_test.go:70: needs retry
--- FAIL: TestInsideVM (9.50s)
    --- FAIL: TestInsideVM/gobgpd-ext (9.40s)
        --- FAIL: TestInsideVM/gobgpd-ext/trap (3.00s)
            --- PASS: TestInsideVM/gobgpd-ext/trap/ipv4 (1.00s)
            --- FAIL: TestInsideVM/gobgpd-ext/trap/ipv6 (2.00s)
        --- SKIP: TestInsideVM/gobgpd-ext/recovery (0.00s)
FAIL
cleanup: namespaces left: [fgb-1-x-leaf] <nil>
FIBGATE-NETDEVSIM-EXIT 1 20.25 3.1
`
	r := parseGuest(strings.Split(out, "\n"), "TestInsideVM")
	if !r.started || r.exit != 1 || r.uptime != [2]float64{6.02, 20.25} {
		t.Errorf("started %v, exit %d, uptime %v; want true, 1, [6.02 20.25]", r.started, r.exit, r.uptime)
	}
	ext := r.root.children[0]
	trap := ext.children[0]
	if ext.name != "gobgpd-ext" || len(ext.children) != 2 || trap.name != "trap" || len(trap.children) != 2 {
		t.Fatalf("tree: %+v", ext)
	}
	v4, v6, rec := trap.children[0], trap.children[1], ext.children[1]
	if v4.result != "PASS" || v6.result != "FAIL" || rec.result != "SKIP" || v6.elapsed != "2.00s" {
		t.Errorf("results %s %s %s (%s), want PASS FAIL SKIP (2.00s)", v4.result, v6.result, rec.result, v6.elapsed)
	}
	if want := []string{"scenarios_test.go:52: 2001:db8:113::/48 reached the observer before its trap flag", "    second line"}; strings.Join(v6.output, "|") != strings.Join(want, "|") {
		t.Errorf("ipv6 output %q, want %q", v6.output, want)
	}
	if lastLine(rec.output) != "scenarios_test.go:70: needs retry" {
		t.Errorf("skip reason %q", lastLine(rec.output))
	}
	if !ext.failed() || v4.failed() || !childFailed(trap) {
		t.Error("failed() does not follow the results")
	}
	if want := []string{"FAIL", "cleanup: namespaces left: [fgb-1-x-leaf] <nil>"}; strings.Join(r.other, "|") != strings.Join(want, "|") {
		t.Errorf("other lines %q, want %q", r.other, want)
	}
	if n := count(r.root); n != 3 {
		t.Errorf("%d checks, want 3", n)
	}
}
