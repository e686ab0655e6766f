package fib

import (
	"encoding/binary"
	"slices"
	"unsafe"
	"weak"
)

// nhPool shares next-hop lists among a FIB's stored routes, as the kernel
// shares one fib_info among the routes with the same next hops. A leaf's
// table has a handful of distinct lists (its spines, in a few hardware
// states), so a stored route's list costs nothing of its own instead of 48
// bytes a path (issue 10: 300 bytes a route for all of fibgate's state).
//
// A shared list is never written: a change of one path's hardware state
// stores another list (withHW). The pool holds its lists weakly, so a list
// no route uses any more is collected; the pool drops such entries as it
// grows (sweep).
type nhPool struct {
	lists map[string]weak.Pointer[Nexthop] // encoding -> first element of the list
	buf   []byte
	tmp   []Nexthop
	sweep int // sweep when the pool has this many lists
}

// intern returns a list equal to nhs that other routes may share, with no
// spare capacity (so an append copies). nhs itself is not kept.
func (p *nhPool) intern(nhs []Nexthop) []Nexthop {
	if len(nhs) == 0 {
		return nhs
	}
	p.buf = p.buf[:0]
	for _, nh := range nhs {
		p.buf = appendNexthop(p.buf, nh)
	}
	if first := p.lists[string(p.buf)].Value(); first != nil {
		return unsafe.Slice(first, len(nhs))
	}
	if p.lists == nil {
		p.lists, p.sweep = map[string]weak.Pointer[Nexthop]{}, 64
	}
	if len(p.lists) >= p.sweep {
		for k, w := range p.lists {
			if w.Value() == nil {
				delete(p.lists, k)
			}
		}
		p.sweep = max(64, 2*len(p.lists))
	}
	shared := make([]Nexthop, len(nhs))
	copy(shared, nhs)
	p.lists[string(p.buf)] = weak.Make(&shared[0])
	return shared
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
