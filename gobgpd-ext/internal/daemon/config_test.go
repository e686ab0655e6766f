package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/gobgp"
	"github.com/fibgate/fibgate/plugin/kernel"
)

func TestAnEmptyFileIsTheDefaults(t *testing.T) {
	c, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse([]byte("# every key at its default\n# log_level: info\n")); err != nil {
		t.Errorf("a file of comments: %v", err)
	}
	d := Defaults()
	if c.Backend.Type != "kernel" || c.API.Socket != d.API.Socket || !c.InstallEnabled() || !c.flushOnExit() ||
		c.Install.Table != 254 || c.Install.Metric != 20 || c.BGP.HoldCommunity != gobgp.DefaultHoldCommunity ||
		len(c.BGP.OriginateProtocols) != 0 || c.GuardInterval() != 100*time.Millisecond {
		t.Errorf("defaults: %+v", c)
	}
	if len(c.GatePolicy().Scopes) != len(gate.DefaultPolicy().Scopes) {
		t.Errorf("policy %+v, want the default", c.GatePolicy())
	}
}

func TestSettingsAreRead(t *testing.T) {
	c, err := Parse([]byte(`
netns: leaf1
notify_mode: 1
backend:
  type: sim
  sim: {mode: spectrum, latency: 250ms, ports: [eth1, eth2]}
bgp:
  originate_protocols: [static, "17"]
  communities: ["65001:100"]
  med: 50
  next_hop4: 192.0.2.1
install:
  table: 254
  metric: 30
  flush_on_exit: false
policy:
  scopes:
    - name: loopbacks
      family: ipv4
      prefixes: [{prefix: 10.255.0.0/16, min_len: 32, max_len: 32}]
      level: offload
    - name: v6
      family: ipv6
`))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := c.simConfig()
	if err != nil || sc.Latency != 250*time.Millisecond || len(sc.Ports) != 2 || string(sc.Mode) != "spectrum" {
		t.Errorf("sim %+v %v", sc, err)
	}
	orig, err := c.originate()
	if err != nil || fmt.Sprint(orig) != "[static 17]" {
		t.Errorf("originate %v %v", orig, err)
	}
	if c.flushOnExit() || c.Install.Metric != 30 || c.NotifyMode != "1" {
		t.Errorf("install %+v notify %q", c.Install, c.NotifyMode)
	}
	g, err := c.GoBGP()
	if err != nil || *g.MED != 50 || g.NextHop4 != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("gobgp %+v %v", g, err)
	}
	// GoBGP holds exactly what the gate judges.
	want := []gobgp.Range{{Prefix: netip.MustParsePrefix("10.255.0.0/16"), MinLen: 32, MaxLen: 32}, {Prefix: netip.MustParsePrefix("::/0"), MinLen: 0, MaxLen: 128}}
	if fmt.Sprint(g.Scope) != fmt.Sprint(want) {
		t.Errorf("scope %v, want %v", g.Scope, want)
	}
}

// TestScopeOfMatchesThePolicy: every prefix the policy gates is held by
// GoBGP and nothing else, for random prefixes against nested scopes.
func TestScopeOfMatchesThePolicy(t *testing.T) {
	p := gate.Policy{Scopes: []gate.Scope{
		{Name: "a", Family: fib.IPv4, Prefixes: []gate.PrefixRange{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), MinLen: 16, MaxLen: 24}}},
		{Name: "b", Family: fib.IPv4, Prefixes: []gate.PrefixRange{{Prefix: netip.MustParsePrefix("10.1.0.0/16")}}}, // /16../32
		{Name: "c", Family: fib.IPv6},
	}}
	ranges := ScopeOf(p)
	in := func(q netip.Prefix) bool {
		for _, r := range ranges {
			lo, hi := r.MinLen, r.MaxLen
			if r.Prefix.Addr().Is4() == q.Addr().Is4() && q.Bits() >= r.Prefix.Bits() && r.Prefix.Contains(q.Addr()) && q.Bits() >= lo && q.Bits() <= hi {
				return true
			}
		}
		return false
	}
	for _, s := range []string{"10.2.0.0/16", "10.2.3.0/24", "10.2.3.4/32", "10.1.2.3/32", "10.0.0.0/8", "11.0.0.0/16", "2001:db8::/32", "::/0"} {
		q := netip.MustParsePrefix(s)
		_, gated := p.Match(fib.TableMain, q)
		if in(q) != gated {
			t.Errorf("%v: held by GoBGP %v, gated by the policy %v", q, in(q), gated)
		}
	}
}

func TestBadSettingsNameTheField(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ yaml, want string }{
		{"backend: {type: asic}", "backend.type"},
		{"backend: {type: sim, sim: {mode: fast}}", "backend.sim: mode"},
		{"backend: {type: sim, sim: {latency: soon}}", "not a duration"},
		{"notify_mode: 3", "notify_mode"},
		{"log_level: loud", "log_level"},
		{"api: {listen: ':9000'}", "api.listen needs"},
		{"install: {protocol: carrier-pigeon}", "install.protocol"},
		{"bgp: {originate_protocols: [bgp]}", "installer's protocol"},
		{"bgp: {release_protocols: [bgp]}", "bgp.release_protocols: bgp is the installer's protocol"},
		{"bgp: {release_protocols: [static], originate_protocols: [static]}", "bgp.release_protocols: static is in bgp.originate_protocols too"},
		{"bgp: {release_protocols: [nonsense-proto]}", "bgp.release_protocols"},
		{"bgp: {hold_community: '65535:666'}", "hold community"},
		{"bgp: {next_hop4: '2001:db8::1'}", "next_hop4"},
		{"bgp: {release: sideways}", "release \"sideways\": want auto, reexport, toggle or copy"},
		{"install: {table: 100}", "install.table 100 is in no scope"},
		{"policy: {scopes: [{name: x, level: loud}]}", "policy: scopes[0].level"},
		{"policy: {scopes: []}\npolicy_file: x.yaml", "give one of them"},
		{"policy_file: " + filepath.Join(dir, "missing.yaml"), "policy_file"},
		{"bakend: {}", "line 1: unknown field bakend"},
	} {
		_, err := Parse([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want it to mention %q", c.yaml, err, c.want)
		}
	}
	name := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(name, []byte("backend:\n  type: asic\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(name); err == nil || !strings.HasPrefix(err.Error(), name+": ") {
		t.Errorf("Load error %v does not start with the file name", err)
	}
}

// TestPolicyChangesOverTheAPIChangeTheScope: a policy change over the API
// that changes what GoBGP holds back reaches the Speaker first (issue 14):
// a new family, no scope at all (gating off), and back; an invalid policy
// changes nothing.
func TestPolicyChangesOverTheAPIChangeTheScope(t *testing.T) {
	c, err := Parse([]byte("policy:\n  scopes:\n    - name: v4\n      family: ipv4\n"))
	if err != nil {
		t.Fatal(err)
	}
	gcfg, err := c.GoBGP()
	if err != nil {
		t.Fatal(err)
	}
	bgp := lab.StartServer(t, "", &api.Global{Asn: 65001, RouterId: "10.0.0.1"})
	sp, err := gobgp.NewInProcess(bgp, gcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Bootstrap(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close(context.Background()) })
	tr, err := gate.NewTracker(nil, c.GatePolicy())
	if err != nil {
		t.Fatal(err)
	}
	s := rescoping{Tracker: tr, sp: sp, log: slog.New(slog.DiscardHandler)}
	stricter := c.GatePolicy()
	stricter.Scopes = append([]gate.Scope(nil), stricter.Scopes...)
	stricter.Scopes[0].Level = gate.LevelOffload
	if err := s.SetPolicy(stricter); err != nil {
		t.Errorf("a new level was refused: %v", err)
	}
	wider := stricter
	wider.Scopes = append(wider.Scopes, gate.Scope{Name: "v6", Family: fib.IPv6})
	if err := s.SetPolicy(wider); err != nil {
		t.Fatalf("a new scope: %v", err)
	}
	if got, want := fmt.Sprint(sp.Config().Scope), fmt.Sprint(ScopeOf(wider)); got != want {
		t.Errorf("Speaker's scope %s, want %s", got, want)
	}
	if err := s.SetPolicy(gate.Policy{}); err != nil || !sp.Config().NoScope || len(tr.Policy().Scopes) != 0 {
		t.Errorf("gating off: %v, Speaker NoScope %v, tracker scopes %d", err, sp.Config().NoScope, len(tr.Policy().Scopes))
	}
	bad := wider
	bad.Scopes = append([]gate.Scope(nil), wider.Scopes...)
	bad.Scopes[1].Name = bad.Scopes[0].Name
	if err := s.SetPolicy(bad); !errors.Is(err, gate.ErrInvalidPolicy) || !sp.Config().NoScope {
		t.Errorf("an invalid policy: %v, Speaker NoScope %v; want refused and nothing changed", err, sp.Config().NoScope)
	}
	if err := s.SetPolicy(wider); err != nil || sp.Config().NoScope {
		t.Errorf("gating on again: %v, Speaker NoScope %v", err, sp.Config().NoScope)
	}
}

func TestExitCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
	}{
		{nil, ExitOK},
		{configErr(errors.New("x")), ExitConfig},
		{fmt.Errorf("open: %w", os.ErrPermission), ExitConfig},
		{fmt.Errorf("netns: %w", os.ErrNotExist), ExitConfig},
		{errors.New("listener: boom"), ExitError},
	} {
		if code, _ := ExitCode(c.err, "ns1"); code != c.code {
			t.Errorf("%v: exit %d, want %d", c.err, code, c.code)
		}
	}
}

// TestConfigErrorsPrintOneCleanLine: the start-up errors of issue 12 (the
// notify sysctl at 0, a missing TLS certificate, a key that does not match
// it) exit 2 with their own text on one line; they used to print
// `%!v(PANIC=Error method: ...)` because a "%w: %w" error unwraps to nil.
func TestConfigErrorsPrintOneCleanLine(t *testing.T) {
	missing := fmt.Errorf("api: load TLS certificate /etc/fibgate/cert.pem and key /etc/fibgate/key.pem: %w",
		&fs.PathError{Op: "open", Path: "/etc/fibgate/cert.pem", Err: fs.ErrNotExist})
	for _, c := range []struct {
		name, netns string
		err         error
		want        string
	}{
		{"the notify sysctl at 0", "", configErr(errors.New("net.ipv4.fib_notify_on_flag_change is 0: set notify_mode: 1")),
			"net.ipv4.fib_notify_on_flag_change is 0: set notify_mode: 1"},
		{"a missing certificate", "", configErr(missing), "open /etc/fibgate/cert.pem: file does not exist"},
		{"a mismatched key", "", configErr(errors.New("api: load TLS certificate c and key k: tls: private key does not match public key")),
			"private key does not match public key"},
		{"a joined error", "", configErr(errors.Join(errors.New("first"), errors.New("second"))), "first; second"},
	} {
		code, msg := ExitCode(c.err, c.netns)
		if code != ExitConfig || !strings.Contains(msg, c.want) || strings.Contains(msg, "PANIC") || strings.Contains(msg, "\n") {
			t.Errorf("%s: exit %d, %q; want %d and one line with %q", c.name, code, msg, ExitConfig, c.want)
		}
		if strings.HasPrefix(msg, "configuration:") {
			t.Errorf("%s: %q starts with the marker, not the cause", c.name, msg)
		}
		if errors.Unwrap(c.err) == nil {
			t.Errorf("%s: errors.Unwrap gives nil", c.name)
		}
	}
}

// TestEveryNumberIsCheckedUnderItsKey: numbers in the settings and their
// policy are finite and in range, and a mistake names its key (issue 12:
// a hold-down multiplier of NaN was accepted and turned damping off).
func TestEveryNumberIsCheckedUnderItsKey(t *testing.T) {
	for _, c := range []struct{ body, key string }{
		{"policy:\n  scopes:\n    - name: a\n      hold_down: {initial: 1s, max: 1m, multiplier: .nan}\n", "scopes[0].hold_down.multiplier"},
		{"policy:\n  scopes:\n    - name: a\n      hold_down: {initial: 1s, max: 1m, multiplier: .inf}\n", "scopes[0].hold_down.multiplier"},
		{"backend:\n  type: sim\n  sim:\n    fail_probability: .nan\n", "backend.sim: fail_probability"},
		{"backend:\n  type: sim\n  sim:\n    fail_probability: 1.5\n", "backend.sim: fail_probability"},
		{"backend:\n  type: sim\n  sim:\n    rate: -1\n", "backend.sim: rate"},
		{"backend:\n  type: sim\n  sim:\n    latency: -1s\n", "backend.sim: latency"},
		{"backend:\n  type: sim\n  sim:\n    jitter: -1s\n", "backend.sim: jitter"},
		{"rcvbuf: 0\n", "rcvbuf 0"},
		{"rcvbuf: 2147483647\n", "rcvbuf"},
		{"bgp:\n  guard_interval: 0s\n", "bgp.guard_interval"},
		{"audit:\n  interval: -1s\n", "audit.interval"},
	} {
		_, err := Parse([]byte(c.body))
		if err == nil || !strings.Contains(err.Error(), c.key) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want one line naming %s", c.body, err, c.key)
		}
	}
}

// TestNotifyModeZeroIsRefusedWhenAScopeWaitsForHardware: writing 0 (or 2,
// failures only) to fib_notify_on_flag_change would hold every such prefix
// forever, so it is refused like the sysctl found at 0 (checkNotify); at level fib no
// flag is needed and 0 is accepted.
func TestNotifyModeZeroIsRefusedWhenAScopeWaitsForHardware(t *testing.T) {
	if _, err := Parse([]byte("notify_mode: \"0\"\n")); err == nil || !strings.Contains(err.Error(), "notify_mode") {
		t.Errorf("notify_mode 0 with the default policy (hardware): %v, want refused naming notify_mode", err)
	}
	// 2 announces offload failures only: an offload would never arrive.
	if _, err := Parse([]byte("notify_mode: \"2\"\n")); err == nil || !strings.Contains(err.Error(), "only offload failures") {
		t.Errorf("notify_mode 2 with the default policy (hardware): %v, want refused saying only failures are announced", err)
	}
	if _, err := Parse([]byte("notify_mode: \"1\"\n")); err != nil {
		t.Errorf("notify_mode 1: %v", err)
	}
	body := "notify_mode: \"0\"\npolicy:\n  scopes:\n    - name: a\n      level: fib\ninstall:\n  enabled: false\n"
	if _, err := Parse([]byte(body)); err != nil {
		t.Errorf("notify_mode 0 with a fib-level policy: %v", err)
	}
}

// TestAMissingSocketDirectoryIsAConfigurationError: exit 2 (systemd's
// RestartPreventExitStatus=2 then does not restart in a loop) with one
// line naming api.socket, found by New before anything runs.
func TestAMissingSocketDirectoryIsAConfigurationError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	cfg, err := Parse([]byte("notify_mode: \"1\"\napi:\n  socket: " + filepath.Join(dir, "fibgate.sock") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg, nil, nil)
	code, msg := ExitCode(err, "")
	if code != ExitConfig || !strings.Contains(msg, "api.socket") || !strings.Contains(msg, dir) || strings.Contains(msg, "api: api:") {
		t.Errorf("exit %d, %q; want %d naming api.socket and %s", code, msg, ExitConfig, dir)
	}
}

// TestEachSwitchIsItsOwn: every boolean setting that defaults to true is
// a pointer in Config; turning one off must leave the others on. The
// defaults once shared one bool, so flush_on_exit: false (or
// bgp.not_to_sets: false) turned the FIB installer off.
func TestEachSwitchIsItsOwn(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		off  func(Config) bool
	}{
		{"install:\n  flush_on_exit: false\n", func(c Config) bool { return !c.flushOnExit() }},
		{"install:\n  enabled: false\n", func(c Config) bool { return !c.InstallEnabled() }},
		{"bgp:\n  not_to_sets: false\n", func(c Config) bool { return !*c.BGP.NotToSets }},
	} {
		c, err := Parse([]byte(tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		on := 0
		for _, v := range []bool{c.flushOnExit(), c.InstallEnabled(), *c.BGP.NotToSets} {
			if v {
				on++
			}
		}
		if !tc.off(c) || on != 2 {
			t.Errorf("%q: flush_on_exit %v, install.enabled %v, bgp.not_to_sets %v; want only that one off",
				tc.yaml, c.flushOnExit(), c.InstallEnabled(), *c.BGP.NotToSets)
		}
	}
}

// TestReleaseIsAskedFor: bgp.release reaches the Speaker's Config: copy
// and toggle as such, the default ("auto") and "reexport" as neither, so
// that an in-process Speaker re-exports where it can.
func TestReleaseIsAskedFor(t *testing.T) {
	for _, tc := range []struct {
		yaml         string
		copy, toggle bool
	}{{"", false, false}, {"bgp: {release: auto}", false, false}, {"bgp: {release: reexport}", false, false},
		{"bgp: {release: toggle}", false, true}, {"bgp: {release: copy}", true, false}} {
		c, err := Parse([]byte(tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		g, err := c.GoBGP()
		if err != nil {
			t.Fatal(err)
		}
		if g.ReleaseByCopy != tc.copy || g.ReleaseByToggle != tc.toggle {
			t.Errorf("%q: ReleaseByCopy %v and ReleaseByToggle %v, want %v and %v", tc.yaml, g.ReleaseByCopy, g.ReleaseByToggle, tc.copy, tc.toggle)
		}
	}
}

// TestKernelsWithoutTheNotifySysctl: a kernel with IPv6 disabled has no
// IPv6 sysctl and no IPv6 prefix to confirm, so the gate runs; one older
// than Linux 5.12 never announces hardware flags, so a gate waiting for
// them is refused with what to do (exit 2), and one at level fib runs.
func TestKernelsWithoutTheNotifySysctl(t *testing.T) {
	defer func(f func(kernel.Options, fib.Family) (int, error)) { notifyMode = f }(notifyMode)
	hardware, err := Parse([]byte("notify_mode: \"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	fibOnly, err := Parse([]byte("policy:\n  scopes:\n    - name: a\n      level: fib\n"))
	if err != nil {
		t.Fatal(err)
	}

	notifyMode = func(_ kernel.Options, fam fib.Family) (int, error) {
		if fam == fib.IPv6 {
			return 0, fmt.Errorf("read: %w", kernel.ErrFamilyDisabled)
		}
		return 1, nil
	}
	if err := checkNotify(hardware); err != nil {
		t.Errorf("IPv6 disabled, IPv4 at 1: %v; want the gate to run", err)
	}

	notifyMode = func(kernel.Options, fib.Family) (int, error) {
		return 0, fmt.Errorf("read: %w", kernel.ErrNotifyUnsupported)
	}
	code, msg := ExitCode(checkNotify(hardware), "")
	if code != ExitConfig || !strings.Contains(msg, "5.12") || !strings.Contains(msg, "level fib") {
		t.Errorf("a kernel older than 5.12: exit %d, %q; want %d naming 5.12 and level fib", code, msg, ExitConfig)
	}
	if err := checkNotify(fibOnly); err != nil {
		t.Errorf("a kernel older than 5.12, level fib: %v; want the gate to run", err)
	}

	// At 2 the kernel announces offload failures only.
	notifyMode = func(kernel.Options, fib.Family) (int, error) { return 2, nil }
	if code, msg := ExitCode(checkNotify(hardware), ""); code != ExitConfig || !strings.Contains(msg, "is 2") {
		t.Errorf("the sysctl at 2: exit %d, %q; want %d naming the value", code, msg, ExitConfig)
	}
}
