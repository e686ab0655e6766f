package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/internal/fanout"
)

// The event types live in plugin/fib so that consumers (the gate) need not
// import netlink code; these names keep listener code readable.
type (
	// Event is fib.Event.
	Event = fib.Event
	// EventKind is fib.EventKind.
	EventKind = fib.EventKind
)

// Event kinds, as in plugin/fib.
const (
	Added   = fib.Added
	Changed = fib.Changed
	Removed = fib.Removed
)

// Stats are the listener's counters, for metrics and `fibgate monitor`.
type Stats struct {
	Notifications uint64 // route notifications applied
	Overruns      uint64 // ENOBUFS on the notification socket
	Resyncs       uint64 // dumps compared with the model after start-up
	OutOfSync     uint64 // notifications that did not fit the model
	Routes        int    // routes in the model now
}

// Listener keeps a fib.FIB equal to the kernel's routing tables of one
// network namespace, including hardware flags, and streams the changes. It
// starts from a dump, follows notifications, and answers every event that
// may have lost information (socket overrun, a link going down or away, an
// address removed: the kernel flushes those routes without RTM_DELROUTE)
// with a fresh dump compared against the model, so subscribers see exactly
// the differences.
type Listener struct {
	opts     Options
	log      *slog.Logger
	setMode  int // -1: leave the sysctl alone
	driver   fib.Driver
	touched  map[prefixKey]was // newTouched's map for the next batch, under mu
	ignore   map[uint32]bool
	mu       sync.RWMutex
	model    *fib.FIB
	objs     objects // nexthop objects, and the model's routes over them
	links    map[int]link
	hub      fanout.Hub[Event]
	ready    chan struct{}
	counters struct {
		notifications, overruns, resyncs, outOfSync atomic.Uint64
	}
}

// ListenerOption configures a Listener.
type ListenerOption func(*Listener)

// WithNetNS follows the named network namespace (/run/netns/NAME) instead of
// the caller's.
func WithNetNS(name string) ListenerOption { return func(l *Listener) { l.opts.NetNS = name } }

// WithRcvBuf sets the notification socket's receive buffer in bytes. The
// default (32 MiB) holds about 80k IPv4 or 52k IPv6 queued notifications; a smaller buffer
// overruns sooner and costs more resyncs.
func WithRcvBuf(n int) ListenerOption { return func(l *Listener) { l.opts.RcvBuf = n } }

// WithIgnoreTables leaves routing tables out of the model and the events:
// for example the simulated ASIC's mirror table, which would otherwise
// double the model of a full table.
func WithIgnoreTables(ids ...uint32) ListenerOption {
	return func(l *Listener) {
		if l.ignore == nil {
			l.ignore = map[uint32]bool{}
		}
		for _, id := range ids {
			l.ignore[id] = true
		}
	}
}

// WithLogger sets the logger; the default discards.
func WithLogger(log *slog.Logger) ListenerOption { return func(l *Listener) { l.log = log } }

// WithSetNotifyMode makes Run write net.ipv{4,6}.fib_notify_on_flag_change
// before it starts, so flag changes are announced at all.
func WithSetNotifyMode(m fib.NotifyMode) ListenerOption {
	return func(l *Listener) { l.setMode = int(m) }
}

// NewListener returns a listener; Run starts it.
func NewListener(opts ...ListenerOption) *Listener {
	l := &Listener{
		log:     slog.New(slog.DiscardHandler),
		setMode: -1,
		model:   fib.New(),
		objs:    newObjects(nil),
		links:   map[int]link{},
		ready:   make(chan struct{}),
	}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Ready is closed once the first dump is in the model.
func (l *Listener) Ready() <-chan struct{} { return l.ready }

// View calls fn with the model under a read lock. fn must not keep the FIB or
// the routes it yields past its return.
func (l *Listener) View(fn func(*fib.FIB)) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	fn(l.model)
}

// Clock returns the model's clock (fib.FIB.Clock): a route that the kernel
// accepts after this call gets a higher version in the model. The gate's
// fences read it (gobgp.WithFIBClock).
func (l *Listener) Clock() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.model.Clock()
}

// LinkName returns the interface name of an index as last seen, or "".
func (l *Listener) LinkName(index int) string {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.links[index].name
}

// link is what the listener remembers of an interface.
type link struct {
	name string
	up   bool // administratively up
}

// Stats returns a snapshot of the counters.
func (l *Listener) Stats() Stats {
	l.mu.RLock()
	n := l.model.Len()
	l.mu.RUnlock()
	return Stats{
		Notifications: l.counters.notifications.Load(),
		Overruns:      l.counters.overruns.Load(),
		Resyncs:       l.counters.resyncs.Load(),
		OutOfSync:     l.counters.outOfSync.Load(),
		Routes:        n,
	}
}

// CheckNotifyModes reads fib_notify_on_flag_change for both families and
// returns a warning per family where the kernel does not announce hardware
// flag changes: the sysctl is 0, or the kernel predates it (Linux 5.12),
// so the flags stay unknown until the next dump; or it announces only
// offload failures (2), so an offload or trap is never heard of. A family
// the kernel runs without (IPv6 disabled) has nothing to announce and gets
// none.
func CheckNotifyModes(opts Options) ([]string, error) {
	var warn []string
	for _, fam := range []fib.Family{fib.IPv4, fib.IPv6} {
		m, err := NotifyMode(opts, fam)
		switch {
		case errors.Is(err, ErrFamilyDisabled):
		case errors.Is(err, ErrNotifyUnsupported):
			warn = append(warn, fmt.Sprintf("this kernel has no net.%s.fib_notify_on_flag_change (Linux 5.12 added it): hardware flag changes are never announced", fam))
		case err != nil:
			return nil, err
		case fib.NotifyMode(m).Unheard() != "":
			warn = append(warn, fmt.Sprintf("net.%s.fib_notify_on_flag_change is %d: %s; set it to 1 (or run with --set-notify)", fam, m, fib.NotifyMode(m).Unheard()))
		}
	}
	return warn, nil
}

// Run follows the kernel until ctx ends or the socket fails. It returns nil
// when ctx ends. A family the kernel runs without (IPv6 disabled at boot)
// is logged and otherwise ignored: it has no routes.
func (l *Listener) Run(ctx context.Context) error {
	for _, fam := range []fib.Family{fib.IPv4, fib.IPv6} {
		if !FamilyEnabled(fam) {
			l.log.Info("address family disabled in this kernel: none of its routes to follow", "family", fam.String())
			continue
		}
		if l.setMode >= 0 {
			if err := SetNotifyMode(l.opts, fam, l.setMode); err != nil {
				return err
			}
		}
	}
	warn, err := CheckNotifyModes(l.opts)
	if err != nil {
		return err
	}
	for _, w := range warn {
		l.log.Warn(w)
	}
	// Subscribe before dumping so nothing falls between the two.
	sub, err := Subscribe(l.opts)
	if err != nil {
		return err
	}
	if w := sub.Warning(); w != nil {
		l.log.Warn("notification socket works with a smaller buffer and will overrun sooner", "err", w)
	}
	if len(l.ignore) > 0 {
		ids := make([]uint32, 0, len(l.ignore))
		for id := range l.ignore {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		if err := sub.IgnoreTables(ids...); err != nil {
			// Still left out, by the checks below, after decoding.
			l.log.Info("the kernel does not filter the ignored tables' notifications", "tables", ids, "err", err)
		}
	}
	stop := context.AfterFunc(ctx, func() { sub.Close() })
	defer stop()
	defer sub.Close()
	defer l.hub.Close()

	if err := l.resync(false); err != nil {
		return err
	}
	close(l.ready)
	for {
		msgs, err := sub.Receive()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrOverrun) {
			l.counters.overruns.Add(1)
			l.log.Warn("notification socket overrun, resynchronising", "overruns", l.counters.overruns.Load())
			l.drainUntilQuiet(sub)
			if err := l.resync(true); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("receive route notifications: %w", err)
		}
		if l.handle(msgs) {
			if err := l.resync(true); err != nil {
				return err
			}
		}
	}
}

// After an overrun the listener waits for the socket to stay quiet for
// overrunQuiet (at most overrunMaxDrain) before it dumps: during a burst a
// dump is stale before it ends, and a full table takes seconds to dump.
const (
	overrunQuiet    = 20 * time.Millisecond
	overrunMaxDrain = 2 * time.Second
)

// drainUntilQuiet discards notifications until none arrives for
// overrunQuiet; the dump that follows covers everything discarded.
func (l *Listener) drainUntilQuiet(sub *Subscription) {
	defer sub.SetReadDeadline(time.Time{})
	end := time.Now().Add(overrunMaxDrain)
	for time.Now().Before(end) {
		if err := sub.SetReadDeadline(time.Now().Add(overrunQuiet)); err != nil {
			return
		}
		_, err := sub.Receive()
		if errors.Is(err, ErrOverrun) {
			l.counters.overruns.Add(1)
			continue
		}
		if err != nil {
			return // quiet (deadline), or closed: Run sees that next
		}
	}
}

// handle applies a batch of notifications and reports whether a resync is due.
func (l *Listener) handle(msgs [][]byte) (resync bool) {
	now := time.Now()
	evs := make([]Event, 0, len(msgs)) // about one a notification
	l.mu.Lock()
	touched := l.newTouched(len(msgs))
	for _, b := range msgs {
		v, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrSkip) {
				l.log.Warn("undecodable notification", "err", err)
			}
			continue
		}
		switch m := v.(type) {
		case RouteMessage:
			if m.Src.IsValid() || l.ignore[m.Route.Table] {
				continue // source-specific IPv6 routes are not modelled
			}
			l.counters.notifications.Add(1)
			if m.Type == unix.RTM_NEWROUTE {
				l.objs.expand(&m.Route)
			}
			var ok bool
			if evs, ok = l.applyLocked(toModel(m), touched, now, evs); !ok {
				l.counters.outOfSync.Add(1)
				// A delete of a route the model lacks changes nothing; anything
				// else means the model missed something.
				resync = resync || m.Type != unix.RTM_DELROUTE
			}
		case NexthopMessage:
			// What the kernel did to the routes over the object without
			// saying so (objects.changed).
			for _, msg := range l.objs.changed(m, l.model, l.compat0) {
				var ok bool
				if evs, ok = l.applyLocked(msg, touched, now, evs); !ok {
					resync = true
				}
			}
		case LinkMessage:
			// Routes through a link that is taken down or removed are flushed
			// silently, so a transition to down calls for a dump.
			was := l.links[m.Index]
			if m.Deleted {
				delete(l.links, m.Index)
			} else {
				l.links[m.Index] = link{name: m.Name, up: m.AdminUp}
			}
			if was.up && (m.Deleted || !m.AdminUp) {
				resync = true
			}
		case AddrMessage:
			if m.Deleted {
				resync = true
			}
		}
	}
	l.publishLocked(evs)
	touched.tellDriver(l.model)
	l.doneTouched(touched)
	l.mu.Unlock()
	return resync
}

// applyLocked applies one change to the model and appends its events; ok
// is false when the change did not fit the model.
func (l *Listener) applyLocked(msg fib.Message, touched touched, now time.Time, evs []Event) (_ []Event, ok bool) {
	touched.note(l.model, &msg.Route)
	ch, err := l.model.Apply(msg)
	if err != nil {
		if msg.Type != fib.DelRoute {
			l.log.Debug("notification out of sync with the model", "err", err)
		}
		return evs, false
	}
	for _, c := range ch {
		l.objs.note(c)
		evs = append(evs, fib.EventOf(c, now, false))
	}
	return evs, true
}

// compat0 says whether net.ipv4.nexthop_compat_mode is 0, which keeps
// IPv6 routes over a deleted object from being announced gone. Unread, it
// is taken for the default, 1.
func (l *Listener) compat0() bool {
	m, err := NexthopCompatMode(l.opts)
	return err == nil && m == 0
}

// toModel converts a decoded notification into the model's terms.
func toModel(m RouteMessage) fib.Message {
	t := fib.NewRoute
	if m.Type == unix.RTM_DELROUTE {
		t = fib.DelRoute
	}
	return fib.Message{Type: t, NLFlags: fib.NLFlags(m.NLFlags) & (fib.NLMReplace | fib.NLMExcl | fib.NLMCreate | fib.NLMAppend), Route: m.Route}
}

// resync loads a fresh dump and, when report is set, publishes its
// differences from the model.
func (l *Listener) resync(report bool) error {
	var opts []fib.Option
	for _, fam := range []fib.Family{fib.IPv4, fib.IPv6} {
		m, err := NotifyMode(l.opts, fam)
		if errors.Is(err, ErrFamilyDisabled) || errors.Is(err, ErrNotifyUnsupported) {
			m, err = 0, nil // nothing announced, as at 0
		}
		if err != nil {
			return err
		}
		opts = append(opts, fib.WithNotifyMode(fam, fib.NotifyMode(m)))
	}
	fresh := fib.New(opts...)
	// Objects first: a route dumped after them names only objects they hold.
	nhs, err := DumpNexthops(l.opts)
	if err != nil {
		return err
	}
	objs := newObjects(nhs)
	for _, fam := range []fib.Family{fib.IPv4, fib.IPv6} {
		msgs, err := DumpRoutes(l.opts, fam)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Src.IsValid() || l.ignore[m.Route.Table] {
				continue
			}
			objs.expand(&m.Route)
			if err := fresh.Append(m.Route); err != nil {
				l.log.Warn("route in dump not modelled", "err", err)
				continue
			}
			if m.Route.NHID != 0 {
				objs.note(fib.Change{New: &m.Route}) // no second pass over the model
			}
		}
	}
	links, err := DumpLinks(l.opts)
	if err != nil {
		return err
	}
	now := time.Now()
	l.mu.Lock()
	var evs []Event
	touched := l.newTouched(0)
	if l.driver != nil {
		// The kernel's dump lacks the flags our driver set: keep them.
		for r := range l.model.All() {
			fresh.RestoreFlags(r)
		}
	}
	if report {
		l.counters.resyncs.Add(1)
		for _, c := range fib.Diff(l.model, fresh) {
			evs = append(evs, fib.EventOf(c, now, true))
			touched.note(l.model, c.Route())
		}
	} else {
		// A driver that registers is replayed every forwarding route.
		for r := range fresh.All() {
			touched.note(l.model, r)
		}
	}
	fresh.InheritVersions(l.model)
	l.model = fresh
	l.objs = objs
	clear(l.links)
	for _, lk := range links {
		l.links[lk.Index] = link{name: lk.Name, up: lk.AdminUp}
	}
	l.publishLocked(evs)
	touched.tellDriver(l.model)
	l.doneTouched(touched)
	l.mu.Unlock()
	if report {
		l.log.Info("resynchronised with the kernel", "routes", fresh.Len(), "changes", len(evs))
	}
	return nil
}
