package gobgp

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"

	"github.com/fibgate/fibgate/internal/lab"
	"github.com/fibgate/fibgate/internal/syncbuf"
	"github.com/fibgate/fibgate/plugin/gate"
)

// newAddPathLab is newLoopLab with ADD-PATH (send-max 4) on one session:
// the leaf sends it to the receiver (send), or the feeder sends it to the
// leaf (!send). With late, the leaf's neighbour that sends is added only
// when the test calls the returned function.
func newAddPathLab(t *testing.T, send, late bool) (*loopLab, func()) {
	port := freePort(t)
	fams := []string{"ipv4", "ipv6"}
	feeder := lab.Peer{Address: feederAddr, AS: 65002, Families: fams}
	receiver := lab.Peer{Address: receiverAddr, AS: 65003, Families: fams}
	feederSide := lab.Peer{Address: "127.0.0.1", AS: 65001, Families: fams, Active: true, RemotePort: uint32(port), LocalAddress: feederAddr}
	receiverSide := lab.Peer{Address: "127.0.0.1", AS: 65001, Families: fams, Active: true, RemotePort: uint32(port), LocalAddress: receiverAddr}
	if send {
		receiver.AddPathSend, receiverSide.AddPathReceive = 4, true
	} else {
		feeder.AddPathReceive, feederSide.AddPathSend = true, 4
	}
	x := &loopLab{leaf: lab.StartServer(t, "", &api.Global{Asn: 65001, RouterId: "10.0.0.1", ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"}})}
	lab.AddPeer(t, x.leaf, feeder)
	x.feeder = lab.StartServer(t, "", &api.Global{Asn: 65002, RouterId: "10.0.0.2"})
	lab.AddPeer(t, x.feeder, feederSide)
	x.receiver = lab.StartServer(t, "", &api.Global{Asn: 65003, RouterId: "10.0.0.3"})
	lab.AddPeer(t, x.receiver, receiverSide)
	lab.WaitEstablished(t, x.leaf, feederAddr, 10*time.Second)
	addReceiver := func() {
		lab.AddPeer(t, x.leaf, receiver)
		lab.WaitEstablished(t, x.leaf, receiverAddr, 10*time.Second)
	}
	if !late {
		addReceiver()
	}
	return x, addReceiver
}

// TestAddPathSendIsRefused: a GoBGP that sends ADD-PATH to a neighbour
// cannot be gated (ErrAddPathSend), so Bootstrap refuses it and names the
// neighbour; one configured after Bootstrap is reported by Check at error
// level. The last part checks the GoBGP behaviour the refusal rests on,
// with such a neighbour added behind the gate's back: a released prefix
// never reaches it, and one that reached it (its path changed after the
// release) stays there after the take-back. If GoBGP changes, that part
// fails, and the refusal can be revisited.
func TestAddPathSendIsRefused(t *testing.T) {
	ctx := context.Background()
	t.Run("bootstrap", func(t *testing.T) {
		x, _ := newAddPathLab(t, true, false)
		sp, err := NewInProcess(x.leaf, Config{}, WithLogger(testLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close(ctx)
		err = sp.Bootstrap(ctx)
		if !errors.Is(err, ErrAddPathSend) || !strings.Contains(err.Error(), receiverAddr+" (ipv4-unicast send-max 4, ipv6-unicast send-max 4)") {
			t.Fatalf("Bootstrap: %v; want ErrAddPathSend naming %s and both families", err, receiverAddr)
		}
		if err := sp.Advertise(ctx, ads(gate.Transit, p1)); !errors.Is(err, ErrNotBootstrapped) {
			t.Errorf("Advertise after the refusal: %v, want ErrNotBootstrapped", err)
		}
		// Out of scope, the family is not gated: nothing to refuse.
		sp4, err := NewInProcess(x.leaf, Config{Name: "v6only", Scope: []Range{{Prefix: netip.MustParsePrefix("2001:db8::/32"), MaxLen: 128}}})
		if err != nil {
			t.Fatal(err)
		}
		defer sp4.Close(ctx)
		if err := sp4.Bootstrap(ctx); !errors.Is(err, ErrAddPathSend) || strings.Contains(err.Error(), "ipv4") {
			t.Errorf("IPv6 scope: %v; want ErrAddPathSend for ipv6-unicast only", err)
		}
	})
	t.Run("added later", func(t *testing.T) {
		x, addReceiver := newAddPathLab(t, true, true)
		logs := &syncbuf.Buffer{}
		sp, err := NewInProcess(x.leaf, Config{}, WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
		if err != nil {
			t.Fatal(err)
		}
		if err := sp.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		defer sp.Close(ctx)
		gctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go sp.Guard(gctx)
		addReceiver()
		lab.Eventually(t, 5*time.Second, "Check reports the ADD-PATH neighbour", func() error {
			if s := logs.String(); !strings.Contains(s, "level=ERROR") || !strings.Contains(s, receiverAddr+" (ipv4-unicast send-max 4") {
				return errors.New("not logged yet")
			}
			return nil
		})

		// What the refusal is for, in this lab: released, p1 and p2 stay
		// away from the receiver.
		ps := []netip.Prefix{p1, p2}
		x.announce(t, false, ps...)
		x.learned(t, ps...)
		if err := sp.Advertise(ctx, ads(gate.Transit, ps...)); err != nil {
			t.Fatal(err)
		}
		lab.Never(t, quiet, "released prefixes stay away from an ADD-PATH receiver (GoBGP v3.37)", func() error {
			if got := rib(t, x.receiver); len(got) > 0 {
				return errors.New("the receiver got " + keysOf(got))
			}
			return nil
		})
		// p1's path changes: GoBGP exports the new path to it; taken back,
		// p1 stays there.
		x.announceMED(t, 7, p1)
		x.received(t, ps, p1)
		if err := sp.Withdraw(ctx, ads(gate.Transit, ps...)); err != nil {
			t.Fatal(err)
		}
		lab.Never(t, quiet, "a taken-back prefix stays at an ADD-PATH receiver (GoBGP v3.37)", func() error {
			if _, ok := rib(t, x.receiver)[p1]; !ok {
				return errors.New("p1 was withdrawn: GoBGP now withdraws what its policy rejects from an ADD-PATH neighbour")
			}
			return nil
		})
	})
}

// TestAddPathReceiveIsGated: a neighbour that sends the leaf several
// paths a prefix (ADD-PATH receive) is gated as any other.
func TestAddPathReceiveIsGated(t *testing.T) {
	ctx := context.Background()
	x, _ := newAddPathLab(t, false, false)
	sp := x.speaker(t)
	ps := []netip.Prefix{p1, p2}
	x.announce(t, false, ps...)
	x.learned(t, ps...)
	lab.Never(t, quiet, "held before the release", func() error {
		if got := rib(t, x.receiver); len(got) > 0 {
			return errors.New("the receiver got " + keysOf(got))
		}
		return nil
	})
	if err := sp.Advertise(ctx, ads(gate.Transit, ps...)); err != nil {
		t.Fatal(err)
	}
	x.received(t, ps, ps...)
	if err := sp.Withdraw(ctx, ads(gate.Transit, p1)); err != nil {
		t.Fatal(err)
	}
	x.received(t, ps, p2)
}

func keysOf(m map[netip.Prefix]time.Time) string {
	var s []string
	for p := range m {
		s = append(s, p.String())
	}
	return strings.Join(s, " ")
}

// announceMED has the feeder announce ps again with a MED: a new path of
// the same neighbour.
func (x *loopLab) announceMED(t *testing.T, med uint32, ps ...netip.Prefix) {
	t.Helper()
	origin, _ := bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP).Serialize()
	m, _ := bgp.NewPathAttributeMultiExitDisc(med).Serialize()
	for _, p := range ps {
		path, err := build(p, netip.MustParseAddr(feederAddr), [][]byte{origin, m}, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := x.feeder.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path}); err != nil {
			t.Fatalf("feeder announce %v: %v", p, err)
		}
	}
}
