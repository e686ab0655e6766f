package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	apipb "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/config"
	"github.com/osrg/gobgp/v3/pkg/config/oc"
	"github.com/osrg/gobgp/v3/pkg/server"
	"gopkg.in/yaml.v3"
)

// resolved is a settings file as the daemons resolve it (settingsdump).
type resolved struct {
	Settings string          `json:"settings"` // the Config as YAML
	Policy   json.RawMessage `json:"policy"`   // the gating policy
	values   map[string]any
}

// get returns a setting by its dotted path ("backend.sim.latency").
func (r resolved) get(path string) any {
	var v any = r.values
	for k := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// dumpSettings resolves settings files with the daemons' own code
// (daemon.Load; "-" is daemon.Defaults()).
func dumpSettings(t *testing.T, files ...string) []resolved {
	t.Helper()
	out := run(t, "settingsdump", files...)
	dec := json.NewDecoder(strings.NewReader(out))
	var rs []resolved
	for range files {
		var r resolved
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("settingsdump output: %v\n%s", err, out)
		}
		if err := yaml.Unmarshal([]byte(r.Settings), &r.values); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	return rs
}

func (r resolved) equal(o resolved) bool {
	return r.Settings == o.Settings && bytes.Equal(r.Policy, o.Policy)
}

// keyPaths lists the dotted paths of every key of a YAML mapping, parents
// before children, in document order.
func keyPaths(n *yaml.Node, prefix string) []string {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	var out []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		p := prefix + n.Content[i].Value
		out = append(out, p)
		out = append(out, keyPaths(n.Content[i+1], p+".")...)
	}
	return out
}

// notUncommented are keys whose default (none) has no YAML spelling that
// means "unset": the files show them in prose, with example values that
// must not be taken for defaults.
var notUncommented = []string{"policy", "med", "local_pref"}

// uncomment turns every commented-out setting "# key: value" (key being a
// settings key) into "key: value", keeping the indentation after "# ".
func uncomment(text string, keys []string) string {
	var names []string
	for _, p := range keys {
		k := p[strings.LastIndex(p, ".")+1:]
		if !slices.Contains(notUncommented, k) && !slices.Contains(names, k) {
			names = append(names, regexp.QuoteMeta(k))
		}
	}
	re := regexp.MustCompile(`(?m)^([ \t]*)# ([ \t]*(?:` + strings.Join(names, "|") + `):(?:[ \t].*)?)$`)
	return re.ReplaceAllString(text, "$1$2")
}

// settingsExamples returns deploy/examples' settings files: every *.yaml
// but policy files (top-level scopes:, tested with the policy code).
func settingsExamples(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join("examples", "*.yaml"))
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var top map[string]any
		if err := yaml.Unmarshal(b, &top); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, policy := top["scopes"]; policy {
			continue
		}
		out = append(out, f)
	}
	for _, want := range []string{"fibgate.yaml", "fibgate-gobgpd-ext.yaml", "fibgate-sidecar.yaml", "lab.yaml"} {
		if !slices.Contains(out, filepath.Join("examples", want)) {
			t.Errorf("examples/%s is missing", want)
		}
	}
	return out
}

// TestSettingsExamplesLoad loads every example settings file with both
// daemons: fibgated --check, and gobgpd-ext --dry-run with the gobgpd-ext
// role's gobgpd config.
func TestSettingsExamplesLoad(t *testing.T) {
	for _, f := range settingsExamples(t) {
		out := run(t, "fibgated", "--check", "-c", f)
		if !strings.HasPrefix(out, "settings valid") {
			t.Errorf("fibgated --check -c %s: %s", f, out)
		}
		run(t, "gobgpd-ext", "--dry-run", "-f", filepath.Join("examples", "gobgpd-ext.toml"), "--fibgate-config", f)
	}
}

// TestSettingsExamplesShowTheDefaults keeps the comments of the settings
// files true: fibgate.yaml resolves to exactly daemon.Defaults(); in every
// file, uncommenting each "# key: value" line changes nothing (so each shows
// the default); and every key of the settings appears in every file, set or
// commented out (or, for keys without a default value, at least named).
func TestSettingsExamplesShowTheDefaults(t *testing.T) {
	defaults := dumpSettings(t, "-")[0]
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(defaults.Settings), &doc); err != nil {
		t.Fatal(err)
	}
	keys := keyPaths(&doc, "")
	if len(keys) < 30 {
		t.Fatalf("only %d settings keys found: %v", len(keys), keys)
	}
	for _, f := range settingsExamples(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			un := filepath.Join(t.TempDir(), filepath.Base(f))
			unText := uncomment(string(b), keys)
			if err := os.WriteFile(un, []byte(unText), 0o644); err != nil {
				t.Fatal(err)
			}
			rs := dumpSettings(t, f, un)
			if !rs[0].equal(rs[1]) {
				t.Errorf("uncommenting its \"# key: value\" lines changes the settings: some are not the defaults\nas written:\n%s\nuncommented:\n%s", rs[0].Settings, rs[1].Settings)
			}
			if filepath.Base(f) == "fibgate.yaml" && !rs[0].equal(defaults) {
				t.Errorf("fibgate.yaml is not daemon.Defaults()\nfile:\n%s\ndefaults:\n%s", rs[0].Settings, defaults.Settings)
			}
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(unText), &n); err != nil {
				t.Fatal(err)
			}
			present := keyPaths(&n, "")
			for _, k := range keys {
				name := k[strings.LastIndex(k, ".")+1:]
				if slices.Contains(notUncommented, name) {
					if !regexp.MustCompile(`\b` + name + `\b`).Match(b) {
						t.Errorf("%s is not mentioned", k)
					}
					continue
				}
				if !slices.Contains(present, k) {
					t.Errorf("%s is neither set nor shown as \"# %s: DEFAULT\" in its place", k, name)
				}
			}
		})
	}
}

// TestSettingsExamplesRoles pins what each role's file is for.
func TestSettingsExamplesRoles(t *testing.T) {
	files := []string{"fibgate-gobgpd-ext.yaml", "fibgate-sidecar.yaml", "lab.yaml", "fibgate-zebra.yaml"}
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join("examples", f))
	}
	rs := dumpSettings(t, paths...)
	for i, c := range []map[string]any{
		{"notify_mode": "1", "backend.type": "kernel", "install.enabled": true},
		{"notify_mode": "1", "backend.type": "kernel", "install.enabled": true, "bgp.fallback_policy": "fibgate-fallback"},
		{"notify_mode": "1", "backend.type": "sim", "backend.sim.latency": "300ms", "bgp.originate_protocols": []any{"static"}, "metrics": "127.0.0.1:9431"},
		{"notify_mode": "1", "backend.type": "kernel", "install.enabled": false, "install.protocol": "bgp", "bgp.fallback_policy": "fibgate-fallback"},
	} {
		for k, want := range c {
			if got := rs[i].get(k); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: %s is %v, want %v", files[i], k, got, want)
			}
		}
	}
}

// fallbackOf is what fibgated --print-fallback prints for a settings file.
func fallbackOf(t *testing.T, settings string) string {
	t.Helper()
	out := run(t, "fibgated", "--print-fallback", "-c", settings)
	if !strings.Contains(out, "[[policy-definitions]]") {
		t.Fatalf("fibgated --print-fallback -c %s printed no policy:\n%s", settings, out)
	}
	return out
}

// checkGobgpdConfig checks a stock gobgpd config that must carry the
// fallback policy of the settings file: the snippet as --print-fallback
// prints it, the policy first in the global export chain, zebra on or off
// as zebra says; and that GoBGP accepts it (read, then applied to a
// BgpServer that neither listens nor has neighbours nor zebra, so that
// policy errors the reader lets through, such as a prefix set of two
// families, fail here).
func checkGobgpdConfig(t *testing.T, tomlText, settings string, zebra bool) {
	t.Helper()
	fb := fallbackOf(t, settings)
	if !strings.Contains(tomlText, fb) {
		t.Errorf("the gobgpd config does not hold, verbatim, what `fibgated --print-fallback -c %s` prints:\n%s", settings, fb)
	}
	name := regexp.MustCompile(`(?m)^\[\[policy-definitions\]\]\n  name = "([^"]+)"`).FindStringSubmatch(fb)
	if name == nil {
		t.Fatalf("no policy name in\n%s", fb)
	}
	f := filepath.Join(t.TempDir(), "gobgpd.toml")
	if err := os.WriteFile(f, []byte(tomlText), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.ReadConfigFile(f, "toml")
	if err != nil {
		t.Fatalf("GoBGP cannot read it: %v", err)
	}
	if l := c.Global.ApplyPolicy.Config.ExportPolicyList; len(l) == 0 || l[0] != name[1] {
		t.Errorf("global export-policy-list %q: want %q first", l, name[1])
	}
	switch {
	case c.Zebra.Config.Enabled && !zebra:
		t.Error("zebra is enabled: fibgate installs the learned routes itself")
	case !c.Zebra.Config.Enabled && zebra:
		t.Error("zebra is off: nobody installs the learned routes (the settings turn fibgate's installer off)")
	case zebra && (c.Zebra.Config.Version != 6 || c.Zebra.Config.SoftwareName != "frr8.2"):
		t.Errorf("zebra version %d, software %q: want 6 and frr8.2 (FRR 8.x, as TestZebraInstallsForTheGate runs it)", c.Zebra.Config.Version, c.Zebra.Config.SoftwareName)
	}
	c.Zebra.Config.Enabled = false // no zebra here
	applyPolicies(t, c)
}

// applyPolicies applies a config's global settings and policies to an
// in-process BgpServer with no BGP listener and no neighbours.
func applyPolicies(t *testing.T, c *oc.BgpConfigSet) {
	t.Helper()
	c.Global.Config.Port = -1 // no listener
	c.Neighbors, c.PeerGroups, c.DynamicNeighbors = nil, nil, nil
	s := server.NewBgpServer()
	go s.Serve() // returns only with the process (GoBGP v3.37)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := config.InitialConfig(ctx, s, c, false); err != nil {
		t.Errorf("GoBGP refuses the config: %v", err)
	}
	var chain []string
	err := s.ListPolicyAssignment(ctx, &apipb.ListPolicyAssignmentRequest{Name: "global", Direction: apipb.PolicyDirection_EXPORT}, func(a *apipb.PolicyAssignment) {
		for _, p := range a.Policies {
			chain = append(chain, p.Name)
		}
	})
	if err != nil {
		t.Errorf("list the export chain: %v", err)
	}
	if !slices.Equal(chain, c.Global.ApplyPolicy.Config.ExportPolicyList) {
		t.Errorf("GoBGP's export chain %q, the file's %q: some policy was not applied", chain, c.Global.ApplyPolicy.Config.ExportPolicyList)
	}
	if err := s.StopBgp(ctx, &apipb.StopBgpRequest{}); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// TestGobgpdExamples checks the example gobgpd configs: the sidecar's
// carries the fallback policy of fibgate-sidecar.yaml, the zebra one's that
// of fibgate-zebra.yaml and its [zebra] for FRR 8.x, gobgpd-ext's needs
// none (gobgpd-ext adds it) and passes gobgpd-ext --dry-run; GoBGP accepts
// both.
func TestGobgpdExamples(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("examples", "gobgpd-sidecar.toml"))
	if err != nil {
		t.Fatal(err)
	}
	checkGobgpdConfig(t, string(b), filepath.Join("examples", "fibgate-sidecar.yaml"), false)
	b, err = os.ReadFile(filepath.Join("examples", "gobgpd-zebra.toml"))
	if err != nil {
		t.Fatal(err)
	}
	checkGobgpdConfig(t, string(b), filepath.Join("examples", "fibgate-zebra.yaml"), true)

	ext := filepath.Join("examples", "gobgpd-ext.toml")
	run(t, "gobgpd-ext", "--dry-run", "-f", ext, "--fibgate-config", filepath.Join("examples", "fibgate-gobgpd-ext.yaml"))
	c, err := config.ReadConfigFile(ext, "toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Zebra.Config.Enabled {
		t.Error("gobgpd-ext.toml enables zebra, which gobgpd-ext refuses next to the FIB installer")
	}
	applyPolicies(t, c)
}
