package reexport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/k-sone/critbitgo"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/fibgate/fibgate/plugin/gobgp/internal/pinned"
)

// This file adds a release's entries to a held set the way GoBGP's
// AddDefinedSet would (newDefinedSetFromApiStruct, then PrefixSet.Append),
// with 3 live objects an entry instead of 7.5 and 3 allocations instead of
// 18 (BenchmarkHeldSetAdd).
//
// Why: at a full table the held set holds a carve-out per released prefix,
// and GoBGP builds each from the API's text: net.ParseCIDR's IPNet, its
// address and mask, a *table.Prefix, a one-element []*table.Prefix boxed
// into an interface, the critbit key and nodes, plus a temporary critbit
// tree that Append walks and drops. That was a third of all the live
// objects of gobgpd-ext's heap at the full table, which every collection
// marks (docs/design-notes.md, "The held set's entries in one object").
// Here an entry's table.Prefix, its one-element list, its
// IPNet, the address bytes and the critbit key are one allocation, the
// mask is shared per length, and the interface is made to point at the
// list inside it: an entry is that object and critbit's two nodes.
//
// The objects are GoBGP's and critbitgo's types as far as anything
// reading them can tell: the layouts are checked field by field (name,
// type, offset) against the live set's own types before the first edit,
// critbitgo's keys against a scratch tree of its own making, and any doubt
// (a set GoBGP has not got, another family, an IPv4-mapped IPv6 prefix,
// an invalid prefix) leaves the edit to GoBGP's own path.

// prefixEntry mirrors table.Prefix (checked by sameLayout in learnList).
type prefixEntry struct {
	Prefix             *net.IPNet
	AddressFamily      bgp.RouteFamily
	MasklengthRangeMax uint8
	MasklengthRangeMin uint8
}

// heldEntry is one set entry's objects in one allocation: list is the
// []*table.Prefix the critbit value's interface points at, one its
// backing array, p the table.Prefix, n its IPNet; key is the critbit key
// (the address bytes and the length, as critbitgo makes it from an
// IPNet), whose address bytes are also n's IP.
type heldEntry struct {
	list []*prefixEntry
	one  [1]*prefixEntry
	p    prefixEntry
	n    net.IPNet
	key  [17]byte
}

// trieOf is a critbitgo.Net's trie, its one field (checkNet).
func trieOf(n *critbitgo.Net) *critbitgo.Trie { return *(**critbitgo.Trie)(unsafe.Pointer(n)) }

// keyOf writes p's critbit key into buf and returns it with the address
// part, which is also the IPNet's IP.
func keyOf(buf *[17]byte, p netip.Prefix) (key, ip []byte) {
	n := 16
	if p.Addr().Is4() {
		a := p.Addr().As4()
		n = copy(buf[:], a[:])
	} else {
		a := p.Addr().As16()
		copy(buf[:], a[:])
	}
	buf[n] = byte(p.Bits())
	return buf[:n+1], buf[:n:n]
}

// checkNet checks that a critbitgo.Net is its trie alone and that keyOf
// makes the keys critbitgo makes, on a scratch Net of both families.
func checkNet() error {
	t := reflect.TypeFor[critbitgo.Net]()
	if t.NumField() != 1 || t.Field(0).Name != "trie" || t.Field(0).Type != reflect.TypeFor[*critbitgo.Trie]() {
		return fmt.Errorf("critbitgo.Net is not {trie *Trie}: %d fields", t.NumField())
	}
	n := critbitgo.NewNet()
	for i, s := range []string{"192.0.2.0/24", "0.0.0.0/0", "2001:db8::/48", "::/0", "10.1.2.3/32"} {
		if err := n.AddCIDR(s, i); err != nil {
			return err
		}
		var buf [17]byte
		k, _ := keyOf(&buf, netip.MustParsePrefix(s))
		if v, ok := trieOf(n).Get(k); !ok || v != i {
			return fmt.Errorf("critbitgo's key for %s is not its address bytes and length", s)
		}
	}
	return nil
}

// eface is an empty interface's two words.
type eface struct {
	typ, data unsafe.Pointer
}

// setTypes is what direct edits learned, once, from a live prefix set.
type setTypes struct {
	set          reflect.Type   // *table.PrefixSet
	tree, family uintptr        // its fields' offsets
	listType     unsafe.Pointer // []*table.Prefix's type word; nil until a value was seen
}

var (
	typesMu  sync.Mutex
	types    *setTypes // nil until learned
	typesErr error     // set when a check failed: direct edits stay off

	// masks are shared by every entry of a length: nothing writes an
	// IPNet's mask.
	masks4, masks6 = cidrMasks(32), cidrMasks(128)
)

func cidrMasks(bits int) []net.IPMask {
	m := make([]net.IPMask, bits+1)
	for i := range m {
		m[i] = net.CIDRMask(i, bits)
	}
	return m
}

// DirectEdits says whether the held sets' additions go through this file
// (nil) or why they go through GoBGP's own path: for tests and
// diagnostics; either way the set ends up the same.
func DirectEdits() error {
	typesMu.Lock()
	defer typesMu.Unlock()
	switch {
	case typesErr != nil:
		return typesErr
	case types == nil || types.listType == nil:
		return errors.New("no prefix set edited yet")
	}
	return nil
}

// setLayout returns the fields' layout of set, a live *table.PrefixSet,
// checking it the first time, without needing a value seen (typesFor).
// nil means GoBGP's path.
func setLayout(set reflect.Value) *setTypes {
	typesMu.Lock()
	defer typesMu.Unlock()
	return setLayoutLocked(set)
}

// setLayoutLocked is setLayout with typesMu held.
func setLayoutLocked(set reflect.Value) *setTypes {
	if typesErr != nil {
		return nil
	}
	if types == nil {
		if types, typesErr = learnSet(set.Type()); typesErr != nil {
			return nil
		}
	}
	if types.set != set.Type() {
		return nil
	}
	return types
}

// typesFor is setLayout with the type of the set's values learned too,
// from set's own tree if no value was seen yet. nil means GoBGP's path.
func typesFor(set reflect.Value) *setTypes {
	typesMu.Lock()
	defer typesMu.Unlock()
	st := setLayoutLocked(set)
	if st == nil {
		return nil
	}
	if st.listType == nil {
		if st.listType, typesErr = learnList(st.treeOf(set)); typesErr != nil || st.listType == nil {
			return nil // an empty set tells nothing: learn from the next one
		}
	}
	return st
}

// learnSet checks *table.PrefixSet's fields.
func learnSet(t reflect.Type) (*setTypes, error) {
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct || t.String() != "*table.PrefixSet" {
		return nil, fmt.Errorf("a prefix set is %s, want *table.PrefixSet", t)
	}
	if err := checkNet(); err != nil {
		return nil, err
	}
	st := &setTypes{set: t}
	f, err := pinned.Field(t.Elem(), "tree", "*critbitgo.Net")
	if err != nil {
		return nil, err
	}
	st.tree = f.Offset
	if f, err = pinned.Field(t.Elem(), "family", "bgp.RouteFamily"); err != nil {
		return nil, err
	}
	st.family = f.Offset
	return st, nil
}

// learnList checks the type of tree's values against prefixEntry and
// returns its type word, or nil for an empty tree.
func learnList(tree *critbitgo.Net) (unsafe.Pointer, error) {
	var v any
	tree.Walk(nil, func(_ *net.IPNet, x any) bool { v = x; return false })
	if v == nil {
		return nil, nil
	}
	lt := reflect.TypeOf(v)
	if lt.String() != "[]*table.Prefix" || lt.Kind() != reflect.Slice || lt.Elem().Kind() != reflect.Pointer {
		return nil, fmt.Errorf("a prefix set's value is %s, want []*table.Prefix", lt)
	}
	if err := sameLayout(lt.Elem().Elem(), reflect.TypeFor[prefixEntry]()); err != nil {
		return nil, err
	}
	return (*eface)(unsafe.Pointer(&v)).typ, nil
}

// sameLayout says whether GoBGP's struct got and the mirror want have the
// same fields (names, types, offsets) and size.
func sameLayout(got, want reflect.Type) error {
	if got.Size() != want.Size() || got.NumField() != want.NumField() {
		return fmt.Errorf("%s is %d bytes in %d fields, want %d in %d", got, got.Size(), got.NumField(), want.Size(), want.NumField())
	}
	for i := range want.NumField() {
		g, w := got.Field(i), want.Field(i)
		if g.Name != w.Name || g.Type.String() != w.Type.String() || g.Offset != w.Offset {
			return fmt.Errorf("%s field %d is %s %s at %d, want %s %s at %d", got, i, g.Name, g.Type, g.Offset, w.Name, w.Type, w.Offset)
		}
	}
	return nil
}

// familyOf is the one family of a set's entries, as GoBGP names it from
// the text (an IPv6 prefix's has a colon); ok is false if one of them is
// for GoBGP's path (an IPv4-mapped IPv6 prefix, which critbitgo keys as
// IPv4, or one with a zone), or they are of two families (which GoBGP
// refuses), or there are none.
func familyOf(es []Entry) (rf bgp.RouteFamily, ok bool) {
	for i, e := range es {
		a := e.Prefix.Addr()
		if !e.Prefix.IsValid() || a.Is4In6() || a.Zone() != "" {
			return 0, false
		}
		f := bgp.RF_IPv4_UC
		if a.Is6() {
			f = bgp.RF_IPv6_UC
		}
		if i > 0 && f != rf {
			return 0, false
		}
		rf = f
	}
	return rf, len(es) > 0
}

// prefixSets is pol's (a *table.RoutingPolicy's) map of prefix sets by
// name, or the zero Value if it has none; the policy's lock must be held.
func prefixSets(pol unsafe.Pointer) reflect.Value {
	return reflect.NewAt(lay.definedSets.Type, unsafe.Add(pol, lay.definedSets.Offset)).Elem().
		MapIndex(reflect.ValueOf(int(api.DefinedType_PREFIX)).Convert(lay.definedSets.Type.Key()))
}

// setOf is the pointer v, a value of that map (a table.DefinedSet, or the
// zero Value of a name it has not got), holds; ok is false for a missing,
// nil or non-pointer one.
func setOf(v reflect.Value) (set reflect.Value, ok bool) {
	if !v.IsValid() {
		return reflect.Value{}, false
	}
	set = v.Elem()
	return set, set.Kind() == reflect.Pointer && !set.IsNil()
}

// treeOf reads set's critbit tree.
func (st *setTypes) treeOf(set reflect.Value) *critbitgo.Net {
	return *(**critbitgo.Net)(unsafe.Add(set.UnsafePointer(), st.tree))
}

// addDirect adds a's entries to the existing prefix set of its name in
// pol (a *table.RoutingPolicy), as AddDefinedSet(set, false) would. It
// returns false, having changed nothing, when GoBGP's own path should do
// it.
func addDirect(pol unsafe.Pointer, a Edit) bool {
	rf, ok := familyOf(a.Entries)
	if !ok {
		return false
	}
	mu := (*sync.RWMutex)(unsafe.Add(pol, lay.policyMu.Offset))
	mu.Lock()
	defer mu.Unlock()
	m := prefixSets(pol)
	if !m.IsValid() {
		return false
	}
	set, ok := setOf(m.MapIndex(reflect.ValueOf(a.Name)))
	if !ok {
		return false
	}
	st := typesFor(set)
	if st == nil {
		return false
	}
	tree := st.treeOf(set)
	if tree == nil || tree.Size() == 0 {
		return false // Append's family rule differs for an empty set
	}
	if *(*bgp.RouteFamily)(unsafe.Add(set.UnsafePointer(), st.family)) != rf {
		return false // GoBGP refuses to append another family
	}
	tr := trieOf(tree)
	for _, e := range a.Entries {
		p := e.Prefix.Masked()
		h := &heldEntry{}
		h.one[0] = &h.p
		h.list = h.one[:]
		key, ip := keyOf(&h.key, p)
		h.p = prefixEntry{Prefix: &h.n, AddressFamily: rf, MasklengthRangeMax: e.MaxLen, MasklengthRangeMin: e.MinLen}
		masks := masks6
		if rf == bgp.RF_IPv4_UC {
			masks = masks4
		}
		h.n = net.IPNet{IP: ip, Mask: masks[p.Bits()]}
		val := eface{typ: st.listType, data: unsafe.Pointer(&h.list)}
		if w, ok := tr.Get(key); ok {
			// A node with entries already: Append stores append(lp,
			// rp...). Always into a new array here, where Append may
			// write into lp's spare capacity: the same list either way.
			lp := *(*[]*prefixEntry)((*eface)(unsafe.Pointer(&w)).data)
			nl := make([]*prefixEntry, len(lp)+1)
			copy(nl, lp)
			nl[len(lp)] = &h.p
			hdr := new([]*prefixEntry)
			*hdr = nl
			val.data = unsafe.Pointer(hdr)
		}
		tr.Set(key, *(*any)(unsafe.Pointer(&val)))
	}
	return true
}

// errUnread says ReadPrefixSets met something it does not read the way
// GoBGP's API would write it; the caller reads through the API instead.
var errUnread = errors.New("reexport: a prefix set GoBGP's API must read")

// ReadPrefixSets calls fn for each of s's prefix sets, by name, with the
// entries ListDefinedSet would list for it, read from the sets themselves
// under the policy's read lock.
//
// Why: the periodic audit and the gate's start read the held sets, a
// carve-out per released prefix. Through the API, at the full table,
// GoBGP's main loop writes each of a million entries as text (two
// Sprintfs; no UPDATE is handled meanwhile) and its handler parses the
// lengths back with a regular expression: about a second, 650 ns and 8
// allocations an entry (BenchmarkReadPrefixSets). Here the entries are
// copied out of the critbit trees (64-86 ns an entry, one slice a set),
// then fn runs with the lock released. It fails, having
// called fn for nothing, when the layouts are not known or an entry is
// of a form it does not read as the API would (an IPv4 prefix stored
// with an IPv6 mask, a mask that is not a prefix length): the caller then
// uses the API.
func ReadPrefixSets(s *server.BgpServer, fn func(name string, es []Entry)) error {
	if err := Available(); err != nil {
		return err
	}
	pol := *(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(s), lay.policy.Offset))
	if pol == nil {
		return errors.New("GoBGP has no policy yet")
	}
	type named struct {
		name string
		es   []Entry
	}
	var sets []named
	err := func() error {
		mu := (*sync.RWMutex)(unsafe.Add(pol, lay.policyMu.Offset))
		mu.RLock()
		defer mu.RUnlock()
		m := prefixSets(pol)
		if !m.IsValid() {
			return nil
		}
		for it := m.MapRange(); it.Next(); {
			set, ok := setOf(it.Value())
			if !ok {
				return errUnread
			}
			sl := setLayout(set)
			if sl == nil {
				return errUnread
			}
			tree := sl.treeOf(set)
			n := named{name: it.Key().String()}
			if tree != nil && tree.Size() > 0 {
				st := typesFor(set) // learns the value type from this tree
				if st == nil {
					return errUnread
				}
				n.es = make([]Entry, 0, tree.Size())
				var bad bool
				trieOf(tree).Walk(nil, func(_ []byte, v any) bool {
					if (*eface)(unsafe.Pointer(&v)).typ != st.listType {
						bad = true
						return false
					}
					for _, p := range *(*[]*prefixEntry)((*eface)(unsafe.Pointer(&v)).data) {
						pfx, ok := apiPrefix(p)
						if !ok {
							bad = true
							return false
						}
						n.es = append(n.es, Entry{pfx, p.MasklengthRangeMin, p.MasklengthRangeMax})
					}
					return true
				})
				if bad {
					return errUnread
				}
			}
			sets = append(sets, n)
		}
		return nil
	}()
	if err != nil {
		return err
	}
	slices.SortFunc(sets, func(a, b named) int { return strings.Compare(a.name, b.name) })
	for _, n := range sets {
		fn(n.name, n.es)
	}
	return nil
}

// apiPrefix is the prefix of a table.Prefix as netip.ParsePrefix reads
// the API's text of it (PrefixString): an IPv6 entry whose address is
// IPv4-mapped as "::FFFF:a.b.c.d/len", anything else as IPNet.String
// writes it.
func apiPrefix(p *prefixEntry) (netip.Prefix, bool) {
	if p.Prefix == nil {
		return netip.Prefix{}, false
	}
	ip, mask := p.Prefix.IP, p.Prefix.Mask
	ones, bits := mask.Size()
	if bits == 0 || (len(ip) != 4 && len(ip) != 16) {
		return netip.Prefix{}, false
	}
	a, _ := netip.AddrFromSlice(ip)
	switch {
	case p.AddressFamily == bgp.RF_IPv6_UC && len(ip) == 16 && a.Is4In6():
		return netip.PrefixFrom(a, ones), true
	case a.Is4In6() || a.Is4():
		if bits != 32 {
			return netip.Prefix{}, false // IPNet.String would print what ParsePrefix may not read alike
		}
		return netip.PrefixFrom(a.Unmap(), ones), true
	case bits != 128:
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}
