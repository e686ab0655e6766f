package reexport

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/k-sone/critbitgo"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// startServer runs a GoBGP without neighbours or listener, with held sets
// "h4" and "h6" holding what the gate's skeleton holds (the whole scope).
func startServer(t testing.TB) *server.BgpServer {
	t.Helper()
	s := server.NewBgpServer()
	go s.Serve()
	ctx := context.Background()
	if err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: 65000, RouterId: "192.0.2.1", ListenPort: -1}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.StopBgp(context.Background(), &api.StopBgpRequest{}) })
	for _, d := range []*api.DefinedSet{
		{DefinedType: api.DefinedType_PREFIX, Name: "h4", Prefixes: []*api.Prefix{{IpPrefix: "0.0.0.0/0", MaskLengthMin: 0, MaskLengthMax: 32}}},
		{DefinedType: api.DefinedType_PREFIX, Name: "h6", Prefixes: []*api.Prefix{{IpPrefix: "::/0", MaskLengthMin: 0, MaskLengthMax: 128}}},
	} {
		if err := s.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: d}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// treeOf reads the critbit tree of s's prefix set name, as addDirect
// finds it.
func treeOf(t *testing.T, s *server.BgpServer, name string) *critbitgo.Net {
	t.Helper()
	pol := *(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(s), lay.policy.Offset))
	m := reflect.NewAt(lay.definedSets.Type, unsafe.Add(pol, lay.definedSets.Offset)).Elem().
		MapIndex(reflect.ValueOf(int(api.DefinedType_PREFIX)).Convert(lay.definedSets.Type.Key()))
	set := m.MapIndex(reflect.ValueOf(name)).Elem()
	f, err := learnSet(set.Type())
	if err != nil {
		t.Fatal(err)
	}
	return *(**critbitgo.Net)(unsafe.Add(set.UnsafePointer(), f.tree))
}

// listOf is a set as ListDefinedSet lists it, sorted.
func listOf(t *testing.T, s *server.BgpServer, name string) []string {
	t.Helper()
	var out []string
	err := s.ListDefinedSet(context.Background(), &api.ListDefinedSetRequest{DefinedType: api.DefinedType_PREFIX, Name: name}, func(d *api.DefinedSet) {
		for _, p := range d.Prefixes {
			out = append(out, fmt.Sprintf("%s %d..%d", p.IpPrefix, p.MaskLengthMin, p.MaskLengthMax))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// matchOf is what GoBGP's prefix condition reads for a route p: the
// longest stored prefix containing it and the entries there.
func matchOf(tree *critbitgo.Net, p netip.Prefix) string {
	a := p.Addr()
	n := &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(p.Bits(), a.BitLen())}
	r, v, err := tree.Match(n)
	if err != nil || r == nil {
		return fmt.Sprintf("none (%v)", err)
	}
	out := r.String()
	for _, e := range *(*[]*prefixEntry)((*eface)(unsafe.Pointer(&v)).data) {
		out += fmt.Sprintf(" [%s f%d %d..%d]", e.Prefix, e.AddressFamily, e.MasklengthRangeMin, e.MasklengthRangeMax)
	}
	return out
}

// TestDirectEditsLeaveTheSetGoBGPWould: the same release edits, applied by
// Run with direct additions on one GoBGP and through GoBGP's own
// AddDefinedSet path on another, leave sets that list the same entries,
// match every route the same way (the longest stored prefix and its
// entries, which is all GoBGP's prefix condition reads), and lose the
// same entries to GoBGP's own DeleteDefinedSet. Edits GoBGP refuses or
// reads its own way (another family, an IPv4-mapped prefix, an unknown
// set) fail or succeed as GoBGP makes them.
func TestDirectEditsLeaveTheSetGoBGPWould(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var v4, v6 []netip.Prefix
	for range 3000 {
		a := netip.AddrFrom4([4]byte{byte(1 + rng.IntN(220)), byte(rng.IntN(256)), byte(rng.IntN(256)), 0})
		v4 = append(v4, netip.PrefixFrom(a, 16+rng.IntN(9)).Masked())
		var b [16]byte
		b[0], b[1], b[2], b[3], b[4], b[5] = 0x20, 0x01, 0x0d, 0xb8, byte(rng.IntN(256)), byte(rng.IntN(256))
		v6 = append(v6, netip.PrefixFrom(netip.AddrFrom16(b), 32+rng.IntN(17)).Masked())
	}
	// A release's carve-outs (the prefix's lengths below it), some twice,
	// some nodes with two entries, and the scope node itself once more.
	carve := func(name string, ps []netip.Prefix, max int) Edit {
		e := Edit{Name: name}
		for i, p := range ps {
			e.Entries = append(e.Entries, Entry{p, uint8(p.Bits() + 1), uint8(max)})
			if i%7 == 0 {
				e.Entries = append(e.Entries, Entry{p, uint8(p.Bits()), uint8(p.Bits())})
			}
		}
		return e
	}
	one := func(name, p string, lo, hi uint8) Edit {
		return Edit{Name: name, Entries: []Entry{{netip.MustParsePrefix(p), lo, hi}}}
	}
	edits := []Edit{
		carve("h4", v4[:1500], 32),
		carve("h6", v6[:1500], 128),
		carve("h4", v4[1000:], 32), // a third again: nodes with entries already
		carve("h6", v6[1000:], 128),
		one("h4", "0.0.0.0/0", 0, 24),
		one("h6", "::ffff:10.0.0.0/104", 105, 128), // critbitgo keys it as IPv4
		one("h4", "10.0.0.1/8", 9, 32),             // not masked
	}
	refused := [][]Edit{
		{carve("h6", v4[:3], 32)}, // another family
		{{Name: "h4", Entries: []Entry{{netip.MustParsePrefix("10.0.0.0/8"), 8, 8}, {netip.MustParsePrefix("2001:db8::/32"), 32, 32}}}}, // two families
		{{Name: "h4", Entries: []Entry{{}}}}, // no prefix
	}
	newSet := one("fresh", "192.0.2.0/24", 24, 24)

	direct, gobgp := startServer(t), startServer(t)
	ctx := context.Background()
	run := func(s *server.BgpServer, off bool) (errs []string) {
		directOff = off
		defer func() { directOff = false }()
		if err := Run(ctx, s, edits, nil); err != nil {
			t.Fatalf("Run: %v", err)
		}
		for _, e := range refused {
			errs = append(errs, fmt.Sprint(Run(ctx, s, e, nil)))
		}
		if err := Run(ctx, s, []Edit{newSet}, nil); err != nil {
			t.Fatalf("Run on a set GoBGP does not have: %v", err)
		}
		return errs
	}
	errsD, errsG := run(direct, false), run(gobgp, true)
	if err := DirectEdits(); err != nil {
		t.Fatalf("direct additions were not used: %v", err)
	}
	if !slices.Equal(errsD, errsG) {
		t.Errorf("refused edits: direct %q, GoBGP %q", errsD, errsG)
	}
	for i, e := range errsG {
		if e == "<nil>" {
			t.Errorf("refused edit %d was taken by GoBGP: the test lost its point", i)
		}
	}
	compare := func(when string) {
		t.Helper()
		for _, name := range []string{"h4", "h6", "fresh"} {
			if d, g := listOf(t, direct, name), listOf(t, gobgp, name); !slices.Equal(d, g) {
				t.Errorf("%s: set %s: direct lists %d entries, GoBGP %d; first differences: %v", when, name, len(d), len(g), firstDiff(d, g))
			}
		}
		probes := slices.Concat(v4, v6)
		for _, p := range slices.Concat(v4, v6) {
			if p.Bits() < p.Addr().BitLen() {
				probes = append(probes, netip.PrefixFrom(p.Addr(), p.Bits()+1), netip.PrefixFrom(p.Addr(), p.Bits()-1).Masked())
			}
		}
		probes = append(probes, netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("::ffff:10.0.0.0/104"))
		bad := 0
		for _, p := range probes {
			name := "h4"
			if p.Addr().Is6() {
				name = "h6"
			}
			if d, g := matchOf(treeOf(t, direct, name), p), matchOf(treeOf(t, gobgp, name), p); d != g {
				if bad++; bad <= 5 {
					t.Errorf("%s: %v matches %.200q directly, %.200q through GoBGP", when, p, d, g)
				}
			}
		}
	}
	compare("after the additions")
	if t.Failed() {
		return
	}
	// The direct read lists what the API lists, as readSets parses it.
	for _, s := range []*server.BgpServer{direct, gobgp} {
		if err := s.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{DefinedType: api.DefinedType_PREFIX, Name: "empty"}}); err != nil {
			t.Fatal(err)
		}
		viaAPI, direct := readViaAPI(t, s), readDirect(t, s)
		if !reflect.DeepEqual(viaAPI, direct) {
			for name := range viaAPI {
				if d, g := direct[name], viaAPI[name]; !slices.Equal(d, g) {
					t.Errorf("set %s: ReadPrefixSets read %d entries, ListDefinedSet %d; first differences: %v", name, len(d), len(g), firstDiff(d, g))
				}
			}
			if len(viaAPI) != len(direct) {
				t.Errorf("ReadPrefixSets read %d sets, ListDefinedSet %d", len(direct), len(viaAPI))
			}
		}
		if len(viaAPI["h4"]) < 4000 || len(viaAPI["h6"]) < 3000 {
			t.Errorf("the sets read are too small: h4 %d, h6 %d", len(viaAPI["h4"]), len(viaAPI["h6"]))
		}
	}
	// GoBGP's own deletion finds and removes direct entries as its own.
	del := []Edit{carve("h4", v4[500:2500], 32), carve("h6", v6[500:2500], 128)}
	for i := range del {
		del[i].Delete = true
	}
	for _, s := range []*server.BgpServer{direct, gobgp} {
		if err := Run(ctx, s, del, nil); err != nil {
			t.Fatal(err)
		}
	}
	compare("after deleting some")
	if n := len(listOf(t, direct, "h4")); n < 1000 || n > 3000 {
		t.Errorf("h4 has %d entries after the deletion: the deletion did not delete what it should", n)
	}
}

func firstDiff(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) && len(out) < 3 {
			out = append(out, "direct only: "+s)
		}
	}
	for _, s := range b {
		if !slices.Contains(a, s) && len(out) < 6 {
			out = append(out, "GoBGP only: "+s)
		}
	}
	return out
}

// TestDirectLayoutChecks: a mirror of another shape, or a value type that
// is not GoBGP's list of prefixes, is refused.
func TestDirectLayoutChecks(t *testing.T) {
	type other struct {
		Prefix        *net.IPNet
		AddressFamily int
		Max, Min      uint8
	}
	if err := sameLayout(reflect.TypeFor[other](), reflect.TypeFor[prefixEntry]()); err == nil || !strings.Contains(err.Error(), "field 1") {
		t.Errorf("a struct of other field types passed: %v", err)
	}
	n := critbitgo.NewNet()
	_ = n.AddCIDR("10.0.0.0/8", []*prefixEntry{})
	if _, err := learnList(n); err == nil || !strings.Contains(err.Error(), "want []*table.Prefix") {
		t.Errorf("a tree of another value type passed: %v", err)
	}
	if _, err := learnSet(reflect.TypeFor[*heldEntry]()); err == nil {
		t.Error("another set type passed")
	}
}

// BenchmarkHeldSetAdd adds a release's carve-outs to a held set of
// 100,000, through direct additions and through GoBGP's own path, and
// reports the time, the allocations and the live heap an entry
// (`go test -bench HeldSetAdd -benchmem ./plugin/gobgp/internal/reexport`).
func BenchmarkHeldSetAdd(b *testing.B) {
	if err := Available(); err != nil {
		b.Fatal(err)
	}
	const batch = 1000
	for _, c := range []struct {
		name string
		off  bool
	}{{"direct", false}, {"gobgp", true}} {
		b.Run(c.name, func(b *testing.B) {
			s := startServer(b)
			next := uint32(0x0b000000) // 11.0.0.0, /24s upwards
			edit := func() Edit {
				e := Edit{Name: "h4", Entries: make([]Entry, batch)}
				for i := range e.Entries {
					a := netip.AddrFrom4([4]byte{byte(next >> 24), byte(next >> 16), byte(next >> 8), 0})
					e.Entries[i] = Entry{netip.PrefixFrom(a, 24), 25, 32}
					next += 256
				}
				return e
			}
			ctx := context.Background()
			directOff = c.off
			defer func() { directOff = false }()
			for range 100 { // a held set of 100,000 first
				if err := Run(ctx, s, []Edit{edit()}, nil); err != nil {
					b.Fatal(err)
				}
			}
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			b.ResetTimer()
			for b.Loop() {
				e := edit()
				if err := Run(ctx, s, []Edit{e}, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&m1)
			n := float64(b.N * batch)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/entry")
			b.ReportMetric(float64(m1.HeapObjects-m0.HeapObjects)/n, "live-objects/entry")
			b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/n, "live-B/entry")
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/n, "allocs/entry")
		})
	}
}

// readViaAPI reads every prefix set through ListDefinedSet, entries as
// netip parses them (plugin/gobgp's readSets), sorted.
func readViaAPI(t *testing.T, s *server.BgpServer) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := s.ListDefinedSet(context.Background(), &api.ListDefinedSetRequest{DefinedType: api.DefinedType_PREFIX}, func(d *api.DefinedSet) {
		l := []string{}
		for _, e := range d.Prefixes {
			p, err := netip.ParsePrefix(e.IpPrefix)
			if err != nil {
				t.Errorf("set %s: %q: %v", d.Name, e.IpPrefix, err)
			}
			l = append(l, fmt.Sprintf("%s %d..%d", p, e.MaskLengthMin, e.MaskLengthMax))
		}
		slices.Sort(l)
		out[d.Name] = l
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readDirect is readViaAPI through ReadPrefixSets.
func readDirect(t *testing.T, s *server.BgpServer) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := ReadPrefixSets(s, func(name string, es []Entry) {
		l := []string{}
		for _, e := range es {
			l = append(l, fmt.Sprintf("%s %d..%d", e.Prefix, e.MinLen, e.MaxLen))
		}
		slices.Sort(l)
		out[name] = l
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// BenchmarkReadPrefixSets reads a held set of 200,000 carve-outs through
// ReadPrefixSets and through ListDefinedSet with netip's parse (what
// plugin/gobgp's readSets did), reporting the time and allocations an
// entry.
func BenchmarkReadPrefixSets(b *testing.B) {
	s := startServer(b)
	ctx := context.Background()
	next := uint32(0x0b000000)
	for range 200 {
		e := Edit{Name: "h4", Entries: make([]Entry, 1000)}
		for i := range e.Entries {
			a := netip.AddrFrom4([4]byte{byte(next >> 24), byte(next >> 16), byte(next >> 8), 0})
			e.Entries[i] = Entry{netip.PrefixFrom(a, 24), 25, 32}
			next += 256
		}
		if err := Run(ctx, s, []Edit{e}, nil); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		read func() int
	}{
		{"direct", func() int {
			n := 0
			if err := ReadPrefixSets(s, func(_ string, es []Entry) { n += len(es) }); err != nil {
				b.Fatal(err)
			}
			return n
		}},
		{"api", func() int {
			n := 0
			err := s.ListDefinedSet(ctx, &api.ListDefinedSetRequest{DefinedType: api.DefinedType_PREFIX}, func(d *api.DefinedSet) {
				for _, e := range d.Prefixes {
					if _, err := netip.ParsePrefix(e.IpPrefix); err == nil {
						n++
					}
				}
			})
			if err != nil {
				b.Fatal(err)
			}
			return n
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			n := 0
			for b.Loop() {
				n += c.read()
			}
			runtime.ReadMemStats(&m1)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/entry")
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(n), "allocs/entry")
		})
	}
}
