//go:build linux

package kernel

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// `go test -run TestRecord -record ./plugin/kernel/` (as root) re-records
// the fixtures in testdata/recorded from this machine's kernel and seeds the
// fuzz corpora with them. The golden tests in codec_test.go then say what
// each message must decode to; after re-recording, review their failures.
var record = flag.Bool("record", false, "record netlink messages from the kernel into testdata/recorded and the fuzz corpora (needs root)")

// recordCase is one fixture: commands whose notifications are recorded,
// then a dump of the routes inside keep.
type recordCase struct {
	name  string
	about string
	setup [][]string // ip arguments run before recording (not recorded)
	cmds  [][]string // ip arguments whose notifications are recorded
	keep  []string   // prefixes whose routes are recorded from the dump
}

// base is the namespace every case starts from: d0 and d1 are veth devices
// (peers d0p, d1p) that are up with carrier; ifindexes are lo=1, d0p=2,
// d0=3, d1p=4, d1=5. IPv6 link-local addresses are disabled so that no
// asynchronous DAD messages interleave with the recording.
var recordBase = [][]string{
	{"link", "add", "d0", "type", "veth", "peer", "name", "d0p"},
	{"link", "add", "d1", "type", "veth", "peer", "name", "d1p"},
	{"link", "set", "d0p", "up"}, {"link", "set", "d1p", "up"},
	{"link", "set", "d0", "up"}, {"link", "set", "d1", "up"},
	{"addr", "add", "192.0.2.1/24", "dev", "d0"},
	{"addr", "add", "100.64.1.1/24", "dev", "d1"},
	{"-6", "addr", "add", "2001:db8:1::1/64", "dev", "d0", "nodad"},
	{"-6", "addr", "add", "2001:db8:2::1/64", "dev", "d1", "nodad"},
}

func recordCases() []recordCase {
	f := strings.Fields
	return []recordCase{
		{name: "ipv4-dev", about: "IPv4 device route",
			cmds: [][]string{f("route add 203.0.113.0/24 dev d0")}, keep: f("203.0.113.0/24")},
		{name: "ipv4-gateway", about: "IPv4 gateway route with proto and preferred source",
			cmds: [][]string{f("route add 198.51.100.0/24 via 192.0.2.2 proto bgp src 192.0.2.1")}, keep: f("198.51.100.0/24")},
		{name: "ipv4-multipath", about: "IPv4 multipath with weights",
			cmds: [][]string{f("route add 10.2.0.0/16 nexthop via 192.0.2.2 dev d0 weight 3 nexthop via 100.64.1.2 dev d1")}, keep: f("10.2.0.0/16")},
		{name: "ipv4-tos", about: "IPv4 routes differing only in TOS (dump order 0x08 before 0)",
			cmds: [][]string{f("route add 10.3.0.0/16 via 192.0.2.3"), f("route add 10.3.0.0/16 tos 0x08 via 192.0.2.2")}, keep: f("10.3.0.0/16")},
		{name: "ipv4-metric-ops", about: "IPv4 add, append, prepend, replace and delete at one metric (nlmsg flags)",
			cmds: [][]string{
				f("route add 10.4.0.0/16 via 192.0.2.2 metric 100"),
				f("route append 10.4.0.0/16 via 192.0.2.3 metric 100"),
				f("route prepend 10.4.0.0/16 via 192.0.2.4 metric 100"),
				f("route replace 10.4.0.0/16 via 192.0.2.5 metric 100"),
				f("route del 10.4.0.0/16 via 192.0.2.3 metric 100"),
			}, keep: f("10.4.0.0/16")},
		{name: "ipv4-types", about: "IPv4 blackhole, unreachable, prohibit and throw routes",
			cmds: [][]string{f("route add blackhole 10.5.0.0/16"), f("route add unreachable 10.6.0.0/16"),
				f("route add prohibit 10.7.0.0/16"), f("route add throw 10.8.0.0/16")},
			keep: f("10.5.0.0/16 10.6.0.0/16 10.7.0.0/16 10.8.0.0/16")},
		{name: "ipv4-local", about: "address add and delete: local-table entries and the prefix route",
			cmds: [][]string{f("addr add 203.0.113.1/24 dev d1"), f("addr del 203.0.113.1/24 dev d1"), f("addr add 203.0.113.1/24 dev d1")},
			keep: f("203.0.113.0/24")},
		{name: "ipv4-table", about: "IPv4 routes in table 100 and table 1000 (RTA_TABLE beyond rtm_table)",
			cmds: [][]string{f("route add 10.9.0.0/16 via 192.0.2.2 table 100"), f("route add 10.9.0.0/16 via 192.0.2.2 table 1000")},
			keep: f("10.9.0.0/16")},
		{name: "nexthop-compat1", about: "routes using nexthop objects with nexthop_compat_mode=1 (expanded)",
			setup: [][]string{f("nexthop add id 10 via 192.0.2.2 dev d0"), f("nexthop add id 11 via 100.64.1.2 dev d1"),
				f("nexthop add id 12 group 10,2/11"), f("nexthop add id 20 via 2001:db8:1::2 dev d0")},
			cmds: [][]string{f("route add 10.10.0.0/16 nhid 10"), f("route add 10.11.0.0/16 nhid 12"), f("-6 route add 2001:db8:20::/48 nhid 20")},
			keep: f("10.10.0.0/16 10.11.0.0/16 2001:db8:20::/48")},
		{name: "nexthop-compat0", about: "routes using nexthop objects with nexthop_compat_mode=0 (nhid only)",
			setup: [][]string{f("nexthop add id 10 via 192.0.2.2 dev d0"), f("nexthop add id 11 via 100.64.1.2 dev d1"),
				f("nexthop add id 12 group 10,2/11"), f("nexthop add id 20 via 2001:db8:1::2 dev d0"),
				{"netns-sysctl", "net.ipv4.nexthop_compat_mode=0"}},
			cmds: [][]string{f("route add 10.10.0.0/16 nhid 10"), f("route add 10.11.0.0/16 nhid 12"), f("-6 route add 2001:db8:20::/48 nhid 20")},
			keep: f("10.10.0.0/16 10.11.0.0/16 2001:db8:20::/48")},
		{name: "ipv4-via-ipv6", about: "IPv4 routes via an IPv6 gateway (RTA_VIA), single and multipath",
			cmds: [][]string{f("route add 10.13.0.0/16 via inet6 2001:db8:1::2 dev d0"),
				f("route add 10.14.0.0/16 nexthop via inet6 2001:db8:1::2 dev d0 nexthop via 192.0.2.2 dev d0")},
			keep: f("10.13.0.0/16 10.14.0.0/16")},
		{name: "ipv6-single", about: "IPv6 gateway, device and blackhole routes",
			cmds: [][]string{f("-6 route add 2001:db8:10::/48 via 2001:db8:1::2 metric 512 proto bgp"),
				f("-6 route add 2001:db8:11::/48 dev d1"), f("-6 route add blackhole 2001:db8:12::/48")},
			keep: f("2001:db8:10::/48 2001:db8:11::/48 2001:db8:12::/48")},
		{name: "ipv6-multipath", about: "IPv6 multipath add, append, one-hop delete",
			cmds: [][]string{f("-6 route add 2001:db8:30::/48 nexthop via 2001:db8:1::2 dev d0 weight 2 nexthop via 2001:db8:2::2 dev d1"),
				f("-6 route append 2001:db8:30::/48 via 2001:db8:1::3 dev d0"),
				f("-6 route del 2001:db8:30::/48 via 2001:db8:2::2 dev d1")},
			keep: f("2001:db8:30::/48")},
		{name: "ipv6-src", about: "IPv6 source-specific route (RTA_SRC)",
			cmds: [][]string{f("-6 route add 2001:db8:40::/48 from 2001:db8:99::/64 via 2001:db8:1::2")},
			keep: f("2001:db8:40::/48")},
		{name: "link-addr", about: "link and address life cycle (and what it flushes)",
			cmds: [][]string{f("link add x0 type veth peer name x0p"), f("link set x0p up"), f("link set x0 up"),
				f("addr add 10.99.0.1/24 dev x0"), f("-6 addr add 2001:db8:99::1/64 dev x0 nodad"),
				f("route add 10.98.0.0/16 via 10.99.0.2"), f("link set x0 down"), f("link del x0")},
			keep: f("10.98.0.0/16")},
	}
}

func TestRecord(t *testing.T) {
	if !*record {
		t.Skip("re-records testdata from the kernel; run with -record")
	}
	for _, c := range recordCases() {
		t.Run(c.name, func(t *testing.T) { recordOne(t, c) })
	}
}

func recordOne(t *testing.T, c recordCase) {
	ns := newTestNS(t)
	run := func(args []string) {
		if args[0] == "netns-sysctl" {
			nsExec(t, ns, "sysctl", "-qw", args[1])
			return
		}
		ipn(t, ns, args...)
	}
	nsExec(t, ns, "sysctl", "-qw", "net.ipv6.conf.default.addr_gen_mode=1", "net.ipv6.conf.all.addr_gen_mode=1")
	s := testSubscribe(t, ns)
	for _, args := range append(recordBase, c.setup...) {
		run(args)
	}
	drain(t, s)

	var out bytes.Buffer
	fmt.Fprintf(&out, "# %s\n# recorded by `go test -run TestRecord -record` in a fresh netns; hex, one netlink message per line\n", c.about)
	var routes [][]byte
	for _, args := range c.cmds {
		run(args)
		fmt.Fprintf(&out, "# $ ip %s\n", strings.Join(args, " "))
		for _, m := range drain(t, s) {
			fmt.Fprintf(&out, "notify %x\n", m)
			if typ := MessageType(m); typ == rtmNewRoute || typ == rtmDelRoute {
				routes = append(routes, m)
			}
			writeCorpus(t, "FuzzDecode", m)
		}
	}
	fmt.Fprintf(&out, "# dump (RTM_GETROUTE, AF_UNSPEC) of %s\n", strings.Join(c.keep, " "))
	for _, m := range rawDump(t, ns) {
		r, err := DecodeRoute(m)
		if err != nil || !inside(r.Route.Prefix, c.keep) {
			continue
		}
		fmt.Fprintf(&out, "dump %x\n", m)
		routes = append(routes, m)
	}
	for _, m := range routes {
		writeCorpus(t, "FuzzDecodeRoute", m)
	}
	path := filepath.Join("testdata", "recorded", c.name+".txt")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// rawDump dumps all routes of both families, returning the raw messages.
func rawDump(t *testing.T, ns string) [][]byte {
	var out [][]byte
	req := make([]byte, nlmsgHdrLen+rtmsgLen)
	err := dump(Options{NetNS: ns}, rtmGetRoute, req, func() { out = out[:0] }, func(msg []byte) error {
		out = append(out, bytes.Clone(msg))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const rtmGetRoute = 26

func inside(p netip.Prefix, keep []string) bool {
	for _, k := range keep {
		kp := netip.MustParsePrefix(k)
		if kp.Contains(p.Addr()) && p.Bits() >= kp.Bits() {
			return true
		}
	}
	return false
}

// writeCorpus stores msg as a seed of a fuzz target in Go's corpus format.
func writeCorpus(t *testing.T, target string, msg []byte) {
	sum := sha256.Sum256(msg)
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(msg)) + ")\n"
	if err := os.WriteFile(filepath.Join(dir, "recorded-"+hex.EncodeToString(sum[:8])), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
