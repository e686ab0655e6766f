//go:build linux

package gobgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/internal/syncbuf"
)

// otherFamilies are the families beside unicast that the receiver of
// TestOtherFamiliesPassTheGate takes, with a path of each.
var otherFamilies = func() map[string]bgp.AddrPrefixInterface {
	rd := bgp.NewRouteDistinguisherTwoOctetAS(65001, 1)
	label := *bgp.NewMPLSLabelStack(100)
	v4, v6 := "10.20.0.0", "2001:db8:20::"
	return map[string]bgp.AddrPrefixInterface{
		"l3vpn-ipv4-unicast":    bgp.NewLabeledVPNIPAddrPrefix(24, v4, label, rd),
		"l3vpn-ipv6-unicast":    bgp.NewLabeledVPNIPv6AddrPrefix(48, v6, label, rd),
		"ipv4-labelled-unicast": bgp.NewLabeledIPAddrPrefix(24, v4, label),
		"ipv6-labelled-unicast": bgp.NewLabeledIPv6AddrPrefix(48, v6, label),
		"ipv4":                  bgp.NewIPAddrPrefix(24, v4),
		"ipv6":                  bgp.NewIPv6AddrPrefix(48, v6),
	}
}()

// TestOtherFamiliesPassTheGate: the gate holds IPv4 and IPv6 unicast only,
// yet GoBGP's prefix sets match by AFI alone (PrefixCondition, v3.0 to
// v3.37): a held set of IPv4 prefixes also matches a VPNv4 or an IPv4
// labeled-unicast path with a prefix inside it. Such paths, which nothing
// installs in the FIB and the gate never releases, must reach a neighbour
// as they do without the gate, while a unicast path of the same prefix
// stays held: with the gate added over the API (gobgpd-ext) and with the
// fallback policy rendered into gobgpd's config file (fibgated).
func TestOtherFamiliesPassTheGate(t *testing.T) {
	var fams []string
	for f := range otherFamilies {
		fams = append(fams, f)
	}
	// receiver starts a receiver of every family that connects to the
	// leaf at 127.0.0.1:port.
	receiver := func(t *testing.T, port int) *server.BgpServer {
		recv := lab.StartServer(t, "", &api.Global{Asn: 65003, RouterId: "10.0.0.3"})
		lab.AddPeer(t, recv, lab.Peer{Address: "127.0.0.1", AS: 65001, Families: fams, Active: true, RemotePort: uint32(port), LocalAddress: receiverAddr})
		return recv
	}
	t.Run("inprocess", func(t *testing.T) {
		port := freePort(t)
		leaf := lab.StartServer(t, "", &api.Global{Asn: 65001, RouterId: "10.0.0.1", ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"}})
		lab.AddPeer(t, leaf, lab.Peer{Address: receiverAddr, AS: 65003, Families: fams})
		recv := receiver(t, port)
		lab.WaitEstablished(t, leaf, receiverAddr, 10*time.Second)
		add := func(p *api.Path) error {
			_, err := leaf.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p})
			return err
		}
		del := func(p *api.Path) error {
			return leaf.DeletePath(context.Background(), &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: p.Family, Path: p})
		}
		// Without the gate every path goes out: the paths are right.
		announce(t, recv, add, del, true)
		sp, err := NewInProcess(leaf, Config{}, WithLogger(testLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		gated(t, sp, recv, add, del)
	})
	// fallback runs a gobgpd whose config holds the fallback, as an older
	// fibgate rendered it when old: without the held sets' families.
	fallback := func(t *testing.T, old bool) {
		port := freePort(t)
		cfg := Config{FallbackPolicy: "fibgate-fallback"}
		fallback, err := cfg.FallbackTOML()
		if err != nil {
			t.Fatal(err)
		}
		if old {
			fallback = regexp.MustCompile(`(?m)^ *\[policy-definitions\.statements\.conditions\.bgp-conditions\]\n *afi-safi-in-list = .*\n`).ReplaceAllString(fallback, "")
			if strings.Contains(fallback, "afi-safi-in-list") {
				t.Fatalf("the families are still in\n%s", fallback)
			}
		}
		conf := lab.GobgpdConf{AS: 65001, RouterID: "10.0.0.1", Port: port, Listen: "127.0.0.1",
			Neighbours: []lab.Neighbour{{Address: receiverAddr, AS: 65003, Families: fams}},
			Extra:      fallback + "[global.apply-policy.config]\n  export-policy-list = [\"fibgate-fallback\"]\n  default-export-policy = \"accept-route\"\n"}
		g := lab.StartGobgpd(t, "", conf.String())
		recv := receiver(t, port)
		lab.WaitEstablished(t, recv, "127.0.0.1", 10*time.Second)
		conn := g.Dial(t)
		c := api.NewGobgpApiClient(conn)
		add := func(p *api.Path) error {
			_, err := c.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p})
			return err
		}
		del := func(p *api.Path) error {
			_, err := c.DeletePath(context.Background(), &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: p.Family, Path: p})
			return err
		}
		logs := &syncbuf.Buffer{}
		sp, err := NewClient(conn, cfg, WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
		if err != nil {
			t.Fatal(err)
		}
		if old {
			// It holds the other families too, and the gate says so.
			if err := add(localPath(t, otherFamilies["l3vpn-ipv4-unicast"], "l3vpn-ipv4-unicast", false)); err != nil {
				t.Fatal(err)
			}
			lab.Never(t, quiet, "the old fallback holds a VPNv4 path", func() error {
				if n := count(t, recv, "l3vpn-ipv4-unicast"); n != 0 {
					return fmt.Errorf("%d VPNv4 paths at the receiver", n)
				}
				return nil
			})
			ctx := context.Background()
			if err := sp.Bootstrap(ctx); err != nil {
				t.Fatal(err)
			}
			defer sp.Close(ctx)
			if !strings.Contains(logs.String(), "older fibgate") || !strings.Contains(logs.String(), "--print-fallback") {
				t.Errorf("no warning about the old fallback in\n%s", logs)
			}
			return
		}
		// The file's fallback alone (fibgated not running) holds unicast
		// and nothing else.
		announce(t, recv, add, del, false)
		gated(t, sp, recv, add, del)
		if strings.Contains(logs.String(), "older fibgate") {
			t.Errorf("the fallback as rendered now was taken for an old one:\n%s", logs)
		}
	}
	t.Run("fallback", func(t *testing.T) { fallback(t, false) })
	t.Run("old fallback", func(t *testing.T) { fallback(t, true) })
}

// gated bootstraps sp and checks that the other families still pass.
func gated(t *testing.T, sp *Speaker, recv *server.BgpServer, add, del func(*api.Path) error) {
	t.Helper()
	ctx := context.Background()
	if err := sp.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	defer sp.Close(ctx)
	announce(t, recv, add, del, false)
}

// announce adds a path of each family of otherFamilies at the leaf (add),
// waits until the receiver has them, the unicast ones only if unicast,
// then withdraws them (del) and waits until it has none.
func announce(t *testing.T, recv *server.BgpServer, add, del func(*api.Path) error, unicast bool) {
	t.Helper()
	for fam, nlri := range otherFamilies {
		if err := add(localPath(t, nlri, fam, false)); err != nil {
			t.Fatalf("add %s: %v", fam, err)
		}
	}
	lab.Eventually(t, 5*time.Second, "the receiver has the paths of the other families", func() error {
		for fam := range otherFamilies {
			want := 1
			if (fam == "ipv4" || fam == "ipv6") && !unicast {
				want = 0
			}
			if n := count(t, recv, fam); n != want {
				return fmt.Errorf("%s: %d paths at the receiver, want %d", fam, n, want)
			}
		}
		return nil
	})
	for fam, nlri := range otherFamilies {
		if err := del(localPath(t, nlri, fam, true)); err != nil {
			t.Fatalf("withdraw %s: %v", fam, err)
		}
	}
	lab.Eventually(t, 5*time.Second, "the receiver has no path left", func() error {
		for fam := range otherFamilies {
			if n := count(t, recv, fam); n != 0 {
				return fmt.Errorf("%s: %d paths at the receiver", fam, n)
			}
		}
		return nil
	})
}

// localPath is a path of nlri in family fam for the leaf's global RIB, as
// `gobgp global rib -a FAM add` makes, next hop self.
func localPath(t *testing.T, nlri bgp.AddrPrefixInterface, fam string, withdraw bool) *api.Path {
	t.Helper()
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	nh := "0.0.0.0"
	if netip.MustParseAddr(addrOf(nlri)).Is6() {
		nh = "::"
	}
	if fam == "ipv4" {
		attrs = append(attrs, bgp.NewPathAttributeNextHop(nh))
	} else {
		attrs = append(attrs, bgp.NewPathAttributeMpReachNLRI(nh, []bgp.AddrPrefixInterface{nlri}))
	}
	p, err := apiutil.NewPath(nlri, withdraw, attrs, time.Now())
	if err != nil {
		t.Fatalf("%s path: %v", fam, err)
	}
	return p
}

// addrOf is the address of a unicast, labeled or VPN prefix.
func addrOf(nlri bgp.AddrPrefixInterface) string {
	switch n := nlri.(type) {
	case *bgp.IPAddrPrefix:
		return n.Prefix.String()
	case *bgp.IPv6AddrPrefix:
		return n.Prefix.String()
	case *bgp.LabeledIPAddrPrefix:
		return n.Prefix.String()
	case *bgp.LabeledIPv6AddrPrefix:
		return n.Prefix.String()
	case *bgp.LabeledVPNIPAddrPrefix:
		return n.Prefix.String()
	case *bgp.LabeledVPNIPv6AddrPrefix:
		return n.Prefix.String()
	}
	panic(fmt.Sprintf("no address in %T", nlri))
}

// count is how many destinations s's global RIB has in family fam.
func count(t *testing.T, s *server.BgpServer, fam string) int {
	t.Helper()
	name := map[string]string{"ipv4": "ipv4-unicast", "ipv6": "ipv6-unicast"}[fam]
	if name == "" {
		name = fam
	}
	rf, err := bgp.GetRouteFamily(name)
	if err != nil {
		t.Fatal(err)
	}
	afi, safi := bgp.RouteFamilyToAfiSafi(rf)
	n := 0
	err = s.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL,
		Family: &api.Family{Afi: api.Family_Afi(afi), Safi: api.Family_Safi(safi)}}, func(*api.Destination) { n++ })
	if err != nil {
		t.Fatal(err)
	}
	return n
}
