package kernel

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/fibgate/fibgate/plugin/fib"
)

// InstallRoute is a route the installer writes: a prefix and its paths (ECMP
// when there are several). It carries only gateways; the kernel finds the
// output interface of each, but for an IPv6 link-local gateway, which
// names its interface by index as its zone, and an onlink one, which does
// the same, IPv4 in its mapped form (fib.ZonedHop).
type InstallRoute struct {
	Prefix   netip.Prefix
	Nexthops []netip.Addr
}

// InstallerConfig says where and how the installer writes its routes. Its
// routes are recognised by (Table, Protocol, Metric) and by naming no
// nexthop object, so it never touches routes that others installed.
type InstallerConfig struct {
	// NetNS is the named network namespace; "" is the caller's.
	NetNS string
	// Table is the routing table (default 254, main).
	Table uint32
	// Protocol marks the routes (default bgp, 186), which is also how the
	// gate recognises transit prefixes.
	Protocol fib.Protocol
	// Metric is the routes' priority (default 20, like FRR's eBGP). Use a
	// metric no other daemon uses for the same prefixes: a replace acts on
	// the first route of its (prefix, metric) group.
	Metric uint32
	// Vetoer, when set, is asked before routes are written (a user-space
	// driver that refuses routes as a kernel driver would; see Vetoer).
	Vetoer Vetoer
}

func (c *InstallerConfig) defaults() {
	if c.Table == 0 {
		c.Table = fib.TableMain
	}
	if c.Protocol == 0 {
		c.Protocol = fib.ProtoBGP
	}
	if c.Metric == 0 {
		c.Metric = 20
	}
}

// Installer is the FIB installer: it writes BGP best paths into the kernel
// as proto-bgp routes, where the hardware (a switchdev driver, or the sim
// watching through the listener) picks them up. It is not safe for
// concurrent use.
type Installer struct {
	cfg InstallerConfig
	w   *RouteWriter // writing, in batches
	log *slog.Logger
	// othersSeen: another daemon's routes as the installer's were logged
	// (Routes).
	othersSeen atomic.Bool
}

// NewInstaller opens the installer's sockets in the configured namespace.
func NewInstaller(cfg InstallerConfig, log *slog.Logger) (*Installer, error) {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var wopts []WriterOption
	if cfg.Vetoer != nil {
		wopts = append(wopts, WithVetoer(cfg.Vetoer))
	}
	w, err := NewRouteWriter(cfg.NetNS, wopts...)
	if err != nil {
		return nil, fmt.Errorf("installer in netns %q: %w", cfg.NetNS, err)
	}
	return &Installer{cfg: cfg, w: w, log: log}, nil
}

// Owns reports whether r is one of the installer's routes: its table,
// protocol and metric, and no nexthop object (Routes).
func (i *Installer) Owns(r *fib.Route) bool { return i.writesAs(r) && r.NHID == 0 }

// writesAs says whether r has the table, protocol and metric the installer
// writes its routes with.
func (i *Installer) writesAs(r *fib.Route) bool {
	return r.Table == i.cfg.Table && r.Protocol == i.cfg.Protocol && r.Priority == i.cfg.Metric
}

// Table is the table the installer writes to.
func (i *Installer) Table() uint32 { return i.cfg.Table }

// Close releases the sockets; installed routes stay (see Flush).
func (i *Installer) Close() {
	i.w.Close()
}

// Install writes each route, replacing in place the installer's route for
// the same prefix (one RTM_NEWROUTE with NLM_F_REPLACE, so the forwarding
// route never disappears in between), in batches (RouteWriter). It goes on
// after a failure and returns every failure, each naming its prefix.
func (i *Installer) Install(routes []InstallRoute) error {
	failed := make([]error, len(routes)) // in the caller's order
	ops := make([]RouteOp, 0, len(routes))
	idx := make([]int, 0, len(routes))
	for k, r := range routes {
		fr, err := i.fibRoute(r)
		if err != nil {
			failed[k] = &RouteError{Prefix: r.Prefix, Err: err}
			continue
		}
		ops, idx = append(ops, RouteOp{Route: fr}), append(idx, k)
	}
	for j, err := range i.w.Write(ops) {
		if err != nil {
			r := routes[idx[j]]
			failed[idx[j]] = &RouteError{Prefix: r.Prefix, Err: fmt.Errorf("install %s via %v in table %d: %w", r.Prefix, r.Nexthops, i.cfg.Table, err)}
		}
	}
	return errors.Join(failed...)
}

// Rewrite writes the installer's routes for these prefixes again, as they
// are, so that the hardware programs them afresh (RouteWriter.Rewrite: a
// route changed meanwhile is left alone). It returns every failure, each
// naming its prefix.
func (i *Installer) Rewrite(routes []InstallRoute) error {
	var errs []error
	frs := make([]fib.Route, 0, len(routes))
	for _, r := range routes {
		fr, err := i.fibRoute(r)
		if err != nil {
			errs = append(errs, &RouteError{Prefix: r.Prefix, Err: err})
			continue
		}
		frs = append(frs, fr)
	}
	for k, err := range i.w.Rewrite(frs) {
		if err != nil {
			errs = append(errs, &RouteError{Prefix: frs[k].Prefix, Err: err})
		}
	}
	return errors.Join(errs...)
}

// RouteError is the failure of one route of Install, Remove or Reconcile;
// their joined errors are made of these, so a caller can retry exactly the
// routes that failed (FailedPrefixes).
type RouteError struct {
	Prefix netip.Prefix
	Err    error
}

func (e *RouteError) Error() string { return e.Err.Error() }
func (e *RouteError) Unwrap() error { return e.Err }

// FailedPrefixes lists the prefixes of the RouteErrors in err.
func FailedPrefixes(err error) []netip.Prefix {
	var out []netip.Prefix
	for _, re := range RouteErrors(err) {
		out = append(out, re.Prefix)
	}
	return out
}

// RouteErrors lists the RouteErrors in err (joined by Install, Remove,
// Reconcile or Rewrite), so a caller can tell each prefix why.
func RouteErrors(err error) []*RouteError {
	var out []*RouteError
	var walk func(error)
	walk = func(err error) {
		if re, ok := err.(*RouteError); ok {
			out = append(out, re)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return out
}

// fibRoute checks r and turns it into the kernel route the installer owns.
func (i *Installer) fibRoute(r InstallRoute) (fib.Route, error) {
	if !r.Prefix.IsValid() || r.Prefix != r.Prefix.Masked() || len(r.Nexthops) == 0 {
		return fib.Route{}, fmt.Errorf("install %s: %w: want a canonical prefix and at least one next hop", r.Prefix, fib.ErrInvalid)
	}
	fr := fib.Route{Table: i.cfg.Table, Prefix: r.Prefix, Type: fib.TypeUnicast, Protocol: i.cfg.Protocol, Priority: i.cfg.Metric}
	for _, nh := range r.Nexthops {
		// A zone is the gateway's interface, by index: a link-local one's,
		// or an onlink one's, IPv4 in its mapped form (fib.ZonedHop, from
		// fib.FIB.Resolve).
		n, ok := fib.HopOf(nh)
		if !ok {
			return fib.Route{}, fmt.Errorf("install %s: next hop %s: want an interface index as its zone: %w", r.Prefix, nh, fib.ErrInvalid)
		}
		// IPv4 via IPv4, IPv4 via IPv6 (RFC 5549) and IPv6 via IPv6.
		gw := n.Gateway
		if !gw.IsValid() || gw.Is4In6() || r.Prefix.Addr().Is6() && gw.Is4() {
			return fib.Route{}, fmt.Errorf("install %s: next hop %s: %w", r.Prefix, nh, fib.ErrInvalid)
		}
		fr.Nexthops = append(fr.Nexthops, n)
	}
	return fr, nil
}

// Remove deletes the installer's routes for these prefixes, in batches; a
// prefix that has none is not an error.
func (i *Installer) Remove(prefixes []netip.Prefix) error {
	ops := make([]RouteOp, len(prefixes))
	for k, p := range prefixes {
		ops[k] = RouteOp{Delete: true, Route: fib.Route{Table: i.cfg.Table, Prefix: p, Protocol: i.cfg.Protocol, Priority: i.cfg.Metric}}
	}
	var errs []error
	for k, err := range i.w.Write(ops) {
		if err != nil && !errors.Is(err, unix.ESRCH) {
			p := prefixes[k]
			errs = append(errs, &RouteError{Prefix: p, Err: fmt.Errorf("remove %s from table %d: %w", p, i.cfg.Table, err)})
		}
	}
	return errors.Join(errs...)
}

// Installed lists the prefixes the installer's routes cover now, read from
// the kernel (not from memory), so it is right after a restart.
func (i *Installer) Installed() ([]netip.Prefix, error) {
	rs, err := i.Routes()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, len(rs))
	for k, r := range rs {
		out[k] = r.Prefix
	}
	return out, nil
}

// Routes lists the installer's routes in the kernel with their next hops
// (sorted), so a restarted daemon can tell which routes are already right.
// A route of the installer's table, protocol and metric that names a
// nexthop object is another daemon's: the installer never writes one, and
// FRR's zebra writes its BGP routes so (protocol bgp, metric 20, the
// installer's defaults). Such routes are left out, so neither a reconcile
// nor a flush removes them, and logged once.
func (i *Installer) Routes() ([]InstallRoute, error) {
	var out []InstallRoute
	others := 0
	req := make([]byte, nlmsgHdrLen+rtmsgLen) // AF_UNSPEC: both families
	err := dump(Options{NetNS: i.cfg.NetNS}, unix.RTM_GETROUTE, req, func() { out, others = out[:0], 0 }, func(msg []byte) error {
		m, err := DecodeRoute(msg)
		if errors.Is(err, ErrSkip) {
			return nil
		}
		if err != nil {
			return err
		}
		r := &m.Route
		if m.Src.IsValid() || !i.writesAs(r) {
			return nil
		}
		if !i.Owns(r) {
			others++ // over a nexthop object
			return nil
		}
		ir := InstallRoute{Prefix: r.Prefix}
		for _, nh := range r.Nexthops {
			if nh.Gateway.IsValid() {
				ir.Nexthops = append(ir.Nexthops, fib.ZonedHop(nh))
			}
		}
		slices.SortFunc(ir.Nexthops, netip.Addr.Compare)
		out = append(out, ir)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list installed routes in table %d: %w", i.cfg.Table, err)
	}
	if others > 0 && i.othersSeen.CompareAndSwap(false, true) {
		i.log.Warn("another daemon writes routes as the FIB installer's table, protocol and metric (they name nexthop objects, which the installer never writes: FRR's zebra?); they are left alone, but the installer replaces any of their prefixes GoBGP has a best path for, and next hops do not resolve over them: give the installer a protocol of its own (install.protocol, e.g. \"200\")",
			"routes", others, "table", i.cfg.Table, "protocol", i.cfg.Protocol, "metric", i.cfg.Metric)
	}
	return out, nil
}

// Reconcile makes the kernel hold exactly the desired routes: it removes
// the installer's routes for prefixes not desired, such as those a crashed
// predecessor left behind, and installs the desired routes the kernel does
// not already have as they are. A route that is already right is left
// alone: replacing it would reset its hardware flags, and the gate would
// see the prefix flap. It returns how many routes it wrote and removed.
//
// before, when not nil, is called with every prefix whose existing route
// is about to be replaced or removed, before the kernel is touched: the
// gate takes such prefixes back first (gobgp.Speaker.Fence).
func (i *Installer) Reconcile(desired []InstallRoute, before func(changed []netip.Prefix)) (installed, removed int, err error) {
	n, stale, err := i.reconcile(desired, before, true)
	return n, len(stale), err
}

// ReconcileKeepingStale is Reconcile that removes nothing: it installs the
// desired routes the kernel lacks, replaces those that differ, and leaves
// the installer's other routes in place, returning their prefixes. It is
// for a graceful restart: BGP has only part of its table yet, and the
// routes of the predecessor keep forwarding (their hardware flags
// untouched) until the table is whole; the caller removes the ones still
// not desired then. before is called as in Reconcile, with the routes it
// replaces.
func (i *Installer) ReconcileKeepingStale(desired []InstallRoute, before func(changed []netip.Prefix)) (installed int, kept []netip.Prefix, err error) {
	return i.reconcile(desired, before, false)
}

func (i *Installer) reconcile(desired []InstallRoute, before func(changed []netip.Prefix), removeStale bool) (installed int, stale []netip.Prefix, err error) {
	have, err := i.Routes()
	if err != nil {
		return 0, nil, err
	}
	now := make(map[netip.Prefix][]netip.Addr, len(have))
	for _, r := range have {
		now[r.Prefix] = r.Nexthops
	}
	want := make(map[netip.Prefix]bool, len(desired))
	var todo []InstallRoute
	for _, r := range desired {
		want[r.Prefix] = true
		nhs := slices.Clone(r.Nexthops)
		slices.SortFunc(nhs, netip.Addr.Compare)
		if cur, ok := now[r.Prefix]; !ok || !slices.Equal(cur, slices.Compact(nhs)) {
			todo = append(todo, r)
		}
	}
	for _, r := range have {
		if !want[r.Prefix] {
			stale = append(stale, r.Prefix)
		}
	}
	if before != nil {
		var changed []netip.Prefix
		if removeStale {
			changed = slices.Clone(stale)
		}
		for _, r := range todo {
			if _, ok := now[r.Prefix]; ok {
				changed = append(changed, r.Prefix)
			}
		}
		if len(changed) > 0 {
			before(changed)
		}
	}
	var errRemove error
	if removeStale {
		errRemove = i.Remove(stale)
	}
	errInstall := i.Install(todo)
	switch {
	case len(stale) > 0 && removeStale:
		i.log.Info("removed stale installed routes", "count", len(stale), "table", i.cfg.Table)
	case len(stale) > 0:
		i.log.Info("kept installed routes BGP has not learned again yet", "count", len(stale), "table", i.cfg.Table)
	}
	return len(todo), stale, errors.Join(errRemove, errInstall)
}

// Flush removes every route the installer owns: what a clean shutdown does
// so no route outlives the daemon that chose it.
func (i *Installer) Flush() (int, error) {
	have, err := i.Installed()
	if err != nil {
		return 0, err
	}
	slices.SortFunc(have, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return len(have), i.Remove(have)
}
