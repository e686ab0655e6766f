//go:build linux

package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Bird is a BIRD 2 daemon in a namespace. The scale benchmark uses it at
// both ends of the leaf under test: as the source of a full Internet table
// (BIRD loads 900k static routes in about a second, and sends them at the
// speed of TCP) and as the observer that counts what the leaf advertised,
// cheaply, from its protocol counters.
type Bird struct {
	*Process
	NS   string
	Dir  string
	Sock string // control socket, for birdc -s
}

// RequireBird skips the test unless BIRD 2 and birdc are installed
// (Debian: apt-get install bird2).
func RequireBird(tb testing.TB) {
	tb.Helper()
	for _, b := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(b); err != nil {
			tb.Skipf("needs BIRD 2 (apt-get install bird2): %v", err)
		}
	}
}

// StartBird writes conf and runs bird in the foreground in ns, with its
// control socket in its own directory; it returns once birdc answers.
// BIRD stays out of the kernel's tables unless conf has a kernel
// protocol.
func StartBird(tb testing.TB, ns, conf string) *Bird {
	tb.Helper()
	RequireBird(tb)
	dir := tb.TempDir()
	b := &Bird{NS: ns, Dir: dir, Sock: filepath.Join(dir, "bird.ctl")}
	cfg := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	b.Process = Start(tb, ns, dir, "bird", "bird", "-f", "-c", cfg, "-s", b.Sock, "-P", filepath.Join(dir, "bird.pid"))
	Eventually(tb, 30*time.Second, "bird answering birdc in "+ns, func() error {
		if b.Exited() {
			tb.Fatalf("bird exited:\n%s", tail(b.Log, 20))
		}
		_, err := b.Birdc("show status")
		return err
	})
	return b
}

// Birdc runs one birdc command (its words as arguments) and returns the
// output.
func (b *Bird) Birdc(cmd ...string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", b.Sock}, cmd...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("birdc %s: %v: %s", strings.Join(cmd, " "), err, out)
	}
	return string(out), nil
}

var birdImported = regexp.MustCompile(`Routes:\s+(\d+) imported`)

// Imported returns how many routes the protocol has imported now ("Routes:
// N imported" of `show protocols all`); a protocol that is down has none.
func (b *Bird) Imported(protocol string) (int, error) {
	out, err := b.Birdc("show", "protocols", "all", protocol)
	if err != nil {
		return 0, err
	}
	if !strings.Contains(out, protocol) {
		return 0, fmt.Errorf("birdc: no protocol %s: %s", protocol, out)
	}
	m := birdImported.FindStringSubmatch(out)
	if m == nil {
		return 0, nil
	}
	return strconv.Atoi(m[1])
}

// Enable starts a protocol configured as disabled, so a BGP session can
// begin at a moment the test chooses.
func (b *Bird) Enable(protocol string) error {
	out, err := b.Birdc("enable", protocol)
	if err != nil {
		return err
	}
	if !strings.Contains(out, "enabled") {
		return fmt.Errorf("birdc enable %s: %s", protocol, out)
	}
	return nil
}

// Wake makes BIRD run the work it has queued. BIRD 2.0.12 can leave the
// last UPDATE of a large export queued until its main loop's 3 s poll
// timeout (seen: the last 32 of 20,000 routes sent 3 s late); any
// command on the control socket wakes the loop, so a test that measures
// delivery pokes the sender while it waits.
func (b *Bird) Wake() error {
	_, err := b.Birdc("show", "status")
	return err
}
