// Package pinned says whether this binary was linked with the GoBGP this
// module pins (v3.37.0 as published), the one the go:linkname code in
// plugin/gobgp/internal was written against.
//
// Why a package of its own: a wrong signature behind a linkname is memory
// corruption, not a compile error, so every package that reaches into
// GoBGP's internals (reexport, bestwatch) asks Check first and does
// nothing on an answer other than nil; the callers then use GoBGP's API
// as a stock gobgpd would offer it.
package pinned

import (
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"sync"
)

// The GoBGP the linknames were written against: what `go mod download
// -json github.com/osrg/gobgp/v3@v3.37.0` reports.
const (
	Module  = "github.com/osrg/gobgp/v3"
	Version = "v3.37.0"
	Sum     = "h1:+ObuOdvj7G7nxrT0fKFta+EAupdWf/q1WzbXydr8IOY="
	// ThisModule is the module whose go.mod pins it (see Check).
	ThisModule = "github.com/fibgate/fibgate"
)

var (
	once   sync.Once
	reason error
)

// Check says whether this binary's GoBGP is the pinned one: nil, or why
// not (another version, a fork, a replace). The answer is computed once.
// (A vendor directory edited by hand is not detected: its build records
// no hash to compare.)
func Check() error {
	once.Do(func() {
		bi, ok := debug.ReadBuildInfo()
		if !ok {
			reason = errors.New("no build information in this binary")
			return
		}
		reason = checkBuild(bi)
	})
	return reason
}

// checkBuild says whether bi is a build with the pinned GoBGP. A vendored
// build (go mod vendor) records no hash; its version is the vendor
// directory's, which go mod vendor checked against go.sum, so it is taken
// on its version.
func checkBuild(bi *debug.BuildInfo) error {
	if len(bi.Deps) == 0 && bi.Main.Path == ThisModule {
		// A test binary of this module: go test records no dependencies,
		// and this module's go.mod pins GoBGP (TestGoModPinsGoBGP).
		return nil
	}
	for _, m := range bi.Deps {
		if m.Path != Module {
			continue
		}
		if m.Replace != nil {
			return fmt.Errorf("%s is replaced by %s %s", Module, m.Replace.Path, m.Replace.Version)
		}
		if m.Version != Version || (m.Sum != "" && m.Sum != Sum) {
			return fmt.Errorf("%s is %s %s, written for %s %s", Module, m.Version, m.Sum, Version, Sum)
		}
		return nil
	}
	return fmt.Errorf("%s not in this binary's build information", Module)
}

// Field finds t's field name and checks that its type is want, as
// reflect writes it ("*table.TableManager"): the check that stands
// between a layout read through unsafe and a GoBGP whose struct changed.
func Field(t reflect.Type, name, want string) (reflect.StructField, error) {
	f, ok := t.FieldByName(name)
	if !ok {
		return f, fmt.Errorf("%s has no field %s", t, name)
	}
	if got := f.Type.String(); got != want {
		return f, fmt.Errorf("%s.%s is %s, want %s", t, name, got, want)
	}
	return f, nil
}
