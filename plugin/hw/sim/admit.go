package sim

import (
	"sync"

	"syscall"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/kernel"
)

// This file is capacity_mode refuse: the table counts a route when the
// kernel takes it, and a route beyond the capacity is refused before the
// kernel has it, as netdevsim does from the kernel's FIB notifier chain
// (kernel-semantics behaviours 51 and 52).
//
// The sim learns of routes from the listener, after the kernel took them,
// so it cannot veto a write on the kernel's path. It vetoes on the writer's
// path instead: the FIB installer asks it before each write
// (kernel.Vetoer), and a refused route is never sent, so the installer
// sees what a kernel driver's veto gives: EPERM with netdevsim's message,
// and no route. Routes written by anyone else (ip route, another daemon)
// reach the kernel unasked; one that does not fit is flagged
// offload_failed as in capacity_mode flag, and programmed when room frees.

// errFull is netdevsim's refusal of a route beyond its FIB capacity: the
// notifier chain's EPERM, and its message with the driver's name in front,
// as NL_SET_ERR_MSG_MOD puts it ("netdevsim: Exceeded number of supported
// fib entries"); here the driver is the sim.
var errFull = &kernel.AckError{Errno: syscall.EPERM, Msg: "sim: Exceeded number of supported fib entries"}

// admitted is one route the table counts: reserved by a write the sim let
// through and not seen yet, or present in the kernel (seen in a driver
// event), and for a route that arrived unasked beyond the capacity, over.
type admitted struct {
	class    class
	present  bool
	over     bool
	priority uint32 // of the forwarding route, once present
}

// admission counts routes as the kernel takes them, per class: what
// capacity_mode refuse checks synchronously. Its lock is taken inside the
// engine's (never the other way round) and inside the listener's.
type admission struct {
	mu      sync.Mutex
	tables  map[uint32]bool
	cap     Capacity
	keys    map[key]*admitted
	n       [numClasses]int
	over    [numClasses][]key // routes that arrived over the capacity, in order
	refused uint64
	wake    func() // tells the engine that over routes may fit now
}

func newAdmission(tables map[uint32]bool, c Capacity, wake func()) *admission {
	return &admission{tables: tables, cap: c, keys: map[key]*admitted{}, wake: wake}
}

// veto answers the writer for each op: netdevsim's EPERM when the table
// is full. Like netdevsim it refuses a route that would replace the
// forwarding route of a prefix it holds too when the table is full: the
// room for the new entry is taken before the old one's is given back
// (behaviour 52). A route that will not forward (a higher metric than the
// prefix's forwarding route) is not its business.
func (a *admission) veto(ops []kernel.RouteOp) []error {
	errs := make([]error, len(ops))
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range ops {
		r := &ops[i].Route
		if ops[i].Delete || !a.tables[r.Table] {
			continue
		}
		k := keyOf(r)
		cl := classOf(k.prefix())
		ad := a.keys[k]
		if ad != nil && ad.present && ad.priority < r.Priority {
			continue // behind the forwarding route: no driver event
		}
		if lim := a.cap.limit(cl); lim > 0 && a.n[cl] >= lim {
			errs[i] = errFull
			a.refused++
			continue
		}
		if ad == nil {
			a.keys[k] = &admitted{class: cl}
			a.n[cl]++
		}
	}
	return errs
}

// written gives back what the kernel did not take: the room reserved for a
// route it refused, and, at once, the room of a route it deleted (netdevsim
// releases it in the notifier; the listener's event would come later).
func (a *admission) written(ops []kernel.RouteOp, errs []error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	freed := false
	for i := range ops {
		r := &ops[i].Route
		if !a.tables[r.Table] {
			continue
		}
		k := keyOf(r)
		ad := a.keys[k]
		switch {
		case ad == nil:
		case ops[i].Delete && errs[i] == nil, !ops[i].Delete && errs[i] != nil && !ad.present:
			a.drop(k, ad)
			freed = true
		}
	}
	if freed {
		a.fit()
	}
}

// event follows the kernel's forwarding routes, under the listener's lock.
func (a *admission) event(ev fib.DriverEvent) {
	k := keyOf(&ev.Route)
	a.mu.Lock()
	defer a.mu.Unlock()
	ad := a.keys[k]
	switch ev.Kind {
	case fib.DriverReplace, fib.DriverAppend:
		if ad == nil {
			cl := classOf(k.prefix())
			ad = &admitted{class: cl}
			a.keys[k] = ad
			a.n[cl]++
			if lim := a.cap.limit(cl); lim > 0 && a.n[cl] > lim {
				ad.over = true // written unasked beyond the capacity
				a.over[cl] = append(a.over[cl], k)
			}
		}
		ad.present, ad.priority = true, ev.Route.Priority
	case fib.DriverDel:
		if ad != nil {
			a.drop(k, ad)
			a.fit()
		}
	}
}

func (a *admission) drop(k key, ad *admitted) {
	delete(a.keys, k)
	a.n[ad.class]--
}

// fit clears over in every class that now holds no more than it may, and
// wakes the engine to program those routes.
func (a *admission) fit() {
	woke := false
	for cl := range numClasses {
		if len(a.over[cl]) == 0 {
			continue
		}
		if lim := a.cap.limit(cl); lim > 0 && a.n[cl] > lim {
			continue
		}
		for _, k := range a.over[cl] {
			if ad := a.keys[k]; ad != nil && ad.over {
				ad.over, woke = false, true
			}
		}
		a.over[cl] = nil
	}
	if woke && a.wake != nil {
		a.wake()
	}
}

// isOver reports whether k holds a route that arrived beyond the capacity.
func (a *admission) isOver(k key) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	ad := a.keys[k]
	return ad != nil && ad.over
}

func (a *admission) setCapacity(c Capacity) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cap = c
	a.fit()
}

func (a *admission) stats() (held Capacity, refused uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return capacityOf(a.n), a.refused
}
