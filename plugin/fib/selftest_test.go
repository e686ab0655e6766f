package fib

import (
	"fmt"
	"testing"
)

// The scenarios of the kernel selftest
// tools/testing/selftests/drivers/net/netdevsim/fib_notifications.sh, for
// both families and all three fib_notify_on_flag_change modes, plus the
// offload-failed scenario (fail_route_offload=y). Each counts the
// notifications `ip monitor route` would print for the route once the
// driver has programmed it, and checks the trap flag order the selftest
// checks: the first message without rt_trap, the second with it.
func TestFibNotificationsSelftest(t *testing.T) {
	type scenario struct {
		name string
		// run performs the step under observation and returns its messages
		// (settle steps before it are not counted).
		run  func(t *testing.T, d *nsim, r Route) []Message
		want [3]int // expected notifications for notify=0, 1, 2
		fail bool
	}
	addition := func(t *testing.T, d *nsim, r Route) []Message {
		m := mustAdd(t, d.f, r, reqAdd)
		return append(m, d.work()...)
	}
	scenarios := []scenario{
		{name: "addition", run: addition, want: [3]int{1, 2, 1}},
		{name: "deletion", run: func(t *testing.T, d *nsim, r Route) []Message {
			mustAdd(t, d.f, r, reqAdd)
			d.work()
			m := mustDel(t, d.f, r)
			return append(m, d.work()...)
		}, want: [3]int{1, 1, 1}},
		{name: "replacement", run: func(t *testing.T, d *nsim, r Route) []Message {
			mustAdd(t, d.f, r, reqAdd)
			d.work()
			r2 := r.Clone()
			r2.Nexthops[0].LinkIndex = 3 // dev dummy2
			m := mustAdd(t, d.f, r2, reqReplace)
			return append(m, d.work()...)
		}, want: [3]int{1, 2, 1}},
		{name: "offload failed", run: addition, want: [3]int{1, 2, 2}, fail: true},
	}
	for _, fam := range []struct {
		name  string
		route Route
	}{
		{"ipv4", devRoute("192.0.2.0/24", 2)},
		{"ipv6", withMetric(devRoute("2001:db8:1::/64", 2), 1024)},
	} {
		for _, sc := range scenarios {
			for mode := NotifyMode(0); mode <= 2; mode++ {
				name := fmt.Sprintf("%s route %s with notify=%d sends %d messages", fam.name, sc.name, mode, sc.want[mode])
				t.Run(name, func(t *testing.T) {
					d := newNsim(WithNotifyMode(FamilyOf(fam.route.Prefix), mode))
					d.fail = sc.fail
					msgs := sc.run(t, d, fam.route.Clone())
					if len(msgs) != sc.want[mode] {
						t.Fatalf("got %d messages, want %d: %v", len(msgs), sc.want[mode], msgs)
					}
					if sc.name != "deletion" && msgs[0].Route.Flags != 0 {
						t.Errorf("first message carries hardware flags %s: %v", msgs[0].Route.Flags, msgs[0])
					}
					if len(msgs) == 2 && sc.name != "deletion" {
						want := Trap
						if sc.fail {
							want = OffloadFailed
						}
						if got := msgs[1].Route.Flags; got != want {
							t.Errorf("second message flags = %s, want %s", got, want)
						}
						if msgs[1].NLFlags != 0 {
							t.Errorf("flag message nlflags = %s, want 0", msgs[1].NLFlags)
						}
					}
					// Whatever the mode, the dump shows the hardware state (18, 20).
					if sc.name != "deletion" {
						first, ok := d.f.First(TableMain, fam.route.Prefix)
						if !ok || first.Flags == 0 {
							t.Errorf("dump does not show hardware flags: %v", first)
						}
					}
				})
			}
		}
	}
}

func withMetric(r Route, m uint32) Route { r.Priority = m; return r }
