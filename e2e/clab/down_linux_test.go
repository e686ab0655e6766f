package clab

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestDownDir: taking a lab down removes its state directory and the
// labs' root once it is empty; with no lab up it says so (ErrNotUp) and
// leaves what is not an empty lab directory alone. The labs here have no
// processes and no namespaces, so the test needs no root.
func TestDownDir(t *testing.T) {
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	writeState := func(t *testing.T, dir string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, "leaf1"), 0o755); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(State{Name: filepath.Base(dir), Dir: dir, Namespaces: map[string]string{}})
		if err := os.WriteFile(filepath.Join(dir, "state.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("a lab that is up is taken down with its directory and the empty root", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "fibgate-lab")
		dir := filepath.Join(root, "fabric")
		writeState(t, dir)
		if err := downDir(dir, root); err != nil {
			t.Fatal(err)
		}
		if exists(dir) || exists(root) {
			t.Errorf("left behind: %s %v, %s %v", dir, exists(dir), root, exists(root))
		}
	})
	t.Run("the root stays while another lab is up", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "fibgate-lab")
		writeState(t, filepath.Join(root, "fabric"))
		writeState(t, filepath.Join(root, "other"))
		if err := downDir(filepath.Join(root, "fabric"), root); err != nil {
			t.Fatal(err)
		}
		if !exists(filepath.Join(root, "other", "state.json")) {
			t.Error("the other lab's state went too")
		}
	})
	t.Run("taking it down twice reports ErrNotUp the second time", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "fibgate-lab")
		dir := filepath.Join(root, "fabric")
		writeState(t, dir)
		if err := downDir(dir, root); err != nil {
			t.Fatal(err)
		}
		if err := downDir(dir, root); !errors.Is(err, ErrNotUp) {
			t.Errorf("second down: %v, want ErrNotUp", err)
		}
	})
	t.Run("an empty directory left by a lab that never came up goes", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "fibgate-lab")
		dir := filepath.Join(root, "fabric")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := downDir(dir, root); !errors.Is(err, ErrNotUp) {
			t.Errorf("got %v, want ErrNotUp", err)
		}
		if exists(dir) || exists(root) {
			t.Errorf("left behind: %s %v, %s %v", dir, exists(dir), root, exists(root))
		}
	})
	t.Run("a directory with files but no lab state is left alone, and so is a parent that is not the root", func(t *testing.T) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "mine")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("keep"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := downDir(dir, filepath.Join(parent, "fibgate-lab")); !errors.Is(err, ErrNotUp) {
			t.Errorf("got %v, want ErrNotUp", err)
		}
		if !exists(filepath.Join(dir, "notes.txt")) {
			t.Error("removed a directory that was not a lab's")
		}
		empty := filepath.Join(parent, "empty")
		writeState(t, filepath.Join(empty, "fabric"))
		if err := downDir(filepath.Join(empty, "fabric"), filepath.Join(parent, "fibgate-lab")); err != nil {
			t.Fatal(err)
		}
		if !exists(empty) {
			t.Error("removed the state directory's parent, which is not the labs' root")
		}
	})
	t.Run("a state file that cannot be read is an error, not ErrNotUp", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte("{"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := downDir(dir, "/nonexistent"); err == nil || errors.Is(err, ErrNotUp) {
			t.Errorf("got %v, want a parse error", err)
		}
	})
}
