package reexport

import "testing"

// TestAvailableInThisModule: in this module's binaries and tests the
// layout checks pass, so gobgpd-ext releases by re-export.
func TestAvailableInThisModule(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatal(err)
	}
}
