package reexport

import (
	"os"
	"strings"
	"testing"
)

// TestGoModPinsGoBGP: this module requires exactly the GoBGP the
// linknames were written against, with no replace. A GoBGP upgrade fails
// here first, so whoever makes it reads this package's functions against
// the new source (and updates gobgpVersion and gobgpSum) before a test
// binary, which carries no dependency list for Available to check, runs
// them.
func TestGoModPinsGoBGP(t *testing.T) {
	mod, err := os.ReadFile("../../../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var module, required string
	for _, l := range strings.Split(string(mod), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(l), "require "))
		switch {
		case len(f) == 2 && f[0] == "module":
			module = f[1]
		case len(f) >= 2 && f[0] == gobgpModule:
			required = f[1]
		case strings.Contains(l, "replace") || (len(f) > 2 && f[1] == "=>"):
			if strings.Contains(l, gobgpModule) {
				t.Errorf("go.mod replaces %s: %s", gobgpModule, strings.TrimSpace(l))
			}
		}
	}
	if module != thisModule {
		t.Fatalf("module %q, want %s", module, thisModule)
	}
	if required != gobgpVersion {
		t.Errorf("go.mod requires %s %q, these linknames are for %s", gobgpModule, required, gobgpVersion)
	}
	sum, err := os.ReadFile("../../../../go.sum")
	if err != nil {
		t.Fatal(err)
	}
	if want := gobgpModule + " " + gobgpVersion + " " + gobgpSum; !strings.Contains(string(sum), want+"\n") {
		t.Errorf("go.sum has no line %q", want)
	}
}

// TestAvailableInThisModule: in this module's binaries and tests the
// layout checks pass, so gobgpd-ext releases by re-export.
func TestAvailableInThisModule(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatal(err)
	}
}
