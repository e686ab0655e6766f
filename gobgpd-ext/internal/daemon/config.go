// Package daemon assembles fibgate's parts into the running gate shared by
// the three daemons: `fibgate serve` (no BGP), fibgated (the sidecar of a
// stock gobgpd) and gobgpd-ext (gobgpd with the gate inside). One place
// decides the start-up order and the shutdown sequence, so the three
// cannot drift apart in what they promise an operator.
package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fibgate/fibgate/gobgpd-ext/internal/policyfile"
	"github.com/fibgate/fibgate/plugin/api"
	"github.com/fibgate/fibgate/plugin/audit"
	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/gate"
	"github.com/fibgate/fibgate/plugin/gobgp"
	"github.com/fibgate/fibgate/plugin/hw/sim"
	"github.com/fibgate/fibgate/plugin/kernel"
)

// Config is the fibgate settings file (YAML) of fibgated (-c) and
// gobgpd-ext (--fibgate-config): every key is optional and its default is
// what Defaults returns (deploy/examples/fibgate.yaml lists them all).
// Unknown keys are errors: a typo must not silently become a default.
type Config struct {
	// NetNS is the network namespace whose FIB is followed and written;
	// "" is the daemon's own.
	NetNS string `yaml:"netns"`
	// NotifyMode, when set ("0", "1" or "2"), is written to
	// net.ipv{4,6}.fib_notify_on_flag_change at start.
	NotifyMode string `yaml:"notify_mode"`
	// RcvBuf is the notification socket's receive buffer in bytes.
	RcvBuf int `yaml:"rcvbuf"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`

	Backend Backend `yaml:"backend"`
	API     API     `yaml:"api"`
	// Metrics is the address of the Prometheus endpoint (/metrics); "" is off.
	Metrics string `yaml:"metrics"`

	// PolicyFile names a policy file; Policy holds one inline. At most one
	// of them; with neither, every main-table prefix is gated on hardware.
	PolicyFile string    `yaml:"policy_file"`
	Policy     yaml.Node `yaml:"policy"`

	BGP     BGPSettings `yaml:"bgp"`
	Install Install     `yaml:"install"`
	Audit   Audit       `yaml:"audit"`
	// GracefulRestart: how a stop for a restart and a restart behave
	// (restart.go).
	GracefulRestart GracefulRestart `yaml:"graceful_restart"`

	policy gate.Policy // resolved by Load
}

// Backend selects where hardware state comes from.
type Backend struct {
	// Type is kernel (a switchdev driver sets the flags), sim (the
	// simulated ASIC) or external (agents report over the API).
	Type string `yaml:"type"`
	Sim  Sim    `yaml:"sim"`
	// WarnUnconfirmed is how long prefixes may wait for the hardware
	// with no route of a gated table ever showing a hardware flag before
	// the daemon says, once, that no driver seems to offload routes: a
	// machine without a switchdev driver (or with one that does not
	// offload routes) holds every prefix for good, and otherwise only the
	// pending count would tell. 0 turns the warning off.
	WarnUnconfirmed Duration `yaml:"warn_unconfirmed"`
}

// Sim is the simulated ASIC's part of the config (plugin/hw/sim.Config).
type Sim struct {
	Mode            string   `yaml:"mode"`
	Latency         Duration `yaml:"latency"`
	Jitter          Duration `yaml:"jitter"`
	Rate            int      `yaml:"rate"`
	FailProbability float64  `yaml:"fail_probability"`
	Ports           []string `yaml:"ports"`
	// Warm keeps the simulated hardware across a restart of the daemon,
	// as an ASIC keeps forwarding while its control plane restarts
	// (plugin/hw/sim.Config.Warm).
	Warm bool `yaml:"warm"`
	// Capacity is the hardware table's size per family and kind (0:
	// unlimited); CapacityMode is what a route that does not fit gets:
	// flag (offload_failed, kept in the kernel) or refuse (its write is
	// refused, as netdevsim's FIB resource refuses it).
	Capacity     SimCapacity `yaml:"capacity"`
	CapacityMode string      `yaml:"capacity_mode"`
}

// SimCapacity is the simulated table's size (plugin/hw/sim.Capacity).
type SimCapacity struct {
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv4Host   int `yaml:"ipv4_host"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
	IPv6Host   int `yaml:"ipv6_host"`
}

// API says where the fibgate API is served, and who may write over TCP.
type API struct {
	Socket      string `yaml:"socket"`
	Listen      string `yaml:"listen"`
	TLSCert     string `yaml:"tls_cert"`
	TLSKey      string `yaml:"tls_key"`
	TLSClientCA string `yaml:"tls_client_ca"`
	// AdminClients and ReadClients name client certificates ("cn:NAME",
	// "dns:NAME", "uri:URI", "email:ADDRESS", "ip:ADDRESS"; api.Roles):
	// admins may write over TCP, readers may read (empty: every
	// certificate of the client CA). Both need TLSClientCA: without it
	// the TCP listener is read-only.
	AdminClients []string `yaml:"admin_clients"`
	ReadClients  []string `yaml:"read_clients"`
}

// Roles parses the client lists for api.WithTCPRoles; errors name the key.
func (a API) Roles() (api.Roles, error) {
	var r api.Roles
	for _, l := range []struct {
		key  string
		in   []string
		into *[]api.ClientID
	}{{"api.admin_clients (fibgate serve: --admin-client)", a.AdminClients, &r.Admins},
		{"api.read_clients (fibgate serve: --read-client)", a.ReadClients, &r.Readers}} {
		for _, s := range l.in {
			id, err := api.ParseClientID(s)
			if err != nil {
				return r, fmt.Errorf("%s: %w", l.key, err)
			}
			*l.into = append(*l.into, id)
		}
	}
	return r, nil
}

// BGPSettings is what fibgate installs in GoBGP and announces itself.
type BGPSettings struct {
	// OriginateProtocols are the kernel route protocols (names such as
	// static, or numbers) whose gated routes fibgate announces itself.
	// Empty by default: nothing is originated unless asked for.
	OriginateProtocols []string `yaml:"originate_protocols"`
	// ReleaseProtocols are kernel route protocols whose confirmed routes
	// release GoBGP's own paths of their prefix, as the installer's
	// protocol releases learned ones, without fibgate announcing
	// anything itself: the paths GoBGP's zebra client redistributes
	// (connected subnets: kernel) or that a controller adds over GoBGP's
	// API beside a route of its own. Empty by default.
	ReleaseProtocols []string `yaml:"release_protocols"`
	HoldCommunity    string   `yaml:"hold_community"`
	Communities      []string `yaml:"communities"`
	LargeCommunities []string `yaml:"large_communities"`
	MED              *uint32  `yaml:"med"`
	LocalPref        *uint32  `yaml:"local_pref"`
	NextHop4         string   `yaml:"next_hop4"`
	NextHop6         string   `yaml:"next_hop6"`
	// KeepKernelGateway announces originated prefixes with their kernel
	// route's gateway where next_hop4/next_hop6 are unset, instead of
	// next hop self (gobgp.Config.KeepGateway).
	KeepKernelGateway bool `yaml:"keep_kernel_gateway"`
	// NotToSets keeps a prefix's new best path from neighbours whose AS
	// was in its previous one until the new route is programmed
	// (gobgp.Config.NoNotTo); default true.
	NotToSets *bool `yaml:"not_to_sets"`
	// Release says how a confirmed transit prefix goes out: "auto" (the
	// default): "reexport" where the daemon can, "toggle" elsewhere;
	// "reexport" (gobgpd-ext only): its learned path is let through the
	// gate and GoBGP asked to export it again, one operation for a whole
	// step (gobgp.Config.InProcessRelease); "toggle": its learned path is let
	// through the gate and a path that wins is added and deleted, so that
	// GoBGP exports it again (two operations and two best-path events a
	// prefix; what fibgated does); "copy" (gobgpd-ext only): a copy of the
	// learned path is added, and no learned path is ever exported
	// (gobgp.Config.ReleaseByCopy).
	Release string `yaml:"release"`
	// FallbackPolicy names the reject-everything-in-scope policy listed
	// in gobgpd's own config (fibgated --print-fallback renders it);
	// gobgpd-ext adds it to the config it reads by itself.
	FallbackPolicy string `yaml:"fallback_policy"`
	// KeepOriginatedOnExit leaves originated paths in GoBGP at shutdown.
	KeepOriginatedOnExit bool `yaml:"keep_originated_on_exit"`
	// GuardInterval is how often the gate's presence in GoBGP is checked.
	GuardInterval Duration `yaml:"guard_interval"`
}

// Install configures the FIB installer (GoBGP best paths to the kernel).
type Install struct {
	Enabled  *bool  `yaml:"enabled"`
	Table    uint32 `yaml:"table"`
	Protocol string `yaml:"protocol"`
	Metric   uint32 `yaml:"metric"`
	// FlushOnExit removes the installed routes at shutdown (after BGP
	// stopped advertising what they carry).
	FlushOnExit *bool `yaml:"flush_on_exit"`
}

// Audit configures the consistency audit of the daemons with BGP
// (plugin/audit): GoBGP's adj-out and RIB against the FIB, the hardware
// state and the gate's states.
type Audit struct {
	// Interval is how often it runs; 0 turns the periodic audit off
	// (`fibgate audit` still runs one on demand). A pass that falls due
	// while the gate converges (more than 1% of its prefixes, and more
	// than 1,000, on their way to hardware or to BGP) waits for it, at
	// most five intervals.
	Interval Duration `yaml:"interval"`
	// WholeRIBMax is the largest table, in gated prefixes, whose whole RIB
	// periodic passes read (one in ten): GoBGP holds its main loop while
	// it copies a table for a listing (seconds at a full table). Larger,
	// they read only the prefixes the gate and the FIB know; 0: never.
	// Larger, fibgated's periodic passes also leave the neighbours'
	// adj-out unread (gobgpd's API exports the whole table in its main
	// loop for every read) and name what GoBGP's gate lets out
	// unconfirmed without it; gobgpd-ext reads adj-out for the prefixes
	// asked about only, at any size (audit.Ask.Large).
	WholeRIBMax int `yaml:"whole_rib_max"`
}

// DefaultWarnUnconfirmed is Backend.WarnUnconfirmed's default: long
// enough for any driver to flag its first route of a full table, short
// enough that a new user reads why before giving up.
const DefaultWarnUnconfirmed = 30 * time.Second

// Duration is a time.Duration written as Go writes it ("300ms", "1m30s").
type Duration time.Duration

// UnmarshalYAML reads "300ms"-style durations.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (like 300ms, 30s or 1m30s)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Defaults are the documented defaults; Load fills what a file leaves out
// from them.
func Defaults() Config {
	s := sim.DefaultConfig()
	// One bool each: YAML decodes a setting into the value its pointer
	// points at, so shared pointers would set each other (flush_on_exit:
	// false turned the installer off).
	yes := func() *bool { b := true; return &b }
	return Config{
		RcvBuf:   kernel.DefaultRcvBuf,
		LogLevel: "info",
		Backend: Backend{Type: "kernel", Sim: Sim{Mode: string(s.Mode), Latency: Duration(s.Latency),
			Jitter: Duration(s.Jitter), Rate: s.Rate, FailProbability: s.FailProbability, CapacityMode: string(s.CapacityMode)},
			WarnUnconfirmed: Duration(DefaultWarnUnconfirmed)},
		API: API{Socket: api.DefaultSocket},
		BGP: BGPSettings{HoldCommunity: gobgp.DefaultHoldCommunity, FallbackPolicy: "fibgate-fallback",
			GuardInterval: Duration(100 * time.Millisecond), NotToSets: yes(), Release: "auto"},
		Install:         Install{Enabled: yes(), Table: fib.TableMain, Protocol: "bgp", Metric: 20, FlushOnExit: yes()},
		Audit:           Audit{Interval: Duration(audit.DefaultInterval), WholeRIBMax: audit.DefaultWholeRIBLimit},
		GracefulRestart: GracefulRestart{Timeout: Duration(DefaultRestartTimeout)},
		policy:          gate.DefaultPolicy(),
	}
}

// Load reads a settings file over the defaults and checks it; errors name
// the file and the line or field.
func Load(name string) (Config, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return Config{}, err
	}
	c, err := Parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// Parse reads settings from YAML over the defaults and checks them.
func Parse(b []byte) (Config, error) {
	c := Defaults()
	if len(bytes.TrimSpace(b)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) { // EOF: only comments
			return Config{}, policyfile.YAMLError(err)
		}
	}
	return c, c.Check()
}

// Check validates the settings and reads the policy; Load and Parse call
// it, a caller that fills a Config from flags calls it before New.
func (c *Config) Check() error {
	if c.Policy.Kind != 0 && c.PolicyFile != "" {
		return errors.New("policy and policy_file: give one of them")
	}
	var pp []byte
	switch {
	case c.PolicyFile != "":
		b, err := os.ReadFile(c.PolicyFile)
		if err != nil {
			return fmt.Errorf("policy_file: %w", err)
		}
		pp = b
	case c.Policy.Kind != 0:
		b, err := yaml.Marshal(&c.Policy)
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		pp = b
	}
	if pp != nil {
		wire, err := policyfile.Parse(pp)
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		if c.policy, err = api.PolicyFromProto(wire); err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		if err := c.policy.Validate(); err != nil {
			return fmt.Errorf("policy: %w", err)
		}
	}
	if c.NotifyMode != "" {
		v, err := strconv.Atoi(c.NotifyMode)
		if _, err2 := fib.ParseNotifyMode(v); err != nil || err2 != nil {
			return fmt.Errorf("notify_mode %q: want 0, 1 or 2", c.NotifyMode)
		}
		// The same refusal as checkNotify's when it finds the sysctl at
		// 0 or 2: writing either would hold every prefix of these scopes
		// forever (2 announces offload failures, never an offload).
		if gap := fib.NotifyMode(v).Unheard(); gap != "" {
			if fams := hardwareFamilies(c.policy); len(fams) > 0 {
				return fmt.Errorf("notify_mode \"%d\" (fibgate serve: --set-notify %d): %s, so no %s prefix gated at level hardware or offload would ever be confirmed; set \"1\", leave it empty, or gate at level fib", v, v, gap, fams[0])
			}
		}
	}
	if c.RcvBuf < minRcvBuf || c.RcvBuf > maxRcvBuf {
		return fmt.Errorf("rcvbuf %d: want %d to %d bytes", c.RcvBuf, minRcvBuf, maxRcvBuf)
	}
	if c.Backend.WarnUnconfirmed < 0 {
		return fmt.Errorf("backend.warn_unconfirmed %s: want 0 (off) or a positive duration", time.Duration(c.Backend.WarnUnconfirmed))
	}
	if c.Audit.Interval < 0 {
		return fmt.Errorf("audit.interval %s: want 0 (off) or a positive duration", time.Duration(c.Audit.Interval))
	}
	if c.Audit.WholeRIBMax < 0 {
		return fmt.Errorf("audit.whole_rib_max %d: want 0 (never) or a positive number of prefixes", c.Audit.WholeRIBMax)
	}
	if err := c.GracefulRestart.check(); err != nil {
		return err
	}
	if c.BGP.GuardInterval <= 0 {
		return fmt.Errorf("bgp.guard_interval %s: want a positive duration", time.Duration(c.BGP.GuardInterval))
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel) {
		return fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.Backend.Type {
	case "kernel", "external":
	case "sim":
		if _, err := c.simConfig(); err != nil {
			return fmt.Errorf("backend.sim: %w", err)
		}
	default:
		return fmt.Errorf("backend.type %q: want kernel, sim or external", c.Backend.Type)
	}
	if c.API.Listen != "" && (c.API.TLSCert == "" || c.API.TLSKey == "") {
		return errors.New("api.listen needs api.tls_cert and api.tls_key: the API is not served in clear text over TCP")
	}
	if _, err := c.API.Roles(); err != nil {
		return err
	}
	if (len(c.API.AdminClients) > 0 || len(c.API.ReadClients) > 0) && c.API.TLSClientCA == "" {
		return errors.New("api.admin_clients and api.read_clients (fibgate serve: --admin-client, --read-client) need api.tls_client_ca (--tls-client-ca): without client certificates nobody can be named, and the TCP listener is read-only")
	}
	if _, err := c.installProtocol(); err != nil {
		return err
	}
	if _, err := c.release(); err != nil {
		return err
	}
	if c.InstallEnabled() {
		if !c.tableGated(c.Install.Table) {
			return fmt.Errorf("install.table %d is in no scope of the policy: learned prefixes installed there would never be confirmed, so GoBGP would hold them forever", c.Install.Table)
		}
	}
	if _, err := c.GoBGP(); err != nil {
		return fmt.Errorf("bgp: %w", err)
	}
	return nil
}

// tableGated reports whether some scope of the policy covers table t.
func (c *Config) tableGated(t uint32) bool { return slices.Contains(c.policy.Tables(), t) }

// GatePolicy is the gating policy the settings resolve to.
func (c *Config) GatePolicy() gate.Policy { return c.policy }

// InstallEnabled reports whether the FIB installer runs (install.enabled).
func (c *Config) InstallEnabled() bool { return c.Install.Enabled == nil || *c.Install.Enabled }

func (c *Config) flushOnExit() bool { return c.Install.FlushOnExit == nil || *c.Install.FlushOnExit }

func (c *Config) installProtocol() (fib.Protocol, error) {
	p, err := fib.ParseProtocol(c.Install.Protocol)
	if err != nil {
		return 0, fmt.Errorf("install.protocol: %w", err)
	}
	return p, nil
}

func (c *Config) originate() ([]fib.Protocol, error) {
	tp, _ := c.installProtocol()
	var out []fib.Protocol
	for _, s := range c.BGP.OriginateProtocols {
		p, err := fib.ParseProtocol(s)
		if err != nil {
			return nil, fmt.Errorf("bgp.originate_protocols: %w", err)
		}
		if p == tp {
			return nil, fmt.Errorf("bgp.originate_protocols: %s is the installer's protocol (install.protocol): fibgate would announce back what it learned", s)
		}
		out = append(out, p)
	}
	return out, nil
}

// release is the installer's protocol and bgp.release_protocols: the
// kernel route protocols whose confirmed routes release GoBGP's own
// paths of their prefix (gate.Transit).
func (c *Config) release() ([]fib.Protocol, error) {
	tp, err := c.installProtocol()
	if err != nil {
		return nil, err
	}
	orig, err := c.originate()
	if err != nil {
		return nil, err
	}
	out := []fib.Protocol{tp}
	for _, s := range c.BGP.ReleaseProtocols {
		p, err := fib.ParseProtocol(s)
		if err != nil {
			return nil, fmt.Errorf("bgp.release_protocols: %w", err)
		}
		switch {
		case p == tp:
			return nil, fmt.Errorf("bgp.release_protocols: %s is the installer's protocol (install.protocol), which releases already", s)
		case slices.Contains(orig, p):
			return nil, fmt.Errorf("bgp.release_protocols: %s is in bgp.originate_protocols too: fibgate announces those routes itself", s)
		}
		out = append(out, p)
	}
	return out, nil
}

// Bounds of rcvbuf: fibgate monitor's minimum, and the kernel package's
// maximum (the doubled value the kernel accounts must fit a C int).
const (
	minRcvBuf = 4096
	maxRcvBuf = 1 << 30
)

// simConfig checks the sim's numbers under their keys (the sim's own
// Validate names Go fields) and builds its config.
func (c *Config) simConfig() (sim.Config, error) {
	cfg := sim.DefaultConfig()
	s := c.Backend.Sim
	switch {
	case s.Latency < 0:
		return cfg, fmt.Errorf("latency %s: want a duration of 0 or more", time.Duration(s.Latency))
	case s.Jitter < 0:
		return cfg, fmt.Errorf("jitter %s: want a duration of 0 or more", time.Duration(s.Jitter))
	case s.Rate < 0:
		return cfg, fmt.Errorf("rate %d: want 0 (unlimited) or more routes per second", s.Rate)
	case math.IsNaN(s.FailProbability) || s.FailProbability < 0 || s.FailProbability > 1:
		return cfg, fmt.Errorf("fail_probability %g: want a number from 0 to 1", s.FailProbability)
	case s.Capacity.IPv4Prefix < 0 || s.Capacity.IPv4Host < 0 || s.Capacity.IPv6Prefix < 0 || s.Capacity.IPv6Host < 0:
		return cfg, fmt.Errorf("capacity %+v: want 0 (unlimited) or more routes of each kind", s.Capacity)
	}
	switch sim.CapacityMode(s.CapacityMode) {
	case sim.CapacityFlag, sim.CapacityRefuse:
		cfg.CapacityMode = sim.CapacityMode(s.CapacityMode)
	default:
		return cfg, fmt.Errorf("capacity_mode %q: want flag or refuse", s.CapacityMode)
	}
	cfg.Capacity = sim.Capacity{IPv4Prefix: s.Capacity.IPv4Prefix, IPv4Host: s.Capacity.IPv4Host,
		IPv6Prefix: s.Capacity.IPv6Prefix, IPv6Host: s.Capacity.IPv6Host}
	switch c.Backend.Sim.Mode {
	case "trap":
		cfg.Mode = sim.ModeTrap
	case "spectrum":
		cfg.Mode = sim.ModeSpectrum
	default:
		return cfg, fmt.Errorf("mode %q: want trap or spectrum", c.Backend.Sim.Mode)
	}
	cfg.Latency, cfg.Jitter = time.Duration(c.Backend.Sim.Latency), time.Duration(c.Backend.Sim.Jitter)
	cfg.Rate, cfg.FailProbability, cfg.Ports = c.Backend.Sim.Rate, c.Backend.Sim.FailProbability, c.Backend.Sim.Ports
	cfg.Warm = c.Backend.Sim.Warm
	return cfg, cfg.Validate()
}

// GoBGP is the gate's configuration in GoBGP. Its scope (what GoBGP holds
// back) is the policy's scopes' prefixes, so GoBGP holds exactly what the
// tracker judges: a prefix held in GoBGP but judged by no scope would never
// be released, and one judged but not held would leak.
func (c *Config) GoBGP() (gobgp.Config, error) {
	g := gobgp.Config{
		HoldCommunity: c.BGP.HoldCommunity, Communities: c.BGP.Communities, LargeCommunities: c.BGP.LargeCommunities,
		MED: c.BGP.MED, LocalPref: c.BGP.LocalPref, FallbackPolicy: c.BGP.FallbackPolicy,
		KeepOriginatedOnClose: c.BGP.KeepOriginatedOnExit, KeepGateway: c.BGP.KeepKernelGateway,
		NoNotTo: c.BGP.NotToSets != nil && !*c.BGP.NotToSets,
		Scope:   ScopeOf(c.policy), NoScope: len(c.policy.Scopes) == 0,
	}
	switch c.BGP.Release {
	case "", "auto", "reexport":
	case "toggle":
		g.ReleaseByToggle = true
	case "copy":
		g.ReleaseByCopy = true
	default:
		return g, fmt.Errorf("release %q: want auto, reexport, toggle or copy", c.BGP.Release)
	}
	for _, nh := range []struct {
		s   string
		dst *netip.Addr
		v4  bool
		key string
	}{{c.BGP.NextHop4, &g.NextHop4, true, "next_hop4"}, {c.BGP.NextHop6, &g.NextHop6, false, "next_hop6"}} {
		if nh.s == "" {
			continue
		}
		a, err := netip.ParseAddr(nh.s)
		if err != nil || a.Is4() != nh.v4 {
			return g, fmt.Errorf("%s %q: want an IPv%s address", nh.key, nh.s, map[bool]string{true: "4", false: "6"}[nh.v4])
		}
		*nh.dst = a
	}
	return g, g.Validate()
}

// ScopeOf turns the policy's scopes into GoBGP prefix ranges: a scope's
// prefix ranges as they are, a scope without prefixes as every prefix of
// its family (or of both).
func ScopeOf(p gate.Policy) []gobgp.Range {
	var out []gobgp.Range
	all4 := gobgp.Range{Prefix: netip.MustParsePrefix("0.0.0.0/0"), MinLen: 0, MaxLen: 32}
	all6 := gobgp.Range{Prefix: netip.MustParsePrefix("::/0"), MinLen: 0, MaxLen: 128}
	for _, s := range p.Scopes {
		if len(s.Prefixes) == 0 {
			if s.Family != fib.IPv6 {
				out = append(out, all4)
			}
			if s.Family != fib.IPv4 {
				out = append(out, all6)
			}
			continue
		}
		for _, r := range s.Prefixes {
			if s.Family != 0 && (s.Family == fib.IPv4) != r.Prefix.Addr().Is4() {
				continue
			}
			lo, hi := r.Bounds()
			out = append(out, gobgp.Range{Prefix: r.Prefix, MinLen: lo, MaxLen: hi})
		}
	}
	return out
}

// GuardInterval is how often the Speaker checks that the gate is still in
// GoBGP (bgp.guard_interval).
func (c *Config) GuardInterval() time.Duration { return time.Duration(c.BGP.GuardInterval) }
