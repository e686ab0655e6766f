//go:build linux

package gobgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/fibgate/fibgate/plugin/gate"
)

// TestRescopeNeitherLeaksNorWithdraws changes the scope at run time, with
// the gate in its own policy and in gobgpd's fallback (the daemons' way),
// and watches the receiver throughout:
//   - moving the scope from 10.1/16 to 10.2/16: the released a stays out,
//     the held c (leaving) is announced now, the ungated b (entering) stays
//     out and counts as released; nothing is withdrawn;
//   - a new prefix d of the new scope is held until released;
//   - gating off (NoScope): the held e goes out, nothing is withdrawn;
//   - gating on again: what is out stays out (released), a new f is held;
//   - the export chain is the same policy all along.
func TestRescopeNeitherLeaksNorWithdraws(t *testing.T) {
	for _, fallback := range []string{"", "fibgate-fallback"} {
		t.Run(map[string]string{"": "own policy", "fibgate-fallback": "fallback policy"}[fallback], func(t *testing.T) {
			x := newLoopLab(t)
			recv := watchArrivals(t, x.receiver)
			pfx := netip.MustParsePrefix
			in1, in2 := []Range{{Prefix: pfx("10.1.0.0/16"), MaxLen: 32}}, []Range{{Prefix: pfx("10.2.0.0/16"), MaxLen: 32}}
			cfg := Config{Scope: in1, FallbackPolicy: fallback}
			sp, err := NewInProcess(x.leaf, cfg, WithLogger(testLogger(t)))
			if err != nil {
				t.Fatal(err)
			}
			if err := sp.Bootstrap(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sp.Close(context.Background()) })
			chain := func() string {
				a, err := serverBackend{x.leaf}.exportAssignment(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				return fmt.Sprint(a.Policies)
			}
			chain0 := chain()
			a, b, c := pfx("10.1.0.0/24"), pfx("10.2.0.0/24"), pfx("10.1.1.0/24")
			x.announce(t, false, a, b, c)
			if err := sp.Advertise(context.Background(), ads(gate.Transit, a)); err != nil {
				t.Fatal(err)
			}
			watched := []netip.Prefix{a, b, c, pfx("10.2.5.0/24"), pfx("10.3.0.0/24"), pfx("10.2.6.0/24")}
			x.received(t, watched, a, b)

			rescope := func(c Config) {
				t.Helper()
				if err := sp.Rescope(context.Background(), c); err != nil {
					t.Fatal(err)
				}
			}
			cfg.Scope = in2
			rescope(cfg)
			x.received(t, watched, a, b, c)
			if !sp.IsReleased(b) {
				t.Errorf("%v entered the scope while out: want it counted as released", b)
			}
			d := pfx("10.2.5.0/24")
			x.announce(t, false, d)
			x.learned(t, d)
			x.received(t, watched, a, b, c) // d held
			if err := sp.Advertise(context.Background(), ads(gate.Transit, d)); err != nil {
				t.Fatal(err)
			}
			x.received(t, watched, a, b, c, d)

			// Off, then on again with another new prefix held.
			e := pfx("10.2.6.0/24")
			x.announce(t, false, e)
			x.learned(t, e)
			cfg.NoScope = true
			rescope(cfg)
			x.received(t, watched, a, b, c, d, e)
			cfg.NoScope = false
			rescope(cfg)
			for _, p := range []netip.Prefix{b, d, e} {
				if !sp.IsReleased(p) {
					t.Errorf("%v: out when gating came back, not counted as released", p)
				}
			}
			f := pfx("10.2.7.0/24")
			x.announce(t, false, f)
			x.learned(t, f)
			x.received(t, append(watched, f), a, b, c, d, e)

			for _, p := range []netip.Prefix{a, b, c, d, e} {
				if _, wd := recv.at(p); wd != 0 {
					t.Errorf("%v was withdrawn %d times at the receiver during the rescopes", p, wd)
				}
			}
			if got := chain(); got != chain0 {
				t.Errorf("export chain changed: %s, was %s", got, chain0)
			}
			// Another change than the scope is refused.
			bad := cfg
			bad.HoldCommunity = "65000:1"
			if err := sp.Rescope(context.Background(), bad); !errors.Is(err, ErrNotRescopable) {
				t.Errorf("Rescope with another hold community: %v, want ErrNotRescopable", err)
			}

			// A new Speaker starts with the first scope again (a daemon
			// restarted with its settings file) on the rescoped sets: what
			// went out ungated in its scope is withdrawn (a and c: nothing
			// adopts them here), what the sets held outside it goes out
			// (f), what is out outside it stays (b, d, e), and new
			// prefixes of its scope are held (g).
			if err := sp.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			sp2, err := NewInProcess(x.leaf, Config{Scope: in1, FallbackPolicy: fallback}, WithLogger(testLogger(t)))
			if err != nil {
				t.Fatal(err)
			}
			if err := sp2.Bootstrap(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sp2.Close(context.Background()) })
			g := pfx("10.1.9.0/24")
			x.announce(t, false, g)
			x.learned(t, g)
			x.received(t, append(watched, f, g), b, d, e, f)
		})
	}
}

// TestHoldSetIsNotAddedAgain: GoBGP lists a community set's members as
// regular expressions ("^65534:4711$"); a second install must see its own
// HOLD community there and leave the set alone (it used to log an error
// and add the community again on every install).
func TestHoldSetIsNotAddedAgain(t *testing.T) {
	x := newLoopLab(t)
	sp, err := NewInProcess(x.leaf, Config{FallbackPolicy: "fibgate-fallback"}, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sp.Close(context.Background()) })
	for range 3 {
		if err := sp.Bootstrap(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	var list []string
	err = serverBackend{x.leaf}.listDefinedSets(context.Background(), api.DefinedType_COMMUNITY, "", func(d *api.DefinedSet) {
		if d.Name == sp.cfg.holdSet {
			list = d.List
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Errorf("HOLD community set after three installs: %q, want one member", list)
	}
}
