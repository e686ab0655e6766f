package fib

import (
	"errors"
	"net/netip"
	"testing"
)

// nsim is a netdevsim-like driver for tests: it vetoes adds beyond its
// capacity synchronously and programs routes later, when work runs (the
// kernel's FIFO worker), setting trap or, with fail set, offload_failed.
type nsim struct {
	f        *FIB
	capacity int // 0 = unlimited
	fail     bool
	events   []DriverEvent
	queue    []DriverEvent
	hw       map[netip.Prefix]Route // reserved slots per prefix (table ignored)
	// programmed is what the worker has written to "hardware".
	programmed map[netip.Prefix]Route
}

func newNsim(opts ...Option) *nsim {
	d := &nsim{hw: map[netip.Prefix]Route{}, programmed: map[netip.Prefix]Route{}}
	d.f = New(append(opts, WithDriver(d))...)
	return d
}

// errFull is netdevsim's own extack message, word for word.
//
//lint:ignore ST1005 the kernel's message, capital letter included
var errFull = errors.New("Exceeded number of supported fib entries")

func (d *nsim) Event(ev DriverEvent) error {
	if ev.Kind == DriverReplace && d.capacity > 0 {
		if _, ok := d.hw[ev.Route.Prefix]; !ok && len(d.hw) >= d.capacity {
			return errFull
		}
	}
	d.events = append(d.events, ev)
	d.queue = append(d.queue, ev)
	if ev.Kind == DriverReplace {
		d.hw[ev.Route.Prefix] = ev.Route // reserve the slot now, as netdevsim does
	}
	return nil
}

// work drains the programming queue and returns the messages the flag
// updates produced.
func (d *nsim) work() []Message {
	var msgs []Message
	q := d.queue
	d.queue = nil
	for _, ev := range q {
		switch ev.Kind {
		case DriverReplace:
			if old, ok := d.programmed[ev.Route.Prefix]; ok && !old.SameAs(&ev.Route) {
				msgs = append(msgs, d.f.SetFlags(&old, 0)...)
			}
			flags := Trap
			if d.fail {
				flags = OffloadFailed
			}
			r := ev.Route
			msgs = append(msgs, d.f.SetFlags(&r, flags)...)
			d.programmed[r.Prefix] = r
		case DriverDel:
			delete(d.programmed, ev.Route.Prefix)
			delete(d.hw, ev.Route.Prefix)
		}
	}
	return msgs
}

// kinds lists the event kinds seen so far and forgets them.
func (d *nsim) takeEvents() []DriverEvent {
	ev := d.events
	d.events = nil
	return ev
}

func mustAdd(t *testing.T, f *FIB, r Route, req NLFlags) []Message {
	t.Helper()
	m, err := f.Add(r, req)
	if err != nil {
		t.Fatalf("add %s: %v", r.String(), err)
	}
	return m
}

func mustDel(t *testing.T, f *FIB, r Route) []Message {
	t.Helper()
	m, err := f.Delete(r)
	if err != nil {
		t.Fatalf("delete %s: %v", r.String(), err)
	}
	return m
}

// Request flags of the iproute2 commands.
const (
	reqAdd     = NLMCreate | NLMExcl
	reqAppend  = NLMCreate | NLMAppend
	reqPrepend = NLMCreate
	reqReplace = NLMCreate | NLMReplace
)

func devRoute(p string, oif int) Route {
	return Route{Table: TableMain, Prefix: netip.MustParsePrefix(p), Type: TypeUnicast,
		Protocol: ProtoBoot, Scope: 253, Nexthops: []Nexthop{{LinkIndex: oif}}}
}

func gwRoute(p string, gws ...string) Route {
	r := Route{Table: TableMain, Prefix: netip.MustParsePrefix(p), Type: TypeUnicast, Protocol: ProtoBoot}
	for _, g := range gws {
		r.Nexthops = append(r.Nexthops, Nexthop{Gateway: netip.MustParseAddr(g), LinkIndex: 2})
	}
	if r.Family() == IPv6 {
		r.Priority = 1024
	}
	return r
}
