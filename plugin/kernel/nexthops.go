package kernel

import (
	"slices"

	"github.com/fibgate/fibgate/plugin/fib"
	"github.com/fibgate/fibgate/plugin/internal/pkey"
)

// objects is what the listener knows of the namespace's nexthop objects:
// each object by id, and which routes of the model name it. Two kernel
// behaviours make it necessary, and neither announces a route change:
//   - with net.ipv4.nexthop_compat_mode at 0 a route over an object shows
//     only the object's id, in dumps and notifications, and an object
//     replaced in place moves every route over it;
//   - an object's deletion removes the routes over it (IPv4's always
//     silently, IPv6's silently at compat mode 0) and shrinks the groups
//     that hold it, moving the routes over those.
//
// So the model shows every route over an object as compat mode 1 does,
// with the object's next hops expanded, and the listener changes the
// routes itself when an object changes or goes.
type objects struct {
	byID map[uint32]NexthopMessage
	// users counts the model's routes naming each object, by table and
	// prefix: what to look at when an object changes.
	users map[uint32]map[tablePrefix]int
}

// tablePrefix is a route's table and prefix as a key without pointers
// (pkey), so the index costs the collector nothing however many routes
// name objects.
type tablePrefix struct {
	table uint32
	k     pkey.Key
}

func keyOf(r *fib.Route) tablePrefix { return tablePrefix{r.Table, pkey.Of(r.Prefix)} }

func newObjects(msgs []NexthopMessage) objects {
	o := objects{byID: make(map[uint32]NexthopMessage, len(msgs)), users: map[uint32]map[tablePrefix]int{}}
	for _, m := range msgs {
		o.byID[m.ID] = m
	}
	return o
}

// expand gives a route that names an object and no next hop of its own
// (compat mode 0) the object's next hops, as the kernel would show them at
// compat mode 1. A route over an object not known, or one that drops
// (blackhole), is left as it is.
func (o objects) expand(r *fib.Route) {
	if r.NHID == 0 || len(r.Nexthops) > 0 {
		return
	}
	nhs, encap, ok := o.nexthops(r.NHID)
	if !ok {
		return
	}
	r.Nexthops = nhs
	r.Unmodelled = r.Unmodelled || encap
}

// nexthops is where a route over the object leads: a single nexthop, or a
// group's members with their weights. ok is false for an object not known,
// one that drops (blackhole) or an FDB one, and for a group with such a
// member.
func (o objects) nexthops(id uint32) (nhs []fib.Nexthop, encap, ok bool) {
	obj, ok := o.byID[id]
	if !ok || obj.Blackhole || obj.FDB {
		return nil, false, false
	}
	if obj.Group == nil {
		return []fib.Nexthop{single(obj)}, obj.Encap, true
	}
	nhs = make([]fib.Nexthop, 0, len(obj.Group))
	for _, g := range obj.Group {
		m, ok := o.byID[g.ID]
		if !ok || m.Blackhole || m.FDB || m.Group != nil {
			return nil, false, false
		}
		nh := single(m)
		nh.Weight = g.Weight
		nhs = append(nhs, nh)
		encap = encap || m.Encap
	}
	return nhs, encap, true
}

// single is a single nexthop object as a route's next hop.
func single(m NexthopMessage) fib.Nexthop {
	return fib.Nexthop{Gateway: m.Gateway, LinkIndex: m.LinkIndex, Flags: m.Flags & fib.RTNHFOnlink}
}

// note keeps users up to date with a change of the model.
func (o objects) note(c fib.Change) {
	if c.Old != nil && c.Old.NHID != 0 {
		k := keyOf(c.Old)
		if u := o.users[c.Old.NHID]; u[k] <= 1 {
			delete(u, k)
			if len(u) == 0 {
				delete(o.users, c.Old.NHID)
			}
		} else {
			u[k]--
		}
	}
	if c.New != nil && c.New.NHID != 0 {
		u := o.users[c.New.NHID]
		if u == nil {
			u = map[tablePrefix]int{}
			o.users[c.New.NHID] = u
		}
		u[keyOf(c.New)]++
	}
}

// changed takes an object's notification and returns what it did to the
// model's routes that the kernel does not announce: the routes over a
// deleted object removed (IPv6's only at compat mode 0, read by compat0
// when needed: at 1 the kernel announces them), and the routes over an
// object replaced in place, or over a group holding it, moved to where it
// leads now. At compat mode 1 the kernel's own notifications of the
// latter follow and find the model already right.
func (o objects) changed(m NexthopMessage, model *fib.FIB, compat0 func() bool) []fib.Message {
	var out []fib.Message
	if m.Deleted {
		delete(o.byID, m.ID)
		v6silent, asked := false, false
		for _, r := range o.routesOver(model, m.ID) {
			if r.Family() == fib.IPv6 {
				if !asked {
					v6silent, asked = compat0(), true
				}
				if !v6silent {
					continue
				}
			}
			out = append(out, fib.Message{Type: fib.DelRoute, Route: r})
		}
		return out
	}
	o.byID[m.ID] = m
	if len(o.users) == 0 {
		return nil // no route names an object (a daemon adding its objects first)
	}
	ids := []uint32{m.ID}
	for id, g := range o.byID {
		if slices.ContainsFunc(g.Group, func(gm GroupMember) bool { return gm.ID == m.ID }) {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		for _, r := range o.routesOver(model, id) {
			now := r.Clone()
			now.Nexthops = nil
			o.expand(&now)
			if len(now.Nexthops) == 0 || sameNexthops(now.Nexthops, r.Nexthops) {
				continue
			}
			out = append(out, fib.Message{Type: fib.NewRoute, NLFlags: fib.NLMReplace, Route: now})
		}
	}
	return out
}

// routesOver are the model's routes that name object id.
func (o objects) routesOver(model *fib.FIB, id uint32) []fib.Route {
	var out []fib.Route
	for k := range o.users[id] {
		for _, r := range model.Routes(k.table, k.k.Prefix()) {
			if r.NHID == id {
				out = append(out, r)
			}
		}
	}
	return out
}

// sameNexthops compares next hops by the kernel's rules, in order.
func sameNexthops(a, b []fib.Nexthop) bool {
	return slices.EqualFunc(a, b, fib.Nexthop.SameAs)
}
