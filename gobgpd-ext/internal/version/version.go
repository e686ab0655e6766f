// Package version tells which build of fibgate is running: fibgate's own
// version, the Go release and the GoBGP module it was built with. Operators
// read it from --version and `fibgate version`, and from the
// fibgate_build_info metric, to know what runs where during a rollout and
// which GoBGP a bug report is about.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// GoBGPModule is the module whose version Info reports as GoBGP.
const GoBGPModule = "github.com/osrg/gobgp/v3"

// Info is one build's versions. Fields are never empty: what the binary
// does not record reads "unknown".
type Info struct {
	// Version is fibgate's: the main module's version as the go command
	// stamped it (a tag or a pseudo-version, "+dirty" for uncommitted
	// changes), else the VCS revision with "-dirty", else "(devel)".
	Version string
	// GoVersion is the Go release the binary was built with (go1.26.8).
	GoVersion string
	// GoBGP is the version of the GoBGP module linked in (v3.37.0), after
	// any replace directive.
	GoBGP string
}

// Get returns the running binary's versions.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return FromBuildInfo(bi)
}

// FromBuildInfo reads the versions from bi, which may be nil (a binary
// built without module support); it is Get without the process, for tests.
func FromBuildInfo(bi *debug.BuildInfo) Info {
	info := Info{Version: "(devel)", GoVersion: runtime.Version(), GoBGP: "unknown"}
	if bi == nil {
		return info
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	var revision string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	switch {
	case bi.Main.Version != "" && bi.Main.Version != "(devel)":
		info.Version = bi.Main.Version
	case revision != "":
		info.Version = revision[:min(len(revision), 12)]
		if dirty {
			info.Version += "-dirty"
		}
	}
	for _, d := range bi.Deps {
		if d.Path != GoBGPModule {
			continue
		}
		if r := d.Replace; r != nil && r.Version != "" && r.Version != "(devel)" {
			d = r
		} else if r != nil {
			// A directory (a patched copy of GoBGP): what it
			// replaced and where it is, so a patched build shows as one.
			info.GoBGP = d.Version + " => " + r.Path
			continue
		}
		if d.Version != "" {
			info.GoBGP = d.Version
		}
	}
	return info
}

// String is what --version prints after the binary's name:
// "v1.2.0 (go1.26.8, GoBGP v3.37.0)".
func (i Info) String() string {
	return fmt.Sprintf("%s (%s, GoBGP %s)", i.Version, i.GoVersion, i.GoBGP)
}
