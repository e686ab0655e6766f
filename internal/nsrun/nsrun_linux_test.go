package nsrun

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/vishvananda/netns"
)

// fn runs in the named namespace, and the goroutine is back in its own
// afterwards; an unknown namespace is an error naming it, and fn is not run.
func TestDoRunsInTheNamespaceAndComesBack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace")
	}
	ns := fmt.Sprintf("fg-nsrun-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	want, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	ours, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()

	var inside bool
	if err := Do(ns, func() error {
		cur, err := netns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		inside = cur.Equal(want)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !inside {
		t.Error("fn did not run in the namespace")
	}
	// Whichever thread runs this now, it is in our namespace.
	for range 20 {
		cur, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		back := cur.Equal(ours)
		cur.Close()
		if !back {
			t.Fatal("a thread was left in the namespace")
		}
	}
	ran := false
	if err := Do(ns+"-none", func() error { ran = true; return nil }); err == nil || ran {
		t.Errorf("unknown namespace: err %v, fn ran %v", err, ran)
	}
}
