//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fibgate/fibgate/internal/lab"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// TestRuntimeToggle turns gating off and on and narrows the scope over the
// API while the leaf runs (issue 14 #4), on the churn lab (source -> leaf
// -> observer, the observer's best paths timestamped as they arrive):
//
//  1. 200 prefixes confirmed and out; the sim then programs nothing (30 s);
//  2. gating off: 50 new prefixes reach the observer at once, ungated;
//  3. gating on: those 50 (unconfirmed) are taken back within seconds;
//     50 more new ones stay held;
//  4. the scope narrowed to the first 128 prefixes: the 100 held prefixes
//     and the 72 confirmed ones leave it and are (or stay) out.
//
// All along, the observer never loses one of the 200 confirmed prefixes,
// and no BGP session is reset (the observer's session stays up).
func TestRuntimeToggle(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end with namespaces and three BGP speakers: skipped in -short mode")
	}
	lab.RequireRoot(t)
	binaries(t)
	lab.GobgpBinaries(t)
	for _, m := range leafModes {
		t.Run(m.name, func(t *testing.T) { runToggle(t, m) })
	}
}

func runToggle(t *testing.T, m leafMode) {
	ctx := context.Background()
	name := m.name
	c := newChurnLab(t, m)
	all := lab.HostPrefixes(churnBase, 300)
	confirmed, ungated, held := all[:200], all[200:250], all[250:]
	nh := netip.MustParseAddr(churnSrcLeaf)
	if err := lab.AnnounceIPv4(ctx, c.srcAPI, confirmed, nh); err != nil {
		t.Fatal(err)
	}
	c.waitCount(t, 60*time.Second, "the observer has the 200 confirmed prefixes", func(k int) bool { return k == 200 })
	start := time.Now()
	c.leaf.setLatency(t, 30*time.Second)

	pc := pb.NewPolicyServiceClient(c.leaf.conn)
	got, err := pc.GetPolicy(ctx, &pb.GetPolicyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	on := got.GetPolicy()
	// set returns when the change was asked for: it takes effect before
	// the call returns.
	set := func(what string, p *pb.Policy) time.Time {
		t.Helper()
		at := time.Now()
		if _, err := pc.SetPolicy(ctx, &pb.SetPolicyRequest{Policy: p}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return at
	}

	off := proto.Clone(on).(*pb.Policy)
	off.Scopes = nil
	set("gating off", off)
	if err := lab.AnnounceIPv4(ctx, c.srcAPI, ungated, nh); err != nil {
		t.Fatal(err)
	}
	c.waitCount(t, 30*time.Second, "gating off: the 50 new prefixes at the observer, ungated", func(k int) bool { return k == 250 })

	onAt := set("gating on", on)
	c.waitCount(t, 10*time.Second, "gating on: the 50 unconfirmed prefixes taken back", func(k int) bool { return k == 200 })
	took := time.Since(onAt)
	if err := lab.AnnounceIPv4(ctx, c.srcAPI, held, nh); err != nil {
		t.Fatal(err)
	}
	// The leaf has them (its kernel routes are pending in the sim) before
	// the scope narrows, so that narrowing is what lets them out.
	lab.Eventually(t, 30*time.Second, "the leaf judges the 50 held prefixes", func() error {
		states, err := c.leaf.churnRoutes(ctx)
		if err != nil {
			return err
		}
		n := 0
		for _, p := range held {
			if st := states[p]; st != nil && st.GetState() == pb.State_STATE_PENDING {
				n++
			}
		}
		if n != len(held) {
			return fmt.Errorf("%d of %d pending", n, len(held))
		}
		return nil
	})
	if k, _ := c.watch.Count(); k != 200 {
		t.Errorf("with gating on, the observer has %d prefixes, want the 200 confirmed", k)
	}

	narrow := proto.Clone(on).(*pb.Policy)
	narrow.Scopes[0].Prefixes = []*pb.PrefixRange{{Prefix: netip.PrefixFrom(churnBase, 25).String(), MaxLen: 32}}
	narrowAt := set("scope narrowed", narrow)
	c.waitCount(t, 30*time.Second, "the narrowed scope lets the held prefixes out", func(k int) bool { return k == 300 })

	sightings := c.watch.Since(start)
	for _, s := range sightings {
		switch {
		case slices.Contains(confirmed, s.P) && !s.Present:
			t.Errorf("confirmed %v withdrawn at the observer at +%v", s.P, s.At.Sub(start).Round(time.Millisecond))
		case slices.Contains(held, s.P) && s.Present && s.At.Before(narrowAt):
			t.Errorf("held %v reached the observer at +%v, before the scope narrowed (+%v)", s.P, s.At.Sub(start).Round(time.Millisecond), narrowAt.Sub(start).Round(time.Millisecond))
		}
	}
	t.Logf("%s: gating off let 50 new prefixes out; gating on took the unconfirmed back within %v; narrowing let 100 held ones out; the 200 confirmed never left the observer",
		name, took.Round(time.Millisecond))
}
