package sim

import (
	"net/netip"
	"slices"
	"time"

	"github.com/fibgate/fibgate/plugin/fib"
)

// This file is the hardware side of the engine: what one op does to the
// hardware table, the capacity and failure rules, and the neighbour-driven
// reclassification. Everything here runs with e.mu held.

// apply carries out one op popped at logical index idx.
func (e *engine) apply(o op, idx int, now time.Time, out *[]report) {
	k := o.key()
	s := e.slots[k]
	if supersedes(o.kind) && s.pending == idx+1 {
		s.pending = 0
	}
	switch o.kind {
	case opReplace:
		e.program(k, s, o.route, now, out)
	case opDelete:
		e.remove(k, s)
	case opAppend:
		cur, ok := e.hw.First(k.table, k.prefix())
		if ok {
			for _, nh := range o.route.Nexthops {
				if !slices.ContainsFunc(cur.Nexthops, nh.SameAs) {
					cur.Nexthops = append(cur.Nexthops, nh)
				}
			}
			o.route = cur
		}
		e.program(k, s, o.route, now, out)
	case opReprogram:
		if s.pending != 0 {
			return // the newer route will be programmed with today's rules
		}
		if cur, ok := e.hw.First(k.table, k.prefix()); ok {
			e.program(k, s, cur, now, out)
		}
	}
}

// program writes r as the hardware entry of k, replacing what was there;
// prev is k's slot. r ends up in a report; its next hops are not written
// in place (they may be shared: engine.event).
func (e *engine) program(k key, prev slot, r fib.Route, now time.Time, out *[]report) {
	p := k.prefix() // once: the key keeps it as bytes
	e.count.ops++
	r.Flags = 0
	if slices.ContainsFunc(r.Nexthops, func(n fib.Nexthop) bool { return n.HW != 0 }) {
		// r's list may be the listener's, shared (engine.event): cleared
		// in a copy.
		r.Nexthops = slices.Clone(r.Nexthops)
		for i := range r.Nexthops {
			r.Nexthops[i].HW = 0
		}
	}
	old, _, had := e.hw.FirstShared(k.table, p) // read only, reported as it was
	same := had && old.SameAs(&r)
	if had {
		e.release(k, &old, prev)
	}
	cl := classOf(p)
	fail := e.failure(k, cl)
	var flags fib.HWFlags
	var nh []fib.HWFlags
	if fail == failNone {
		flags, nh = classify(e.mode, &r, e.res)
		if e.dp != nil {
			if err := e.dpInstall(r); err != nil {
				fail = failWrite
				e.count.writeErrors++
				e.log.Warn("hardware write failed: route not mirrored", "prefix", p, "table", k.table, "err", err)
			}
		}
	}
	if fail != failNone {
		flags, nh = fib.OffloadFailed, nil
		if e.dp != nil {
			// What the hardware held for k goes: the old route, or an
			// entry a warm start adopted (Config.Warm).
			gone := old
			if !had {
				gone = fib.Route{Table: k.table, Prefix: p}
			}
			if err := e.dpRemove(gone); err != nil {
				e.log.Warn("remove mirrored route", "prefix", p, "table", k.table, "err", err)
			}
		}
	}

	stored := r
	stored.Flags = flags
	if nh != nil {
		stored.Nexthops = slices.Clone(r.Nexthops)
		for i := range nh {
			stored.Nexthops[i].HW = nh[i]
		}
	}
	if had {
		if _, err := e.hw.Delete(fib.Route{Table: k.table, Prefix: p, TOS: old.TOS}); err != nil {
			e.log.Error("hardware table out of step", "prefix", p, "table", k.table, "err", err)
		}
		e.count.add(old.Flags, -1)
	}
	if err := e.hw.Append(stored); err != nil {
		e.log.Error("hardware table refused route", "prefix", p, "table", k.table, "err", err)
		e.putSlot(k, slot{pending: prev.pending})
		return
	}
	e.count.add(flags, 1)

	s := slot{class: cl, failure: fail, pending: prev.pending}
	if fail == failNone {
		s.occupies = true
		e.used[cl]++
		s.programmed = now.Sub(e.epoch) + 1
		if same && prev.failure == failNone && prev.programmed != 0 {
			s.programmed = prev.programmed // written again, in hardware all along
		}
		e.index(k, &r)
	} else if fail == failFull {
		e.waiting[cl] = append(e.waiting[cl], k)
	}
	e.slots[k] = s
	if e.debug {
		e.log.Debug("programmed", "prefix", p, "table", k.table, "flags", flags.String())
	}

	*out = append(*out, report{route: r, flags: flags, nh: nh})
	if had && !same {
		// The old entry is gone from hardware: clear its flags as netdevsim
		// does after a replace (behaviour 26). A route already gone from the
		// kernel makes this a no-op there.
		var zero []fib.HWFlags
		if old.Family() == fib.IPv4 && slices.ContainsFunc(old.Nexthops, func(n fib.Nexthop) bool { return n.HW != 0 }) {
			zero = make([]fib.HWFlags, len(old.Nexthops))
		}
		if old.Flags != 0 || zero != nil {
			*out = append(*out, report{route: old, flags: 0, nh: zero})
		}
	}
}

// dpInstall and dpRemove hand r to the data plane through e.dpRoute: a
// route's address passed to the interface directly would move the
// caller's route to the heap, an allocation for every route programmed or
// removed. The data plane keeps no pointer to it.
func (e *engine) dpInstall(r fib.Route) error {
	e.dpRoute = r
	defer func() { e.dpRoute = fib.Route{} }()
	return e.dp.install(&e.dpRoute)
}

func (e *engine) dpRemove(r fib.Route) error {
	e.dpRoute = r
	defer func() { e.dpRoute = fib.Route{} }()
	return e.dp.remove(&e.dpRoute)
}

// writeFailed turns an entry whose data-plane write was refused at the
// step's flush into a failure, as if program had seen the write fail: it
// takes no room, shows offload_failed, and the step's report says so.
func (e *engine) writeFailed(k key, out *[]report) {
	cur, ok := e.hw.First(k.table, k.prefix())
	s := e.slots[k]
	if !ok || s.failure != failNone {
		return
	}
	e.count.writeErrors++
	e.release(k, &cur, s)
	s.occupies, s.failure, s.programmed = false, failWrite, 0
	e.slots[k] = s
	e.count.add(cur.Flags, -1)
	e.hw.SetFlags(&cur, fib.OffloadFailed)
	for i := range cur.Nexthops {
		e.hw.SetNexthopFlags(&cur, i, 0)
	}
	e.count.add(fib.OffloadFailed, 1)
	for i := range *out {
		if r := &(*out)[i]; r.route.SameAs(&cur) {
			r.flags, r.nh = fib.OffloadFailed, nil
		}
	}
}

// failure decides whether programming a route of k fails, and why.
func (e *engine) failure(k key, cl class) failure {
	if e.injected[k.prefix()] {
		return failInjected
	}
	if p := e.cfg.failProb; p > 0 && e.rng.Float64() < p {
		return failRandom
	}
	if e.adm != nil {
		// Refuse mode: the room was counted when the kernel took the
		// route; only one written unasked beyond the capacity waits.
		if e.adm.isOver(k) {
			return failFull
		}
		return failNone
	}
	if lim := e.cfg.capacity.limit(cl); lim > 0 && e.used[cl] >= lim {
		return failFull
	}
	return failNone
}

// release gives back the room and neighbour index entries of k's old route.
func (e *engine) release(k key, old *fib.Route, s slot) {
	if s.occupies {
		e.used[s.class]--
	}
	e.unindex(k, old)
}

// putSlot stores s for k, or forgets k when nothing is left to remember.
func (e *engine) putSlot(k key, s slot) {
	if s == (slot{}) {
		delete(e.slots, k)
		return
	}
	e.slots[k] = s
}

// remove deletes k (slot s) from hardware. The kernel route is gone, so
// its flags are not touched (netdevsim, behaviour 29).
func (e *engine) remove(k key, s slot) {
	p := k.prefix()                             // once: the key keeps it as bytes
	old, _, had := e.hw.FirstShared(k.table, p) // read only
	if !had {
		if e.dp != nil {
			// An entry a warm start adopted and nothing programmed
			// since (Config.Warm); for others there is nothing to remove.
			if err := e.dpRemove(fib.Route{Table: k.table, Prefix: p}); err != nil {
				e.log.Warn("remove mirrored route", "prefix", p, "table", k.table, "err", err)
			}
		}
		e.putSlot(k, slot{pending: s.pending})
		return
	}
	e.count.ops++
	e.release(k, &old, s)
	if e.dp != nil {
		if err := e.dpRemove(old); err != nil {
			e.log.Warn("remove mirrored route", "prefix", p, "table", k.table, "err", err)
		}
	}
	if _, err := e.hw.Delete(fib.Route{Table: k.table, Prefix: p, TOS: old.TOS}); err != nil {
		e.log.Error("hardware table out of step", "prefix", p, "table", k.table, "err", err)
	}
	e.count.add(old.Flags, -1)
	e.putSlot(k, slot{pending: s.pending})
	if e.debug {
		e.log.Debug("removed", "prefix", p, "table", k.table)
	}
}

// retryWaiting programs routes that failed for lack of room, oldest first,
// while their class has room (after deletes, or a larger capacity).
func (e *engine) retryWaiting(now time.Time, out *[]report) {
	for cl := range numClasses {
		for len(e.waiting[cl]) > 0 {
			k := e.waiting[cl][0]
			if e.adm != nil {
				if e.adm.isOver(k) {
					break
				}
			} else if lim := e.cfg.capacity.limit(cl); lim > 0 && e.used[cl] >= lim {
				break
			}
			e.waiting[cl] = e.waiting[cl][1:]
			if len(e.waiting[cl]) == 0 {
				e.waiting[cl] = nil
			}
			s := e.slots[k]
			if s.failure != failFull || s.pending != 0 {
				continue // gone, programmed since, or a newer route is queued
			}
			if cur, ok := e.hw.First(k.table, k.prefix()); ok {
				e.program(k, s, cur, now, out)
			}
		}
	}
}

// index remembers a spectrum-mode gateway route by its gateways, so a
// neighbour change finds the routes to promote or demote.
func (e *engine) index(k key, r *fib.Route) {
	if e.mode != ModeSpectrum || r.Type != fib.TypeUnicast || r.TOS != 0 {
		return
	}
	for _, nh := range r.Nexthops {
		if !nh.Gateway.IsValid() {
			continue
		}
		m := e.byGW[nh.Gateway]
		if m == nil {
			m = map[key]struct{}{}
			e.byGW[nh.Gateway] = m
		}
		m[k] = struct{}{}
	}
}

func (e *engine) unindex(k key, r *fib.Route) {
	for _, nh := range r.Nexthops {
		if m := e.byGW[nh.Gateway]; m != nil {
			delete(m, k)
			if len(m) == 0 {
				delete(e.byGW, nh.Gateway)
			}
		}
	}
}

// reclassify updates the flags of the routes via gw after its neighbour
// changed: trap becomes offload once resolved (behaviour 65), and back.
func (e *engine) reclassify(gw netip.Addr, now time.Time, out *[]report) {
	for k := range e.byGW[gw] {
		cur, ok := e.hw.First(k.table, k.prefix())
		if !ok || e.slots[k].failure != failNone {
			continue
		}
		flags, nh := classify(e.mode, &cur, e.res)
		changed := flags != cur.Flags
		for i := range nh {
			changed = changed || cur.Nexthops[i].HW != nh[i]
		}
		if !changed {
			continue
		}
		e.hw.SetFlags(&cur, flags)
		for i, f := range nh {
			e.hw.SetNexthopFlags(&cur, i, f)
		}
		e.count.add(cur.Flags, -1)
		e.count.add(flags, 1)
		e.log.Info("neighbour changed route state", "prefix", k.prefix(), "table", k.table,
			"gateway", gw, "flags", flags.String(), "old_flags", cur.Flags.String())
		*out = append(*out, report{route: cur, flags: flags, nh: nh})
	}
}

// reprogram queues the routes with prefix p (in every programmed table)
// for another write, as if the driver wrote them again; with onlyFailed,
// only those not in hardware.
func (e *engine) reprogram(p netip.Prefix, onlyFailed bool, now time.Time) {
	for t := range e.tables {
		k := keyFor(t, p)
		s, ok := e.slots[k]
		if !ok || onlyFailed && s.failure == failNone {
			continue
		}
		e.push(op{kind: opReprogram, route: fib.Route{Table: t, Prefix: p}, due: e.due(now.Sub(e.epoch))})
	}
}

// shutdown closes the inbox and empties the hardware, returning the flag
// clears to deliver: a device that goes away leaves no route marked as in
// hardware (netdevsim reload, behaviour 59).
func (e *engine) shutdown() []report {
	e.in.mu.Lock()
	e.in.closed = true
	e.in.events, e.in.gateways = fifo[arrival]{}, nil
	e.in.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []report
	for r := range e.hw.All() {
		var zero []fib.HWFlags
		if r.Family() == fib.IPv4 && slices.ContainsFunc(r.Nexthops, func(n fib.Nexthop) bool { return n.HW != 0 }) {
			zero = make([]fib.HWFlags, len(r.Nexthops))
		}
		if r.Flags != 0 || zero != nil {
			out = append(out, report{route: r.Clone(), nh: zero})
		}
	}
	e.hw = fib.New()
	clear(e.slots)
	e.q = queue{}
	e.used = [numClasses]int{}
	e.waiting = [numClasses][]key{}
	clear(e.byGW)
	e.count.trapped, e.count.offloaded, e.count.failed = 0, 0, 0
	return out
}
