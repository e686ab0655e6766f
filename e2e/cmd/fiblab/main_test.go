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

// TestProbeArgumentErrorsAreOneLine: `fiblab probe` says what is wrong
// with its flags in one line and exits 2, and exits 1 naming the state
// directory when the lab is not up.
func TestProbeArgumentErrorsAreOneLine(t *testing.T) {
	state := filepath.Join(t.TempDir(), "fabric")
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"probe", "-to", "192.0.2.10", "fabric"}, 2, "-from: name the node"},
		{[]string{"probe", "-from", "host3", "fabric"}, 2, "-to: give the addresses"},
		{[]string{"probe", "-from", "host3", "-to", "192.0.2.10,vip", "fabric"}, 2, `"vip" is not an IP address`},
		{[]string{"probe", "-from", "host3", "-to", "192.0.2.10", "-rate", "0", "fabric"}, 2, "-rate 0"},
		{[]string{"probe", "-from", "host3", "-to", "192.0.2.10", "-state", state, "fabric"}, 1, "lab fabric is not up (no state in " + state + ")"},
	} {
		if tt.code == 1 && os.Geteuid() != 0 {
			continue // without root it stops at that
		}
		var out, errb bytes.Buffer
		code := run(context.Background(), tt.args, &out, &errb)
		if code != tt.code || !strings.Contains(errb.String(), tt.want) || strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("fiblab %v: exit %d, stderr %q; want %d and one line with %q", tt.args, code, errb.String(), tt.code, tt.want)
		}
	}
}
