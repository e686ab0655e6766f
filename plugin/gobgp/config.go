package gobgp

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/osrg/gobgp/v3/pkg/config/oc"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"
)

// DefaultHoldCommunity marks HOLD paths. It is in the private-use range
// (RFC 1997 leaves 65534:x to local use, unlike 65535:x, the well-known
// range, where 65535:666 is RFC 7999 BLACKHOLE: a HOLD path that escaped
// with it would blackhole the prefix at every neighbour honouring it).
const DefaultHoldCommunity = "65534:4711"

// DefaultName prefixes every set, statement and policy fibgate defines in
// GoBGP, so `gobgp policy` shows at a glance what belongs to the gate.
const DefaultName = "fibgate"

// Config says what the gate installs in GoBGP and which attributes
// originated prefixes carry. The zero value gates every prefix of both
// families and announces originated prefixes with next hop self.
type Config struct {
	// Name prefixes the names of the sets, statements and the policy;
	// default DefaultName. Two gates on one GoBGP need two names.
	Name string
	// Scope lists the prefixes that are gated (held until confirmed).
	// Empty means every prefix of both families (unless NoScope);
	// otherwise a family with no range in Scope is not gated at all.
	Scope []Range
	// NoScope gates nothing, whatever Scope says: the gate stays
	// installed and holds only HOLD paths, so gating can be turned on
	// again at run time (Rescope) without touching GoBGP's export chain.
	NoScope bool
	// HoldCommunity is the community of HOLD paths, "ASN:VALUE";
	// default DefaultHoldCommunity. Must not be well-known (65535:x or
	// 0:x): a peer could act on it.
	HoldCommunity string

	// Communities ("ASN:VALUE") and LargeCommunities ("ASN:X:Y") are added
	// to every originated prefix.
	Communities      []string
	LargeCommunities []string
	// MED and LocalPref, when set, go on every originated prefix.
	MED       *uint32
	LocalPref *uint32
	// NextHop4 and NextHop6 are the next hops of originated prefixes;
	// when unset, originated prefixes go out with 0.0.0.0 / ::, which
	// GoBGP replaces with its session address (next hop self): the one
	// next hop an eBGP neighbour always accepts.
	NextHop4, NextHop6 netip.Addr
	// KeepGateway announces an originated prefix with its kernel route's
	// gateway (the Advertisement's NextHop) where NextHop4/NextHop6 are
	// unset, instead of next hop self: a third-party next hop (RFC 4271
	// 5.1.3), for neighbours that share the gateway's subnet (iBGP, a
	// route server). An eBGP neighbour that cannot reach the gateway
	// directly rejects the route (BIRD: "Invalid NEXT_HOP attribute").
	KeepGateway bool

	// FallbackPolicy names a policy in gobgpd's own config file that
	// rejects the whole scope and HOLD paths (FallbackTOML renders it),
	// listed first in the file's global export policies. The gate then
	// lives in that policy: the Speaker releases prefixes by editing its
	// sets over the API. Whatever replaces the policies from the file (a
	// restart of gobgpd, a reload of any kind, gobgpd-ext's own reload)
	// puts back the file's version, which holds the whole scope: no
	// prefix leaks, also while fibgate is down, and the guard restores
	// the releases (it notices the reload by a sentinel set only the
	// Speaker defines). Empty: no fallback, and the gate is a policy of
	// its own that every policy reload of gobgpd drops (the guard
	// re-installs it within an interval; prefixes may leak meanwhile).
	FallbackPolicy string

	// NoNotTo keeps no not-to sets (notto.go): a released prefix whose
	// best path changes may then reach, for the fence window, neighbours
	// whose AS was in its previous path, which GoBGP never sent that path:
	// traffic they send meanwhile loops back to them on the old route (the
	// blackhole of docs/blackhole.md's "primary comes up"). The sets cost
	// GoBGP an entry per released prefix and neighbour AS in its path, and
	// a prefix-set lookup per export; NoNotTo saves both where paths
	// cannot come back through a neighbour's AS. (The AS index stays: the
	// release's HOLD path carries the source's AS, holdPathThrough.)
	NoNotTo bool

	// ReleaseByCopy releases a transit prefix learned over eBGP by adding
	// a copy of its learned best path as a local path of the gate's (the
	// kept copies' form, keep.go), instead of letting the learned path
	// through the held set: the learned paths stay held, so a new best
	// path never reaches a neighbour before its route is programmed
	// (make-before-break for new attributes too, with no fence window;
	// copy.go), a release costs GoBGP one operation instead of three,
	// and released prefixes need neither held-set nor not-to entries.
	// In process only (NewInProcess, gobgpd-ext): a copy outlives the
	// process that added it, so a sidecar that died would leave GoBGP
	// advertising copies of withdrawn paths. What neighbours receive
	// differs from the learned path's export where GoBGP treats local
	// paths differently: iBGP neighbours get next hop self and no MED.
	ReleaseByCopy bool

	// ReleaseByToggle releases a learned path by the HOLD toggle (a local
	// path that wins is added, then deleted, so GoBGP exports the prefix
	// again) even in process, where GoBGP can otherwise be asked to export
	// the prefix again directly (InProcessRelease). The toggle is what a
	// sidecar always does: it costs GoBGP two operations and two best-path
	// events a prefix, and it is kept as the fallback and for comparison.
	ReleaseByToggle bool

	// KeepOriginatedOnClose leaves originated paths in GoBGP when the
	// Speaker closes. By default Close deletes them: nobody watches their
	// hardware state any more.
	KeepOriginatedOnClose bool
}

// normalized is a validated Config with its parsed parts.
type normalized struct {
	Config
	hold      uint32
	keep      uint32 // community of kept copies (keep.go): keepCommunity(hold)
	keepComm  string // keep as "ASN:VALUE"
	comms     []uint32
	large     [][3]uint32
	v4, v6    *scope
	hash      string
	setV4     string
	setV6     string
	holdSet   string
	keepSet   string
	policy    string
	stmtHold  string
	stmtKeep  string
	stmtV4    string
	stmtV6    string
	gatePrefx string // what every policy of this gate name starts with
	// sentinel is a community set only the Speaker defines, added once
	// the gate is installed: a reload of gobgpd's policies deletes it,
	// which is how Check tells the file's fallback came back (FallbackPolicy
	// mode, where the chain itself stays the same).
	sentinel string
}

// inFallback reports whether the gate lives in the fallback policy of
// gobgpd's config file (Config.FallbackPolicy).
func (n *normalized) inFallback() bool { return n.FallbackPolicy != "" }

// Validate reports what NewClient and NewInProcess would reject, so a
// daemon can refuse its config file before it connects to anything.
func (c Config) Validate() error {
	_, err := c.normalize()
	return err
}

func (c Config) normalize() (*normalized, error) {
	n := &normalized{Config: c}
	if n.Name == "" {
		n.Name = DefaultName
	}
	if strings.ContainsAny(n.Name, " \t\n") {
		return nil, fmt.Errorf("config: name %q: no spaces", n.Name)
	}
	if strings.ContainsAny(n.FallbackPolicy, " \t\n\"") || (n.FallbackPolicy != "" && strings.HasPrefix(n.FallbackPolicy, n.Name+"-gate-")) {
		return nil, fmt.Errorf("config: fallback policy %q: no spaces or quotes, and not a name of the gate's own", n.FallbackPolicy)
	}
	if n.HoldCommunity == "" {
		n.HoldCommunity = DefaultHoldCommunity
	}
	var err error
	if n.hold, err = parseCommunity(n.HoldCommunity); err != nil {
		return nil, fmt.Errorf("config: hold community: %w", err)
	}
	if hi := n.hold >> 16; hi == 0 || hi == 0xffff {
		return nil, fmt.Errorf("config: hold community %s is in a reserved or well-known range (0:x, 65535:x); use a private one such as %s", n.HoldCommunity, DefaultHoldCommunity)
	}
	n.keep = keepCommunity(n.hold)
	n.keepComm = fmt.Sprintf("%d:%d", n.keep>>16, n.keep&0xffff)
	for _, s := range n.Communities {
		v, err := parseCommunity(s)
		if err != nil {
			return nil, fmt.Errorf("config: communities: %w", err)
		}
		if v == n.hold {
			return nil, fmt.Errorf("config: communities: %s is the hold community: originated prefixes would be held forever", s)
		}
		if v == n.keep {
			return nil, fmt.Errorf("config: communities: %s marks the gate's kept copies (the hold community's neighbour): the gate would strip it", s)
		}
		n.comms = append(n.comms, v)
	}
	for _, s := range n.LargeCommunities {
		v, err := parseLargeCommunity(s)
		if err != nil {
			return nil, fmt.Errorf("config: large communities: %w", err)
		}
		n.large = append(n.large, v)
	}
	if n.NextHop4.IsValid() && !n.NextHop4.Is4() {
		return nil, fmt.Errorf("config: next hop for IPv4 %v is not an IPv4 address", n.NextHop4)
	}
	if n.NextHop6.IsValid() && (!n.NextHop6.Is6() || n.NextHop6.Is4In6()) {
		return nil, fmt.Errorf("config: next hop for IPv6 %v is not an IPv6 address", n.NextHop6)
	}
	scope := n.Scope
	switch {
	case n.NoScope:
		scope = nil
	case len(scope) == 0:
		scope = []Range{
			{Prefix: netip.MustParsePrefix("0.0.0.0/0"), MaxLen: 32},
			{Prefix: netip.MustParsePrefix("::/0"), MaxLen: 128},
		}
	}
	var r4, r6 []Range
	for _, r := range scope {
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("config: scope: %w", err)
		}
		if r.Prefix.Addr().Is4() {
			r4 = append(r4, r)
		} else {
			r6 = append(r6, r)
		}
	}
	n.v4, n.v6 = newScope(32, r4), newScope(128, r6)

	// Names carry a hash of what defines the sets' contents, so a changed
	// configuration installs a new policy beside the old one and swaps
	// them in one assignment, instead of editing a policy in use.
	h := sha256.New()
	fmt.Fprintf(h, "hold=%d\n", n.hold)
	var rs []string
	for _, r := range scope {
		rs = append(rs, r.String())
	}
	slices.Sort(rs)
	fmt.Fprintf(h, "scope=%s none=%v\n", strings.Join(rs, ","), n.NoScope)
	n.hash = hex.EncodeToString(h.Sum(nil))[:8]
	n.gatePrefx = n.Name + "-gate-"
	n.policy = n.gatePrefx + n.hash
	n.stmtHold = n.policy + "-hold"
	n.stmtV4 = n.policy + "-v4"
	n.stmtV6 = n.policy + "-v6"
	n.stmtKeep = n.policy + "-keep"
	n.holdSet = n.Name + "-hold-" + n.hash
	n.keepSet = n.Name + "-keep-" + n.hash
	n.setV4 = n.Name + "-held-v4-" + n.hash
	n.setV6 = n.Name + "-held-v6-" + n.hash
	if n.inFallback() {
		// The names FallbackTOML writes into gobgpd's file: statements
		// are named after their sets.
		f := n.FallbackPolicy
		n.policy, n.holdSet, n.keepSet, n.setV4, n.setV6 = f, f+"-hold", f+"-keep", f+"-v4", f+"-v6"
		n.stmtHold, n.stmtKeep, n.stmtV4, n.stmtV6 = n.holdSet, n.keepSet, n.setV4, n.setV6
	}
	n.sentinel = n.Name + "-installed-" + n.hash
	return n, nil
}

// scopeOf returns the scope of p's family.
func (n *normalized) scopeOf(p netip.Prefix) *scope {
	if p.Addr().Is4() {
		return n.v4
	}
	return n.v6
}

func parseCommunity(s string) (uint32, error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("community %q: want ASN:VALUE", s)
	}
	x, err1 := strconv.ParseUint(a, 10, 16)
	y, err2 := strconv.ParseUint(b, 10, 16)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("community %q: %w", s, err)
	}
	return uint32(x)<<16 | uint32(y), nil
}

func parseLargeCommunity(s string) ([3]uint32, error) {
	f := strings.Split(s, ":")
	if len(f) != 3 {
		return [3]uint32{}, fmt.Errorf("large community %q: want ASN:X:Y", s)
	}
	var v [3]uint32
	for i, x := range f {
		n, err := strconv.ParseUint(x, 10, 32)
		if err != nil {
			return [3]uint32{}, fmt.Errorf("large community %q: %w", s, err)
		}
		v[i] = uint32(n)
	}
	return v, nil
}

// Option tunes how a Speaker runs (not what it installs: that is Config).
type Option func(*options)

type options struct {
	log      *slog.Logger
	interval time.Duration
	batch    int
	hook     func(GuardEvent)
	adopt    func(netip.Prefix) bool
	clock    func() uint64
	// fenceHook: WithFenceHook (fence.go).
	fenceHook func(FenceEvent)
	// watchHook: WithWatchHook (heartbeat.go).
	watchHook func(WatchBeat)
}

func defaultOptions() options {
	return options{
		log:      slog.New(slog.DiscardHandler),
		interval: 100 * time.Millisecond,
		batch:    4096,
	}
}

// WithAdopt lets the first Bootstrap keep releases that an earlier
// instance left in GoBGP when adopt says the prefix's route is confirmed
// now (the daemon asks its FIB view: with a real driver the hardware flags
// survive a restart of fibgate). Without it, or when adopt says no, such
// a release is withdrawn and comes back once confirmed: a restart would
// make every prefix flap at the neighbours. Adopted prefixes count as
// released transit; the gate's first Advertise then changes nothing.
func WithAdopt(adopt func(netip.Prefix) bool) Option { return func(o *options) { o.adopt = adopt } }

// WithLogger sets where the Speaker logs (default: nowhere).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithGuardInterval sets how often Guard checks that the gate is still
// installed (default 100 ms). It bounds how long a policy reload can leave
// GoBGP ungated; a check is one small ListPolicyAssignment call.
func WithGuardInterval(d time.Duration) Option { return func(o *options) { o.interval = d } }

// WithBatchSize sets the most prefixes one locked step of Advertise or
// Withdraw handles (default 4096); a step is smaller when what its
// prefixes add to it would cost more than about 25 ms (stepTime; what a
// step costs whatever its size, its round trips to GoBGP, is measured
// apart and not counted). Between steps fences and the
// guard can run, so a 100k-prefix call delays neither a fence nor the
// detection of a reload by seconds.
func WithBatchSize(n int) Option { return func(o *options) { o.batch = n } }

// FallbackTOML renders, for gobgpd's config file, the community and
// prefix sets and the policy named c.FallbackPolicy that reject HOLD paths
// and every prefix of the scope: the gate's policy with nothing released.
// List the policy first in the file's global export policies:
//
//	[global.apply-policy.config]
//	  export-policy-list = ["fibgate-fallback", ...your policies]
//
// The sets hold the held sets' skeleton, so nested scope ranges match
// correctly under GoBGP's longest-match prefix sets.
func (c Config) FallbackTOML() (string, error) {
	sets, err := c.fallbackSets()
	if err != nil {
		return "", err
	}
	n, _ := c.normalize() // fallbackSets checked it
	var b strings.Builder
	fmt.Fprintf(&b, "[[defined-sets.bgp-defined-sets.community-sets]]\n  community-set-name = %q\n  community-list = [%q]\n", n.holdSet, n.HoldCommunity)
	fmt.Fprintf(&b, "[[defined-sets.bgp-defined-sets.community-sets]]\n  community-set-name = %q\n  community-list = [%q]\n", n.keepSet, n.keepComm)
	for _, set := range sets {
		fmt.Fprintf(&b, "[[defined-sets.prefix-sets]]\n  prefix-set-name = %q\n", set.name)
		for _, e := range set.entries {
			fmt.Fprintf(&b, "  [[defined-sets.prefix-sets.prefix-list]]\n    ip-prefix = %q\n    masklength-range = \"%d..%d\"\n", e.prefix, e.iv.lo, e.iv.hi)
		}
	}
	fmt.Fprintf(&b, "[[policy-definitions]]\n  name = %q\n", c.FallbackPolicy)
	fmt.Fprintf(&b, "  [[policy-definitions.statements]]\n    name = %q\n", n.stmtHold)
	fmt.Fprintf(&b, "    [policy-definitions.statements.conditions.bgp-conditions.match-community-set]\n      community-set = %q\n", n.holdSet)
	b.WriteString("    [policy-definitions.statements.actions]\n      route-disposition = \"reject-route\"\n")
	for _, set := range sets {
		fmt.Fprintf(&b, "  [[policy-definitions.statements]]\n    name = %q\n", set.name)
		fmt.Fprintf(&b, "    [policy-definitions.statements.conditions.match-prefix-set]\n      prefix-set = %q\n", set.name)
		fmt.Fprintf(&b, "    [policy-definitions.statements.conditions.bgp-conditions]\n      afi-safi-in-list = [%q]\n", set.family)
		fmt.Fprintf(&b, "    [policy-definitions.statements.conditions.bgp-conditions.match-community-set]\n      community-set = %q\n      match-set-options = \"invert\"\n", n.keepSet)
		b.WriteString("    [policy-definitions.statements.actions]\n      route-disposition = \"reject-route\"\n")
	}
	fmt.Fprintf(&b, "  [[policy-definitions.statements]]\n    name = %q\n", n.stmtKeep)
	fmt.Fprintf(&b, "    [policy-definitions.statements.conditions.bgp-conditions.match-community-set]\n      community-set = %q\n", n.keepSet)
	fmt.Fprintf(&b, "    [policy-definitions.statements.actions.bgp-actions.set-community]\n      options = \"remove\"\n      [policy-definitions.statements.actions.bgp-actions.set-community.set-community-method]\n        communities-list = [%q]\n", n.keepComm)
	return b.String(), nil
}

// FallbackAs is FallbackTOML in the format of gobgpd's config file
// (gobgpd -t): "toml", "yaml" or "json". The keys are the same in every
// format; a YAML or JSON file cannot repeat them, so its defined-sets and
// policy-definitions lists take these entries beside its own.
func (c Config) FallbackAs(format string) (string, error) {
	t, err := c.FallbackTOML()
	if err != nil {
		return "", err
	}
	return convertTOML(t, format)
}

// convertTOML renders a gobgpd config written in TOML in another format,
// read the way gobgpd reads its file (viper).
func convertTOML(t, format string) (string, error) {
	switch format {
	case "toml":
		return t, nil
	case "yaml", "json":
	default:
		return "", fmt.Errorf("config format %q: want toml, yaml or json (gobgpd -t)", format)
	}
	v := viper.New()
	v.SetConfigType("toml")
	if err := v.ReadConfig(strings.NewReader(t)); err != nil {
		return "", err
	}
	var b []byte
	var err error
	if format == "yaml" {
		b, err = yaml.Marshal(v.AllSettings())
	} else {
		b, err = json.MarshalIndent(v.AllSettings(), "", "  ")
		b = append(b, '\n')
	}
	return string(b), err
}

// InjectFallback adds what FallbackTOML renders to a config gobgpd-ext
// read from gobgpd's file, and lists the policy first in the global export
// chain (once), so GoBGP holds the scope from its first session and
// across every reload of the file until the gate takes over.
func (c Config) InjectFallback(bc *oc.BgpConfigSet) error {
	sets, err := c.fallbackSets()
	if err != nil {
		return err
	}
	n, _ := c.normalize() // fallbackSets checked it
	pd := oc.PolicyDefinition{Name: c.FallbackPolicy}
	bc.DefinedSets.BgpDefinedSets.CommunitySets = slices.DeleteFunc(bc.DefinedSets.BgpDefinedSets.CommunitySets, func(s oc.CommunitySet) bool { return s.CommunitySetName == n.holdSet })
	bc.DefinedSets.BgpDefinedSets.CommunitySets = slices.DeleteFunc(bc.DefinedSets.BgpDefinedSets.CommunitySets, func(s oc.CommunitySet) bool { return s.CommunitySetName == n.keepSet })
	bc.DefinedSets.BgpDefinedSets.CommunitySets = append(bc.DefinedSets.BgpDefinedSets.CommunitySets,
		oc.CommunitySet{CommunitySetName: n.holdSet, CommunityList: []string{n.HoldCommunity}},
		oc.CommunitySet{CommunitySetName: n.keepSet, CommunityList: []string{n.keepComm}})
	var hold oc.Statement
	hold.Name = n.stmtHold
	hold.Conditions.BgpConditions.MatchCommunitySet = oc.MatchCommunitySet{CommunitySet: n.holdSet}
	hold.Actions.RouteDisposition = oc.ROUTE_DISPOSITION_REJECT_ROUTE
	pd.Statements = append(pd.Statements, hold)
	for _, set := range sets {
		bc.DefinedSets.PrefixSets = slices.DeleteFunc(bc.DefinedSets.PrefixSets, func(p oc.PrefixSet) bool { return p.PrefixSetName == set.name })
		ps := oc.PrefixSet{PrefixSetName: set.name}
		for _, e := range set.entries {
			ps.PrefixList = append(ps.PrefixList, oc.Prefix{IpPrefix: e.prefix.String(), MasklengthRange: fmt.Sprintf("%d..%d", e.iv.lo, e.iv.hi)})
		}
		bc.DefinedSets.PrefixSets = append(bc.DefinedSets.PrefixSets, ps)
		var st oc.Statement
		st.Name = set.name
		st.Conditions.MatchPrefixSet = oc.MatchPrefixSet{PrefixSet: set.name} // options "" is any, as in the file
		st.Conditions.BgpConditions.AfiSafiInList = []oc.AfiSafiType{oc.AfiSafiType(set.family)}
		st.Conditions.BgpConditions.MatchCommunitySet = oc.MatchCommunitySet{CommunitySet: n.keepSet, MatchSetOptions: oc.MATCH_SET_OPTIONS_TYPE_INVERT}
		st.Actions.RouteDisposition = oc.ROUTE_DISPOSITION_REJECT_ROUTE
		pd.Statements = append(pd.Statements, st)
	}
	var keep oc.Statement
	keep.Name = n.stmtKeep
	keep.Conditions.BgpConditions.MatchCommunitySet = oc.MatchCommunitySet{CommunitySet: n.keepSet}
	keep.Actions.RouteDisposition = oc.ROUTE_DISPOSITION_NONE
	keep.Actions.BgpActions.SetCommunity = oc.SetCommunity{Options: "remove", SetCommunityMethod: oc.SetCommunityMethod{CommunitiesList: []string{n.keepComm}}}
	pd.Statements = append(pd.Statements, keep)
	bc.PolicyDefinitions = slices.DeleteFunc(bc.PolicyDefinitions, func(p oc.PolicyDefinition) bool { return p.Name == c.FallbackPolicy })
	bc.PolicyDefinitions = append(bc.PolicyDefinitions, pd)
	ap := &bc.Global.ApplyPolicy.Config
	ap.ExportPolicyList = append([]string{c.FallbackPolicy}, slices.DeleteFunc(ap.ExportPolicyList, func(n string) bool { return n == c.FallbackPolicy })...)
	return nil
}

type fallbackSet struct {
	name    string
	family  string // GoBGP's name of the unicast family it holds
	entries []setEntry
}

func (c Config) fallbackSets() ([]fallbackSet, error) {
	n, err := c.normalize()
	if err != nil {
		return nil, err
	}
	if n.FallbackPolicy == "" {
		return nil, errors.New("config: no fallback policy name")
	}
	var out []fallbackSet
	for _, f := range []struct {
		suffix, family string
		s              *scope
	}{{"v4", "ipv4-unicast", n.v4}, {"v6", "ipv6-unicast", n.v6}} {
		out = append(out, fallbackSet{n.FallbackPolicy + "-" + f.suffix, f.family, f.s.skeleton()})
	}
	return out, nil
}
