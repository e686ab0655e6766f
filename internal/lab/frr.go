//go:build linux

package lab

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FRR is an FRR instance (zebra + bgpd) in a namespace, with its sockets,
// pid files and logs in its own directory owned by user frr.
type FRR struct {
	tb  testing.TB
	NS  string
	Dir string
	AS  uint32

	bgpd       *Process
	bgpdArgs   []string
	bgpdStarts int
}

// RequireFRR skips the test unless FRR's daemons and vtysh are installed
// (Debian: apt-get install frr).
func RequireFRR(tb testing.TB) {
	tb.Helper()
	for _, f := range []string{"/usr/lib/frr/zebra", "/usr/lib/frr/bgpd"} {
		if _, err := os.Stat(f); err != nil {
			tb.Skipf("needs FRR (apt-get install frr): %v", err)
		}
	}
	if _, err := exec.LookPath("vtysh"); err != nil {
		tb.Skipf("needs FRR's vtysh (apt-get install frr): %v", err)
	}
	if _, err := user.Lookup("frr"); err != nil {
		tb.Skipf("needs FRR's user frr (apt-get install frr): %v", err)
	}
}

// StartFRR writes conf (the part after "frr defaults" and hostname) and
// runs zebra and bgpd in ns in the foreground (so they stay in a process
// group the test owns), with FRR's traditional profile (-F traditional,
// "frr defaults traditional"), as Debian 12's FRR runs as a neighbour on
// any machine. It returns once bgpd answers vtysh.
func StartFRR(tb testing.TB, ns string, as uint32, conf string) *FRR {
	tb.Helper()
	f := startZebra(tb, ns, FRRDir(tb), conf)
	f.AS = as
	f.bgpdArgs = append([]string{"/usr/lib/frr/bgpd", "-i", filepath.Join(f.Dir, "bgpd.pid")}, f.commonArgs()...)
	f.StartBGPD()
	return f
}

// StartZebra runs FRR's zebra alone in ns, as StartFRR does, for a
// routing daemon that installs its routes through zebra's API (GoBGP's
// [zebra] client) at ZservPath(dir). dir is FRRDir's, made before the
// daemon's config that names the socket. It returns once the socket is
// there.
func StartZebra(tb testing.TB, ns, dir string) *FRR {
	tb.Helper()
	return startZebra(tb, ns, dir, "")
}

// FRRDir makes a directory for FRR's sockets, pid files and config, which
// its daemons (user frr) can reach, removed when the test ends.
func FRRDir(tb testing.TB) string {
	tb.Helper()
	// Under /tmp, not t.TempDir(): FRR drops to user frr, which must
	// reach the directory, and t.TempDir's parents are 0700.
	dir, err := os.MkdirTemp("", "fgb-frr-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// commonArgs are what zebra and bgpd are both started with: the profile,
// zebra's API socket, the vty directory, the config file.
func (f *FRR) commonArgs() []string {
	return []string{"-F", "traditional", "-z", ZservPath(f.Dir), "--vty_socket", f.Dir, "-f", filepath.Join(f.Dir, "frr.conf")}
}

// ZservPath is the API socket of the zebra whose directory is dir.
func ZservPath(dir string) string { return filepath.Join(dir, "zserv.api") }

func startZebra(tb testing.TB, ns, dir, conf string) *FRR {
	tb.Helper()
	RequireFRR(tb)
	u, err := user.Lookup("frr")
	if err != nil {
		tb.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cfg := filepath.Join(dir, "frr.conf")
	text := "frr defaults traditional\nhostname " + ns + "\nlog stdout debugging\nlog timestamp precision 3\ndebug bgp neighbor-events\n!\n" + conf
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		tb.Fatal(err)
	}
	for _, p := range []string{dir, cfg} {
		if err := os.Chown(p, uid, gid); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	f := &FRR{tb: tb, NS: ns, Dir: dir}
	// --v6-rr-semantics: an IPv6 route changes with one replace, as an
	// IPv4 route does. Without it Debian 12's zebra deletes the old route
	// and then adds the new one, and a packet forwarded in between is lost
	// to the neighbour, not to what a test measures (e2e/labs/fabric/daemons).
	Start(tb, ns, dir, "zebra", append([]string{"/usr/lib/frr/zebra", "--v6-rr-semantics", "-i", filepath.Join(dir, "zebra.pid")}, f.commonArgs()...)...)
	Eventually(tb, 10*time.Second, "zebra's api socket", func() error {
		_, err := os.Stat(ZservPath(dir))
		return err
	})
	return f
}

// StartBGPD starts bgpd (again, after KillBGPD) with the same config and
// returns once it answers vtysh.
func (f *FRR) StartBGPD() {
	f.tb.Helper()
	name := "bgpd"
	if f.bgpdStarts++; f.bgpdStarts > 1 {
		name = fmt.Sprintf("bgpd.%d", f.bgpdStarts)
	}
	f.bgpd = Start(f.tb, f.NS, f.Dir, name, f.bgpdArgs...)
	Eventually(f.tb, 10*time.Second, "bgpd answering vtysh", func() error {
		_, err := f.Vtysh("show bgp summary json")
		return err
	})
}

// KillBGPD ends bgpd with SIGKILL, as a crash does: its sessions end
// without a NOTIFICATION, so neighbours with graceful restart keep its
// routes; zebra stays. It returns once bgpd is gone.
func (f *FRR) KillBGPD() {
	f.tb.Helper()
	if err := f.bgpd.Signal(syscall.SIGKILL); err != nil {
		f.tb.Fatalf("kill bgpd in %s: %v", f.NS, err)
	}
	Eventually(f.tb, 10*time.Second, "bgpd gone", func() error {
		if !f.bgpd.Exited() {
			return errorf("still running")
		}
		return nil
	})
}

// Vtysh runs commands through vtysh (one -c each) and returns the output.
func (f *FRR) Vtysh(cmds ...string) (string, error) {
	args := []string{"--vty_socket", f.Dir}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command("vtysh", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vtysh %q: %v: %s", cmds, err, out)
	}
	return string(out), nil
}

// Configure applies configuration lines under "configure terminal".
func (f *FRR) Configure(lines ...string) {
	f.tb.Helper()
	if _, err := f.Vtysh(append([]string{"configure terminal"}, lines...)...); err != nil {
		f.tb.Fatal(err)
	}
}

// Route is what FRR's `show bgp <afi> unicast json` says about the best
// path of a prefix.
type Route struct {
	Path   string // AS path, "65001 65003"
	Origin string
	Metric *uint32 // MED
	// Version is FRR's table version of the path's last change: it moves
	// when the prefix is withdrawn and announced again, not when a
	// duplicate update arrives.
	Version uint64
}

// Routes returns the prefixes FRR has a valid path for in family ("ipv4"
// or "ipv6"), read from its JSON: what the neighbour really received.
func (f *FRR) Routes(family string) (map[netip.Prefix]Route, error) {
	out, err := f.Vtysh("show bgp " + family + " unicast json")
	if err != nil {
		return nil, err
	}
	var doc struct {
		Routes map[string][]struct {
			Valid    bool    `json:"valid"`
			Bestpath bool    `json:"bestpath"`
			Path     string  `json:"path"`
			Origin   string  `json:"origin"`
			Metric   *uint32 `json:"metric"`
			Version  uint64  `json:"version"`
		} `json:"routes"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("parse `show bgp %s unicast json`: %v: %.200s", family, err, out)
	}
	m := make(map[netip.Prefix]Route, len(doc.Routes))
	for k, paths := range doc.Routes {
		p, err := netip.ParsePrefix(k)
		if err != nil {
			return nil, fmt.Errorf("route %q: %w", k, err)
		}
		for _, x := range paths {
			if x.Valid && x.Bestpath {
				m[p] = Route{Path: x.Path, Origin: x.Origin, Metric: x.Metric, Version: x.Version}
			}
		}
	}
	return m, nil
}

// Communities returns the communities of the best path of p, as FRR
// prints them ("65000:1 65000:2"), or "" when it has none.
func (f *FRR) Communities(p netip.Prefix) (string, error) {
	fam := "ipv4"
	if p.Addr().Is6() {
		fam = "ipv6"
	}
	out, err := f.Vtysh(fmt.Sprintf("show bgp %s unicast %s json", fam, p))
	if err != nil {
		return "", err
	}
	var doc struct {
		Paths []struct {
			Community *struct {
				String string `json:"string"`
			} `json:"community"`
			Bestpath *struct {
				Overall bool `json:"overall"`
			} `json:"bestpath"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return "", fmt.Errorf("parse route %v: %v: %.200s", p, err, out)
	}
	for _, x := range doc.Paths {
		if x.Bestpath != nil && x.Bestpath.Overall && x.Community != nil {
			return x.Community.String, nil
		}
	}
	return "", nil
}

// WaitEstablished waits until FRR's session with neighbour is up.
func (f *FRR) WaitEstablished(neighbour string, timeout time.Duration) {
	f.tb.Helper()
	Eventually(f.tb, timeout, "FRR session with "+neighbour, func() error {
		out, err := f.Vtysh("show bgp neighbors " + neighbour + " json")
		if err != nil {
			return err
		}
		if !strings.Contains(out, `"bgpState":"Established"`) {
			return errorf("not established")
		}
		return nil
	})
}

// Neighbour is one BGP neighbour in an FRR config.
type Neighbour struct {
	Address string
	AS      uint32
	// Families are the unicast families the session carries, "ipv4"
	// and "ipv6"; none: the family of Address. A gobgpd (GobgpdConf) also
	// takes any other family by GoBGP's name ("l3vpn-ipv4-unicast"). IPv4 over an IPv6 session
	// takes IPv6 next hops (RFC 8950): FRR is told so (capability
	// extended-nexthop), GoBGP always offers it.
	Families []string
}

// families is n's unicast families, Families or the family of its address.
func (n Neighbour) families() []string {
	if len(n.Families) > 0 {
		return n.Families
	}
	if netip.MustParseAddr(n.Address).Is4() {
		return []string{"ipv4"}
	}
	return []string{"ipv6"}
}

// carries says whether n's session carries the unicast family fam.
func (n Neighbour) carries(fam string) bool { return slices.Contains(n.families(), fam) }

// BGPConfig renders the router bgp section for an FRR that peers with
// neighbours (each in its Families: by default IPv4 and IPv6 addresses
// activate their own family only), connects again after 1 s, and announces
// networks.
func BGPConfig(as uint32, routerID string, ns []Neighbour, networks []netip.Prefix) string {
	var b strings.Builder
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n no bgp network import-check\n", as, routerID)
	for _, n := range ns {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s timers connect 1\n neighbor %s advertisement-interval 0\n", n.Address, n.AS, n.Address, n.Address)
		if netip.MustParseAddr(n.Address).Is6() && n.carries("ipv4") {
			fmt.Fprintf(&b, " neighbor %s capability extended-nexthop\n", n.Address)
		}
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		fmt.Fprintf(&b, " address-family %s unicast\n", fam)
		for _, n := range ns {
			if n.carries(fam) {
				fmt.Fprintf(&b, "  neighbor %s activate\n", n.Address)
			}
		}
		for _, p := range networks {
			if p.Addr().Is4() == (fam == "ipv4") {
				fmt.Fprintf(&b, "  network %s\n", p)
			}
		}
		b.WriteString(" exit-address-family\n")
	}
	return b.String()
}

// Announce makes the FRR announce (or, with withdraw, stop announcing) p.
func (f *FRR) Announce(p netip.Prefix, withdraw bool) {
	f.tb.Helper()
	fam := "ipv4"
	if p.Addr().Is6() {
		fam = "ipv6"
	}
	cmd := "network " + p.String()
	if withdraw {
		cmd = "no " + cmd
	}
	f.Configure(fmt.Sprintf("router bgp %d", f.AS), "address-family "+fam+" unicast", cmd)
}
