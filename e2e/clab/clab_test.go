package clab

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the labs' topology pictures")

// TestLabsParseAndTheirPicturesAreCurrent parses every lab of e2e/labs and
// checks its README's picture is the one its .clab.yml draws (go test
// ./e2e/clab -update redraws them).
func TestLabsParseAndTheirPicturesAreCurrent(t *testing.T) {
	files, err := filepath.Glob("../labs/*/*.clab.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no labs: %v", err)
	}
	for _, f := range files {
		topo, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		pic := filepath.Join(filepath.Dir(f), "topology.svg")
		if *update {
			if err := os.WriteFile(pic, []byte(topo.SVG()), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		have, err := os.ReadFile(pic)
		if err != nil || string(have) != topo.SVG() {
			t.Errorf("%s is not what %s draws (%v): run go test ./e2e/clab -update", pic, f, err)
		}
	}
}

func TestParseRejectsWhatItCannotBuild(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"name: x\ntopology:\n  nodes:\n    a: {kind: ceos}\n", "only linux"},
		{"name: x\ntopology:\n  nodes:\n    a: {kind: linux, image: alpine}\n", "no cmd"},
		{"name: x\ntopology:\n  nodes:\n    a: {kind: linux, image: frr}\n  links:\n    - endpoints: [\"a:eth1\", \"b:eth1\"]\n", "b:eth1"},
		{"name: x\ntopology:\n  nodes:\n    a: {kind: linux, image: frr, network-mode: \"container:b\"}\n", "network-mode"},
		{"name: x\ntopology:\n  nodes:\n    a: {kind: linux, image: frr, binds: [\"x\"]}\n", "bind"},
		{"name: X Y\n", "name"},
	} {
		_, err := Parse([]byte(c.yaml), "/tmp")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error naming %q", c.yaml, err, c.want)
		}
	}
}

func TestTranslateMapsContainerPathsOnce(t *testing.T) {
	got := translate("a /run/fibgate/fibgate.sock b /etc/gobgp/gobgpd.toml", map[string]string{
		"/run/fibgate":           "/run/fibgate-lab/x/leaf1/run",
		"/etc/gobgp/gobgpd.toml": "/run/fibgate-lab/x/leaf1/files/etc/gobgp/gobgpd.toml",
	})
	if want := "a /run/fibgate-lab/x/leaf1/run/fibgate.sock b /run/fibgate-lab/x/leaf1/files/etc/gobgp/gobgpd.toml"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDaemonOptionsReadsTheOptionsLines(t *testing.T) {
	got, err := daemonOptions(strings.NewReader("# c\nbgpd=yes\nzebra_options=\"  -A 127.0.0.1 -s 90000000 --v6-rr-semantics\"\nbgpd_options='-A 127.0.0.1'\nstaticd_options=\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"zebra": {"-A", "127.0.0.1", "-s", "90000000", "--v6-rr-semantics"}, "bgpd": {"-A", "127.0.0.1"}, "staticd": {}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, bad := range []string{"zebra_options\n", "zebra_options=\"-A $ADDR\"\n"} {
		if _, err := daemonOptions(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
