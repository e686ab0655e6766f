//go:build linux

package sim

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/internal/flat"
	"github.com/fibgate/fibgate/plugin/kernel"
)

// The mirror's bookkeeping, without the kernel: which writes it queues
// when two tables' entries share an identity in the one mirror table, and
// when an entry's identity changes. Nothing must be left behind.
func TestMirrorQueuesWritesByOwner(t *testing.T) {
	p := netip.MustParsePrefix("192.0.2.0/24")
	route := func(table, prio uint32) *fib.Route {
		return &fib.Route{Table: table, Prefix: p, Type: fib.TypeUnicast, Priority: prio,
			Nexthops: []fib.Nexthop{{Gateway: netip.MustParseAddr("198.51.100.1"), LinkIndex: 2}}}
	}
	m := &mirror{table: 4242, held: newHeldMap()}
	take := func() []kernel.RouteOp {
		ops := m.ops
		m.ops, m.keys = nil, nil
		return ops
	}
	want := func(step string, ops []kernel.RouteOp, deletes ...bool) {
		t.Helper()
		if len(ops) != len(deletes) {
			t.Fatalf("%s: %d writes queued, want %d: %+v", step, len(ops), len(deletes), ops)
		}
		for i, op := range ops {
			if op.Delete != deletes[i] || op.Route.Table != 4242 || op.Route.Prefix != p {
				t.Errorf("%s: write %d is %+v, want delete=%v in table 4242", step, i, op, deletes[i])
			}
		}
	}

	for _, step := range []struct {
		name    string
		do      func() error
		deletes []bool
		prio    uint32 // of the last write's route
	}{
		{"main installs", func() error { return m.install(route(254, 10)) }, []bool{false}, 10},
		// Table 100's entry has the same identity: it replaces the mirror's
		// route and owns it now.
		{"table 100 installs the same identity", func() error { return m.install(route(100, 10)) }, []bool{false}, 10},
		// So main's entry going leaves table 100's route in place.
		{"main removes", func() error { return m.remove(route(254, 10)) }, nil, 0},
		// A new identity for table 100: the old route goes, the new one comes.
		{"table 100 changes metric", func() error { return m.install(route(100, 20)) }, []bool{true, false}, 20},
		{"table 100 removes", func() error { return m.remove(route(100, 20)) }, []bool{true}, 20},
	} {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		ops := take()
		want(step.name, ops, step.deletes...)
		if len(ops) > 0 && ops[len(ops)-1].Route.Priority != step.prio {
			t.Errorf("%s: last write has metric %d, want %d", step.name, ops[len(ops)-1].Route.Priority, step.prio)
		}
	}
	if m.held.len() != 0 || len(m.held.more) != 0 {
		t.Errorf("the mirror still holds %v after every entry went", m.held)
	}
	if flat.HasPointers(reflect.TypeFor[mirrorEntry]()) {
		t.Error("mirrorEntry holds a pointer: the collector scans the mirror's map of a full table")
	}
}
