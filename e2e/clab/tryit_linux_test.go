package clab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTryItIsTheReadmeBlockAndLocalizeFitsItToALab: fiblab up prints the
// fabric README's "Try it" commands unchanged for `sudo make lab` (default
// state, namespaces fabric-NODE, ./bin), and rewritten for a lab elsewhere
// (what the e2e test runs them against).
func TestTryItIsTheReadmeBlockAndLocalizeFitsItToALab(t *testing.T) {
	topo, err := Load("../labs/fabric/fabric.clab.yml")
	if err != nil {
		t.Fatal(err)
	}
	lines, ok, err := topo.TryIt()
	if err != nil || !ok {
		t.Fatalf("TryIt: %v, %v: the fabric README has no %s block", ok, err, TryItMarker)
	}
	text := strings.Join(lines, "\n")
	for _, want := range []string{"sudo bin/fiblab probe -from host3", "hw --socket /run/fibgate-lab/fabric/leaf1/run/fibgate.sock fail 192.0.2.10/32",
		"ip -n fabric-leaf1 route show table 4242"} {
		if !strings.Contains(text, want) {
			t.Errorf("the Try it block lacks %q", want)
		}
	}
	if strings.Contains(text, "```") {
		t.Errorf("the block runs past its fence:\n%s", text)
	}

	cwd, _ := os.Getwd()
	asMade := &Lab{Topo: topo, State: State{Dir: DefaultStateDir("fabric"), Namespaces: map[string]string{"leaf1": "fabric-leaf1"}}}
	if got := strings.Join(asMade.Localize(lines, filepath.Join(cwd, "bin")), "\n"); got != text {
		t.Errorf("for `make lab` the commands changed:\n%s", got)
	}

	other := &Lab{Topo: topo, State: State{Dir: "/tmp/fg-lab-1", Namespaces: map[string]string{"leaf1": "fgb-7-leaf1"}}}
	got := strings.Join(other.Localize(lines, "/tmp/bin"), "\n")
	for _, want := range []string{
		"sudo /tmp/bin/fiblab probe -state /tmp/fg-lab-1 -from host3",
		"sudo /tmp/bin/fibgate watch --socket /tmp/fg-lab-1/leaf1/run/fibgate.sock",
		"| sudo /tmp/bin/fibgate policy set --socket /tmp/fg-lab-1/leaf1/run/fibgate.sock -f -",
		"sudo ip -n fgb-7-leaf1 route show table 4242",
		"# 1. Terminal 1:",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("localized commands lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "/run/fibgate-lab") || strings.Contains(got, " bin/") || strings.Contains(got, "fabric-leaf1") {
		t.Errorf("localized commands still point at the default lab:\n%s", got)
	}
}
