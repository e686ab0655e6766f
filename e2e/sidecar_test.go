//go:build linux

package e2e

import (
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// packagedGobgpd is where Debian's gobgpd package (`make deps` installs
// it) puts the daemon: the GoBGP an operator on Debian 12 has at hand.
// `make test-gobgpd-versions` runs the test on releases from the Go
// module proxy (README.md, "Supported GoBGP versions").
const packagedGobgpd = "/usr/bin/gobgpd"

// TestSidecarOnPackagedGobgpd runs fibgated next to another gobgpd than
// the module's (TestFabric tests that one): Debian's package, or the
// gobgpd named by $FIBGATE_SIDECAR_GOBGPD. Only the behaviours that use
// GoBGP's API differently run again, on a fabric of the spine, leaf2 and
// its host: gating of originated and transit prefixes, offload failure,
// kill -9 and restart of fibgated, SIGTERM.
func TestSidecarOnPackagedGobgpd(t *testing.T) {
	bin := os.Getenv("FIBGATE_SIDECAR_GOBGPD")
	if bin == "" {
		bin = packagedGobgpd
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("needs Debian's gobgpd (apt-get install gobgpd, or set FIBGATE_SIDECAR_GOBGPD): %v", err)
		}
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", bin, err, out)
	}
	t.Logf("sidecar's gobgpd: %s (%s)", strings.TrimSpace(string(out)), bin)
	f := newFabric(t, fabricOptions{sidecarOnly: true, gobgpd: bin})
	l2 := f.leaf2
	start := time.Now()

	t.Run("originated and transit prefixes reach the spine only once programmed", func(t *testing.T) {
		f.programmedFirst(t, start)
	})
	t.Run("an offload failure withdraws the prefix and its recovery advertises it again", func(t *testing.T) {
		f.failureWithdraws(t, []failure{{l2, tran2[0]}, {l2, orig2[1]}})
	})
	t.Run("fibgated killed and restarted: nothing unconfirmed goes out, everything confirmed comes back", func(t *testing.T) {
		f.sidecarKilled(t, netip.MustParsePrefix("203.0.115.0/24"))
	})
	t.Run("SIGTERM withdraws, removes HOLD paths and installed routes, exits 0", func(t *testing.T) {
		f.terminated(t)
	})
}
