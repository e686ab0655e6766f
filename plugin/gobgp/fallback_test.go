package gobgp

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/config"
	"github.com/osrg/gobgp/v3/pkg/config/oc"
)

// TestInjectFallbackIsWhatTheTOMLSays: gobgpd-ext injects the fallback into
// the config it read, fibgated's users paste FallbackTOML into gobgpd's
// file; both must give GoBGP the same sets and policy, first in the chain,
// and injecting twice (every reload) must not duplicate anything.
func TestInjectFallbackIsWhatTheTOMLSays(t *testing.T) {
	cfg := Config{FallbackPolicy: "fibgate-fallback", Scope: []Range{
		{Prefix: netip.MustParsePrefix("10.0.0.0/8"), MinLen: 8, MaxLen: 32},
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), MinLen: 24, MaxLen: 24},
		{Prefix: netip.MustParsePrefix("2001:db8::/32"), MinLen: 32, MaxLen: 64},
	}}
	toml, err := cfg.FallbackTOML()
	if err != nil {
		t.Fatal(err)
	}
	user := `
[global.config]
  as = 65001
  router-id = "10.0.0.1"
[global.apply-policy.config]
  export-policy-list = ["user-export"]
  default-export-policy = "accept-route"
[[policy-definitions]]
  name = "user-export"
`
	dir := t.TempDir()
	read := func(name, body string) *oc.BgpConfigSet {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := config.ReadConfigFile(f, "toml")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return c
	}
	fromTOML := read("pasted.toml", user+toml)
	fromTOML.Global.ApplyPolicy.Config.ExportPolicyList = []string{"fibgate-fallback", "user-export"}
	injected := read("user.toml", user)
	for range 2 {
		if err := cfg.InjectFallback(injected); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := injected.Global.ApplyPolicy.Config.ExportPolicyList, fromTOML.Global.ApplyPolicy.Config.ExportPolicyList; !reflect.DeepEqual(got, want) {
		t.Errorf("export chain %v, want %v", got, want)
	}
	if got, want := injected.DefinedSets.BgpDefinedSets.CommunitySets, fromTOML.DefinedSets.BgpDefinedSets.CommunitySets; !reflect.DeepEqual(got, want) || len(got) != 2 {
		t.Errorf("community sets differ (want the HOLD and keep sets once each):\ninjected %+v\ntoml     %+v", got, want)
	}
	if !reflect.DeepEqual(injected.DefinedSets.PrefixSets, fromTOML.DefinedSets.PrefixSets) {
		t.Errorf("prefix sets differ:\ninjected %+v\ntoml     %+v", injected.DefinedSets.PrefixSets, fromTOML.DefinedSets.PrefixSets)
	}
	byName := func(c *oc.BgpConfigSet) map[string]oc.PolicyDefinition {
		m := map[string]oc.PolicyDefinition{}
		for _, p := range c.PolicyDefinitions {
			m[p.Name] = p
		}
		return m
	}
	if got, want := byName(injected), byName(fromTOML); !reflect.DeepEqual(got, want) || len(injected.PolicyDefinitions) != 2 {
		t.Errorf("policies differ:\ninjected %+v\ntoml     %+v", injected.PolicyDefinitions, fromTOML.PolicyDefinitions)
	}
}

// TestAnOutdatedFallbackIsRefused: the gate lives in the fallback policy,
// so one in GoBGP that is not what FallbackTOML renders (an older fibgate's
// without the HOLD statement, another scope's sets) must not be used: HOLD
// paths would go out, or the wrong prefixes be held.
func TestAnOutdatedFallbackIsRefused(t *testing.T) {
	n, err := Config{FallbackPolicy: "fibgate-fallback"}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if keeps, err := n.sameAsFallback(n.policyDef()); err != nil || !keeps || !n.holdsUnicastOnly(n.policyDef()) {
		t.Fatalf("the rendered fallback: keeps copies %v, err %v, unicast only %v; want accepted with kept copies, unicast only",
			keeps, err, n.holdsUnicastOnly(n.policyDef()))
	}
	// Rendered before the held sets named their family: accepted (it
	// holds what it must), and seen to hold other families too.
	anyFamily := n.policyDef()
	for _, st := range anyFamily.Statements {
		st.Conditions.AfiSafiIn = nil
	}
	if _, err := n.sameAsFallback(anyFamily); err != nil || n.holdsUnicastOnly(anyFamily) {
		t.Errorf("a fallback from before family conditions: %v, unicast only %v; want accepted, not unicast only", err, n.holdsUnicastOnly(anyFamily))
	}
	// Rendered before kept copies: it holds as well, without them.
	preKeep := n.policyDef()
	preKeep.Statements = preKeep.Statements[:3]
	for _, st := range preKeep.Statements[1:] {
		st.Conditions.CommunitySet = nil
	}
	if keeps, err := n.sameAsFallback(preKeep); err != nil || keeps {
		t.Errorf("a fallback from before kept copies: keeps copies %v, err %v; want accepted without them", keeps, err)
	}
	old := n.policyDef()
	old.Statements = old.Statements[1:] // before the HOLD statement
	if _, err := n.sameAsFallback(old); err == nil || !strings.Contains(err.Error(), "--print-fallback") {
		t.Errorf("a fallback without the HOLD statement: %v, want a refusal that says how to fix it", err)
	}
	other := n.policyDef()
	other.Statements[1].Conditions.PrefixSet.Name = "someone-else"
	if _, err := n.sameAsFallback(other); err == nil {
		t.Error("a fallback matching another set was accepted")
	}
	// Held sets that do not spare kept copies would withdraw them; a keep
	// statement that does not strip the mark would send it to neighbours.
	noInvert := n.policyDef()
	noInvert.Statements[1].Conditions.CommunitySet.Type = api.MatchSet_ANY
	if _, err := n.sameAsFallback(noInvert); err == nil {
		t.Error("a fallback whose held set matches kept copies was accepted")
	}
	noStrip := n.policyDef()
	noStrip.Statements[3].Actions.Community = nil
	if _, err := n.sameAsFallback(noStrip); err == nil {
		t.Error("a fallback that does not strip the keep mark was accepted")
	}
}

// TestFallbackInEveryConfigFormat: gobgpd reads YAML and JSON files too
// (gobgpd -t), so the fallback comes in each; read as gobgpd reads its
// file, each gives the same sets and policy as the TOML.
func TestFallbackInEveryConfigFormat(t *testing.T) {
	cfg := Config{FallbackPolicy: "fibgate-fallback", Scope: []Range{
		{Prefix: netip.MustParsePrefix("10.0.0.0/8"), MaxLen: 32}, {Prefix: netip.MustParsePrefix("2001:db8::/32"), MaxLen: 64}}}
	global := "[global.config]\n  as = 65001\n  router-id = \"10.0.0.1\"\n"
	read := func(format, text string) *oc.BgpConfigSet {
		t.Helper()
		f := filepath.Join(t.TempDir(), "gobgpd."+format)
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := oc.ReadConfigfile(f, format)
		if err != nil {
			t.Fatalf("%s: gobgpd cannot read it: %v\n%s", format, err, text)
		}
		return c
	}
	toml, err := cfg.FallbackTOML()
	if err != nil {
		t.Fatal(err)
	}
	want := read("toml", global+toml)
	if len(want.PolicyDefinitions) != 1 || len(want.PolicyDefinitions[0].Statements) != 4 {
		t.Fatalf("the TOML fallback reads as %+v", want.PolicyDefinitions)
	}
	for _, format := range []string{"yaml", "json"} {
		text, err := convertTOML(global+toml, format)
		if err != nil {
			t.Fatal(err)
		}
		got := read(format, text)
		if !reflect.DeepEqual(got.DefinedSets, want.DefinedSets) || !reflect.DeepEqual(got.PolicyDefinitions, want.PolicyDefinitions) {
			t.Errorf("%s reads as\n%+v\n%+v\nwant\n%+v\n%+v", format, got.DefinedSets, got.PolicyDefinitions, want.DefinedSets, want.PolicyDefinitions)
		}
		if alone, err := cfg.FallbackAs(format); err != nil || !strings.Contains(alone, "afi-safi-in-list") {
			t.Errorf("FallbackAs(%s): %v\n%s", format, err, alone)
		}
	}
	if _, err := cfg.FallbackAs("hcl"); err == nil {
		t.Error("FallbackAs(hcl) succeeded")
	}
}
