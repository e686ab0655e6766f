package daemon

import (
	"slices"
	"testing"
)

// TestChangedKeysNameWhatNeedsARestart: a reload applies the policy and
// names, by their keys in the file, the other settings that changed.
func TestChangedKeysNameWhatNeedsARestart(t *testing.T) {
	a, err := Parse([]byte("netns: a\npolicy:\n  scopes:\n    - name: x\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]byte("netns: b\naudit:\n  interval: 5m\npolicy:\n  scopes:\n    - name: y\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := changedKeys(a, b); !slices.Equal(got, []string{"netns", "audit"}) {
		t.Errorf("changedKeys = %q, want netns and audit (the policy is Reload's)", got)
	}
	if got := changedKeys(a, a); len(got) != 0 {
		t.Errorf("changedKeys of a file and itself = %q", got)
	}
}
