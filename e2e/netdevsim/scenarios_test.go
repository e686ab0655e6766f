//go:build linux

package netdevsim

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fibgate/fibgate/internal/lab"
	pb "github.com/fibgate/fibgate/proto/fibgate/v1"
)

// The scenarios, in the order TestInsideVM runs them on one rig: each
// builds on what the one before left (prefixes advertised, routes failed).

// trappedFirst: a transit prefix (the peer's, written to the kernel by the
// FIB installer) and an originated one (a static route) reach the
// observer, and not before netdevsim trapped their routes.
func (r *rig) trappedFirst(t *testing.T, f family) {
	since := time.Now()
	r.announce(t, f.transit)
	r.originate(t, f, f.origin)
	for _, p := range []netip.Prefix{f.transit, f.origin} {
		r.advertisedAfterTrap(t, p, since)
	}
}

// writtenAgain: a route written again unchanged (`ip route replace`
// with what it is: FRR's zebra does so for a route its client sends
// again, as GoBGP's does after every HOLD toggle) keeps its prefix out.
// The kernel replaces an IPv6 route with a new one even so (announced
// without flags, then netdevsim traps it again); an IPv4 replace of the
// same route is a silent success. Before session 27 the gate took the
// IPv6 prefix back as a flap (its route seemed to lose trap) and released
// it again after a hold-down: a withdrawal at the observer for a route
// that never left the hardware. Both prefixes are trappedFirst's.
func (r *rig) writtenAgain(t *testing.T, f family) {
	since := time.Now()
	r.ip(t, f.ipFlag, "route", "replace", f.origin.String(), "via", f.peer, "proto", "static")
	if f.name == "ipv6" {
		trap, before := r.mon.waitFlag(t, f.origin, "trap", since)
		if len(before) == 0 || len(before[0].Flags) != 0 {
			t.Errorf("%v: the kernel announced %v then %+v after the replace, want the route without flags first", f.origin, before, trap)
		}
	}
	lab.Never(t, 2*time.Second, fmt.Sprintf("%v stays out", f.origin), func() error {
		for _, s := range r.watch.Since(since) {
			if s.P == f.origin && !s.Present {
				return fmt.Errorf("withdrawn from the observer at +%v", s.At.Sub(since))
			}
		}
		for _, s := range r.gw.of(f.origin) {
			// Released, or confirmed for the moment its new route is
			// released again: never pending, withdrawn or held down.
			if s.At.After(since) && s.State != pb.State_STATE_RELEASED && s.State != pb.State_STATE_CONFIRMED {
				return fmt.Errorf("the gate had it %v (all its states: %v)", s, r.gw.of(f.origin))
			}
		}
		return nil
	})
	g, err := r.gate(t, f.origin)
	if want := stateName(pb.State_STATE_RELEASED); err != nil || g.State != want || !slices.Contains(g.Flags, "trap") {
		t.Errorf("%v: fibgate routes shows %v (%v), want %s with trap", f.origin, g, err, want)
	}
}

// overObject: an originated prefix whose route names a nexthop group of
// two (as FRR's zebra installs an ECMP route) reaches the observer only
// once netdevsim trapped it: the route's trap is the whole route's, every
// path's; deleting the group removes the route, which the kernel does not
// announce for IPv4, and the gate withdraws the prefix from the observer.
func (r *rig) overObject(t *testing.T, f family, id int) {
	since := time.Now()
	a, b, g := fmt.Sprint(id), fmt.Sprint(id+10), fmt.Sprint(id+20)
	r.ip(t, f.ipFlag, "nexthop", "add", "id", a, "via", f.peer, "dev", "to-peer")
	r.ip(t, f.ipFlag, "nexthop", "add", "id", b, "via", f.peer, "dev", "to-peer")
	r.ip(t, "nexthop", "add", "id", g, "group", a+"/"+b)
	r.ip(t, f.ipFlag, "route", "add", f.overObject.String(), "nhid", g, "proto", "static")
	r.advertisedAfterTrap(t, f.overObject, since)
	r.ip(t, "nexthop", "del", "id", g)
	lab.Eventually(t, 30*time.Second, fmt.Sprintf("%v withdrawn", f.overObject), func() error {
		if r.watch.Has(f.overObject) {
			return errors.New("the observer still has it")
		}
		g, err := r.route(f.overObject)
		if want := stateName(pb.State_STATE_WITHDRAWN); err != nil || g.State != want {
			return fmt.Errorf("the gate has it %v (%v), want %s", g, err, want)
		}
		return nil
	})
	r.ip(t, "nexthop", "del", "id", a)
	r.ip(t, "nexthop", "del", "id", b)
}

// advertisedAfterTrap waits until the observer has p, then checks that
// the kernel announced the route without flags first (so there was
// something to wait for) and then with trap, that the gate released p only
// on the trap flag and before the observer had it (releasedAfterTrap), and
// that `fibgate routes` shows p released with trap.
func (r *rig) advertisedAfterTrap(t *testing.T, p netip.Prefix, since time.Time) {
	t.Helper()
	r.waitObserved(t, 60*time.Second, p)
	seen, ok := r.sighting(p, since)
	if !ok {
		t.Fatalf("%v: the observer has it but the watch saw no arrival since %s", p, since.Format("15:04:05.000"))
	}
	trap, before := r.mon.waitFlag(t, p, "trap", since)
	switch {
	case len(before) == 0:
		t.Errorf("%v: the kernel's first notification already had trap (%+v): no window to gate", p, trap)
	case len(before[0].Flags) != 0:
		t.Errorf("%v: the kernel's first notification had flags %v, want none", p, before[0].Flags)
	}
	r.releasedAfterTrap(t, p, since, seen, trap)
	if len(before) > 0 {
		t.Logf("%v (%s): route at +0, trap +%v, at the observer +%v", p, before[0].Protocol,
			trap.Time.Sub(before[0].Time).Round(time.Microsecond), seen.Sub(before[0].Time).Round(time.Microsecond))
	}
	g, err := r.gate(t, p)
	if want := stateName(pb.State_STATE_RELEASED); err != nil || g.State != want || !slices.Contains(g.Flags, "trap") {
		t.Errorf("%v: fibgate routes shows %v (%v), want %s with trap", p, g, err, want)
	}
}

// releasedAfterTrap checks the order of what happened to p: the gate
// released it only in states with trap (its watch), and the observer got
// it (at seen) no earlier than the gate confirmed it. The daemon stamps its
// confirmation before it releases, and the observer's sighting is stamped
// after the UPDATE, so lags only widen the gap: a sighting before the
// confirmation is a leak. The monitor's time of the trap flag (trap) is
// only reported: it is a second reader of the same notification, and with
// two CPUs on a loaded host it read it up to 160 ms after the daemon had
// confirmed and released the prefix (an idle vCPU waits for the host).
func (r *rig) releasedAfterTrap(t *testing.T, p netip.Prefix, since, seen time.Time, trap monEvent) {
	t.Helper()
	if bad := r.gw.releasedUntrapped(p); len(bad) > 0 {
		t.Errorf("%v: the gate released it without trap: %v (all its states: %v)", p, bad, r.gw.of(p))
	}
	resp, err := pb.NewRouteServiceClient(r.conn).GetRoute(context.Background(), &pb.GetRouteRequest{Table: 254, Prefix: p.String()})
	if err != nil {
		t.Errorf("%v: %v", p, err)
		return
	}
	confirmed := resp.GetRoute().GetConfirmedTime().AsTime()
	if confirmed.Before(since) {
		t.Errorf("%v: confirmed at %s, before this check began (%s)", p, confirmed.Format("15:04:05.000000"), since.Format("15:04:05.000000"))
	}
	if seen.Before(confirmed) {
		var evs []string
		for _, e := range r.mon.of(p, since) {
			evs = append(evs, fmt.Sprintf("%s %s %v", e.Time.Format("05.000000"), e.Event, e.Flags))
		}
		t.Errorf("%v reached the observer at %s, %v before the gate confirmed it (%s); the kernel's notifications as the monitor read them: %v; the gate's states: %v",
			p, seen.Format("15:04:05.000000"), confirmed.Sub(seen), confirmed.Format("15:04:05.000000"), evs, r.gw.of(p))
	}
	if seen.Before(trap.Time) {
		t.Logf("%v: the monitor read the trap flag %v after the observer had the prefix, %v after the gate confirmed it: a late reader",
			p, trap.Time.Sub(seen), trap.Time.Sub(confirmed))
	}
}

// failedHeld: with netdevsim failing every new route, a transit and an
// originated prefix of each family get offload_failed, `fibgate routes`
// shows them failed, and they stay away from the observer.
func (r *rig) failedHeld(t *testing.T) {
	r.setFailOffload(t, true)
	t.Cleanup(func() {
		r.clearedAt = time.Now()
		r.setFailOffload(t, false)
	})
	since := time.Now()
	var all []netip.Prefix
	for _, f := range r.fams {
		r.announce(t, f.failT)
		r.originate(t, f, f.failO)
		all = append(all, f.failT, f.failO)
	}
	for _, f := range r.fams {
		t.Run(f.name, func(t *testing.T) {
			for _, p := range []netip.Prefix{f.failT, f.failO} {
				r.mon.waitFlag(t, p, "offload_failed", since)
				lab.Eventually(t, 20*time.Second, fmt.Sprintf("the gate has %v failed", p), func() error {
					g, err := r.route(p)
					if err != nil {
						return err
					}
					if g.State != stateName(pb.State_STATE_FAILED) || !slices.Contains(g.Flags, "offload_failed") {
						return fmt.Errorf("%v", g)
					}
					return nil
				})
			}
		})
	}
	lab.Never(t, 2*time.Second, "the observer never gets a failed prefix", func() error {
		for _, p := range all {
			if r.watch.Has(p) {
				return fmt.Errorf("%v at the observer", p)
			}
		}
		return nil
	})
	for _, p := range all {
		if at, ok := r.sighting(p, since); ok {
			t.Errorf("%v reached the observer at %s", p, at.Format("15:04:05.000"))
		}
		// The policy's retry writes the route again every second or two;
		// the driver fails it again, and the prefix stays failed.
		lab.Eventually(t, 20*time.Second, fmt.Sprintf("%v written again and failed again", p), func() error {
			g, err := r.route(p)
			if err != nil {
				return err
			}
			if g.State != stateName(pb.State_STATE_FAILED) || g.Retries < 1 {
				return fmt.Errorf("%v, %d retries", g, g.Retries)
			}
			return nil
		})
		g, err := r.gate(t, p)
		if want := stateName(pb.State_STATE_FAILED); err != nil || g.State != want || !slices.Contains(g.Flags, "offload_failed") {
			t.Errorf("%v: fibgate routes shows %v (%v), want %s with offload_failed", p, g, err, want)
		}
	}
}

// recovered: once fail_route_offload is cleared, the failed routes of
// failedHeld recover by themselves: the policy's retry writes each one
// again, netdevsim traps it, and the observer gets the prefix, not before
// the trap flag. Nobody announced anything again.
func (r *rig) recovered(t *testing.T) {
	if r.clearedAt.IsZero() {
		t.Fatal("needs the offload failure check first")
	}
	for _, f := range r.fams {
		t.Run(f.name, func(t *testing.T) {
			for _, p := range []netip.Prefix{f.failT, f.failO} {
				r.waitObserved(t, 30*time.Second, p)
				trap, before := r.mon.waitFlag(t, p, "trap", r.clearedAt)
				if !slices.ContainsFunc(before, func(e monEvent) bool { return e.Event == "add" }) {
					t.Errorf("%v: trapped without being written again since fail_route_offload was cleared: %+v", p, before)
				}
				seen, ok := r.sighting(p, r.clearedAt)
				if !ok {
					t.Errorf("%v: the observer has it but the watch saw no arrival", p)
				} else {
					r.releasedAfterTrap(t, p, r.clearedAt, seen, trap)
					t.Logf("%v: cleared at +0, trapped +%v, at the observer +%v", p,
						trap.Time.Sub(r.clearedAt).Round(time.Millisecond), seen.Sub(r.clearedAt).Round(time.Millisecond))
				}
				g, err := r.gate(t, p)
				if want := stateName(pb.State_STATE_RELEASED); err != nil || g.State != want || !slices.Contains(g.Flags, "trap") {
					t.Errorf("%v: fibgate routes shows %v (%v), want %s with trap", p, g, err, want)
				}
			}
		})
	}
}

// capacity: netdevsim's FIB has k places left (its devlink resource was
// sized at the rig's start); the peer announces k+2 prefixes. Exactly the
// k the kernel took reach the observer; the other two are refused by the
// driver, shown refused with the kernel's error, and never go out. Then the
// peer withdraws them all, which leaves the places to the checks after.
func (r *rig) capacity(t *testing.T) {
	var all []netip.Prefix
	sets := map[string][]netip.Prefix{}
	for _, f := range r.fams {
		size, occ := r.fibResource(t, f)
		k := size - occ
		if size < 0 || k < 1 {
			t.Fatalf("%s: netdevsim's FIB has size %d and %d routes: no place left to fill", f.resource, size, occ)
		}
		for i := range k + 2 {
			sets[f.name] = append(sets[f.name], f.capacityPrefix(i))
		}
		r.peerSp.announce(t, sets[f.name]...)
		all = append(all, sets[f.name]...)
		t.Logf("%s: size %d, %d routes: %d places for %d prefixes", f.resource, size, occ, k, k+2)
	}
	for _, f := range r.fams {
		t.Run(f.name, func(t *testing.T) { r.capacityFamily(t, f, sets[f.name]) })
	}
	r.peerSp.withdraw(t, all...)
	lab.Eventually(t, 30*time.Second, "the capacity prefixes leave the observer and the kernel", func() error {
		for _, p := range all {
			if r.watch.Has(p) {
				return fmt.Errorf("%v still at the observer", p)
			}
		}
		if in := r.inKernel(t, all); len(in) > 0 {
			return fmt.Errorf("%v still in the kernel", in)
		}
		return nil
	})
}

// capacityFamily checks one family's capacity prefixes ps, of which all
// but two fit.
func (r *rig) capacityFamily(t *testing.T, f family, ps []netip.Prefix) {
	fit := len(ps) - 2
	var refused []netip.Prefix
	lab.Eventually(t, 30*time.Second, fmt.Sprintf("%d prefixes out, 2 refused", fit), func() error {
		refused = refused[:0]
		out := 0
		for _, p := range ps {
			if r.watch.Has(p) {
				out++
			}
			if g, err := r.route(p); err == nil && g.State == stateName(pb.State_STATE_REFUSED) {
				refused = append(refused, p)
			}
		}
		if out != fit || len(refused) != 2 {
			return fmt.Errorf("%d at the observer, %d refused", out, len(refused))
		}
		return nil
	})
	lab.Never(t, time.Second, "no refused prefix goes out", func() error {
		for _, p := range refused {
			if r.watch.Has(p) {
				return fmt.Errorf("%v at the observer", p)
			}
		}
		return nil
	})
	in := r.inKernel(t, ps)
	for _, p := range ps {
		g, err := r.gate(t, p)
		if err != nil {
			t.Error(err)
			continue
		}
		switch {
		case slices.Contains(refused, p):
			if slices.Contains(in, p) {
				t.Errorf("%v shown refused but in the kernel", p)
			}
			if !strings.Contains(g.Reason, "Exceeded number of supported fib entries") {
				t.Errorf("%v refused without the kernel's error: %v", p, g)
			}
		case !r.watch.Has(p):
			t.Errorf("%v neither at the observer nor refused: %v", p, g)
		case !slices.Contains(in, p) || !slices.Contains(g.Flags, "trap"):
			t.Errorf("%v at the observer, but the kernel has it %v and the gate shows %v", p, slices.Contains(in, p), g)
		}
	}
	t.Logf("%s: out %d, refused %v (%s)", f.name, fit, refused, lastReason(r, refused))
}

func lastReason(r *rig, ps []netip.Prefix) string {
	if len(ps) == 0 {
		return ""
	}
	g, _ := r.route(ps[len(ps)-1])
	return g.Reason
}

// inKernel returns those of ps that are in the leaf's main table.
func (r *rig) inKernel(tb testing.TB, ps []netip.Prefix) []netip.Prefix {
	tb.Helper()
	var in []netip.Prefix
	for _, l := range r.kernelRoutes(tb) {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		p, err := netip.ParsePrefix(f[0])
		if err == nil && slices.Contains(ps, p) {
			in = append(in, p)
		}
	}
	return in
}

// killed: fibgated is killed with SIGKILL while its prefixes are out;
// gobgpd keeps them advertised (nothing withdrawn at the observer), holds
// what it learns meanwhile, and once fibgated is back, new prefixes go out
// only after their trap flag.
func (r *rig) killed(t *testing.T) {
	var out []netip.Prefix
	for _, f := range r.fams {
		out = append(out, f.transit, f.origin)
	}
	r.waitObserved(t, 10*time.Second, out...)
	since := time.Now()
	r.kill(t)
	for _, f := range r.fams {
		r.announce(t, f.whileDown)
	}
	lab.Never(t, time.Second, "nothing learned while fibgated is down goes out", func() error {
		for _, f := range r.fams {
			if r.watch.Has(f.whileDown) {
				return fmt.Errorf("%v at the observer", f.whileDown)
			}
		}
		return nil
	})
	r.run(t)
	for _, f := range r.fams {
		r.announce(t, f.after)
	}
	for _, f := range r.fams {
		for _, p := range []netip.Prefix{f.whileDown, f.after} {
			r.advertisedAfterTrap(t, p, since)
		}
	}
	lab.Never(t, time.Second, "what was out stays out", func() error {
		for _, p := range out {
			if !r.watch.Has(p) {
				return fmt.Errorf("%v gone from the observer", p)
			}
		}
		return nil
	})
	for _, s := range r.watch.Since(since) {
		if !s.Present {
			t.Errorf("the observer had %v withdrawn at %s, after the kill at %s", s.P, s.At.Format("15:04:05.000"), since.Format("15:04:05.000"))
		}
	}
}

// terminated: SIGTERM ends the daemon with status 0; afterwards no
// installed route is left in the kernel, no HOLD or originated path in the
// sidecar's gobgpd, no API socket, and the observer has none of the gated
// prefixes (withdrawn by fibgated, or gone with gobgpd-ext's sessions).
func (r *rig) terminated(t *testing.T) {
	if code := r.daemon.SignalAndWait(t, syscall.SIGTERM, 60*time.Second); code != 0 {
		t.Errorf("%s exit status %d, want 0", r.name, code)
	}
	if left := r.kernelRoutes(t); len(left) > 0 {
		t.Errorf("installed routes left in the kernel: %v", left)
	}
	if _, err := os.Stat(r.api); !os.IsNotExist(err) {
		t.Errorf("API socket %s left behind (%v)", r.api, err)
	}
	if r.gobgpd != nil {
		if left := r.gobgpd.localPaths(t); len(left) > 0 {
			t.Errorf("HOLD or originated paths left in gobgpd: %v", left)
		}
	}
	gated := append(slices.Clone(r.announcedByPeer), r.originatedByLeaf...)
	lab.Eventually(t, 20*time.Second, "the observer has no gated prefix left", func() error {
		for _, p := range gated {
			if r.watch.Has(p) {
				return fmt.Errorf("%v still there", p)
			}
		}
		return nil
	})
}
