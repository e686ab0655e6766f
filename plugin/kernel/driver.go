package kernel

import (
	"net/netip"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// WithDriver attaches a hardware driver that is not a kernel driver (the
// simulated ASIC, a SAI or P4 agent) the way switchdev drivers attach to the
// kernel FIB: it is told, synchronously and with the listener's lock held,
// which route forwards for every prefix (DriverReplace) and when a prefix
// has none left (DriverDel), starting with a replay of the whole table. It
// reports hardware state back with SetFlags and SetNexthopFlags, from
// another goroutine (never from inside Event). IPv6 sibling changes arrive
// as a DriverReplace of the whole route.
func WithDriver(d fib.Driver) ListenerOption { return func(l *Listener) { l.driver = d } }

// SetFlags records the hardware state a driver reports for a route, as
// fib_alias_hw_flags_set does in the kernel: the flags are stored (dumps
// and View show them), and subscribers get a Changed event when the
// namespace's fib_notify_on_flag_change would make the kernel announce it.
// A route that is gone is ignored. So events from a driver attached here are
// indistinguishable from those of a kernel driver.
func (l *Listener) SetFlags(r *fib.Route, flags fib.HWFlags) {
	l.setFlags(r, func(f *fib.FIB) []fib.Message { return f.SetFlags(r, flags) })
}

// SetNexthopFlags records the state of one path (an IPv6 sibling, or an
// IPv4 nexthop's RTNH_F_OFFLOAD/TRAP, which the kernel never announces).
func (l *Listener) SetNexthopFlags(r *fib.Route, nh int, flags fib.HWFlags) {
	l.setFlags(r, func(f *fib.FIB) []fib.Message { return f.SetNexthopFlags(r, nh, flags) })
}

// FlagReport is one route's hardware state as a driver decides it: the
// route's flags and, when the driver sets them, each path's.
type FlagReport struct {
	Route   fib.Route
	Flags   fib.HWFlags
	Nexthop []fib.HWFlags // nil: no per-path flags
}

// ReportFlags is SetFlags and SetNexthopFlags for many routes at once: one
// lock and one batch of events for the lot, so a driver that programs
// thousands of routes at a time (a full table) does not wake every
// subscriber once per route. It keeps nothing of reports, which the
// caller may reuse.
func (l *Listener) ReportFlags(reports []FlagReport) {
	if len(reports) == 0 {
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	evs := make([]Event, 0, len(reports))
	for i := range reports {
		rp := &reports[i]
		old, ok := l.model.Find(&rp.Route)
		if !ok {
			continue
		}
		told := len(l.model.SetFlags(&rp.Route, rp.Flags)) > 0
		for j, f := range rp.Nexthop {
			told = len(l.model.SetNexthopFlags(&rp.Route, j, f)) > 0 || told
		}
		if told {
			// The event's two routes in one allocation: a table's flags
			// come through here once a route.
			both := new([2]fib.Route)
			both[0] = old
			both[1], _ = l.model.Find(&rp.Route)
			evs = append(evs, Event{Kind: Changed, Time: now, Old: &both[0], New: &both[1]})
		}
	}
	l.publishLocked(evs)
}

func (l *Listener) setFlags(r *fib.Route, set func(*fib.FIB) []fib.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	old, ok := l.model.Find(r)
	if !ok {
		return
	}
	if len(set(l.model)) == 0 {
		return // stored, but the kernel would not have said so
	}
	cur, _ := l.model.Find(r)
	l.publishLocked([]Event{{Kind: Changed, Time: time.Now(), Old: &old, New: &cur}})
}

type prefixKey struct {
	table  uint32
	prefix netip.Prefix
}

// touched remembers the forwarding route of each prefix a batch touched, as
// it was before the batch, with its version (fib.FIB.Version), so the driver
// hears only of real changes: a different route, or the same route written
// anew (deleted and added back, or replaced by an identical IPv6 route),
// which the kernel hands its drivers as a new route, flags cleared.
type touched struct {
	driver fib.Driver
	before map[prefixKey]was
}

// was is a forwarding route before a batch (an invalid prefix: none) and
// its version. By value: a route on the heap per notification was a
// fortieth of all gobgpd-ext allocated while a table went in.
type was struct {
	route fib.Route
	ver   uint64
}

// touchedKeep bounds the map a Listener keeps for its next batch: a batch
// under churn touches a few prefixes, a table's load thousands and a
// resync every one, and a Go map keeps its size, which clear walks (a
// route a slot) however few the next batch touches.
const touchedKeep = 256

// newTouched starts a batch of about n notifications, in the map the last
// batch left (l.mu held). A batch larger than the map keeps gets a map of
// its size: grown from empty (a route and a key, 152 bytes, a
// notification), the batches' maps were 3% of all gobgpd-ext allocated
// while the full table went in, about half of it the garbage of growing.
func (l *Listener) newTouched(n int) touched {
	if l.driver == nil {
		return touched{}
	}
	if n > touchedKeep {
		return touched{driver: l.driver, before: make(map[prefixKey]was, n)}
	}
	if l.touched == nil {
		l.touched = map[prefixKey]was{}
	}
	return touched{driver: l.driver, before: l.touched}
}

// doneTouched ends a batch that told the driver (l.mu held).
func (l *Listener) doneTouched(t touched) {
	if len(t.before) > touchedKeep {
		l.touched = nil
		return
	}
	clear(t.before)
}

func (t touched) note(model *fib.FIB, r *fib.Route) {
	if t.driver == nil {
		return
	}
	k := prefixKey{r.Table, r.Prefix.Masked()}
	if _, seen := t.before[k]; seen {
		return
	}
	var w was
	if f, ver, ok := model.FirstShared(k.table, k.prefix); ok { // read only: compared, then handed to the driver
		w = was{f, ver}
	}
	t.before[k] = w
}

// tellDriver compares each touched prefix's forwarding route with what it
// was and tells the driver about the differences.
func (t touched) tellDriver(model *fib.FIB) {
	for k, old := range t.before {
		cur, ver, ok := model.FirstShared(k.table, k.prefix) // the driver may keep it, never writes it (fib.Driver)
		had := old.route.Prefix.IsValid()
		switch {
		case !ok && had:
			_ = t.driver.Event(fib.DriverEvent{Kind: fib.DriverDel, Route: old.route})
		case ok && (!had || !old.route.SameAs(&cur) || ver != old.ver):
			_ = t.driver.Event(fib.DriverEvent{Kind: fib.DriverReplace, Route: cur})
		}
	}
}
