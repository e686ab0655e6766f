//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/fibgate/fibgate/e2e/clab"
	"github.com/fibgate/fibgate/e2e/probe"
	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/internal/syncbuf"
)

// fabricLab is e2e/labs/fabric, the lab users deploy with containerlab.
const fabricLab = "labs/fabric/fabric.clab.yml"

var (
	vip4 = netip.MustParseAddr("192.0.2.10")
	vip6 = netip.MustParseAddr("2001:db8:10::10")
)

// labUp builds a lab from its .clab.yml as `make lab` does, with this
// test's namespace prefix (so TestMain can prove nothing is left), and
// takes it down when the test ends.
func labUp(t *testing.T, file string) *clab.Lab {
	t.Helper()
	if testing.Short() {
		t.Skip("lab with namespaces and FRR: skipped in -short mode")
	}
	lab.RequireRoot(t)
	lab.RequireFRR(t)
	topo, err := clab.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	bin := binaries(t)
	for _, b := range []string{"gobgpd", "gobgp"} { // stock gobgpd for the sidecar leaf
		dst := filepath.Join(bin, b)
		if _, err := os.Stat(dst); err != nil {
			if err := os.Symlink(filepath.Join(lab.GobgpBinaries(t), b), dst); err != nil {
				t.Fatal(err)
			}
		}
	}
	state, err := os.MkdirTemp("", "fg-lab-")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(state) // Up makes it
	var log strings.Builder
	l, err := clab.Up(context.Background(), topo, clab.Options{StateDir: state, Bin: bin, KillWithParent: true,
		Prefix: fmt.Sprintf("%s%d-", lab.NSPrefix, os.Getpid()), Log: &log})
	if err != nil {
		t.Fatalf("lab up: %v\n%s", err, log.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range l.State.Procs {
				if b, err := os.ReadFile(p.Log); err == nil {
					lines := strings.Split(strings.TrimSpace(string(b)), "\n")
					t.Logf("--- %s/%s (tail) ---\n%s", p.Node, p.Name, strings.Join(lines[max(0, len(lines)-15):], "\n"))
				}
			}
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

// established waits until every FRR node of the lab has all its BGP
// sessions up.
func established(t *testing.T, l *clab.Lab, timeout time.Duration) {
	t.Helper()
	for _, n := range l.Topo.Nodes {
		if !n.FRR() {
			continue
		}
		lab.Eventually(t, timeout, n.Name+"'s BGP sessions", func() error {
			out, err := l.Vtysh(n.Name, "show bgp summary json")
			if err != nil {
				return err
			}
			var doc map[string]struct {
				Peers map[string]struct {
					State string `json:"state"`
				} `json:"peers"`
			}
			if err := json.Unmarshal([]byte(out), &doc); err != nil {
				return err
			}
			total := 0
			for fam, d := range doc {
				for a, p := range d.Peers {
					total++
					if p.State != "Established" {
						return fmt.Errorf("%s %s: %s", fam, a, p.State)
					}
				}
			}
			if total == 0 {
				return fmt.Errorf("no peers")
			}
			return nil
		})
	}
}

// apiConn connects to the fibgate API of a node of the lab.
func apiConn(t *testing.T, l *clab.Lab, node string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+filepath.Join(l.NodeDir(node), "run", "fibgate.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestLabFromTheClabFile brings up the lab users deploy with containerlab
// from the same file, and checks it does what its README says: every
// session up, the VIP reachable from host3 across the simulated ASICs,
// IPv4 and IPv6, at host1 (the primary); and `fiblab down` leaves
// nothing behind (TestMain checks namespaces and processes).
func TestLabFromTheClabFile(t *testing.T) {
	l := labUp(t, fabricLab)
	established(t, l, 60*time.Second)
	p := startProbe(t, l, "host3", []string{"host1", "host2"})
	lab.Eventually(t, 30*time.Second, "probes reach the VIP at host1", func() error {
		for _, fam := range []int{4, 6} {
			if p.Count(vipOf(fam), "host1") == 0 {
				return fmt.Errorf("no IPv%d probe at host1 yet", fam)
			}
		}
		return nil
	})
	out, err := exec.Command("ip", "-n", l.NS("leaf1"), "rule").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "lookup 4242") {
		t.Errorf("leaf1 forwards from its sim's table: rules %s (%v)", out, err)
	}
	p.Close() // the README's own probe listens on the same port
	t.Run("the README's Try it commands", func(t *testing.T) { runTryIt(t, l) })
}

// runTryIt runs the lab README's "Try it" block, the commands `fiblab up`
// prints, against the lab, in order, as a user would: the probe, the watch
// and top in the background (they run until interrupted), every other
// command to its end, with a pause after each one that changes the lab.
// Then it checks that each did its part of the story the README tells.
func runTryIt(t *testing.T, l *clab.Lab) {
	lines, ok, err := l.Topo.TryIt()
	if err != nil || !ok {
		t.Fatalf("no Try it block in the lab's README (%v)", err)
	}
	type run struct {
		line string
		cmd  *exec.Cmd
		out  *syncbuf.Buffer
	}
	var background []run
	defer func() {
		for _, r := range background {
			if r.cmd.ProcessState == nil {
				_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
				_ = r.cmd.Wait()
			}
		}
	}()
	bin := binaries(t)
	if out, err := exec.Command("go", "build", "-o", bin+"/", "./cmd/fiblab").CombinedOutput(); err != nil {
		t.Fatalf("go build fiblab: %v\n%s", err, out)
	}
	outputs := map[string]string{}
	for _, line := range l.Localize(lines, bin) {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		shell := sudo.ReplaceAllString(line, "$1") // the tests run as root, without sudo
		cmd := exec.Command("bash", "-c", shell)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		out := &syncbuf.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if strings.Contains(line, "fiblab probe") || strings.Contains(line, "fibgate watch") || strings.Contains(line, "fibgate top") {
			if err := cmd.Start(); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			background = append(background, run{line, cmd, out})
			ready := "\n" // a line
			if strings.Contains(line, "fiblab probe") {
				ready = " lost " // a second's count
			}
			lab.Eventually(t, 10*time.Second, "output of "+line, func() error {
				if !strings.Contains(out.String(), ready) {
					return fmt.Errorf("%q so far", out.String())
				}
				return nil
			})
			continue
		}
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v\n%s", line, err, out.String())
			}
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			t.Errorf("%s: still running after 20 s\n%s", line, out.String())
		}
		outputs[line] = out.String()
		if changesTheLab.MatchString(line) {
			time.Sleep(2500 * time.Millisecond) // a user's pause: failures and announcements take effect
		}
	}
	for _, r := range background {
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- r.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: after Ctrl-C: %v\n%s", r.line, err, r.out.String())
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s: still running 10 s after Ctrl-C", r.line)
		}
		outputs[r.line] = r.out.String()
	}

	// What the README says each step shows.
	find := func(part string) string {
		for line, out := range outputs {
			if strings.Contains(line, part) {
				return out
			}
		}
		t.Errorf("no command of the block contains %q", part)
		return ""
	}
	probeOut, watchOut := find("fiblab probe"), find("fibgate watch")
	t.Logf("fiblab probe:\n%s\nfibgate watch:\n%s", probeOut, watchOut)
	worst := 0
	for _, m := range lostIPv4.FindAllStringSubmatch(probeOut, -1) {
		n, _ := strconv.Atoi(m[1])
		worst = max(worst, n)
	}
	if worst < 500 || !strings.Contains(probeOut, "192.0.2.10: lost ") || !strings.Contains(probeOut, "longest outage") {
		t.Errorf("the probe shows no second with most IPv4 probes lost (worst %d) while the gate was off, or no totals:\n%s", worst, probeOut)
	}
	if !strings.Contains(watchOut, " failed ") || !strings.Contains(watchOut, "flapped once: held down for 1s") {
		t.Errorf("the watch shows no failure or no hold-down of 1s:\n%s", watchOut)
	}
	// One line per change: no line repeats the one before but for its time.
	prev := ""
	for _, l := range strings.Split(strings.TrimSpace(watchOut), "\n") {
		_, change, _ := strings.Cut(l, " ")
		if change == prev {
			t.Errorf("the watch printed a change twice: %q", change)
		}
		prev = change
	}
	for part, want := range map[string]string{
		"fibgate routes":        "IN STATE",
		"fibgate stats":         "time held down",
		"fibgate top":           "fibgate top - ",
		"show bgp ipv4 unicast": "65001",
		"route show table 4242": "192.0.2.10",
		"policy set":            "in force",
	} {
		if out := find(part); !strings.Contains(out, want) {
			t.Errorf("%s: no %q in\n%s", part, want, out)
		}
	}
}

var (
	// sudo is a sudo at the start of a command of a pipeline.
	sudo = regexp.MustCompile(`(^|\|\s*)sudo `)
	// changesTheLab matches the commands after which a user waits.
	changesTheLab = regexp.MustCompile(` (fail|clear) |policy set|network 192`)
	// lostIPv4 is the first column of a probe line: the IPv4 VIP's loss.
	lostIPv4 = regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d\s+lost\s+(\d+) of`)
)

// startProbe sends probes from one node of the lab to the VIP, IPv4 and
// IPv6, at 1 kpps each, received at the nodes of to that hold it, until
// the test ends.
func startProbe(t *testing.T, l *clab.Lab, from string, to []string) *probe.Probe {
	t.Helper()
	at := map[string]string{}
	for _, n := range to {
		at[n] = l.NS(n)
	}
	p, err := probe.Start(probe.Config{From: l.NS(from), To: []netip.Addr{vip4, vip6}, At: at})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// vipOf is the VIP of family 4 or 6.
func vipOf(fam int) netip.Addr {
	if fam == 6 {
		return vip6
	}
	return vip4
}
