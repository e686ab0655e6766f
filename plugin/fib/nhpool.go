package fib

import (
	"encoding/binary"
	"slices"
)

// nhPool shares next-hop lists among a FIB's stored routes, as the kernel
// shares one fib_info among the routes with the same next hops. A leaf's
// table has a handful of distinct lists (its spines, in a few hardware
// states), so a stored route names its list by a 4-byte id (issue 10: 300
// bytes a route for all of fibgate's state) and holds no pointer to it.
//
// A shared list is never written: a change of one path's hardware state
// stores another list (withHW), and a route handed out keeps the list it
// was given. Lists are counted by the records that name them (shared), so
// churn through distinct next hops does not pile them up.
type nhPool struct {
	shared[string, []Nexthop]                     // encoding -> list
	byFirst                   map[*Nexthop]uint32 // a held list's first element -> its id
	buf                       []byte
	tmp                       []Nexthop
}

// intern returns a list equal to nhs that other routes may share, with no
// spare capacity (so an append copies). nhs itself is not kept.
func (p *nhPool) intern(nhs []Nexthop) []Nexthop {
	l, _ := p.interned(nhs)
	return l
}

// idOf is the id of nhs, interned first when it is not a held list; 0 for
// no next hops. The count is the caller's to take.
func (p *nhPool) idOf(nhs []Nexthop) uint32 {
	_, id := p.interned(nhs)
	return id
}

// interned is intern with the list's id: one lookup for a list that is
// the pool's already, as every stored route's is when commit packs it.
func (p *nhPool) interned(nhs []Nexthop) ([]Nexthop, uint32) {
	if len(nhs) == 0 {
		return nhs, 0
	}
	if id, ok := p.byFirst[&nhs[0]]; ok && len(p.get(id)) == len(nhs) {
		return nhs, id // one of ours already
	}
	p.buf = p.buf[:0]
	for _, nh := range nhs {
		p.buf = appendNexthop(p.buf, nh)
	}
	if id, ok := p.find(string(p.buf)); ok {
		return p.get(id), id
	}
	shared := make([]Nexthop, len(nhs))
	copy(shared, nhs)
	if p.byFirst == nil {
		p.byFirst = map[*Nexthop]uint32{}
	}
	id := p.add(string(p.buf), shared)
	p.byFirst[&shared[0]] = id
	return shared, id
}

// list is the list of id, nil for 0.
func (p *nhPool) list(id uint32) []Nexthop {
	if id == 0 {
		return nil
	}
	return p.get(id)
}

// sweep frees the lists no stored route names.
func (p *nhPool) sweep() {
	p.shared.sweep(func(nhs []Nexthop) { delete(p.byFirst, &nhs[0]) })
}

// withHW returns nhs with path i's hardware state set to hw, shared.
func (p *nhPool) withHW(nhs []Nexthop, i int, hw HWFlags) []Nexthop {
	if nhs[i].HW == hw {
		return nhs
	}
	p.tmp = append(p.tmp[:0], nhs...)
	p.tmp[i].HW = hw
	return p.intern(p.tmp)
}

// cleared returns nhs without hardware state, shared; nhs is not written.
func (p *nhPool) cleared(nhs []Nexthop) []Nexthop {
	if len(nhs) == 0 {
		return slices.Clone(nhs) // as Route.Clone: nil stays nil
	}
	p.tmp = append(p.tmp[:0], nhs...)
	for i := range p.tmp {
		p.tmp[i].HW = 0
		p.tmp[i].Flags &^= RTNHFOffload | RTNHFTrap
	}
	return p.intern(p.tmp)
}

// withHWOf returns nhs with every path's hardware state taken from the
// same paths in from, shared.
func (p *nhPool) withHWOf(nhs, from []Nexthop) []Nexthop {
	p.tmp = append(p.tmp[:0], nhs...)
	for i := range p.tmp {
		p.tmp[i].HW = from[i].HW
	}
	return p.intern(p.tmp)
}

// appendNexthop encodes every field of nh: two lists share only when equal.
func appendNexthop(b []byte, nh Nexthop) []byte {
	g := nh.Gateway
	switch {
	case !g.IsValid():
		b = append(b, 0)
	case g.Is4():
		a := g.As4()
		b = append(append(b, 4), a[:]...)
	default:
		a := g.As16()
		z := g.Zone()
		b = append(append(b, 6), a[:]...)
		b = append(append(b, byte(len(z))), z...)
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(nh.LinkIndex))
	b = binary.LittleEndian.AppendUint64(b, uint64(nh.Weight))
	b = binary.LittleEndian.AppendUint32(b, nh.Flags)
	return append(b, byte(nh.HW))
}
