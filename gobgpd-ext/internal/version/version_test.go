package version

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	gobgp := func(v string) *debug.Module { return &debug.Module{Path: GoBGPModule, Version: v} }
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, c := range []struct {
		name string
		bi   *debug.BuildInfo
		want Info
	}{
		{"a binary without build info reads devel and unknown", nil,
			Info{"(devel)", runtime.Version(), "unknown"}},
		{"a version stamped by the go command wins over the revision", &debug.BuildInfo{GoVersion: "go1.26.8",
			Main: debug.Module{Version: "v0.0.0-20261203122552-66fb85d1a2b3+dirty"}, Deps: []*debug.Module{gobgp("v3.37.0")},
			Settings: vcs("66fb85d1a2b3c4d5e6f708192a3b4c5d6e7f8091", "true")},
			Info{"v0.0.0-20261203122552-66fb85d1a2b3+dirty", "go1.26.8", "v3.37.0"}},
		{"a devel build from a modified checkout reads its short revision and dirty", &debug.BuildInfo{GoVersion: "go1.26.8",
			Main: debug.Module{Version: "(devel)"}, Deps: []*debug.Module{{Path: "github.com/other/mod", Version: "v1.0.0"}, gobgp("v3.37.0")},
			Settings: vcs("66fb85d1a2b3c4d5e6f708192a3b4c5d6e7f8091", "true")},
			Info{"66fb85d1a2b3-dirty", "go1.26.8", "v3.37.0"}},
		{"a clean checkout has no dirty suffix", &debug.BuildInfo{GoVersion: "go1.26.8",
			Settings: vcs("66fb85d1a2b3c4d5e6f708192a3b4c5d6e7f8091", "false")},
			Info{"66fb85d1a2b3", "go1.26.8", "unknown"}},
		{"a replaced GoBGP reports the replacement's version", &debug.BuildInfo{GoVersion: "go1.26.8",
			Deps: []*debug.Module{{Path: GoBGPModule, Version: "v3.37.0", Replace: gobgp("v3.38.0-fix")}}},
			Info{"(devel)", "go1.26.8", "v3.38.0-fix"}},
		{"a local replacement keeps the required version and names the directory", &debug.BuildInfo{GoVersion: "go1.26.8",
			Deps: []*debug.Module{{Path: GoBGPModule, Version: "v3.37.0", Replace: &debug.Module{Path: "../gobgp"}}}},
			Info{"(devel)", "go1.26.8", "v3.37.0 => ../gobgp"}},
		{"so does one the go command stamps (devel), as make build-reexport's", &debug.BuildInfo{GoVersion: "go1.26.8",
			Deps: []*debug.Module{{Path: GoBGPModule, Version: "v3.37.0", Replace: &debug.Module{Path: "/src/bin/gobgp-v3.37.0-reexport", Version: "(devel)"}}}},
			Info{"(devel)", "go1.26.8", "v3.37.0 => /src/bin/gobgp-v3.37.0-reexport"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := FromBuildInfo(c.bi); got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestStringNamesAllThree(t *testing.T) {
	got := Info{"v1.2.0", "go1.26.8", "v3.37.0"}.String()
	if want := "v1.2.0 (go1.26.8, GoBGP v3.37.0)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestGetReadsTheRunningBinary(t *testing.T) {
	i := Get()
	if i.GoVersion != runtime.Version() {
		t.Errorf("GoVersion %q, want %q", i.GoVersion, runtime.Version())
	}
	if i.Version == "" || i.GoBGP == "" {
		t.Errorf("empty field in %+v", i)
	}
}
