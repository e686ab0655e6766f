package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	api "github.com/osrg/gobgp/v3/api"
)

func TestExposedAPI(t *testing.T) {
	got := exposedAPI(":50051, 127.0.0.1:50051,[::1]:50051,localhost:1,10.0.0.1:50051,unix:///run/gobgpd.sock")
	if fmt.Sprint(got) != "[:50051 10.0.0.1:50051]" {
		t.Errorf("exposedAPI = %v", got)
	}
}

// TestSoftResetInIsTold: the API calls after which the gate reads its
// copies back (release by copy) are the soft resets that run import
// policy, and only those.
func TestSoftResetInIsTold(t *testing.T) {
	for _, c := range []struct {
		req  any
		want bool
	}{
		{&api.ResetPeerRequest{Address: "192.0.2.1", Soft: true, Direction: api.ResetPeerRequest_IN}, true},
		{&api.ResetPeerRequest{Address: "all", Soft: true, Direction: api.ResetPeerRequest_BOTH}, true},
		{&api.ResetPeerRequest{Address: "192.0.2.1", Soft: true, Direction: api.ResetPeerRequest_OUT}, false},
		{&api.ResetPeerRequest{Address: "192.0.2.1"}, false}, // a hard reset: the session goes, which the gate sees
		{&api.ShutdownPeerRequest{Address: "192.0.2.1"}, false},
		{nil, false},
	} {
		if got := softResetIn(c.req); got != c.want {
			t.Errorf("softResetIn(%v) = %v, want %v", c.req, got, c.want)
		}
	}
}

// TestFlagsAndDryRun: gobgpd's flags are accepted as gobgpd accepts them,
// mistakes exit 2 with one line, and -d checks both configurations without
// starting anything.
func TestFlagsAndDryRun(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gobgpd := write("gobgpd.toml", "[global.config]\n  as = 65001\n  router-id = \"10.0.0.1\"\n")
	zebra := write("zebra.toml", "[global.config]\n  as = 65001\n  router-id = \"10.0.0.1\"\n[zebra.config]\n  enabled = true\n")
	settings := write("fibgate.yaml", "backend:\n  type: sim\n")
	redist := write("redist.toml", "[global.config]\n  as = 65001\n  router-id = \"10.0.0.1\"\n[zebra.config]\n  enabled = true\n  redistribute-route-type-list = [\"connect\"]\n")
	zebraSettings := write("fibgate-zebra.yaml", "backend:\n  type: sim\ninstall:\n  enabled: false\n")
	zebraRelease := write("fibgate-zebra-release.yaml", "backend:\n  type: sim\ninstall:\n  enabled: false\nbgp:\n  release_protocols: [kernel]\n")
	global := "[global.config]\n  as = 65001\n  router-id = \"10.0.0.1\"\n"
	neighbour := "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"10.0.0.3\"\n    peer-as = 65003\n"
	// ADD-PATH send (RFC 7911): per family, for the whole neighbour, or
	// through a peer group; receive alone is fine.
	apFamily := write("ap-family.toml", global+neighbour+"  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n    [neighbors.afi-safis.add-paths.config]\n      send-max = 8\n")
	apNeighbour := write("ap-neighbour.toml", global+neighbour+"  [neighbors.add-paths.config]\n    send-max = 2\n")
	apGroup := write("ap-group.toml", global+"[[peer-groups]]\n  [peer-groups.config]\n    peer-group-name = \"spines\"\n    peer-as = 65100\n  [peer-groups.add-paths.config]\n    send-max = 4\n")
	apReceive := write("ap-receive.toml", global+neighbour+"  [neighbors.add-paths.config]\n    receive = true\n")
	bad := write("bad.yaml", "backend:\n  type: asic\n")
	toggle := write("toggle.yaml", "backend:\n  type: sim\nbgp:\n  release: toggle\n")
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--version"}, 0, "gobgpd-ext "},
		{[]string{"--help"}, 0, "--fibgate-config"},
		{[]string{"--no-such-flag"}, 2, "unknown flag"},
		{[]string{"-d", "-f", gobgpd, "--fibgate-config", settings}, 0, "configuration valid"},
		{[]string{"-d", "-f", gobgpd, "--fibgate-config", settings}, 0, "release reexport"},
		{[]string{"-d", "-f", gobgpd, "--fibgate-config", toggle}, 0, "release toggle\n"},
		{[]string{"-d", "-f", gobgpd, "--fibgate-config", bad}, 2, "backend.type"},
		{[]string{"-d", "-f", filepath.Join(dir, "missing.toml")}, 2, "can't read config file"},
		{[]string{"-d", "-f", zebra}, 2, "zebra is enabled"},
		{[]string{"-d", "-f", zebra, "--no-fibgate"}, 0, "configuration valid"},
		{[]string{"-d", "-f", zebra, "--fibgate-config", zebraSettings}, 0, "configuration valid"},
		{[]string{"-d", "-f", redist, "--fibgate-config", zebraSettings}, 0, "warning: GoBGP redistributes [connect] routes from zebra: fibgate holds their prefixes"},
		{[]string{"-d", "-f", redist, "--fibgate-config", zebraRelease}, 0, "configuration valid"},
		{[]string{"-d", "-f", apFamily}, 2, "ADD-PATH send to a neighbour in a gated family: 10.0.0.3 (ipv4-unicast send-max 8)"},
		{[]string{"-d", "-f", apNeighbour}, 2, "10.0.0.3 (ipv4-unicast send-max 2)"},
		{[]string{"-d", "-f", apGroup}, 2, "peer-group spines (ipv4-unicast send-max 4, ipv6-unicast send-max 4)"},
		{[]string{"-d", "-f", apReceive}, 0, "configuration valid"},
		{[]string{"-d", "-f", apFamily, "--no-fibgate"}, 0, "configuration valid"},
	} {
		var out, errb strings.Builder
		code := run(c.args, &out, &errb, nil)
		all := out.String() + errb.String()
		if code != c.code || !strings.Contains(all, c.out) {
			t.Errorf("%v: exit %d, %q; want %d and %q", c.args, code, all, c.code, c.out)
		}
		if strings.Contains(errb.String(), "warning") != strings.Contains(c.out, "warning") {
			t.Errorf("%v: stderr %q, want a warning only where the case names one", c.args, errb.String())
		}
		if code == 2 && strings.Count(strings.TrimSpace(errb.String()), "\n") > 0 {
			t.Errorf("%v: more than one line on stderr: %q", c.args, errb.String())
		}
	}
}

// TestVersion: --version names fibgate's version, the Go release and the
// GoBGP module linked in (not a version written by hand).
func TestVersion(t *testing.T) {
	var out, errb strings.Builder
	if code := run([]string{"--version"}, &out, &errb, nil); code != 0 || errb.Len() > 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	want := regexp.MustCompile(`^gobgpd-ext \S+ \(` + regexp.QuoteMeta(runtime.Version()) + `, GoBGP v3\.\d+\.\d+\S*\)\n$`)
	if !want.MatchString(out.String()) {
		t.Errorf("--version printed %q, want it to match %s", out.String(), want)
	}
}
