//go:build linux

package scale

import (
	"fmt"
	"os"
	"testing"

	"github.com/fibgate/fibgate/internal/lab"
)

// TestMain proves the cleanup: no namespace and no daemon is left, also
// after a failed or timed-out leaf.
func TestMain(m *testing.M) {
	code := m.Run()
	if os.Geteuid() == 0 {
		if left, err := lab.Leftovers(); err != nil || len(left) > 0 {
			fmt.Fprintf(os.Stderr, "cleanup: namespaces left: %v %v\n", left, err)
			code = 1
		}
		if c := lab.Children(); len(c) > 0 {
			fmt.Fprintf(os.Stderr, "cleanup: child processes left: %v\n", c)
			code = 1
		}
	}
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}
