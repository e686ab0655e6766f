package fib

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

// Tests named TestBNN follow the numbered behaviours of
// shared/docs/kernel-semantics.md section C.

// order names the routes of a prefix by the last byte of their first
// gateway, so tests can state the kernel's order compactly.
func order(f *FIB, p string) []byte {
	var out []byte
	for _, r := range f.Routes(TableMain, netip.MustParsePrefix(p)) {
		a := r.Nexthops[0].Gateway.AsSlice()
		out = append(out, a[len(a)-1])
	}
	return out
}

func kinds(evs []DriverEvent) []DriverEventKind {
	var out []DriverEventKind
	for _, e := range evs {
		out = append(out, e.Kind)
	}
	return out
}

func msgSummary(ms []Message) []string {
	var out []string
	for _, m := range ms {
		s := m.Type.String() + " " + m.NLFlags.String() + " " + m.Route.Flags.String()
		out = append(out, s)
	}
	return out
}

func TestB03AddToEmptyTableNotifiesDriverAndUserSpace(t *testing.T) {
	d := newNsim()
	m := mustAdd(t, d.f, gwRoute("192.0.2.0/24", "10.0.0.1"), reqAdd)
	if got := kinds(d.takeEvents()); !slices.Equal(got, []DriverEventKind{DriverReplace}) {
		t.Errorf("driver events = %v, want [REPLACE]", got)
	}
	if got := msgSummary(m); !slices.Equal(got, []string{"NEWROUTE EXCL|CREATE none"}) {
		t.Errorf("messages = %v", got)
	}
}

func TestB04To07AliasOrderFollowsTheKernel(t *testing.T) {
	d := newNsim()
	a, b, c := gwRoute("192.0.2.0/24", "10.0.0.1"), gwRoute("192.0.2.0/24", "10.0.0.2"), gwRoute("192.0.2.0/24", "10.0.0.3")
	mustAdd(t, d.f, a, reqAdd)
	d.takeEvents()
	if m := mustAdd(t, d.f, b, reqAppend); m[0].NLFlags != NLMCreate|NLMAppend {
		t.Errorf("append nlflags = %s, want CREATE|APPEND", m[0].NLFlags)
	}
	if ev := d.takeEvents(); len(ev) != 0 {
		t.Errorf("append of a second route notified the driver: %v", kinds(ev))
	}
	if m := mustAdd(t, d.f, c, reqPrepend); m[0].NLFlags != NLMCreate {
		t.Errorf("prepend nlflags = %s, want CREATE", m[0].NLFlags)
	}
	if got := kinds(d.takeEvents()); !slices.Equal(got, []DriverEventKind{DriverReplace}) {
		t.Errorf("prepend driver events = %v, want [REPLACE]", got)
	}
	if got := order(d.f, "192.0.2.0/24"); !slices.Equal(got, []byte{3, 1, 2}) {
		t.Errorf("order = %v, want C, A, B", got)
	}
	if _, err := d.f.Add(a, reqAdd); !errors.Is(err, ErrExists) {
		t.Errorf("add of an existing key with EXCL: err = %v, want ErrExists", err)
	}

	// 6: tos 8 sorts before tos 0; a later tos 4 is not the forwarding route.
	tos := func(v uint8, gw string) Route { r := gwRoute("198.51.100.0/24", gw); r.TOS = v; return r }
	mustAdd(t, d.f, tos(0, "10.0.0.1"), reqAdd)
	mustAdd(t, d.f, tos(8, "10.0.0.2"), reqAdd)
	d.takeEvents()
	mustAdd(t, d.f, tos(4, "10.0.0.3"), reqAdd)
	if ev := d.takeEvents(); len(ev) != 0 {
		t.Errorf("tos 4 behind tos 8 notified the driver: %v", kinds(ev))
	}
	if got := order(d.f, "198.51.100.0/24"); !slices.Equal(got, []byte{2, 3, 1}) {
		t.Errorf("tos order = %v, want 0x08, 0x04, 0", got)
	}

	// 7: metric 1023 between 1022 and 1024 is not first.
	met := func(m uint32, gw string) Route { r := gwRoute("203.0.113.0/24", gw); r.Priority = m; return r }
	mustAdd(t, d.f, met(1024, "10.0.0.1"), reqAdd)
	mustAdd(t, d.f, met(1022, "10.0.0.2"), reqAdd)
	d.takeEvents()
	mustAdd(t, d.f, met(1023, "10.0.0.3"), reqAdd)
	if ev := d.takeEvents(); len(ev) != 0 {
		t.Errorf("metric 1023 notified the driver: %v", kinds(ev))
	}
	if got := order(d.f, "203.0.113.0/24"); !slices.Equal(got, []byte{2, 3, 1}) {
		t.Errorf("metric order = %v, want 1022, 1023, 1024", got)
	}
}

func TestB08To10DeleteHandsOverToTheSuccessor(t *testing.T) {
	d := newNsim()
	x, y := gwRoute("192.0.2.0/24", "10.0.0.1"), gwRoute("192.0.2.0/24", "10.0.0.2")
	mustAdd(t, d.f, x, reqAdd)
	mustAdd(t, d.f, y, reqAppend)
	d.takeEvents()
	// 10: a non-first route goes silently for the driver.
	m := mustDel(t, d.f, y)
	if ev := d.takeEvents(); len(ev) != 0 || len(m) != 1 || m[0].Type != DelRoute {
		t.Errorf("delete of non-first: events %v, messages %v", kinds(ev), msgSummary(m))
	}
	mustAdd(t, d.f, y, reqAppend)
	// 8: deleting the first replaces it with its successor in hardware.
	mustDel(t, d.f, x)
	ev := d.takeEvents()
	if len(ev) != 1 || ev[0].Kind != DriverReplace || !ev[0].Route.SameAs(&y) {
		t.Errorf("delete of first: driver events %v, want REPLACE(successor)", ev)
	}
	// 9: deleting the last route is a DEL.
	m = mustDel(t, d.f, y)
	if got := kinds(d.takeEvents()); !slices.Equal(got, []DriverEventKind{DriverDel}) || m[0].Type != DelRoute {
		t.Errorf("delete of last: events %v, messages %v", got, msgSummary(m))
	}
	if d.f.Len() != 0 {
		t.Errorf("model still holds %d routes", d.f.Len())
	}
	if _, err := d.f.Delete(y); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete of absent route: err = %v, want ErrNotFound", err)
	}
}

func TestB11To13Replace(t *testing.T) {
	d := newNsim(WithNotifyMode(IPv4, NotifyAll))
	a, b := gwRoute("192.0.2.0/24", "10.0.0.1"), gwRoute("192.0.2.0/24", "10.0.0.2")
	mustAdd(t, d.f, a, reqAdd)
	mustAdd(t, d.f, b, reqAppend)
	d.work()
	d.takeEvents()
	// 13: replacing with the info of a non-first route fails.
	if _, err := d.f.Add(b, reqReplace); !errors.Is(err, ErrExists) {
		t.Errorf("replace identical to non-first: err = %v, want ErrExists", err)
	}
	// 12: replacing with the info of the first is a silent success.
	if m, err := d.f.Add(a, reqReplace); err != nil || len(m) != 0 || len(d.takeEvents()) != 0 {
		t.Errorf("replace identical to first: err %v, messages %v", err, m)
	}
	// 11 and 27: a new first route, without flags, then trapped; no message for the old one.
	c := gwRoute("192.0.2.0/24", "10.0.0.3")
	m := mustAdd(t, d.f, c, reqReplace)
	m = append(m, d.work()...)
	if got := msgSummary(m); !slices.Equal(got, []string{"NEWROUTE REPLACE none", "NEWROUTE 0 trap"}) {
		t.Errorf("replace messages = %v", got)
	}
	if got := order(d.f, "192.0.2.0/24"); !slices.Equal(got, []byte{3, 2}) {
		t.Errorf("order after replace = %v, want C, B", got)
	}
	// Replace with a new metric creates a new group: EXCL|CREATE.
	n := gwRoute("192.0.2.0/24", "10.0.0.4")
	n.Priority = 7
	if m := mustAdd(t, d.f, n, reqReplace); m[0].NLFlags != NLMExcl|NLMCreate {
		t.Errorf("replace with new metric nlflags = %s, want EXCL|CREATE", m[0].NLFlags)
	}
}

func TestB14DriverVetoLeavesNoTrace(t *testing.T) {
	for _, p := range []string{"192.0.2.0/24", "2001:db8::/64"} {
		d := newNsim()
		d.capacity = 1
		mustAdd(t, d.f, devRoute(p, 2), reqAdd)
		r := devRoute(p, 2)
		r.Prefix = netip.MustParsePrefix(map[bool]string{true: "198.51.100.0/24", false: "2001:db8:1::/64"}[FamilyOf(r.Prefix) == IPv4])
		m, err := d.f.Add(r, reqAdd)
		if !errors.Is(err, errFull) || len(m) != 0 {
			t.Errorf("%s: add beyond capacity: err %v, messages %v", p, err, m)
		}
		if _, ok := d.f.First(TableMain, r.Prefix); ok || d.f.Len() != 1 {
			t.Errorf("%s: vetoed route is in the model", p)
		}
	}
}

func TestB18To25FlagNotificationRule(t *testing.T) {
	tests := []struct {
		name     string
		mode     NotifyMode
		old, new HWFlags
		want     bool
	}{
		{"mode 0 never notifies", NotifyOff, 0, Trap, false},
		{"mode 1 notifies a trap", NotifyAll, 0, Trap, true},
		{"mode 1 does not notify flags already present", NotifyAll, Trap, Trap, false},
		{"mode 1 notifies a failure", NotifyAll, 0, OffloadFailed, true},
		{"mode 2 ignores a trap", NotifyFailed, 0, Trap, false},
		{"mode 2 notifies a failure", NotifyFailed, 0, OffloadFailed, true},
		{"mode 2 notifies recovery from failure", NotifyFailed, OffloadFailed, Offload, true},
		{"mode 2 ignores offload to trap", NotifyFailed, Offload, Trap, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FlagChangeNotifies(tt.mode, tt.old, tt.new); got != tt.want {
				t.Errorf("FlagChangeNotifies(%d, %s, %s) = %v, want %v", tt.mode, tt.old, tt.new, got, tt.want)
			}
		})
	}
	// 24 end to end: failed, then recovered, under mode 2.
	f := New(WithNotifyMode(IPv4, NotifyFailed))
	r := devRoute("192.0.2.0/24", 2)
	mustAdd(t, f, r, reqAdd)
	f.SetFlags(&r, OffloadFailed)
	m := f.SetFlags(&r, Offload)
	if got := msgSummary(m); !slices.Equal(got, []string{"NEWROUTE 0 offload"}) {
		t.Errorf("recovery under mode 2: %v", got)
	}
	// 25: a route that is gone is a no-op.
	mustDel(t, f, r)
	if m := f.SetFlags(&r, Trap); len(m) != 0 || f.Len() != 0 {
		t.Errorf("flag set on a deleted route: %v", m)
	}
}

func TestB26PrependMovesHardwareToTheNewRoute(t *testing.T) {
	d := newNsim(WithNotifyMode(IPv4, NotifyAll))
	a, c := gwRoute("192.0.2.0/24", "10.0.0.1"), gwRoute("192.0.2.0/24", "10.0.0.3")
	mustAdd(t, d.f, a, reqAdd)
	d.work()
	m := mustAdd(t, d.f, c, reqPrepend)
	m = append(m, d.work()...)
	if got := msgSummary(m); !slices.Equal(got, []string{"NEWROUTE CREATE none", "NEWROUTE 0 none", "NEWROUTE 0 trap"}) &&
		!slices.Equal(got, []string{"NEWROUTE CREATE none", "NEWROUTE 0 trap", "NEWROUTE 0 none"}) {
		t.Errorf("prepend messages = %v", got)
	}
	if got, _ := d.f.Find(&a); got.Flags != 0 {
		t.Errorf("old first route keeps %s", got.Flags)
	}
}

func TestB28And29DeleteMessages(t *testing.T) {
	d := newNsim(WithNotifyMode(IPv4, NotifyAll))
	a, y := gwRoute("192.0.2.0/24", "10.0.0.1"), gwRoute("192.0.2.0/24", "10.0.0.2")
	mustAdd(t, d.f, a, reqAdd)
	mustAdd(t, d.f, y, reqAppend)
	d.work()
	m := mustDel(t, d.f, a)
	m = append(m, d.work()...)
	if got := msgSummary(m); !slices.Equal(got, []string{"DELROUTE 0 trap", "NEWROUTE 0 trap"}) {
		t.Errorf("delete of trapped first with successor: %v", got)
	}
	m = mustDel(t, d.f, y)
	m = append(m, d.work()...)
	if len(m) != 1 || m[0].Type != DelRoute {
		t.Errorf("delete of the last trapped route: %v", msgSummary(m))
	}
}

func TestB33HardwareFlagsDoNotChangeIdentity(t *testing.T) {
	f := New()
	r := gwRoute("192.0.2.0/24", "10.0.0.1", "10.0.0.2")
	mustAdd(t, f, r, reqAdd)
	f.SetNexthopFlags(&r, 0, Offload)
	again := r.Clone()
	again.Nexthops[1].HW = Trap
	again.Nexthops[1].Flags = RTNHFTrap | RTNHFLinkDown
	if _, err := f.Add(again, reqAdd); !errors.Is(err, ErrExists) {
		t.Errorf("identical route with other hardware bits: err = %v, want ErrExists", err)
	}
	mustDel(t, f, again)
}

func TestB34To37IPv6Siblings(t *testing.T) {
	d := newNsim(WithNotifyMode(IPv6, NotifyAll))
	p := "2001:db8::/64"
	m := mustAdd(t, d.f, gwRoute(p, "fe80::1", "fe80::2"), reqAdd)
	if got := kinds(d.takeEvents()); !slices.Equal(got, []DriverEventKind{DriverReplace}) || len(m) != 1 || m[0].NLFlags != NLMCreate {
		t.Errorf("multipath add: events %v, messages %v", got, msgSummary(m))
	}
	// 34: a gateway route at the same metric becomes a sibling: APPEND.
	mustAdd(t, d.f, gwRoute(p, "fe80::3"), reqAppend)
	if got := kinds(d.takeEvents()); !slices.Equal(got, []DriverEventKind{DriverAppend}) {
		t.Errorf("sibling append: events %v", got)
	}
	if rs := d.f.Routes(TableMain, netip.MustParsePrefix(p)); len(rs) != 1 || len(rs[0].Nexthops) != 3 {
		t.Fatalf("siblings not merged: %v", rs)
	}
	// 37: setting trap on each of N siblings sends N messages.
	r := gwRoute(p, "fe80::1", "fe80::2", "fe80::3")
	if m = d.f.SetFlags(&r, Trap); len(m) != 3 {
		t.Errorf("trap on 3 siblings: %d messages, want 3", len(m))
	}
	// 35: a dev route at the same metric queues behind, silently, without flags.
	dev := withMetric(devRoute(p, 4), 1024)
	mustAdd(t, d.f, dev, reqAppend)
	if ev := d.takeEvents(); len(ev) != 0 {
		t.Errorf("non-sibling append notified the driver: %v", kinds(ev))
	}
	if rs := d.f.Routes(TableMain, netip.MustParsePrefix(p)); len(rs) != 2 || rs[1].Flags != 0 {
		t.Errorf("routes = %v", rs)
	}
}

func TestB38And39IPv6Veto(t *testing.T) {
	d := newNsim()
	d.capacity = 1
	mustAdd(t, d.f, devRoute("2001:db8:9::/64", 2), reqAdd)
	m, err := d.f.Add(gwRoute("2001:db8::/64", "fe80::1", "fe80::2"), reqAdd)
	if err == nil || len(m) != 2 || m[0].Type != NewRoute || m[1].Type != DelRoute {
		t.Errorf("vetoed multipath: err %v, messages %v", err, msgSummary(m))
	}
	m, err = d.f.Add(gwRoute("2001:db8::/64", "fe80::1"), reqAdd)
	if err == nil || len(m) != 0 {
		t.Errorf("vetoed single: err %v, messages %v", err, msgSummary(m))
	}
	if d.f.Len() != 1 {
		t.Errorf("vetoed routes are in the model: %d routes", d.f.Len())
	}
}

func TestB40To42IPv6DeleteAndReplace(t *testing.T) {
	d := newNsim(WithNotifyMode(IPv6, NotifyAll))
	p := "2001:db8::/64"
	mp := gwRoute(p, "fe80::1", "fe80::2", "fe80::3")
	mustAdd(t, d.f, mp, reqAdd)
	d.f.SetFlags(&mp, Trap)
	d.takeEvents()
	// 40: one hop goes; the rest keep their flags.
	m := mustDel(t, d.f, gwRoute(p, "fe80::2"))
	if len(m) != 1 || len(m[0].Route.Nexthops) != 1 {
		t.Errorf("one-hop delete messages: %v", m)
	}
	if got := kinds(d.takeEvents()); !slices.Equal(got, []DriverEventKind{DriverDel}) {
		t.Errorf("one-hop delete events: %v", got)
	}
	rs := d.f.Routes(TableMain, netip.MustParsePrefix(p))
	if len(rs) != 1 || len(rs[0].Nexthops) != 2 || rs[0].Nexthops[1].HW != Trap || rs[0].Flags != Trap {
		t.Errorf("after one-hop delete: %v", rs)
	}
	// 42: replacing the ECMP route by a dev route replaces all siblings, one message.
	m = mustAdd(t, d.f, withMetric(devRoute(p, 4), 1024), reqReplace)
	if got := msgSummary(m); !slices.Equal(got, []string{"NEWROUTE REPLACE none"}) {
		t.Errorf("replace messages: %v", got)
	}
	if rs := d.f.Routes(TableMain, netip.MustParsePrefix(p)); len(rs) != 1 || len(rs[0].Nexthops) != 1 {
		t.Errorf("after replace: %v", rs)
	}
	// 41: deleting a whole multipath route with a successor hands over.
	mp2 := withMetric(gwRoute(p, "fe80::7", "fe80::8"), 10)
	mustAdd(t, d.f, mp2, reqAdd)
	d.takeEvents()
	m = mustDel(t, d.f, withMetric(Route{Table: TableMain, Prefix: mp2.Prefix}, 10))
	if len(m) != 1 || len(m[0].Route.Nexthops) != 2 {
		t.Errorf("whole delete messages: %v", msgSummary(m))
	}
	if got := kinds(d.takeEvents()); !slices.Equal(got, []DriverEventKind{DriverReplace}) {
		t.Errorf("whole delete events: %v", got)
	}
}

func TestB45IPv6OffloadFailedUnderMode2(t *testing.T) {
	for _, fail := range []bool{false, true} {
		d := newNsim(WithNotifyMode(IPv6, NotifyFailed))
		d.fail = fail
		m := mustAdd(t, d.f, withMetric(devRoute("2001:db8::/64", 2), 1024), reqAdd)
		m = append(m, d.work()...)
		want := map[bool]int{false: 1, true: 2}[fail]
		if len(m) != want {
			t.Errorf("fail=%v: %d messages, want %d", fail, len(m), want)
		}
	}
}

func TestInvalidRoutesAreRejected(t *testing.T) {
	f := New()
	for name, r := range map[string]Route{
		"host bits set":       {Table: TableMain, Prefix: netip.MustParsePrefix("192.0.2.1/24"), Type: TypeUnicast},
		"no type":             {Table: TableMain, Prefix: netip.MustParsePrefix("192.0.2.0/24")},
		"tos on ipv6":         {Table: TableMain, Prefix: netip.MustParsePrefix("2001:db8::/32"), Type: TypeUnicast, TOS: 4},
		"zero prefix":         {Table: TableMain, Type: TypeUnicast},
		"4in6 prefix":         {Table: TableMain, Prefix: netip.MustParsePrefix("::ffff:192.0.2.0/120"), Type: TypeUnicast},
		"weight out of range": {Table: TableMain, Prefix: netip.MustParsePrefix("192.0.2.0/24"), Type: TypeUnicast, Nexthops: []Nexthop{{LinkIndex: 1, Weight: 300}}},
	} {
		if _, err := f.Add(r, reqAdd); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}
