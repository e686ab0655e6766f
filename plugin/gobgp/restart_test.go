package gobgp

import (
	"testing"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

func TestANeighbourOwesEndOfRibForEveryFamilyItNegotiated(t *testing.T) {
	v4 := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	v6 := &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	helper := bgp.NewCapGracefulRestart(false, false, 120, nil) // FRR's default: no families of its own
	full := bgp.NewCapGracefulRestart(false, false, 120, []*bgp.CapGracefulRestartTuple{bgp.NewCapGracefulRestartTuple(bgp.RF_IPv4_UC, true)})
	peer := func(grOn bool, caps []bgp.ParameterCapabilityInterface, eor4, eor6 bool) *api.Peer {
		remote, err := apiutil.MarshalCapabilities(caps)
		if err != nil {
			t.Fatal(err)
		}
		af := func(f *api.Family, eor bool) *api.AfiSafi {
			return &api.AfiSafi{Config: &api.AfiSafiConfig{Family: f, Enabled: true},
				MpGracefulRestart: &api.MpGracefulRestart{State: &api.MpGracefulRestartState{EndOfRibReceived: eor}}}
		}
		return &api.Peer{GracefulRestart: &api.GracefulRestart{Enabled: grOn}, State: &api.PeerState{RemoteCap: remote},
			AfiSafis: []*api.AfiSafi{af(v4, eor4), af(v6, eor6)}}
	}
	mp4, mp6 := bgp.NewCapMultiProtocol(bgp.RF_IPv4_UC), bgp.NewCapMultiProtocol(bgp.RF_IPv6_UC)
	for _, c := range []struct {
		name string
		p    *api.Peer
		owes bool
	}{
		{"a helper-only neighbour before its End-of-RIB", peer(true, []bgp.ParameterCapabilityInterface{mp4, helper}, false, false), true},
		{"a helper-only neighbour after it", peer(true, []bgp.ParameterCapabilityInterface{mp4, helper}, true, false), false},
		{"a family it did not negotiate owes nothing", peer(true, []bgp.ParameterCapabilityInterface{mp4, full}, true, false), false},
		{"both families negotiated, one End-of-RIB in", peer(true, []bgp.ParameterCapabilityInterface{mp4, mp6, full}, true, false), true},
		{"no multiprotocol capability is IPv4 unicast", peer(true, []bgp.ParameterCapabilityInterface{helper}, false, false), true},
		{"a neighbour without graceful restart promises nothing", peer(true, []bgp.ParameterCapabilityInterface{mp4}, false, false), false},
		{"graceful restart off on our side", peer(false, []bgp.ParameterCapabilityInterface{mp4, full}, false, false), false},
	} {
		if got := owesEOR(c.p, "10.0.0.1", nil); got != c.owes {
			t.Errorf("%s: owesEOR = %v, want %v", c.name, got, c.owes)
		}
	}
	// With the End-of-RIBs that really arrived, GoBGP's flag (set for a
	// neighbour with the restart bit) does not count.
	p := peer(true, []bgp.ParameterCapabilityInterface{mp4, mp6, full}, true, true)
	seen := map[string]bool{"ipv4-unicast": true}
	eor := func(addr, family string) bool { return addr == "10.0.0.1" && seen[family] }
	if !owesEOR(p, "10.0.0.1", eor) {
		t.Error("owesEOR counted GoBGP's flag for ipv6-unicast, whose End-of-RIB never came")
	}
	seen["ipv6-unicast"] = true
	if owesEOR(p, "10.0.0.1", eor) {
		t.Error("owesEOR still waits with both End-of-RIBs in")
	}
}
