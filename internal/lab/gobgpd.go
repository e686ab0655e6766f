//go:build linux

package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const gobgpModule = "github.com/osrg/gobgp/v3"

// GobgpBinaries returns the directory holding gobgpd and gobgp built from
// the GoBGP version this test binary was built with. They are built once
// into a cache directory ($FIBGATE_GOBGP_DIR, else
// $XDG_CACHE_HOME/fibgate/gobgp-<version>), under a file lock so parallel
// test binaries build them once; later runs reuse them (a build costs a
// minute of CPU).
func GobgpBinaries(tb testing.TB) string {
	tb.Helper()
	version, err := gobgpVersion()
	if err != nil {
		tb.Fatalf("gobgp version: %v", err)
	}
	dir := os.Getenv("FIBGATE_GOBGP_DIR")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err == nil && os.Getenv("XDG_CACHE_HOME") == "" && os.Getenv("HOME") == "" {
			err = fmt.Errorf("no HOME")
		}
		if err != nil {
			tb.Fatalf("gobgpd cache dir: %v (set FIBGATE_GOBGP_DIR)", err)
		}
		dir = filepath.Join(cache, "fibgate", "gobgp-"+version)
	}
	have := func() bool {
		for _, b := range []string{"gobgpd", "gobgp"} {
			if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
				return false
			}
		}
		return true
	}
	if have() {
		return dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		tb.Fatalf("lock %s: %v", dir, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if have() {
		return dir // built by another test binary meanwhile
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		tb.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	tb.Logf("building gobgpd and gobgp %s into %s (once)", version, dir)
	// go test puts its own GOROOT/bin first on the PATH: "go" is the
	// toolchain that built this test.
	cmd := exec.Command("go", "build", "-o", tmp+"/", gobgpModule+"/cmd/gobgpd", gobgpModule+"/cmd/gobgp")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build gobgpd: %v\n%s\n(go.sum needs their entries: go get %s/cmd/gobgpd@%s %s/cmd/gobgp@%s)",
			err, out, gobgpModule, version, gobgpModule, version)
	}
	for _, b := range []string{"gobgpd", "gobgp"} {
		if err := os.Rename(filepath.Join(tmp, b), filepath.Join(dir, b)); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// Gobgpd is a stock gobgpd running in a namespace with its API on a unix
// socket (reachable from the test's own namespace).
type Gobgpd struct {
	*Process
	Dir    string
	Conf   string
	Target string // gRPC target, unix://...
	Daemon string // path of the gobgpd binary
	ns     string
	starts int
}

// StartGobgpd writes conf (TOML) and runs gobgpd in ns ("" for the
// test's own namespace); it returns once the API answers. The gobgpd is
// the one built from the GoBGP module in go.mod (GobgpBinaries).
func StartGobgpd(tb testing.TB, ns, conf string) *Gobgpd {
	tb.Helper()
	return StartGobgpdFrom(tb, filepath.Join(GobgpBinaries(tb), "gobgpd"), ns, conf)
}

// StartGobgpdFrom is StartGobgpd with the gobgpd binary at path daemon,
// so that tests can run another GoBGP release than go.mod's (Debian's
// package installs /usr/bin/gobgpd).
func StartGobgpdFrom(tb testing.TB, daemon, ns, conf string) *Gobgpd {
	tb.Helper()
	dir := tb.TempDir()
	g := &Gobgpd{Dir: dir, Conf: filepath.Join(dir, "gobgpd.toml"), Target: "unix://" + filepath.Join(dir, "api.sock"), Daemon: daemon, ns: ns}
	if err := os.WriteFile(g.Conf, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	g.start(tb)
	// One cleanup for every run of it, registered before anything that
	// uses it, so it goes last.
	tb.Cleanup(func() { g.Process.cleanup(tb) })
	return g
}

// Restart stops gobgpd and starts it again with the same config and API
// socket, as a crash and a supervisor would.
func (g *Gobgpd) Restart(tb testing.TB) {
	tb.Helper()
	g.Process.Stop(tb)
	g.start(tb)
}

func (g *Gobgpd) start(tb testing.TB) {
	tb.Helper()
	g.starts++
	name := "gobgpd"
	if g.starts > 1 {
		name = fmt.Sprintf("gobgpd.%d", g.starts)
	}
	_ = os.Remove(strings.TrimPrefix(g.Target, "unix://"))
	g.Process = start(tb, g.ns, g.Dir, name, g.Daemon, "-f", g.Conf, "--api-hosts", g.Target, "-l", "info", "--pprof-disable")
	conn := g.Dial(tb)
	c := api.NewGobgpApiClient(conn)
	Eventually(tb, 10*time.Second, "gobgpd api", func() error {
		if g.Exited() {
			tb.Fatalf("gobgpd exited:\n%s", tail(g.Log, 20))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.GetBgp(ctx, &api.GetBgpRequest{})
		return err
	})
}

// Dial connects to the API; the connection is closed when the test ends.
func (g *Gobgpd) Dial(tb testing.TB) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(g.Target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// Reload rewrites the config file and sends SIGHUP, as an operator does.
func (g *Gobgpd) Reload(tb testing.TB, conf string) {
	tb.Helper()
	if err := os.WriteFile(g.Conf, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := g.Signal(syscall.SIGHUP); err != nil {
		tb.Fatalf("SIGHUP gobgpd: %v", err)
	}
}

// GobgpdConf is a gobgpd config file.
type GobgpdConf struct {
	AS       uint32
	RouterID string
	// Port and Listen set where it listens for BGP (default 179 on all
	// addresses).
	Port   int
	Listen string
	// Neighbours are passive (unless Active), each in its Families (by
	// default the family of its address).
	Neighbours []Neighbour
	// Active makes this gobgpd connect to its neighbours: a source or an
	// observer next to a passive device under test.
	Active bool
	// IdleHoldAfterReset is how many seconds a neighbour stays idle after
	// this gobgpd reset it (ResetPeer, DisablePeer); 0 keeps GoBGP's
	// default of 30 s, which a test that resets sessions cannot wait for.
	IdleHoldAfterReset int
	// Extra is appended verbatim (policies).
	Extra string
}

// String renders the config as TOML.
func (c GobgpdConf) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[global.config]\n  as = %d\n  router-id = %q\n", c.AS, c.RouterID)
	if c.Port != 0 {
		fmt.Fprintf(&b, "  port = %d\n", c.Port)
	}
	if c.Listen != "" {
		fmt.Fprintf(&b, "  local-address-list = [%q]\n", c.Listen)
	}
	for _, n := range c.Neighbours {
		fmt.Fprintf(&b, `
[[neighbors]]
  [neighbors.config]
    neighbor-address = %q
    peer-as = %d
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
`, n.Address, n.AS)
		if c.IdleHoldAfterReset > 0 {
			fmt.Fprintf(&b, "    idle-hold-time-after-reset = %d\n", c.IdleHoldAfterReset)
		}
		fmt.Fprintf(&b, `  [neighbors.transport.config]
    passive-mode = %t
`, !c.Active)
		for _, fam := range n.families() {
			if !strings.Contains(fam, "-") { // "ipv4": its unicast; else GoBGP's name
				fam += "-unicast"
			}
			fmt.Fprintf(&b, "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = %q\n", fam)
		}
	}
	b.WriteString(c.Extra)
	return b.String()
}

// gobgpVersion reads the version of GoBGP that go.mod requires (test
// binaries carry no module information to ask instead). A replace
// directive for it makes the version "replaced", which is never cached
// under a release's name.
func gobgpVersion() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			version := ""
			for _, l := range strings.Split(string(b), "\n") {
				l = strings.TrimPrefix(strings.TrimSpace(l), "require ")
				if strings.Contains(l, "=>") && strings.Contains(l, gobgpModule+" ") {
					return "replaced", nil
				}
				if f := strings.Fields(l); len(f) >= 2 && f[0] == gobgpModule {
					version = f[1]
				}
			}
			if version == "" {
				return "", fmt.Errorf("%s not required in %s", gobgpModule, filepath.Join(dir, "go.mod"))
			}
			return version, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// UserPolicyTOML is what an operator's gobgpd config file defines: an
// export policy that rejects 10.99.0.0/16, first in the global export
// chain, so tests can check a policy reload keeps it after the gate.
const UserPolicyTOML = `
[[defined-sets.prefix-sets]]
  prefix-set-name = "user-no-10-99"
  [[defined-sets.prefix-sets.prefix-list]]
    ip-prefix = "10.99.0.0/16"
    masklength-range = "16..32"
[global.apply-policy.config]
  export-policy-list = ["user-export"]
  default-export-policy = "accept-route"
[[policy-definitions]]
  name = "user-export"
  [[policy-definitions.statements]]
    name = "user-export-s"
    [policy-definitions.statements.conditions.match-prefix-set]
      prefix-set = "user-no-10-99"
    [policy-definitions.statements.actions]
      route-disposition = "reject-route"
`
