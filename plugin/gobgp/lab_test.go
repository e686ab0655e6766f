//go:build linux

package gobgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/plugin/gate"
)

// The lab tests run every behaviour against both adapters: a stock
// gobgpd driven over gRPC and a BgpServer in this process, each as the
// leaf between an FRR spine and (for transit) an FRR peer. What the leaf
// sent is read at the spine, from FRR's JSON.

var (
	orig4 = netip.MustParsePrefix("198.51.100.0/24")
	orig6 = netip.MustParsePrefix("2001:db8:100::/48")
	tran4 = netip.MustParsePrefix("203.0.113.0/25")
	tran6 = netip.MustParsePrefix("2001:db8:200::/48")
	held4 = netip.MustParsePrefix("203.0.113.128/25")
	held6 = netip.MustParsePrefix("2001:db8:201::/48")
	new4  = netip.MustParsePrefix("192.0.2.0/24")
	new6  = netip.MustParsePrefix("2001:db8:202::/48")
)

// quiet is how long "absent" is watched for after the leaf learned a
// prefix: BGP updates here take a few milliseconds (no MRAI), so a leak
// would show within it.
const quiet = 600 * time.Millisecond

func TestOriginatedPrefixIsAnnouncedOnlyBetweenAdvertiseAndWithdraw(t *testing.T) {
	for _, a := range adapters() {
		t.Run(a.name, func(t *testing.T) {
			med := uint32(50)
			topo := lab.NewTopology(t, false)
			r := a.start(t, topo, Config{Communities: []string{"65001:100"}, MED: &med})
			ctx := context.Background()
			both := []netip.Prefix{orig4, orig6}

			lab.Never(t, quiet/2, "absent before Advertise", func() error { return r.noneAtSpine(both...) })
			if err := r.sp.Advertise(ctx, ads(gate.Originated, both...)); err != nil {
				t.Fatal(err)
			}
			got := r.atSpine(t, "65001", both...)
			for _, p := range both {
				if m := got[p].Metric; m == nil || *m != med {
					t.Errorf("%v: MED %v, want %d", p, m, med)
				}
				if c, err := topo.SpineFRR.Communities(p); err != nil || c != "65001:100" {
					t.Errorf("%v: communities %q (%v), want 65001:100", p, c, err)
				}
			}

			// Idempotent: the spine sees no new update.
			if err := r.sp.Advertise(ctx, ads(gate.Originated, both...)); err != nil {
				t.Fatal(err)
			}
			sameVersions(t, r, got, both...)

			if err := r.sp.Withdraw(ctx, ads(gate.Originated, both...)); err != nil {
				t.Fatal(err)
			}
			r.goneFromSpine(t, both...)
			if err := r.sp.Withdraw(ctx, ads(gate.Originated, both...)); err != nil {
				t.Fatalf("second withdraw: %v", err)
			}
			if n := r.holdPaths(t); n != 0 {
				t.Errorf("%d HOLD paths left in the RIB", n)
			}
		})
	}
}

// sameVersions checks, for a moment, that the spine's paths keep their
// versions (nothing was withdrawn and announced again).
func sameVersions(t *testing.T, r *rig, before map[netip.Prefix]lab.Route, ps ...netip.Prefix) {
	t.Helper()
	lab.Never(t, quiet/2, "no update after an idempotent call", func() error {
		now, err := r.spine()
		if err != nil {
			return err
		}
		for _, p := range ps {
			if x, ok := now[p]; !ok || x.Version != before[p].Version {
				return fmt.Errorf("%v changed: %+v -> %+v (present %v)", p, before[p], x, ok)
			}
		}
		return nil
	})
}

func TestTransitPrefixIsHeldUntilAdvertisedAndWithdrawnAfter(t *testing.T) {
	for _, a := range adapters() {
		t.Run(a.name, func(t *testing.T) {
			topo := lab.NewTopology(t, true, tran4, tran6, held4, held6)
			r := a.start(t, topo, Config{})
			ctx := context.Background()
			rel := []netip.Prefix{tran4, tran6}
			never := []netip.Prefix{held4, held6}

			r.learned(t, append(rel, never...)...)
			lab.Never(t, quiet, "held by the export policy", func() error { return r.noneAtSpine(append(rel, never...)...) })

			if err := r.sp.Advertise(ctx, ads(gate.Transit, rel...)); err != nil {
				t.Fatal(err)
			}
			got := r.atSpine(t, "65001 65003", rel...)
			if err := r.sp.Advertise(ctx, ads(gate.Transit, rel...)); err != nil {
				t.Fatal(err)
			}
			sameVersions(t, r, got, rel...)

			if err := r.sp.Withdraw(ctx, ads(gate.Transit, rel...)); err != nil {
				t.Fatal(err)
			}
			r.goneFromSpine(t, rel...)
			lab.Never(t, quiet/2, "stays withdrawn", func() error { return r.noneAtSpine(rel...) })
			if err := r.sp.Withdraw(ctx, ads(gate.Transit, rel...)); err != nil {
				t.Fatalf("second withdraw: %v", err)
			}

			if err := r.sp.Advertise(ctx, ads(gate.Transit, rel...)); err != nil {
				t.Fatal(err)
			}
			r.atSpine(t, "65001 65003", rel...)
			if err := r.noneAtSpine(never...); err != nil {
				t.Error(err)
			}
			if n := r.holdPaths(t); n != 0 {
				t.Errorf("%d HOLD paths left in the RIB", n)
			}

		})
	}
}

// watch polls the spine in the background until stop is called and
// returns the first violation: a prefix of mustNot present, or one of
// must missing.
func watch(r *rig, mustNot, must []netip.Prefix) (stop func() error) {
	var (
		mu   sync.Mutex
		bad  error
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			got, err := r.spine()
			mu.Lock()
			for _, p := range mustNot {
				if _, ok := got[p]; ok && err == nil && bad == nil {
					bad = fmt.Errorf("%v leaked to the spine at %v", p, time.Now().Format(time.StampMilli))
				}
			}
			for _, p := range must {
				if _, ok := got[p]; !ok && err == nil && bad == nil {
					bad = fmt.Errorf("%v vanished from the spine at %v", p, time.Now().Format(time.StampMilli))
				}
			}
			mu.Unlock()
		}
	}()
	return func() error {
		close(done)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return bad
	}
}

func TestGuardReinstallsGateAfterPolicyReloadBeforeAnythingLeaks(t *testing.T) {
	for _, a := range adapters() {
		for _, how := range a.reloads {
			t.Run(a.name+"/"+how, func(t *testing.T) {
				topo := lab.NewTopology(t, true, tran4, tran6, held4, held6)
				events := make(chan GuardEvent, 8)
				r := a.start(t, topo, Config{}, WithGuardInterval(50*time.Millisecond),
					WithGuardHook(func(e GuardEvent) {
						select {
						case events <- e:
						default:
						}
					}))
				reload := r.reloads[how]
				ctx, cancel := context.WithCancel(context.Background())
				guardDone := make(chan error, 1)
				go func() { guardDone <- r.sp.Guard(ctx) }()
				defer func() {
					cancel()
					if err := <-guardDone; !errors.Is(err, context.Canceled) {
						t.Errorf("guard returned %v, want context.Canceled", err)
					}
				}()

				rel, held := []netip.Prefix{tran4, tran6}, []netip.Prefix{held4, held6}
				r.learned(t, append(rel, held...)...)
				if err := r.sp.Advertise(ctx, ads(gate.Transit, rel...)); err != nil {
					t.Fatal(err)
				}
				before := r.atSpine(t, "65001 65003", rel...)
				stop := watch(r, append(held, new4, new6), rel)

				start := time.Now()
				reload(t)
				var ev GuardEvent
				select {
				case ev = <-events:
				case <-time.After(5 * time.Second):
					t.Fatal("guard did not re-install the gate within 5 s of the reload")
				}
				if ev.Err != nil {
					t.Fatalf("re-install: %v", ev.Err)
				}
				t.Logf("reload to re-installed: %v (re-install took %v; reason: %s)", time.Since(start), ev.Took, ev.Reason)
				lab.Eventually(t, 5*time.Second, "the gate first, then the user's policy", func() error {
					if c := r.chain(t); !slices.Equal(c, []string{r.sp.cfg.policy, "user-export"}) {
						return fmt.Errorf("global export chain %v", c)
					}
					return nil
				})

				// Export runs after the reload: a new prefix, and a held
				// one withdrawn and announced again by the peer.
				topo.PeerFRR.Announce(new4, false)
				topo.PeerFRR.Announce(new6, false)
				topo.PeerFRR.Announce(held4, true)
				topo.PeerFRR.Announce(held4, false)
				r.learned(t, new4, new6, held4)
				time.Sleep(quiet) // the watcher polls meanwhile
				if err := stop(); err != nil {
					t.Fatal(err)
				}
				// Restoring the releases re-ran their export without a
				// flap: the spine got at most a duplicate.
				sameVersions(t, r, before, rel...)

				// The gate still works.
				if err := r.sp.Advertise(ctx, ads(gate.Transit, new4, new6)); err != nil {
					t.Fatal(err)
				}
				r.atSpine(t, "65001 65003", new4, new6)
				if err := r.noneAtSpine(held...); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func TestCheckWithdrawsWhatLeakedWhileUnguarded(t *testing.T) {
	for _, a := range adapters() {
		t.Run(a.name, func(t *testing.T) {
			topo := lab.NewTopology(t, true, tran4, held4, held6)
			r := a.start(t, topo, Config{})
			ctx := context.Background()
			r.learned(t, tran4, held4, held6)
			if err := r.sp.Advertise(ctx, ads(gate.Transit, tran4)); err != nil {
				t.Fatal(err)
			}
			r.atSpine(t, "65001 65003", tran4)

			// No guard: the reload drops the gate and a new prefix leaks.
			r.setPolicies(t)
			topo.PeerFRR.Announce(new4, false)
			topo.PeerFRR.Announce(new6, false)
			r.atSpine(t, "65001 65003", new4, new6)

			reinstalled, err := r.sp.Check(ctx)
			if err != nil || !reinstalled {
				t.Fatalf("Check = %v, %v; want a re-install", reinstalled, err)
			}
			r.goneFromSpine(t, new4, new6)
			r.atSpine(t, "65001 65003", tran4)
			if err := r.noneAtSpine(held4, held6); err != nil {
				t.Fatal(err) // never exported: no export run touched them
			}
			if again, err := r.sp.Check(ctx); err != nil || again {
				t.Fatalf("second Check = %v, %v; want nothing to do", again, err)
			}
			if n := r.holdPaths(t); n != 0 {
				t.Errorf("%d HOLD paths left in the RIB", n)
			}
		})
	}
}

func TestCloseDeletesOriginatedAndHoldPathsAndStopsGuard(t *testing.T) {
	for _, a := range adapters() {
		t.Run(a.name, func(t *testing.T) {
			topo := lab.NewTopology(t, true, tran4)
			r := a.start(t, topo, Config{})
			ctx := context.Background()
			guardDone := make(chan error, 1)
			go func() { guardDone <- r.sp.Guard(ctx) }()
			r.learned(t, tran4)
			if err := r.sp.Advertise(ctx, append(ads(gate.Originated, orig4, orig6), ads(gate.Transit, tran4)...)); err != nil {
				t.Fatal(err)
			}
			r.atSpine(t, "65001", orig4, orig6)
			r.atSpine(t, "65001 65003", tran4)

			if err := r.sp.Close(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-guardDone:
				if !errors.Is(err, ErrClosed) {
					t.Errorf("guard returned %v, want ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("guard still running after Close")
			}
			r.goneFromSpine(t, orig4, orig6)
			// The gate stays (fail-closed); what was released stays out.
			r.atSpine(t, "65001 65003", tran4)
			if c := r.chain(t); !slices.Contains(c, r.sp.cfg.policy) {
				t.Errorf("gate gone from chain %v after Close", c)
			}
			if n := r.holdPaths(t); n != 0 {
				t.Errorf("%d HOLD paths left in the RIB", n)
			}
			if err := r.sp.Advertise(ctx, ads(gate.Transit, tran4)); !errors.Is(err, ErrClosed) {
				t.Errorf("Advertise after Close = %v, want ErrClosed", err)
			}
			if err := r.sp.Close(ctx); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

// With Config.FallbackPolicy in gobgpd's config file the gate is that
// policy, and a restart of gobgpd comes up closed (the file's version of
// its sets holds everything): nothing in scope is exported until Check
// restores the releases, even with no guard running, and then what was
// released goes out again.
func TestRestartedGobgpdStaysClosedUntilTheGateIsBack(t *testing.T) {
	topo := lab.NewTopology(t, true, tran4, held4)
	cfg := Config{FallbackPolicy: "fibgate-fallback"}
	fallback, err := cfg.FallbackTOML()
	if err != nil {
		t.Fatal(err)
	}
	conf := lab.GobgpdConf{AS: lab.LeafAS, RouterID: lab.LeafSpine4, Neighbours: topo.LeafNeighbours(),
		Extra: fallback + "[global.apply-policy.config]\n  export-policy-list = [\"fibgate-fallback\"]\n  default-export-policy = \"accept-route\"\n"}
	g := lab.StartGobgpd(t, topo.Leaf, conf.String())
	sp, err := NewClient(g.Dial(t), cfg, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{topo: topo, sp: sp, api: gobgpAPI{b: sp.b}}
	r.begin(t)
	ctx := context.Background()
	if c := r.chain(t); !slices.Equal(c, []string{sp.cfg.policy}) {
		t.Fatalf("chain %v: want the gate alone (the fallback is the gate)", c)
	}
	r.learned(t, tran4, held4)
	if err := sp.Advertise(ctx, append(ads(gate.Transit, tran4), ads(gate.Originated, orig4)...)); err != nil {
		t.Fatal(err)
	}
	r.atSpine(t, "65001 65003", tran4)
	r.atSpine(t, "65001", orig4)

	g.Restart(t)
	topo.SpineFRR.WaitEstablished(lab.LeafSpine4, 20*time.Second)
	topo.PeerFRR.WaitEstablished(lab.LeafPeer4, 20*time.Second)
	r.learned(t, tran4, held4)
	lab.Never(t, quiet, "closed by the fallback after the restart", func() error { return r.noneAtSpine(tran4, held4, orig4) })

	lab.Eventually(t, 10*time.Second, "Check re-installs the gate", func() error {
		again, err := sp.Check(ctx)
		if err == nil && !again {
			return errors.New("Check saw nothing to do")
		}
		return err // the connection may still be reconnecting
	})
	r.atSpine(t, "65001 65003", tran4)
	r.atSpine(t, "65001", orig4)
	if err := r.noneAtSpine(held4); err != nil {
		t.Fatal(err)
	}
	if c := r.chain(t); !slices.Equal(c, []string{sp.cfg.policy}) {
		t.Fatalf("chain %v after re-install", c)
	}
}

// TestALocalPathSurvivesReleaseAndTakeBack: a local path the gate did not
// add (a controller's over GoBGP's API, or one GoBGP's zebra client
// redistributed) is gated like a learned one, and its release and
// take-back leave it in GoBGP. GoBGP keeps one local path a prefix, and
// the toggles' HOLD paths were local paths too: the release's replaced
// the prefix's path and its deletion deleted it, so the prefix was gone
// from GoBGP (and, under zebra, from the kernel) and no neighbour got it.
// The HOLD paths of toggles now come from a source of their own.
func TestALocalPathSurvivesReleaseAndTakeBack(t *testing.T) {
	local4, local6 := netip.MustParsePrefix("198.18.7.0/24"), netip.MustParsePrefix("2001:db8:207::/48")
	origin, err := bgp.NewPathAttributeOrigin(0).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range adapters() {
		t.Run(a.name, func(t *testing.T) {
			topo := lab.NewTopology(t, true)
			r := a.start(t, topo, Config{})
			ctx := context.Background()
			ps := []netip.Prefix{local4, local6}
			var paths []*api.Path
			for _, p := range ps {
				lp, err := build(p, unspecified(p), [][]byte{origin}, false)
				if err != nil {
					t.Fatal(err)
				}
				paths = append(paths, lp)
			}
			if err := r.api.b.sendPaths(ctx, paths); err != nil {
				t.Fatal(err)
			}
			// localPaths counts the prefixes that have a path besides HOLD paths.
			localPaths := func() int {
				t.Helper()
				have := map[netip.Prefix]bool{}
				for _, fam := range []*api.Family{familyV4, familyV6} {
					if err := r.api.b.listGlobal(ctx, fam, func(d *api.Destination) {
						for _, p := range d.Paths {
							if _, comms, _, err := pathAttrsAS(p, nil); err == nil && !slices.Contains(comms, 65534<<16|4711) {
								have[netip.MustParsePrefix(d.Prefix)] = true
							}
						}
					}); err != nil {
						t.Fatal(err)
					}
				}
				n := 0
				for _, p := range ps {
					if have[p] {
						n++
					}
				}
				return n
			}
			lab.Never(t, quiet, "held by the export policy", func() error { return r.noneAtSpine(ps...) })
			for round := 1; round <= 2; round++ {
				if err := r.sp.Advertise(ctx, ads(gate.Transit, ps...)); err != nil {
					t.Fatal(err)
				}
				r.atSpine(t, "65001", ps...)
				if n := localPaths(); n != len(ps) {
					t.Fatalf("round %d: after the release %d of %d prefixes have their local path in GoBGP", round, n, len(ps))
				}
				if err := r.sp.Withdraw(ctx, ads(gate.Transit, ps...)); err != nil {
					t.Fatal(err)
				}
				r.goneFromSpine(t, ps...)
				if n := localPaths(); n != len(ps) {
					t.Fatalf("round %d: after the take-back %d of %d prefixes have their local path in GoBGP", round, n, len(ps))
				}
			}
			if n := r.holdPaths(t); n != 0 {
				t.Errorf("%d HOLD paths left in the RIB", n)
			}
		})
	}
}
