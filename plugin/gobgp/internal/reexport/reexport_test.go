package reexport

import (
	"os"
	"runtime/debug"
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

// TestOnlyThePinnedGoBGPReExports: the build information that lets the
// linknames run, and what keeps them off (the gate then toggles).
func TestOnlyThePinnedGoBGPReExports(t *testing.T) {
	main := debug.Module{Path: "example.com/router"}
	dep := func(m debug.Module) *debug.BuildInfo {
		return &debug.BuildInfo{Main: main, Deps: []*debug.Module{{Path: "google.golang.org/grpc", Version: "v1.70.0"}, &m}}
	}
	for _, c := range []struct {
		name string
		bi   *debug.BuildInfo
		want string // "" for usable
	}{
		{"the pinned module", dep(debug.Module{Path: gobgpModule, Version: gobgpVersion, Sum: gobgpSum}), ""},
		{"vendored, no hash", dep(debug.Module{Path: gobgpModule, Version: gobgpVersion}), ""},
		{"this module's test binary", &debug.BuildInfo{Main: debug.Module{Path: thisModule}}, ""},
		{"another release", dep(debug.Module{Path: gobgpModule, Version: "v3.36.0", Sum: "h1:x="}), "is v3.36.0"},
		{"the same version, other contents", dep(debug.Module{Path: gobgpModule, Version: gobgpVersion, Sum: "h1:other="}), "h1:other="},
		{"replaced by a directory", dep(debug.Module{Path: gobgpModule, Version: gobgpVersion, Replace: &debug.Module{Path: "/src/gobgp", Version: "(devel)"}}), "replaced by /src/gobgp"},
		{"replaced by a fork", dep(debug.Module{Path: gobgpModule, Version: gobgpVersion, Replace: &debug.Module{Path: "example.com/gobgp", Version: gobgpVersion, Sum: gobgpSum}}), "replaced by example.com/gobgp"},
		{"another module's test binary", &debug.BuildInfo{Main: main}, "not in this binary's build information"},
		{"no GoBGP at all", &debug.BuildInfo{Main: main, Deps: []*debug.Module{{Path: "google.golang.org/grpc", Version: "v1.70.0"}}}, "not in this binary's build information"},
	} {
		err := checkBuild(c.bi)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want usable", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}
