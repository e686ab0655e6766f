//go:build linux

package sim

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/internal/pkey"
	"github.com/fibgate/fibgate/plugin/kernel"
)

// plumbing is the sim's kernel side in one namespace: the mirror table with
// its rules, and the neighbour watcher spectrum mode needs.
type plumbing struct {
	nsh    netns.NsHandle
	h      *netlink.Handle
	mirror *mirror     // nil without forwarding
	neigh  *neighbours // nil in trap mode
}

func openPlumbing(ns string, cfg Config, forward bool, log *slog.Logger, changed func(netip.Addr)) (*plumbing, error) {
	if ns == "." || ns == ".." || strings.ContainsAny(ns, "/\x00") {
		return nil, fmt.Errorf("invalid network namespace name %q (want a name under /run/netns)", ns)
	}
	var nsh netns.NsHandle
	var err error
	if ns == "" {
		nsh, err = netns.Get()
	} else {
		nsh, err = netns.GetFromName(ns)
	}
	if err != nil {
		return nil, fmt.Errorf("open network namespace %q: %w", ns, err)
	}
	// In the process's own namespace no setns is needed, so CAP_NET_ADMIN
	// is enough (NewHandleAt switches namespace: CAP_SYS_ADMIN). Routes,
	// rules and neighbours are rtnetlink's: a handle of every netlink
	// family would also need XFRM and netfilter's, which a switch's
	// kernel may lack (the netdevsim VM's does).
	var h *netlink.Handle
	if ns == "" {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	}
	if err != nil {
		nsh.Close()
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	p := &plumbing{nsh: nsh, h: h}
	if forward {
		p.mirror, err = openMirror(ns, h, cfg, log)
		if err != nil {
			h.Close()
			nsh.Close()
			return nil, err
		}
	}
	if cfg.Mode == ModeSpectrum {
		p.neigh = newNeighbours(nsh, log, changed)
		p.neigh.own = ns == ""
	}
	return p, nil
}

func (p *plumbing) close() error {
	var err error
	if p.mirror != nil {
		if !p.mirror.keep {
			err = p.mirror.cleanup()
		}
		p.mirror.w.Close()
	}
	p.h.Close()
	p.nsh.Close()
	return err
}

// mirror keeps a kernel routing table equal to what the hardware forwards,
// and the `ip rule iif PORT lookup TABLE` rules that route traffic from the
// data ports by it. The table's default is unreachable, so a route that is
// not in hardware drops packets (with an ICMP unreachable, as a router
// would); the local table's rule (priority 0) still comes first, so the
// router's own addresses keep working.
type mirror struct {
	h     *netlink.Handle
	w     *kernel.RouteWriter // the routes, written in batches (flush)
	ops   []kernel.RouteOp    // queued since the last flush
	keys  []key               // per op: the entry it installs, or zero for a delete
	table int
	prio  int
	ports []string
	log   *slog.Logger
	// held says, per prefix, what each hardware entry of that prefix
	// installed and which of them owns the kernel route: one map for both
	// (a slot per route was two maps of 80-byte slots, 440 bytes a route
	// at 120k; bench-scale's inuse heap).
	held heldMap
	// keep leaves the table and rules at close (Config.Warm); warm holds
	// what an earlier sim left that no kernel route has claimed yet.
	keep bool
	warm map[mirrorID]fib.Route
	// fams are the address families of its rules and default routes:
	// IPv4, and IPv6 unless the kernel runs without it.
	fams []netip.Prefix
}

// mirrorID is a route's identity in the mirror table, enough to delete it
// without touching its neighbours (the unreachable default among them).
type mirrorID struct {
	prefix   netip.Prefix
	tos      uint8
	priority uint32
	typ      fib.RouteType
}

// mirrorAttrs is a mirrorID without its prefix.
type mirrorAttrs struct {
	tos      uint8
	typ      fib.RouteType
	priority uint32
}

func (a mirrorAttrs) id(p netip.Prefix) mirrorID {
	return mirrorID{prefix: p, tos: a.tos, priority: a.priority, typ: a.typ}
}

func attrsOf(r *fib.Route) mirrorAttrs {
	return mirrorAttrs{tos: r.TOS, typ: r.Type, priority: r.Priority}
}

// mirrorEntry is what the hardware entry of one table installed for a
// prefix; owns says the mirror table's route of that identity is its (an
// entry of another table with the same identity may have replaced it).
type mirrorEntry struct {
	table uint32
	at    mirrorAttrs
	owns  bool
}

// prefixEntries is the entries of one prefix: nearly always one (the main
// table's), so the first is in the map's slot.
type prefixEntries struct {
	first mirrorEntry
	more  []mirrorEntry
}

// heldMap is mirror.held: the first entry of every prefix in a map that
// holds no pointer, so the collector never scans it (a full table's
// worth), and the others of the few prefixes in several tables apart.
type heldMap struct {
	first map[pkey.Key]mirrorEntry
	more  map[pkey.Key][]mirrorEntry
}

func newHeldMap() heldMap {
	return heldMap{first: map[pkey.Key]mirrorEntry{}, more: map[pkey.Key][]mirrorEntry{}}
}

func (h heldMap) load(k pkey.Key) (prefixEntries, bool) {
	f, ok := h.first[k]
	if !ok {
		return prefixEntries{}, false
	}
	return prefixEntries{first: f, more: h.more[k]}, true
}

func (h heldMap) store(k pkey.Key, e prefixEntries) {
	h.first[k] = e.first
	if len(e.more) > 0 {
		h.more[k] = e.more
	} else {
		delete(h.more, k)
	}
}

func (h heldMap) del(k pkey.Key) {
	delete(h.first, k)
	delete(h.more, k)
}

func (h heldMap) len() int { return len(h.first) }

func (h heldMap) clear() {
	clear(h.first)
	clear(h.more)
}

func (m *mirror) entry(k key) (mirrorEntry, bool) {
	e, ok := m.held.load(k.p)
	if !ok {
		return mirrorEntry{}, false
	}
	if e.first.table == k.table {
		return e.first, true
	}
	for _, x := range e.more {
		if x.table == k.table {
			return x, true
		}
	}
	return mirrorEntry{}, false
}

// own records that k installed at and now owns that identity's route:
// another table's entry of the same identity no longer does.
func (m *mirror) own(k key, at mirrorAttrs) {
	e, ok := m.held.load(k.p)
	if !ok {
		m.held.store(k.p, prefixEntries{first: mirrorEntry{table: k.table, at: at, owns: true}})
		return
	}
	found := false
	set := func(x *mirrorEntry) {
		switch {
		case x.table == k.table:
			*x, found = mirrorEntry{table: k.table, at: at, owns: true}, true
		case x.at == at:
			x.owns = false
		}
	}
	set(&e.first)
	for i := range e.more {
		set(&e.more[i])
	}
	if !found {
		e.more = append(e.more, mirrorEntry{table: k.table, at: at, owns: true})
	}
	m.held.store(k.p, e)
}

// owned says whether some entry of k's prefix owns the route of identity
// at.
func (m *mirror) owned(k key, at mirrorAttrs) bool {
	e, ok := m.held.load(k.p)
	if !ok {
		return false
	}
	if e.first.owns && e.first.at == at {
		return true
	}
	for _, x := range e.more {
		if x.owns && x.at == at {
			return true
		}
	}
	return false
}

// forget drops k's entry and returns it.
func (m *mirror) forget(k key) (mirrorEntry, bool) {
	e, ok := m.held.load(k.p)
	if !ok {
		return mirrorEntry{}, false
	}
	if e.first.table == k.table {
		gone := e.first
		if len(e.more) == 0 {
			m.held.del(k.p)
		} else {
			m.held.store(k.p, prefixEntries{first: e.more[0], more: slices.Clone(e.more[1:])})
		}
		return gone, true
	}
	for i, x := range e.more {
		if x.table == k.table {
			e.more = slices.Delete(slices.Clone(e.more), i, i+1)
			m.held.store(k.p, e)
			return x, true
		}
	}
	return mirrorEntry{}, false
}

func openMirror(ns string, h *netlink.Handle, cfg Config, log *slog.Logger) (*mirror, error) {
	w, err := kernel.NewRouteWriter(ns)
	if err != nil {
		return nil, fmt.Errorf("mirror table: %w", err)
	}
	m := &mirror{h: h, w: w, table: int(cfg.MirrorTable), prio: int(cfg.RulePriority), ports: cfg.Ports, log: log,
		held: newHeldMap(), keep: cfg.Warm, fams: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}
	if kernel.FamilyEnabled(fib.IPv6) {
		m.fams = append(m.fams, netip.MustParsePrefix("::/0"))
	}
	if cfg.Warm {
		// The hardware outlived its last sim: keep forwarding with what
		// it holds until the kernel's routes claim it (claim, sweep).
		if err := m.adopt(ns); err != nil {
			w.Close()
			return nil, err
		}
	} else if err := m.cleanup(); err != nil {
		// A sim that crashed may have left its table and rules behind.
		w.Close()
		return nil, err
	}
	if err := m.install0(); err != nil {
		w.Close()
		return nil, errors.Join(err, m.cleanup())
	}
	return m, nil
}

// adopt reads what an earlier sim left in the mirror table (its
// unreachable defaults aside) into m.warm.
func (m *mirror) adopt(ns string) error {
	msgs, err := kernel.DumpRoutes(kernel.Options{NetNS: ns}, 0)
	if err != nil {
		return fmt.Errorf("read mirror table %d: %w", m.table, err)
	}
	m.warm = map[mirrorID]fib.Route{}
	for _, msg := range msgs {
		r := msg.Route
		if r.Table != uint32(m.table) || r.Type == fib.TypeUnreachable && r.Prefix.Bits() == 0 && r.Priority == math.MaxUint32 {
			continue
		}
		m.warm[mirrorID{prefix: r.Prefix.Masked(), tos: r.TOS, priority: r.Priority, typ: r.Type}] = r
	}
	if len(m.warm) > 0 {
		m.log.Info("simulated ASIC starts warm: keeps forwarding with the routes it holds", "routes", len(m.warm), "table", m.table)
	}
	return nil
}

// claim is warmPlane's: an entry left by an earlier sim with r's identity
// becomes r's key's, so the route that replaces it later overwrites it in
// place (no gap in forwarding); it reports whether the entry is r.
func (m *mirror) claim(r *fib.Route) bool {
	if len(m.warm) == 0 || !mirrored(r.Type) {
		return false
	}
	k := keyOf(r)
	at := attrsOf(r)
	id := at.id(k.prefix())
	w, ok := m.warm[id]
	if !ok {
		return false
	}
	delete(m.warm, id)
	if m.owned(k, at) {
		return false
	}
	m.own(k, at)
	mr, err := m.toMirror(r)
	return err == nil && w.SameAs(&mr)
}

// sweep is warmPlane's: it queues the removal of every entry no kernel
// route claimed.
func (m *mirror) sweep() {
	for id := range m.warm {
		del := fib.Route{Table: uint32(m.table), Prefix: id.prefix, TOS: id.tos, Priority: id.priority, Type: id.typ}
		m.ops, m.keys = append(m.ops, kernel.RouteOp{Delete: true, Route: del}), append(m.keys, key{})
	}
	if len(m.warm) > 0 {
		m.log.Info("simulated ASIC dropped routes no kernel route claimed", "routes", len(m.warm), "table", m.table)
	}
	m.warm = nil
}

func (m *mirror) install0() error {
	for _, def := range m.fams {
		r := netlink.Route{Dst: ipNet(def), Table: m.table, Type: unix.RTN_UNREACHABLE,
			Priority: math.MaxUint32, Family: family(def)}
		if err := m.h.RouteReplace(&r); err != nil {
			return fmt.Errorf("add unreachable %s to table %d: %w", def, m.table, err)
		}
	}
	for _, port := range m.ports {
		for _, def := range m.fams {
			r := netlink.NewRule()
			r.Family, r.Priority, r.Table, r.IifName = family(def), m.prio, m.table, port
			if err := m.h.RuleAdd(r); err != nil && !(m.keep && errors.Is(err, unix.EEXIST)) {
				return fmt.Errorf("add rule iif %s lookup %d priority %d: %w", port, m.table, m.prio, err)
			}
		}
	}
	return nil
}

// cleanup removes the sim's rules (its priority and table) and every route
// of its table, in both families (IPv4 alone on a kernel without IPv6).
func (m *mirror) cleanup() error {
	var errs []error
	for _, def := range m.fams {
		fam := family(def)
		rules, err := m.h.RuleListFiltered(fam, &netlink.Rule{Table: m.table, Priority: m.prio},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PRIORITY)
		if err != nil {
			errs = append(errs, fmt.Errorf("list rules: %w", err))
		}
		for _, r := range rules {
			r.Family = fam
			if err := m.h.RuleDel(&r); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("delete rule iif %s lookup %d: %w", r.IifName, m.table, err))
			}
		}
		routes, err := m.h.RouteListFiltered(fam, &netlink.Route{Table: m.table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			errs = append(errs, fmt.Errorf("list table %d: %w", m.table, err))
		}
		for _, r := range routes {
			if err := m.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("delete %s from table %d: %w", r.Dst, m.table, err))
			}
		}
	}
	m.held.clear()
	return errors.Join(errs...)
}

// install mirrors r as what hardware forwards for its prefix, replacing the
// entry's previous route; types that need no forwarding entry only drop it.
// The write is queued: flush sends it with the rest of the engine's step.
func (m *mirror) install(r *fib.Route) error {
	k := keyOf(r)
	if !mirrored(r.Type) {
		return m.removeKey(k)
	}
	mr, err := m.toMirror(r)
	if err != nil {
		return err
	}
	at := attrsOf(r)
	if prev, ok := m.entry(k); ok && prev.at != at {
		if err := m.removeKey(k); err != nil {
			return err
		}
	}
	m.ops, m.keys = append(m.ops, kernel.RouteOp{Route: mr}), append(m.keys, k)
	m.own(k, at)
	return nil
}

func (m *mirror) remove(r *fib.Route) error { return m.removeKey(keyOf(r)) }

func (m *mirror) removeKey(k key) error {
	e, ok := m.forget(k)
	if !ok || !e.owns {
		return nil // nothing, or another table's route of the same identity took it over
	}
	del := fib.Route{Table: uint32(m.table), Prefix: k.prefix(), TOS: e.at.tos, Priority: e.at.priority, Type: e.at.typ}
	m.ops, m.keys = append(m.ops, kernel.RouteOp{Delete: true, Route: del}), append(m.keys, key{})
	return nil
}

// flush writes what install and remove queued, in batches, and returns the
// entries whose route the kernel refused; they are no longer mirrored.
func (m *mirror) flush() []key {
	if len(m.ops) == 0 {
		return nil
	}
	var failed []key
	for i, err := range m.w.Write(m.ops) {
		if err == nil {
			continue
		}
		op, k := &m.ops[i], m.keys[i]
		if op.Delete {
			if !errors.Is(err, unix.ESRCH) {
				m.log.Warn("remove mirrored route", "prefix", op.Route.Prefix, "table", m.table, "err", err)
			}
			continue
		}
		m.log.Warn("hardware write failed: route not mirrored", "prefix", op.Route.Prefix, "table", m.table, "err", err)
		failed = append(failed, k)
	}
	clear(m.ops)
	m.ops, m.keys = m.ops[:0], m.keys[:0]
	// What a refused replace left in the table (the entry's previous route
	// of the same identity) goes too: the entry is not in hardware now.
	for _, k := range failed {
		_ = m.removeKey(k)
	}
	if len(m.ops) > 0 {
		m.flush()
	}
	return failed
}

// toMirror copies a route into the mirror table: same destination, type,
// tos, metric, scope, source and paths.
func (m *mirror) toMirror(r *fib.Route) (fib.Route, error) {
	if len(r.Nexthops) == 0 && r.Type == fib.TypeUnicast {
		return fib.Route{}, fmt.Errorf("mirror %s: no nexthops (a nexthop object seen with nexthop_compat_mode=0)", r.String())
	}
	mr := r.Clone()
	mr.Table, mr.Flags, mr.NHID = uint32(m.table), 0, 0
	for i := range mr.Nexthops {
		nh := &mr.Nexthops[i]
		nh.HW, nh.Flags = 0, nh.Flags&fib.RTNHFOnlink
	}
	return mr, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func family(p netip.Prefix) int {
	if p.Addr().Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}
