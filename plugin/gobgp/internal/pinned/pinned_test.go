package pinned

import (
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

// TestGoModPinsGoBGP: this module requires exactly the GoBGP the
// linknames were written against, with no replace. A GoBGP upgrade fails
// here first, so whoever makes it reads the linknamed functions of
// plugin/gobgp/internal (reexport, bestwatch) against the new source (and
// updates Version and Sum) before a test binary, which carries no
// dependency list for Check to read, runs them.
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
		case len(f) >= 2 && f[0] == Module:
			required = f[1]
		case strings.Contains(l, "replace") || (len(f) > 2 && f[1] == "=>"):
			if strings.Contains(l, Module) {
				t.Errorf("go.mod replaces %s: %s", Module, strings.TrimSpace(l))
			}
		}
	}
	if module != ThisModule {
		t.Fatalf("module %q, want %s", module, ThisModule)
	}
	if required != Version {
		t.Errorf("go.mod requires %s %q, these linknames are for %s", Module, required, Version)
	}
	sum, err := os.ReadFile("../../../../go.sum")
	if err != nil {
		t.Fatal(err)
	}
	if want := Module + " " + Version + " " + Sum; !strings.Contains(string(sum), want+"\n") {
		t.Errorf("go.sum has no line %q", want)
	}
}

// TestOnlyThePinnedGoBGPPasses: the build information that lets the
// linknames run, and what keeps them off (the gate then uses the API).
func TestOnlyThePinnedGoBGPPasses(t *testing.T) {
	main := debug.Module{Path: "example.com/router"}
	dep := func(m debug.Module) *debug.BuildInfo {
		return &debug.BuildInfo{Main: main, Deps: []*debug.Module{{Path: "google.golang.org/grpc", Version: "v1.70.0"}, &m}}
	}
	for _, c := range []struct {
		name string
		bi   *debug.BuildInfo
		want string // "" for usable
	}{
		{"the pinned module", dep(debug.Module{Path: Module, Version: Version, Sum: Sum}), ""},
		{"vendored, no hash", dep(debug.Module{Path: Module, Version: Version}), ""},
		{"this module's test binary", &debug.BuildInfo{Main: debug.Module{Path: ThisModule}}, ""},
		{"another release", dep(debug.Module{Path: Module, Version: "v3.36.0", Sum: "h1:x="}), "is v3.36.0"},
		{"the same version, other contents", dep(debug.Module{Path: Module, Version: Version, Sum: "h1:other="}), "h1:other="},
		{"replaced by a directory", dep(debug.Module{Path: Module, Version: Version, Replace: &debug.Module{Path: "/src/gobgp", Version: "(devel)"}}), "replaced by /src/gobgp"},
		{"replaced by a fork", dep(debug.Module{Path: Module, Version: Version, Replace: &debug.Module{Path: "example.com/gobgp", Version: Version, Sum: Sum}}), "replaced by example.com/gobgp"},
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
