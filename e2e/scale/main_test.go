//go:build linux

package scale

import (
	"os"
	"testing"

	"github.com/fibgate/fibgate/internal/lab"
)

// TestMain proves the cleanup: no namespace and no daemon is left, also
// after a failed or timed-out leaf.
func TestMain(m *testing.M) {
	code := m.Run()
	if lab.LeftBehind() {
		code = 1
	}
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}
