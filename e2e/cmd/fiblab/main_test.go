package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDownWithoutALabExitsZero: `fiblab down` (make lab-down) with no lab
// up says so and exits 0, however often it runs, and removes the empty
// state directory a lab that never came up left behind.
func TestDownWithoutALabExitsZero(t *testing.T) {
	state := filepath.Join(t.TempDir(), "fabric")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		var out, errb bytes.Buffer
		code := run(context.Background(), []string{"down", "-state", state, "../../labs/fabric/fabric.clab.yml"}, &out, &errb)
		if code != 0 || errb.Len() > 0 || !strings.Contains(out.String(), "lab fabric is not up") {
			t.Errorf("down #%d: exit %d, stdout %q, stderr %q; want 0 and \"lab fabric is not up\"", i+1, code, out.String(), errb.String())
		}
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("the empty state directory is still there (%v)", err)
	}
}
